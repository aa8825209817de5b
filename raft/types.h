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
  kConfChange = 1,  // data is an encoded ConfChange (conf_change.h)
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

// The membership of the group. Outside a membership change only `voters`
// and `learners` are set. In a joint configuration (§6 of the dissertation)
// decisions need a majority of `voters` AND of `voters_outgoing`.
// Learners receive the log but never count toward any majority. Lists are
// kept sorted.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> voters_outgoing;
  std::vector<NodeId> learners;
  // Leave the joint configuration as soon as it is committed.
  bool auto_leave = false;

  bool operator==(const ConfState&) const = default;
  bool IsJoint() const { return !voters_outgoing.empty(); }
  // A voter in either half of the configuration.
  bool IsVoter(NodeId id) const;
  bool IsLearner(NodeId id) const;
  // Voters (both halves) and learners, sorted, each once.
  std::vector<NodeId> Members() const;
};
std::string Describe(const ConfState& cs);

// The state a snapshot captures: everything up to and including `index`.
struct SnapshotMetadata {
  Index index = 0;
  Term term = 0;
  ConfState conf_state;

  bool operator==(const SnapshotMetadata&) const = default;
};

// A snapshot as the core sees it: metadata and a reference to the data. The
// data itself (possibly gigabytes) never passes through the core: the host
// resolves the reference and streams it between nodes in chunks.
struct Snapshot {
  SnapshotMetadata metadata;
  std::string data_ref;

  bool operator==(const Snapshot&) const = default;
  bool IsEmpty() const { return metadata.index == 0; }
};

// The answer to a linearizable read request: once the application has
// applied `index`, reading its state machine is linearizable for the
// request named `context`.
struct ReadState {
  Index index = 0;
  uint64_t context = 0;

  bool operator==(const ReadState&) const = default;
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
