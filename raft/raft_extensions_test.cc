// Snapshots, learners, membership changes, leadership transfer and
// linearizable reads, each checked against the statement it implements.

#include "gtest/gtest.h"
#include "raft/raft.h"
#include "raft/test_util.h"

namespace tally::raft {
namespace {

using testing::kThree;
using testing::MakeNode;
using testing::Msg;
using testing::TestNetwork;
using testing::TestNode;
using testing::TestOptions;

using Type = ConfChangeSingle::Type;

ConfChange Single(Type type, NodeId node) {
  return ConfChange{{{type, node}}, ConfChange::Transition::kAuto};
}

// Applies every committed, not yet applied entry on every node, conf changes
// included, as the application would.
void ApplyAll(TestNetwork& net, const std::vector<NodeId>& ids) {
  for (NodeId id : ids) {
    Raft& r = net.node(id);
    std::vector<Entry> entries = r.log().NextCommittedEntries(UINT64_MAX);
    if (entries.empty()) continue;
    for (const Entry& e : entries) {
      if (e.type == EntryType::kConfChange) {
        absl::StatusOr<ConfChange> cc = DecodeConfChange(e.data);
        ASSERT_TRUE(cc.ok()) << cc.status();
        ASSERT_TRUE(r.ApplyConfChange(*cc).ok());
      }
    }
    r.OnApplied(entries.back().index, entries);
    net.Persist(id);
  }
  net.Stabilize();
}

// §7: "the leader must occasionally send snapshots to followers that lag
// behind ... when the leader has already discarded the next log entry that
// it needs to send to a follower."
TEST(SnapshotTest, LeaderSendsSnapshotPastCompactedEntries) {
  TestNetwork net(kThree);
  net.Campaign(1);
  net.Isolate(3);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(net.Propose(1, "x").ok());
  ApplyAll(net, {1, 2});
  MemoryStorage& s = net.storage(1);
  const Index applied = net.node(1).log().applied();
  ASSERT_EQ(applied, 6u);
  ASSERT_TRUE(
      s.CreateSnapshot(applied, net.node(1).conf_state(), "snap-6").ok());
  ASSERT_TRUE(s.Compact(applied).ok());
  net.Recover();
  net.TickN(1, 1);  // heartbeat; the answer reveals 3 is behind
  const Raft& follower = net.node(3);
  EXPECT_EQ(follower.log().committed(), 6u);
  EXPECT_EQ(follower.log().FirstIndex(), 7u);
  EXPECT_EQ(net.storage(3).GetSnapshot()->data_ref, "snap-6");
  EXPECT_EQ(net.node(1).progress(3)->state(), Progress::State::kReplicate);
  // Replication continues after the snapshot.
  ASSERT_TRUE(net.Propose(1, "y").ok());
  EXPECT_EQ(net.node(3).log().LastIndex(), 7u);
}

// A new member starts as an empty replica: no configuration and no log. It
// never campaigns, and a leader's snapshot gives it the configuration. It
// may have a term and vote already: it heard from the leader, then was
// killed before the snapshot came (issue: Create refused it then, and the
// node failed to start on every restart).
TEST(SnapshotTest, EmptyReplicaWaitsForASnapshot) {
  for (HardState hs : {HardState{}, HardState{2, 1, 0}}) {
    TestNode n = MakeNode(4, {}, {}, {}, hs);
    Raft& r = *n.raft;
    for (int i = 0; i < 50; ++i) r.Tick();
    EXPECT_EQ(r.role(), Role::kFollower);
    EXPECT_TRUE(r.TakeMessages().empty());
    Message m = Msg(MessageType::kSnapshot, 1, 4, 2);
    m.snapshot.metadata = {.index = 8, .term = 2};
    m.snapshot.metadata.conf_state.voters = {1, 2, 3};
    m.snapshot.metadata.conf_state.learners = {4};
    r.Step(m);
    EXPECT_EQ(r.log().committed(), 8u) << "term " << hs.term;
    EXPECT_TRUE(r.conf_state().IsLearner(4));
  }
  // An empty configuration with a log is corrupt storage, not a new member.
  MemoryStorage corrupt;
  corrupt.Append(testing::EntriesWithTerms({1}));
  util::SeededRandom random(1);
  Config c;
  c.id = 5;
  c.storage = &corrupt;
  c.random = &random;
  EXPECT_EQ(Raft::Create(c).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SnapshotTest, FailedSnapshotIsRetried) {
  TestNetwork net(kThree);
  net.Campaign(1);
  net.Isolate(3);
  ASSERT_TRUE(net.Propose(1, "x").ok());
  ApplyAll(net, {1, 2});
  ASSERT_TRUE(
      net.storage(1).CreateSnapshot(2, net.node(1).conf_state(), "s").ok());
  ASSERT_TRUE(net.storage(1).Compact(2).ok());
  net.DropType(MessageType::kSnapshot);  // the transfer will fail
  net.Recover();
  net.TickN(1, 1);
  ASSERT_EQ(net.node(1).progress(3)->state(), Progress::State::kSnapshot);
  net.node(1).ReportSnapshot(3, /*success=*/false);
  EXPECT_EQ(net.node(1).progress(3)->state(), Progress::State::kProbe);
  EXPECT_EQ(net.node(1).progress(3)->pending_snapshot(), 0u);
}

TEST(SnapshotTest, CompactRequiresASnapshot) {
  MemoryStorage s(ConfState{.voters = {1}});
  s.Append(testing::EntriesWithTerms({1, 1, 1}));
  EXPECT_TRUE(absl::IsInvalidArgument(s.Compact(2)));
  ASSERT_TRUE(s.CreateSnapshot(2, ConfState{.voters = {1}}, "d").ok());
  EXPECT_TRUE(s.Compact(2).ok());
  EXPECT_EQ(s.FirstIndex(), 3u);
  EXPECT_TRUE(absl::IsOutOfRange(s.Compact(1)));
  EXPECT_TRUE(absl::IsOutOfRange(s.CreateSnapshot(1, {}, "old")));
}

// Dissertation §4.2.1: new servers join as non-voting members until caught
// up. A learner receives the log, but never counts toward commitment.
TEST(LearnerTest, LearnerReplicatesButNeverCounts) {
  TestNetwork net({1, 2, 3});
  net.Set(1, MakeNode(1, {1, 2}));
  net.Set(2, MakeNode(2, {1, 2}));
  net.Set(3, MakeNode(3, {1, 2}));
  net.Campaign(1);
  ASSERT_TRUE(net.node(1).ProposeConfChange(Single(Type::kAddLearner, 3)).ok());
  net.Persist(1);
  net.Stabilize();
  ApplyAll(net, {1, 2, 3});
  ASSERT_TRUE(net.node(1).conf_state().IsLearner(3));
  // With node 2 cut off, the leader and the learner alone commit nothing.
  net.Isolate(2);
  const Index committed = net.node(1).log().committed();
  ASSERT_TRUE(net.Propose(1, "x").ok());
  EXPECT_EQ(net.node(3).log().LastIndex(), net.node(1).log().LastIndex());
  EXPECT_EQ(net.node(1).log().committed(), committed);
  // A learner never campaigns.
  net.node(3).Campaign();
  EXPECT_EQ(net.node(3).role(), Role::kFollower);
}

TEST(MembershipTest, OneChangeAtATime) {
  TestNetwork net(kThree);
  net.Campaign(1);
  ApplyAll(net, kThree);
  ASSERT_TRUE(net.node(1).ProposeConfChange(Single(Type::kAddLearner, 4)).ok());
  absl::StatusOr<Index> second =
      net.node(1).ProposeConfChange(Single(Type::kAddLearner, 5));
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  net.Persist(1);
  net.Stabilize();
  ApplyAll(net, kThree);
  EXPECT_TRUE(net.node(1).ProposeConfChange(Single(Type::kAddLearner, 5)).ok());
}

TEST(MembershipTest, InvalidChangeIsRefusedAtProposal) {
  TestNetwork net(kThree);
  net.Campaign(1);
  ApplyAll(net, kThree);
  const Index last = net.node(1).log().LastIndex();
  absl::StatusOr<Index> leave = net.node(1).ProposeConfChange(ConfChange{});
  EXPECT_TRUE(absl::IsFailedPrecondition(leave.status()));
  EXPECT_EQ(net.node(1).log().LastIndex(), last);
}

// Dissertation §4.3: the joint configuration needs majorities of both the
// old and the new configuration; the leader leaves it once it is committed.
TEST(MembershipTest, JointChangeNeedsBothMajoritiesThenLeavesItself) {
  TestNetwork net({1, 2, 3, 4, 5});
  for (NodeId id = 1; id <= 5; ++id) net.Set(id, MakeNode(id, kThree));
  net.Campaign(1);
  ApplyAll(net, {1, 2, 3, 4, 5});
  ConfChange swap{{{Type::kAddVoter, 4},
                   {Type::kAddVoter, 5},
                   {Type::kRemoveNode, 2},
                   {Type::kRemoveNode, 3}},
                  ConfChange::Transition::kAuto};
  ASSERT_TRUE(net.node(1).ProposeConfChange(swap).ok());
  net.Persist(1);
  net.Stabilize();
  ApplyAll(net, {1, 2, 3, 4, 5});
  const ConfState& joint = net.node(1).conf_state();
  ASSERT_TRUE(joint.IsJoint());
  // In the joint configuration, the new voters 4 and 5 alone (with 1) are a
  // majority of the new half but not of the old one: nothing commits.
  net.Isolate(2);
  net.Isolate(3);
  const Index committed = net.node(1).log().committed();
  ASSERT_TRUE(net.Propose(1, "x").ok());
  EXPECT_EQ(net.node(1).log().committed(), committed);
  net.Recover();
  net.TickN(1, 1);
  ApplyAll(net, {1, 2, 3, 4, 5});  // applies the joint entry's successors
  ApplyAll(net, {1, 2, 3, 4, 5});  // and the automatic leave
  const ConfState& final_conf = net.node(1).conf_state();
  EXPECT_FALSE(final_conf.IsJoint());
  EXPECT_EQ(final_conf.voters, (std::vector<NodeId>{1, 4, 5}));
}

TEST(MembershipTest, RemovedLeaderHandsOverThenStepsDown) {
  TestNetwork net(kThree);
  net.Campaign(1);
  ApplyAll(net, kThree);
  ASSERT_TRUE(net.node(1).ProposeConfChange(Single(Type::kRemoveNode, 1)).ok());
  net.Persist(1);
  net.Stabilize();
  // Removed, node 1 refuses proposals and hands over to an up-to-date
  // voter, which takes over without waiting for an election timeout.
  ApplyAll(net, kThree);
  EXPECT_TRUE(absl::IsUnavailable(net.node(1).Propose("x").status()));
  // Its next heartbeat is answered with the new term: it steps down.
  net.TickN(1, 1);
  EXPECT_NE(net.node(1).role(), Role::kLeader);
  const bool two_leads = net.node(2).role() == Role::kLeader;
  const bool three_leads = net.node(3).role() == Role::kLeader;
  EXPECT_TRUE(two_leads || three_leads);
  // The removed node never campaigns again.
  net.node(1).Campaign();
  EXPECT_EQ(net.node(1).role(), Role::kFollower);
}

// A candidate that holds an entry another node knows is committed may
// commit it too (Log Matching): this is how voters stuck in a joint
// configuration learn that its successor committed after the leader that
// committed it left.
TEST(MembershipTest, CandidateLearnsCommitFromVoteResponse) {
  TestNode candidate =
      MakeNode(1, kThree, {}, testing::EntriesWithTerms({1, 1, 2}),
               HardState{2, kNoNode, 1});
  Raft& r = *candidate.raft;
  r.Campaign();
  Message resp = Msg(MessageType::kVoteResponse, 2, 1, r.term());
  resp.reject = true;
  resp.commit = 3;
  resp.log_term = 2;
  r.Step(resp);
  EXPECT_EQ(r.log().committed(), 3u);
  // A commit hint for an entry we do not hold teaches nothing.
  TestNode other = MakeNode(1, kThree, {}, testing::EntriesWithTerms({1, 1, 1}),
                            HardState{2, kNoNode, 1});
  other.raft->Campaign();
  resp.term = other.raft->term();
  other.raft->Step(resp);
  EXPECT_EQ(other.raft->log().committed(), 1u);
}

// Dissertation §3.10: "the prior leader sends its log entries to the target
// server ... then sends it a TimeoutNow request."
TEST(TransferTest, TargetIsCaughtUpThenElected) {
  TestOptions opts;
  opts.check_quorum = true;  // followers in lease must still vote for it
  TestNetwork net(kThree, opts);
  net.Campaign(1);
  net.Isolate(3);
  ASSERT_TRUE(net.Propose(1, "x").ok());
  net.Recover();
  ASSERT_TRUE(net.node(1).TransferLeadership(3).ok());
  // Proposals are refused while the transfer is in flight.
  absl::StatusOr<Index> refused = net.node(1).Propose("y");
  EXPECT_TRUE(absl::IsUnavailable(refused.status()));
  EXPECT_NE(refused.status().message().find("transferred to node 3"),
            std::string::npos);
  net.Persist(1);
  net.Stabilize();
  EXPECT_EQ(net.node(3).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).role(), Role::kFollower);
  EXPECT_EQ(net.node(3).term(), 2u);
}

TEST(TransferTest, AbortsAfterAnElectionTimeout) {
  TestNetwork net(kThree);
  net.Campaign(1);
  net.Isolate(3);
  ASSERT_TRUE(net.node(1).TransferLeadership(3).ok());
  EXPECT_EQ(net.node(1).lead_transferee(), 3u);
  net.TickN(1, 10);
  EXPECT_EQ(net.node(1).lead_transferee(), kNoNode);
  EXPECT_TRUE(net.Propose(1, "y").ok());
}

TEST(TransferTest, RefusesNonVoterTarget) {
  TestNetwork net(kThree);
  net.Campaign(1);
  EXPECT_TRUE(absl::IsInvalidArgument(net.node(1).TransferLeadership(9)));
  EXPECT_TRUE(absl::IsUnavailable(net.node(2).TransferLeadership(3)));
}

// Three nodes with lease reads, whose clocks have run past the quiet period
// after start-up (during which they grant no vote).
TestNetwork LeaseNetwork() {
  TestOptions opts;
  opts.check_quorum = true;
  opts.pre_vote = true;
  opts.read_only = ReadOnlyOption::kLeaseBased;
  TestNetwork net(kThree, opts);
  for (NodeId id : kThree) {
    for (int i = 0; i < 10; ++i) net.node(id).Tick();
  }
  return net;
}

// Dissertation §6.4: "If the leader has not yet marked an entry from its
// current term committed, it waits until it has done so ... then sends a new
// round of heartbeats and waits for their acknowledgments from a majority."
TEST(ReadIndexTest, NewLeaderAnswersOnlyAfterItsTermCommits) {
  TestNetwork net(kThree);
  net.Isolate(1);
  net.node(1).Campaign();
  // Elect 1 without letting its no-op commit: deliver votes only.
  net.Recover();
  net.DropType(MessageType::kAppend);
  net.Campaign(1);
  Raft& leader = net.node(1);
  ASSERT_EQ(leader.role(), Role::kLeader);
  ASSERT_TRUE(leader.ReadIndex(7).ok());
  net.TickN(1, 1);  // a heartbeat round succeeds, but the term has no commit
  EXPECT_TRUE(leader.TakeReadStates().empty());
}

TEST(ReadIndexTest, OneRoundAnswersEveryQueuedRead) {
  TestNetwork net(kThree);
  net.Campaign(1);
  Raft& leader = net.node(1);
  leader.TakeMessages();
  ASSERT_TRUE(leader.ReadIndex(1).ok());
  ASSERT_TRUE(leader.ReadIndex(2).ok());  // queued behind the round
  ASSERT_TRUE(leader.ReadIndex(3).ok());
  size_t heartbeats = 0;
  std::vector<Message> out = leader.TakeMessages();
  for (const Message& m : out) heartbeats += m.type == MessageType::kHeartbeat;
  EXPECT_EQ(heartbeats, 2u);  // one round to two followers
  net.Deliver(out);
  // The first round answers read 1; reads 2 and 3 arrived after it started,
  // so a second round answers both.
  net.Stabilize();
  std::vector<ReadState> states = leader.TakeReadStates();
  ASSERT_EQ(states.size(), 3u);
  for (const ReadState& s : states)
    EXPECT_EQ(s.index, leader.log().committed());
}

TEST(ReadIndexTest, FollowerReadGoesThroughLeader) {
  TestNetwork net(kThree);
  net.Campaign(1);
  ASSERT_TRUE(net.node(2).ReadIndex(42).ok());
  net.Stabilize();
  std::vector<ReadState> states = net.node(2).TakeReadStates();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_EQ(states[0].context, 42u);
  EXPECT_EQ(states[0].index, net.node(1).log().committed());
  TestNode lonely = MakeNode(1, kThree);
  EXPECT_TRUE(absl::IsUnavailable(lonely.raft->ReadIndex(1)));
}

TEST(ReadIndexTest, LeaseReadNeedsNoRoundUntilTheLeaseRunsOut) {
  TestNetwork net = LeaseNetwork();
  net.Campaign(1);
  Raft& leader = net.node(1);
  net.TickN(1, 1);  // a heartbeat acknowledged by both: the lease starts
  ASSERT_TRUE(leader.ReadIndex(1).ok());
  EXPECT_EQ(leader.TakeReadStates().size(), 1u);  // answered at once
  EXPECT_TRUE(leader.TakeMessages().empty());
  // Without acknowledgements for longer than the lease, a round is needed.
  net.Isolate(1);
  net.TickN(1, 10);
  ASSERT_TRUE(leader.ReadIndex(2).ok());
  EXPECT_TRUE(leader.TakeReadStates().empty());
}

// A group configured for lease reads still serves ReadIndex reads that ask
// for a quorum round: the caller chooses per request.
TEST(ReadIndexTest, ReadWithoutLeaseWaitsForAQuorumRoundWithinTheLease) {
  TestNetwork net = LeaseNetwork();
  net.Campaign(1);
  Raft& leader = net.node(1);
  net.TickN(1, 1);  // the lease runs
  ASSERT_TRUE(leader.ReadIndex(1, /*allow_lease=*/false).ok());
  EXPECT_TRUE(leader.TakeReadStates().empty());
  net.Deliver(leader.TakeMessages());  // the round's heartbeats and acks
  std::vector<ReadState> rs = leader.TakeReadStates();
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].context, 1u);
}

