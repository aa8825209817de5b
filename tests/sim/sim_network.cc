#include "tests/sim/sim_network.h"

namespace tally::sim {

void SimNetwork::Send(const raft::Message& m, uint64_t now) {
  if (random_->Chance(faults_.drop)) return;
  const int copies = random_->Chance(faults_.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    const uint64_t delay = 1 + random_->Uniform(faults_.max_delay);
    queue_.push(InFlight{now + delay, random_->Next(), m});
  }
}

std::vector<raft::Message> SimNetwork::TakeDue(uint64_t now) {
  std::vector<raft::Message> due;
  while (!queue_.empty() && queue_.top().deliver_at <= now) {
    const InFlight& top = queue_.top();
    if (!cut_.count({top.msg.from, top.msg.to})) due.push_back(top.msg);
    queue_.pop();
  }
  return due;
}

}  // namespace tally::sim
