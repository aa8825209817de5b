#include "raft/quorum.h"

#include <algorithm>
#include <limits>

namespace tally::raft {

Index MajorityConfig::CommittedIndex(
    const std::function<Index(NodeId)>& acked) const {
  if (voters_.empty()) return std::numeric_limits<Index>::max();
  std::vector<Index> indexes;
  indexes.reserve(voters_.size());
  for (NodeId v : voters_) indexes.push_back(acked(v));
  std::sort(indexes.begin(), indexes.end(), std::greater<Index>());
  return indexes[voters_.size() / 2];  // the majority-th highest
}

VoteResult MajorityConfig::Vote(const std::map<NodeId, bool>& votes) const {
  if (voters_.empty()) return VoteResult::kWon;
  size_t yes = 0, no = 0;
  for (NodeId v : voters_) {
    auto it = votes.find(v);
    if (it == votes.end()) continue;
    (it->second ? yes : no)++;
  }
  const size_t majority = voters_.size() / 2 + 1;
  if (yes >= majority) return VoteResult::kWon;
  if (yes + (voters_.size() - yes - no) < majority) return VoteResult::kLost;
  return VoteResult::kPending;
}

Index JointConfig::CommittedIndex(
    const std::function<Index(NodeId)>& acked) const {
  return std::min(incoming_.CommittedIndex(acked),
                  outgoing_.CommittedIndex(acked));
}

VoteResult JointConfig::Vote(const std::map<NodeId, bool>& votes) const {
  const VoteResult in = incoming_.Vote(votes);
  const VoteResult out = outgoing_.Vote(votes);
  if (in == out) return in;
  if (in == VoteResult::kLost || out == VoteResult::kLost) {
    return VoteResult::kLost;
  }
  return VoteResult::kPending;
}

}  // namespace tally::raft
