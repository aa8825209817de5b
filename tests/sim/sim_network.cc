#include "tests/sim/sim_network.h"

#include <algorithm>

namespace tally::sim {

void SimNetwork::Send(const raft::Message& m, uint64_t now, bool reliable) {
  if (!reliable && random_->Chance(faults_.drop)) return;
  const int copies = !reliable && random_->Chance(faults_.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    const uint64_t delay = 1 + random_->Uniform(faults_.max_delay);
    heap_.push_back(InFlight{now + delay, random_->Next(),
                             std::make_unique<raft::Message>(m)});
    std::push_heap(heap_.begin(), heap_.end());
  }
}

std::vector<SimNetwork::Due> SimNetwork::TakeDue(uint64_t now) {
  std::vector<Due> due;
  while (!heap_.empty() && heap_.front().deliver_at <= now) {
    std::pop_heap(heap_.begin(), heap_.end());
    raft::Message& m = *heap_.back().msg;
    const bool cut = cut_.count({m.from, m.to}) > 0;
    due.push_back({std::move(m), cut});
    heap_.pop_back();
  }
  return due;
}

}  // namespace tally::sim
