#include "tests/sim/sim_network.h"

namespace tally::sim {

void SimNetwork::Send(const raft::Message& m, uint64_t now, bool reliable) {
  if (!reliable && random_->Chance(faults_.drop)) return;
  const int copies = !reliable && random_->Chance(faults_.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    const uint64_t delay = 1 + random_->Uniform(faults_.max_delay);
    queue_.push(InFlight{now + delay, random_->Next(), m});
  }
}

std::vector<SimNetwork::Due> SimNetwork::TakeDue(uint64_t now) {
  std::vector<Due> due;
  while (!queue_.empty() && queue_.top().deliver_at <= now) {
    const InFlight& top = queue_.top();
    due.push_back({top.msg, cut_.count({top.msg.from, top.msg.to}) > 0});
    queue_.pop();
  }
  return due;
}

}  // namespace tally::sim
