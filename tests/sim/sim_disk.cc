#include "tests/sim/sim_disk.h"

#include <algorithm>

#include "util/check.h"

namespace tally::sim {

void SimDisk::Write(const std::optional<raft::HardState>& hs,
                    const std::vector<raft::Entry>& entries) {
  if (!hs && entries.empty()) return;
  pending_.push_back({hs, entries});
}

void SimDisk::Sync() {
  for (PendingWrite& w : pending_) {
    if (w.hs) hard_state_ = *w.hs;
    if (!w.entries.empty()) {
      const raft::Index first = w.entries.front().index;
      TALLY_CHECK(first > offset_ && first <= offset_ + entries_.size() + 1,
                  "simulated disk write leaves a gap");
      entries_.resize(first - offset_ - 1);
      entries_.insert(entries_.end(), w.entries.begin(), w.entries.end());
    }
  }
  pending_.clear();
}

void SimDisk::SaveSnapshot(const raft::Snapshot& snapshot,
                           raft::Index compact_to) {
  Sync();
  snapshot_ = snapshot;
  if (compact_to > offset_) {
    const size_t drop = std::min<size_t>(compact_to - offset_, entries_.size());
    entries_.erase(entries_.begin(), entries_.begin() + drop);
    offset_ = compact_to;
  }
}

void SimDisk::InstallSnapshot(const raft::Snapshot& snapshot) {
  Sync();
  snapshot_ = snapshot;
  entries_.clear();
  offset_ = snapshot.metadata.index;
}

std::vector<raft::Entry> SimDisk::EntriesAfterSnapshot() const {
  std::vector<raft::Entry> out;
  for (const raft::Entry& e : entries_) {
    if (e.index > snapshot_.metadata.index) out.push_back(e);
  }
  return out;
}

void SimDisk::Crash() {
  pending_.clear();
  if (faulty_) {
    hard_state_.term = 0;
    hard_state_.vote = raft::kNoNode;
  }
}

}  // namespace tally::sim
