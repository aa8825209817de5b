#ifndef TALLY_RAFT_TYPES_H_
#define TALLY_RAFT_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

namespace tally::raft {

// Raft vocabulary. Time inside the core is measured in ticks only.
using Term = uint64_t;
using Index = uint64_t;
using NodeId = uint64_t;

inline constexpr NodeId kNoNode = 0;

enum class EntryType : uint8_t {
  kNormal = 0,
};

// One log entry. `data` is opaque to the core; an empty normal entry is the
// no-op a new leader appends (§5.4.2).
struct Entry {
  Term term = 0;
  Index index = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  bool operator==(const Entry&) const = default;
};

// Bytes an entry accounts for in flow control and size limits.
inline uint64_t EntrySize(const Entry& e) { return e.data.size() + 24; }
uint64_t EntriesSize(const std::vector<Entry>& entries);

// State that must be on stable storage before any message that depends on it
// is sent (Figure 2: currentTerm, votedFor), plus the commit index, which may
// be persisted lazily.
struct HardState {
  Term term = 0;
  NodeId vote = kNoNode;
  Index commit = 0;

  bool operator==(const HardState&) const = default;
  bool IsEmpty() const { return term == 0 && vote == kNoNode && commit == 0; }
};

// The membership of the group.
struct ConfState {
  std::vector<NodeId> voters;

  bool operator==(const ConfState&) const = default;
};

enum class Role : uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
const char* RoleName(Role role);

// Volatile state worth telling the application about when it changes.
struct SoftState {
  NodeId lead = kNoNode;
  Role role = Role::kFollower;

  bool operator==(const SoftState&) const = default;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_TYPES_H_
