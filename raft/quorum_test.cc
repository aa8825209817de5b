// Property tests of the quorum arithmetic against a brute-force definition,
// over random configurations (seeded; the seed is printed on failure).

#include "raft/quorum.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "util/random.h"

namespace tally::raft {
namespace {

std::vector<NodeId> RandomVoters(util::SeededRandom& r) {
  std::vector<NodeId> v;
  for (NodeId id = 1; id <= 7; ++id) {
    if (r.Chance(0.5)) v.push_back(id);
  }
  return v;
}

// Brute force: the largest index such that a majority acked at least it.
Index SlowCommitted(const std::vector<NodeId>& voters,
                    const std::map<NodeId, Index>& acked) {
  if (voters.empty()) return UINT64_MAX;
  Index best = 0;
  for (NodeId candidate : voters) {
    const Index i = acked.at(candidate);
    size_t n = 0;
    for (NodeId v : voters) n += acked.at(v) >= i;
    if (n > voters.size() / 2) best = std::max(best, i);
  }
  return best;
}

TEST(QuorumPropertyTest, CommittedIndexIsLargestIndexAMajorityHas) {
  const uint64_t seed = 20261122;
  util::SeededRandom r(seed);
  for (int round = 0; round < 2000; ++round) {
    ConfState cs;
    cs.voters = RandomVoters(r);
    cs.voters_outgoing =
        r.Chance(0.5) ? RandomVoters(r) : std::vector<NodeId>{};
    std::map<NodeId, Index> acked;
    for (NodeId id = 1; id <= 7; ++id) acked[id] = r.Uniform(10);
    const Index got =
        JointConfig(cs).CommittedIndex([&](NodeId id) { return acked.at(id); });
    const Index want = std::min(SlowCommitted(cs.voters, acked),
                                SlowCommitted(cs.voters_outgoing, acked));
    ASSERT_EQ(got, want) << "seed " << seed << " round " << round;
  }
}

TEST(QuorumPropertyTest, VoteNeedsMajoritiesOfBothHalves) {
  const uint64_t seed = 7;
  util::SeededRandom r(seed);
  for (int round = 0; round < 2000; ++round) {
    ConfState cs;
    cs.voters = RandomVoters(r);
    if (cs.voters.empty()) cs.voters.push_back(1);
    cs.voters_outgoing =
        r.Chance(0.5) ? RandomVoters(r) : std::vector<NodeId>{};
    std::map<NodeId, bool> votes;
    for (NodeId id = 1; id <= 7; ++id) {
      if (r.Chance(0.7)) votes[id] = r.Chance(0.5);
    }
    auto outcome = [&](const std::vector<NodeId>& half) {
      if (half.empty()) return VoteResult::kWon;
      size_t yes = 0, missing = 0;
      for (NodeId v : half) {
        if (!votes.count(v))
          ++missing;
        else
          yes += votes.at(v);
      }
      if (yes > half.size() / 2) return VoteResult::kWon;
      if (yes + missing <= half.size() / 2) return VoteResult::kLost;
      return VoteResult::kPending;
    };
    const VoteResult in = outcome(cs.voters), out = outcome(cs.voters_outgoing);
    VoteResult want = VoteResult::kPending;
    if (in == VoteResult::kLost || out == VoteResult::kLost) {
      want = VoteResult::kLost;
    } else if (in == VoteResult::kWon && out == VoteResult::kWon) {
      want = VoteResult::kWon;
    }
    ASSERT_EQ(JointConfig(cs).Vote(votes), want)
        << "seed " << seed << " round " << round;
  }
}

TEST(QuorumTest, LearnersNeverCount) {
  ConfState cs{.voters = {1, 2, 3}, .learners = {4, 5}};
  std::map<NodeId, bool> votes = {{1, true}, {4, true}, {5, true}};
  EXPECT_EQ(JointConfig(cs).Vote(votes), VoteResult::kPending);
  std::map<NodeId, Index> acked = {{1, 9}, {2, 1}, {3, 1}, {4, 9}, {5, 9}};
  EXPECT_EQ(
      JointConfig(cs).CommittedIndex([&](NodeId id) { return acked[id]; }), 1u);
}

}  // namespace
}  // namespace tally::raft
