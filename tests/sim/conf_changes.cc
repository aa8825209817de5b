#include "tests/sim/conf_changes.h"

#include <vector>

namespace tally::sim {

std::optional<raft::ConfChange> RandomConfChange(const raft::ConfState& conf,
                                                 int nodes, bool explicit_joint,
                                                 util::SeededRandom& random) {
  std::vector<raft::NodeId> outsiders;
  for (int id = 1; id <= nodes; ++id) {
    if (!conf.IsVoter(id) && !conf.IsLearner(id)) outsiders.push_back(id);
  }
  auto pick = [&](const std::vector<raft::NodeId>& v) {
    return v[random.Uniform(v.size())];
  };
  using Type = raft::ConfChangeSingle::Type;
  raft::ConfChange cc;
  switch (random.Uniform(5)) {
    case 0:  // a new learner
      if (outsiders.empty()) return std::nullopt;
      cc.changes = {{Type::kAddLearner, pick(outsiders)}};
      break;
    case 1:  // promote a learner
      if (conf.learners.empty()) return std::nullopt;
      cc.changes = {{Type::kAddVoter, pick(conf.learners)}};
      break;
    case 2:  // remove a voter, perhaps the leader itself
      if (conf.voters.size() <= 2) return std::nullopt;
      cc.changes = {{Type::kRemoveNode, pick(conf.voters)}};
      break;
    case 3:  // remove a learner
      if (conf.learners.empty()) return std::nullopt;
      cc.changes = {{Type::kRemoveNode, pick(conf.learners)}};
      break;
    default: {  // replace a voter in one joint step
      std::vector<raft::NodeId> candidates = outsiders;
      candidates.insert(candidates.end(), conf.learners.begin(),
                        conf.learners.end());
      if (candidates.empty()) return std::nullopt;
      cc.changes = {{Type::kAddVoter, pick(candidates)},
                    {Type::kRemoveNode, pick(conf.voters)}};
      if (explicit_joint) {
        cc.transition = random.Chance(0.5)
                            ? raft::ConfChange::Transition::kAuto
                            : raft::ConfChange::Transition::kJoint;
      }
      break;
    }
  }
  return cc;
}

}  // namespace tally::sim