// Lease reads rest on clocks: a leader whose clock runs slow keeps serving
// from its lease after faster followers have elected someone else. This is
// the hazard --lease-drift-beyond-bound makes the simulator find.
TEST(ReadIndexTest, LeaseReadIsStaleWhenClocksDriftBeyondTheMargin) {
  TestNetwork net = LeaseNetwork();
  net.Campaign(1);
  net.TickN(1, 2);  // heartbeats acknowledged: the lease runs
  net.Isolate(1);
  // Followers' clocks run fast: 20 ticks pass for them, 2 for the leader.
  net.TickN(2, 20);
  net.TickN(3, 20);
  net.TickN(1, 2);
  const NodeId new_leader = net.node(2).role() == Role::kLeader ? 2 : 3;
  ASSERT_EQ(net.node(new_leader).role(), Role::kLeader);
  ASSERT_TRUE(net.Propose(new_leader, "newer").ok());
  const Index newer = net.node(new_leader).log().committed();
  // The old leader still trusts its lease and answers below the new write.
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  ASSERT_TRUE(net.node(1).ReadIndex(9).ok());
  std::vector<ReadState> states = net.node(1).TakeReadStates();
  ASSERT_EQ(states.size(), 1u);
  EXPECT_LT(states[0].index, newer);
}

