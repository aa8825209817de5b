#include "tests/sim/sim_disk.h"

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
      TALLY_CHECK(first >= 1 && first <= entries_.size() + 1,
                  "simulated disk write leaves a gap");
      entries_.resize(first - 1);
      entries_.insert(entries_.end(), w.entries.begin(), w.entries.end());
    }
  }
  pending_.clear();
}

void SimDisk::Crash() {
  pending_.clear();
  if (faulty_) {
    hard_state_.term = 0;
    hard_state_.vote = raft::kNoNode;
  }
}

}  // namespace tally::sim
