#ifndef TALLY_RAFT_STORAGE_H_
#define TALLY_RAFT_STORAGE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/types.h"

namespace tally::raft {

struct InitialState {
  HardState hard_state;
  ConfState conf_state;
};

// Read-only view of the entries and state a node has already persisted. The
// core reads through it and never writes: the application persists what each
// Ready hands it (see raw_node.h) and then makes it visible here.
//
// The log is a contiguous range [FirstIndex(), LastIndex()]; the entry just
// before FirstIndex() is remembered by term only (it is where the log was
// compacted, or index 0 with term 0 for a fresh log).
//
// Errors: a request below the first retained entry returns OUT_OF_RANGE (the
// log was compacted). Any other error is treated by the core as fatal.
//
// Thread safety: the core calls these from one thread at a time; an
// implementation that is also written from another thread must synchronise.
class Storage {
 public:
  virtual ~Storage() = default;

  // The persisted hard state and membership, read once when a node starts.
  virtual absl::StatusOr<InitialState> GetInitialState() const = 0;

  // Entries in [lo, hi), at least one if lo < hi, and then no more than
  // max_bytes in total (as counted by EntrySize).
  // REQUIRES: FirstIndex() <= lo <= hi <= LastIndex() + 1.
  virtual absl::StatusOr<std::vector<Entry>> Entries(
      Index lo, Index hi, uint64_t max_bytes) const = 0;

  // Term of entry i, for FirstIndex()-1 <= i <= LastIndex().
  virtual absl::StatusOr<Term> TermAt(Index i) const = 0;

  virtual Index FirstIndex() const = 0;
  virtual Index LastIndex() const = 0;

  // The most recent snapshot: the leader sends it to a follower that needs
  // compacted entries. UNAVAILABLE while one is being prepared (the leader
  // retries later); an empty snapshot if there has never been one.
  virtual absl::StatusOr<Snapshot> GetSnapshot() const = 0;
};

// Storage kept in memory: what the simulator and tests give the core, and the
// cache in front of durable storage in a real node. Writes here must come
// after the same data is durable when it stands for stable storage.
//
// Thread safety: not thread-safe.
class MemoryStorage final : public Storage {
 public:
  MemoryStorage();
  // A new group whose members are `voters`.
  explicit MemoryStorage(ConfState conf);

  absl::StatusOr<InitialState> GetInitialState() const override;
  absl::StatusOr<std::vector<Entry>> Entries(Index lo, Index hi,
                                             uint64_t max_bytes) const override;
  absl::StatusOr<Term> TermAt(Index i) const override;
  Index FirstIndex() const override;
  Index LastIndex() const override;
  absl::StatusOr<Snapshot> GetSnapshot() const override;

  void SetHardState(const HardState& hs) { hard_state_ = hs; }
  const HardState& hard_state() const { return hard_state_; }
  void SetConfState(const ConfState& cs) { conf_state_ = cs; }

  // Appends entries, replacing any existing entries from entries[0].index on.
  // REQUIRES: entries are contiguous, entries[0].index <= LastIndex() + 1,
  //           and entries[0].index > the compaction point.
  void Append(const std::vector<Entry>& entries);

  // Records a snapshot of the application's state at `index` (which must be
  // applied, so in this log). Does not compact; see Compact. OUT_OF_RANGE if
  // older than the current snapshot.
  absl::Status CreateSnapshot(Index index, const ConfState& conf,
                              std::string data_ref);
  // Discards entries up to and including `index`, which a snapshot must
  // cover. OUT_OF_RANGE if already compacted or past the snapshot.
  absl::Status Compact(Index index);
  // Replaces everything with a snapshot received from the leader: the log
  // then starts after it, and the membership is the snapshot's.
  void ApplySnapshot(const Snapshot& snapshot);

 private:
  HardState hard_state_;
  ConfState conf_state_;
  Snapshot snapshot_;
  // entries_[0] is a placeholder for the entry before the first retained one
  // (index and term only).
  std::vector<Entry> entries_;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_STORAGE_H_