// raft/config.h: the lease must end, on the leader's clock, before followers
// whose clocks run up to 25% faster can elect anyone, even when the
// heartbeat that started the lease reached them just before one of their
// ticks. Issue: the lease lasted 8 leader ticks while such followers could
// vote after 9 of theirs plus a moment: 12.5%, not 25%. The jepsen drift
// nemesis reaches 17%.
TEST(ReadIndexTest, LeaseEndsBeforeFasterFollowersCanElect) {
  for (double ratio : {1.17, 1.25}) {
    for (uint64_t seed = 1; seed <= 40; ++seed) {
      TestOptions opts;
      opts.check_quorum = true;
      opts.pre_vote = true;
      opts.read_only = ReadOnlyOption::kLeaseBased;
      opts.seed = seed;
      TestNetwork net(kThree, opts);
      for (NodeId id : kThree) {
        for (int i = 0; i < 10; ++i) net.node(id).Tick();
      }
      net.Campaign(1);
      Raft& leader = net.node(1);
      // Time 0: the leader's tick sends heartbeats, acknowledged at once;
      // the followers tick a moment after receiving them, then every
      // 1/ratio; the leader, cut off, every 1.
      leader.Tick();
      net.Deliver(leader.TakeMessages());
      net.Isolate(1);
      double lease_seen = 0, elected = 1e9;
      uint64_t context = 1;
      int leader_ticks = 0, follower_ticks = 0;
      while (leader_ticks < 40) {
        const double next_leader = leader_ticks + 1;
        const double next_follower = 1e-6 + follower_ticks / ratio;
        if (next_follower < next_leader) {
          ++follower_ticks;
          for (NodeId id : {2, 3}) {
            net.node(id).Tick();
            net.Deliver(net.node(id).TakeMessages());
          }
          for (NodeId id : {2, 3}) {
            if (net.node(id).role() == Role::kLeader) {
              elected = std::min(elected, next_follower);
            }
          }
          continue;
        }
        // A read may come at any moment up to the next tick: the last
        // moment before it sees the state of the last tick.
        if (leader.role() != Role::kLeader) break;  // check-quorum
        if (leader.ReadIndex(context++).ok() &&
            !leader.TakeReadStates().empty()) {
          lease_seen = next_leader - 1e-9;
        }
        leader.TakeMessages();  // cut off
        ++leader_ticks;
        leader.Tick();
        leader.TakeMessages();
      }
      ASSERT_LT(elected, 1e9) << "no new leader, seed " << seed;
      EXPECT_LT(lease_seen, elected)
          << "lease read at leader time " << lease_seen
          << " after a new leader at " << elected << ", follower clocks x"
          << ratio << ", seed " << seed;
    }
  }
}

