#ifndef TALLY_RAFT_QUORUM_H_
#define TALLY_RAFT_QUORUM_H_

#include <functional>
#include <map>
#include <vector>

#include "raft/types.h"

namespace tally::raft {

enum class VoteResult : uint8_t { kPending, kWon, kLost };

// Majority arithmetic over one set of voters. An empty set imposes no
// constraint: it has committed everything and wins every vote, so that a
// joint configuration with an empty outgoing half behaves like its incoming
// half alone.
class MajorityConfig {
 public:
  explicit MajorityConfig(const std::vector<NodeId>& voters)
      : voters_(voters) {}

  // The highest index that a majority has acknowledged, given each voter's
  // acknowledged index.
  Index CommittedIndex(const std::function<Index(NodeId)>& acked) const;
  // The outcome given the votes cast so far (absent: not yet voted).
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;

 private:
  const std::vector<NodeId>& voters_;
};

// Both halves of a possibly joint configuration: a decision needs both.
class JointConfig {
 public:
  explicit JointConfig(const ConfState& cs)
      : incoming_(cs.voters), outgoing_(cs.voters_outgoing) {}

  Index CommittedIndex(const std::function<Index(NodeId)>& acked) const;
  VoteResult Vote(const std::map<NodeId, bool>& votes) const;

 private:
  MajorityConfig incoming_;
  MajorityConfig outgoing_;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_QUORUM_H_
