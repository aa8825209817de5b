// Behaviour of the Raft core beyond the paper's text: flow control, the fast
// back-off of nextIndex, the uncommitted-bytes cap and proposal errors.

#include "raft/raft.h"

#include "gtest/gtest.h"
#include "raft/test_util.h"

namespace tally::raft {
namespace {

using testing::EntriesWithTerms;
using testing::kThree;
using testing::MakeNode;
using testing::Msg;
using testing::StepAndTake;
using testing::TestNetwork;
using testing::TestNode;
using testing::TestOptions;

// Elects node 1 of a fresh node's group by hand, leaving its messages queued.
void ElectByHand(Raft& r) {
  r.Campaign();
  Message grant = Msg(MessageType::kVoteResponse, 2, r.id(), r.term());
  r.Step(grant);
  ASSERT_EQ(r.role(), Role::kLeader);
}

// Node 1 of kThree, elected by hand, its uncommitted entries capped at
// `cap` bytes.
TestNode CappedLeader(uint64_t cap) {
  TestOptions opts;
  opts.max_uncommitted_entries_size = cap;
  TestNode n = MakeNode(1, kThree, opts);
  ElectByHand(*n.raft);
  return n;
}

// Moves follower 2 to the replicate state by acknowledging everything.
void AckAll(Raft& r, NodeId from) {
  Message ack = Msg(MessageType::kAppendResponse, from, r.id(), r.term());
  ack.index = r.log().LastIndex();
  r.Step(ack);
}

size_t CountAppendsTo(const std::vector<Message>& msgs, NodeId to) {
  size_t n = 0;
  for (const Message& m : msgs) {
    n += m.type == MessageType::kAppend && m.to == to && !m.entries.empty();
  }
  return n;
}

TEST(RaftTest, ProposalWithoutLeaderFailsWithClearStatus) {
  TestNode n = MakeNode(1, kThree);
  absl::StatusOr<Index> index = n.raft->Propose("x");
  ASSERT_FALSE(index.ok());
  EXPECT_TRUE(absl::IsUnavailable(index.status()));
  EXPECT_NE(index.status().message().find("knows of no leader"),
            std::string::npos)
      << index.status();
  EXPECT_EQ(n.raft->log().LastIndex(), 0u);  // nothing appended
}

TEST(RaftTest, ProposalOnFollowerNamesTheLeader) {
  TestNetwork net(kThree);
  net.Campaign(1);
  absl::StatusOr<Index> index = net.node(2).Propose("x");
  ASSERT_TRUE(absl::IsUnavailable(index.status()));
  EXPECT_NE(index.status().message().find("leader is node 1"),
            std::string::npos)
      << index.status();
}

TEST(RaftTest, SingleNodeCommitsAtOnce) {
  TestNode n = MakeNode(1, {1});
  Raft& r = *n.raft;
  r.Campaign();
  ASSERT_EQ(r.role(), Role::kLeader);
  ASSERT_TRUE(r.Propose("x").ok());
  EXPECT_EQ(r.log().committed(), 2u);
}

TEST(RaftTest, InflightWindowLimitsMessageCount) {
  TestOptions opts;
  opts.max_inflight_msgs = 3;
  TestNode n = MakeNode(1, kThree, opts);
  Raft& r = *n.raft;
  ElectByHand(r);
  AckAll(r, 2);
  r.TakeMessages();
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(r.Propose("x").ok());
  EXPECT_EQ(CountAppendsTo(r.TakeMessages(), 2), 3u);
  EXPECT_TRUE(r.progress(2)->IsPaused());
  // An acknowledgement of the first frees one slot; the leader then sends the
  // rest in one message.
  Message ack = Msg(MessageType::kAppendResponse, 2, 1, r.term());
  ack.index = r.progress(2)->match() + 1;
  r.Step(ack);
  std::vector<Message> out = r.TakeMessages();
  EXPECT_EQ(CountAppendsTo(out, 2), 1u);
}

TEST(RaftTest, InflightWindowLimitsBytes) {
  TestOptions opts;
  opts.max_inflight_bytes = 1000;
  opts.max_size_per_msg = 1;  // one entry per message
  TestNode n = MakeNode(1, kThree, opts);
  Raft& r = *n.raft;
  ElectByHand(r);
  AckAll(r, 2);
  r.TakeMessages();
  const std::string payload(300, 'p');
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(r.Propose(payload).ok());
  // 300 bytes + overhead each: the fourth message reaches 1000 bytes.
  EXPECT_EQ(CountAppendsTo(r.TakeMessages(), 2), 4u);
  EXPECT_TRUE(r.progress(2)->IsPaused());
}

TEST(RaftTest, ProbeSendsOneAppendUntilAnswered) {
  TestNode n = MakeNode(1, kThree);
  Raft& r = *n.raft;
  ElectByHand(r);
  r.TakeMessages();
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(r.Propose("x").ok());
  // Follower 3 never answered: it is probed, so it got nothing more since the
  // first append (sent when the leader was elected).
  EXPECT_EQ(r.progress(3)->state(), Progress::State::kProbe);
  EXPECT_EQ(CountAppendsTo(r.TakeMessages(), 3), 0u);
  // A heartbeat response unpauses the probe.
  Message hb = Msg(MessageType::kHeartbeatResponse, 3, 1, r.term());
  r.Step(hb);
  EXPECT_EQ(CountAppendsTo(r.TakeMessages(), 3), 1u);
}

TEST(RaftTest, FastBackoffSkipsAWholeTermPerRoundTrip) {
  // After 10 agreed entries of term 1, the leader has 5 entries of term 3 and
  // the follower 100 of term 2. With the conflict hint, one rejection is
  // enough to find the match point, instead of one round trip per entry.
  std::vector<Term> leader_terms(10, 1);
  leader_terms.resize(15, 3);
  std::vector<Term> follower_terms(10, 1);
  follower_terms.resize(110, 2);
  TestNetwork net(kThree);
  net.Set(1, MakeNode(1, kThree, {}, EntriesWithTerms(leader_terms),
                      HardState{3, kNoNode, 0}));
  net.Set(2, MakeNode(2, kThree, {}, EntriesWithTerms(follower_terms),
                      HardState{3, kNoNode, 0}));
  net.Set(3, MakeNode(3, kThree, {}, {}, HardState{3, kNoNode, 0}));
  Raft& leader = net.node(1);
  leader.Campaign();
  size_t rejections_from_2 = 0;
  for (int round = 0; round < 50; ++round) {
    std::vector<Message> msgs = leader.TakeMessages();
    if (msgs.empty()) break;
    for (const Message& m : msgs) {
      Raft& to = net.node(m.to);
      to.Step(m);
      for (const Message& resp : to.TakeMessages()) {
        rejections_from_2 += resp.from == 2 && resp.reject &&
                             resp.type == MessageType::kAppendResponse;
        leader.Step(resp);
      }
    }
  }
  ASSERT_EQ(leader.role(), Role::kLeader);
  EXPECT_EQ(net.node(2).log().LastIndex(), leader.log().LastIndex());
  EXPECT_EQ(net.node(2).log().TermAt(15), 3u);
  EXPECT_EQ(rejections_from_2, 1u);
}

TEST(RaftTest, UncommittedBytesCapRejectsProposals) {
  TestNode n = CappedLeader(1000);
  Raft& r = *n.raft;
  const std::string payload(400, 'p');
  ASSERT_TRUE(r.Propose(payload).ok());
  ASSERT_TRUE(r.Propose(payload).ok());
  const Index last = r.log().LastIndex();
  absl::StatusOr<Index> third = r.Propose(payload);
  EXPECT_TRUE(absl::IsResourceExhausted(third.status())) << third.status();
  EXPECT_EQ(r.log().LastIndex(), last);  // nothing appended
  // Applying the entries frees the budget.
  r.mutable_log().CommitTo(last);  // as if replicated
  r.OnApplied(last, r.log().Slice(1, last + 1, UINT64_MAX));
  EXPECT_TRUE(r.Propose(payload).ok());
}

TEST(RaftTest, ProposeAllSendsOneAppendPerFollowerForAllItsEntries) {
  TestNetwork net(kThree);
  net.Campaign(1);
  Raft& leader = net.node(1);
  leader.TakeMessages();
  const Index last = leader.log().LastIndex();
  absl::StatusOr<Raft::Proposed> p = leader.ProposeAll({"a", "b", "c"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first, last + 1);
  EXPECT_EQ(p->count, 3u);
  EXPECT_TRUE(p->rest.ok());
  EXPECT_EQ(leader.log().LastIndex(), last + 3);
  std::vector<Message> out = leader.TakeMessages();
  ASSERT_EQ(out.size(), 2u);  // one to each follower
  for (const Message& m : out) {
    EXPECT_EQ(m.type, MessageType::kAppend);
    ASSERT_EQ(m.entries.size(), 3u);
    EXPECT_EQ(m.entries[0].index, last + 1);
    EXPECT_EQ(m.entries[2].data, "c");
  }
  net.Deliver(std::move(out));
  EXPECT_EQ(leader.log().committed(), last + 3);
}

TEST(RaftTest, ProposeAllAppendsWhatTheCapAdmitsInOrder) {
  TestNode n = CappedLeader(1000);
  Raft& r = *n.raft;
  const std::string payload(400, 'p');
  ASSERT_TRUE(r.Propose(payload).ok());
  const Index last = r.log().LastIndex();
  // With 400 uncommitted, 400 more fit; the next 400 does not, nor (the
  // order kept) the 10 after it.
  absl::StatusOr<Raft::Proposed> p =
      r.ProposeAll({payload, payload, std::string(10, 's')});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->first, last + 1);
  EXPECT_EQ(p->count, 1u);
  EXPECT_TRUE(absl::IsResourceExhausted(p->rest)) << p->rest;
  EXPECT_EQ(r.log().LastIndex(), last + 1);
  // None fits: an error, nothing appended.
  absl::StatusOr<Raft::Proposed> none = r.ProposeAll({payload});
  EXPECT_TRUE(absl::IsResourceExhausted(none.status())) << none.status();
  EXPECT_EQ(r.log().LastIndex(), last + 1);
}

TEST(RaftTest, OneProposalIsAdmittedEvenIfLargerThanTheCap) {
  TestNode n = CappedLeader(10);
  EXPECT_TRUE(n.raft->Propose(std::string(100, 'p')).ok());
}

TEST(RaftTest, StaleLeaderLearnsNewTermFromAppendResponse) {
  TestOptions opts;
  opts.pre_vote = true;
  TestNode n = MakeNode(2, kThree, opts, {}, HardState{5, kNoNode, 0});
  Message app = Msg(MessageType::kAppend, 1, 2, 3);
  std::vector<Message> out = StepAndTake(*n.raft, app);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].type, MessageType::kAppendResponse);
  EXPECT_EQ(out[0].term, 5u);
}

TEST(RaftTest, CreateRejectsCommitPastLog) {
  MemoryStorage storage(ConfState{.voters = {1, 2, 3}});
  storage.SetHardState(HardState{1, kNoNode, 5});
  util::SeededRandom random(1);
  Config c;
  c.id = 1;
  c.storage = &storage;
  c.random = &random;
  absl::StatusOr<std::unique_ptr<Raft>> r = Raft::Create(c);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
}

TEST(RaftTest, ConfigValidationNamesTheProblem) {
  MemoryStorage storage(ConfState{.voters = {1}});
  util::SeededRandom random(1);
  Config c;
  c.id = 1;
  c.storage = &storage;
  c.random = &random;
  c.election_tick = 1;
  c.heartbeat_tick = 1;
  absl::Status s = c.Validate();
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_NE(s.message().find("election_tick"), std::string::npos);
}

}  // namespace
}  // namespace tally::raft