// The same situation when the leader's process stood still (SIGSTOP, a VM
// pause) while the others elected someone: the host tells the leader how
// much time it missed, and the lease is over.
TEST(ReadIndexTest, ClockAdvancedPastTheLeaseNeedsARound) {
  TestNetwork net = LeaseNetwork();
  net.Campaign(1);
  net.TickN(1, 2);  // heartbeats acknowledged: the lease runs
  Raft& leader = net.node(1);
  leader.AdvanceClock(20);                  // asleep for 20 ticks
  ASSERT_EQ(leader.role(), Role::kLeader);  // no timer fired...
  ASSERT_TRUE(leader.ReadIndex(9).ok());
  EXPECT_TRUE(leader.TakeReadStates().empty());  // ...but no lease read
  net.Deliver(leader.TakeMessages());            // a quorum round answers it
  EXPECT_EQ(leader.TakeReadStates().size(), 1u);
}

TEST(ReadIndexTest, NoLeaseReadsAfterTimeoutNow) {
  TestNetwork net = LeaseNetwork();
  net.Campaign(1);
  net.TickN(1, 1);
  net.Isolate(2);  // the transfer target never hears of it
  ASSERT_TRUE(net.node(1).TransferLeadership(3).ok());
  net.Persist(1);
  net.Stabilize();  // TimeoutNow reaches 3... which cannot win without 2
  net.Recover();
  ASSERT_TRUE(net.node(1).ReadIndex(5).ok());
  // Not answered from the lease: node 3 may be electable.
  EXPECT_TRUE(net.node(1).TakeReadStates().empty());
}

TEST(ReadIndexTest, LeaseReadsRequireCheckQuorum) {
  MemoryStorage storage(ConfState{.voters = {1}});
  util::SeededRandom random(1);
  Config c;
  c.id = 1;
  c.storage = &storage;
  c.random = &random;
  c.check_quorum = false;
  c.read_only = ReadOnlyOption::kLeaseBased;
  EXPECT_TRUE(absl::IsInvalidArgument(c.Validate()));
}

}  // namespace
}  // namespace tally::raft
