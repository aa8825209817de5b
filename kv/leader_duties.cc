#include "kv/leader_duties.h"

#include <utility>

namespace tally::kv {

LeaderDuties::LeaderDuties(Propose propose) : propose_(std::move(propose)) {}

std::vector<raft::host::GroupId> LeaderDuties::Run(
    const std::vector<std::pair<raft::host::GroupId, StateMachine*>>& groups) {
  std::vector<raft::host::GroupId> idle;
  for (const auto& [group, sm] : groups) {
    const raft::Term term = sm->leading_term();
    if (term == 0) {
      idle.push_back(group);
      continue;
    }
    {
      absl::MutexLock l(&in_flight_->mu);
      auto it = in_flight_->term.find(group);
      if (it != in_flight_->term.end() && it->second == term) continue;
    }
    std::vector<kvpb::Command> due = sm->Due();
    if (due.empty()) {
      idle.push_back(group);
      continue;
    }
    {
      absl::MutexLock l(&in_flight_->mu);
      in_flight_->term[group] = term;
    }
    propose_(group, std::move(due.front()),
             [in_flight = in_flight_, group = group, term] {
               absl::MutexLock l(&in_flight->mu);
               auto it = in_flight->term.find(group);
               // A later term's proposal may be in flight by now.
               if (it != in_flight->term.end() && it->second == term) {
                 in_flight->term.erase(it);
               }
             });
  }
  return idle;
}

}  // namespace tally::kv
