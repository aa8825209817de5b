#ifndef TALLY_TESTS_SIM_SIM_DISK_H_
#define TALLY_TESTS_SIM_SIM_DISK_H_

#include <optional>
#include <vector>

#include "raft/types.h"

namespace tally::sim {

// The stable storage of one simulated node. Writes land in a volatile buffer
// and become durable only on Sync(); a crash throws the buffer away, just as
// a power cut loses what the page cache had not flushed.
//
// In faulty mode the disk also breaks its promise: a crash forgets the
// synced term and vote. Raft's safety rests on those surviving, so the
// simulator must find violations in this mode; it exists to prove the
// checks can fail.
//
// Thread safety: not thread-safe.
class SimDisk {
 public:
  explicit SimDisk(bool faulty) : faulty_(faulty) {}

  // Buffers a write of the hard state and of entries replacing the log from
  // entries[0].index on.
  void Write(const std::optional<raft::HardState>& hs,
             const std::vector<raft::Entry>& entries);
  // Makes every buffered write durable.
  void Sync();
  // Loses every buffered write (and, in faulty mode, the term and vote).
  void Crash();

  // Makes a snapshot durable and drops the entries up to `compact_to`
  // (<= the snapshot's index). Written and synced at once, as a snapshot
  // file is before the log is truncated.
  void SaveSnapshot(const raft::Snapshot& snapshot, raft::Index compact_to);
  // Installs a snapshot received from the leader: it replaces the whole log
  // (synced at once, as the Ready contract requires).
  void InstallSnapshot(const raft::Snapshot& snapshot);

  const raft::HardState& hard_state() const { return hard_state_; }
  const raft::Snapshot& snapshot() const { return snapshot_; }
  // Durable entries after the snapshot, in index order.
  std::vector<raft::Entry> EntriesAfterSnapshot() const;
  bool has_unsynced_writes() const { return !pending_.empty(); }

 private:
  struct PendingWrite {
    std::optional<raft::HardState> hs;
    std::vector<raft::Entry> entries;
  };

  const bool faulty_;
  raft::HardState hard_state_;
  raft::Snapshot snapshot_;
  // entries_[0] has index offset_ + 1.
  raft::Index offset_ = 0;
  std::vector<raft::Entry> entries_;
  std::vector<PendingWrite> pending_;
};

}  // namespace tally::sim

#endif  // TALLY_TESTS_SIM_SIM_DISK_H_
