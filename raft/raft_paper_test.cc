// Tests of the Raft core against the statements of the Raft paper (Ongaro &
// Ousterhout, "In Search of an Understandable Consensus Algorithm", extended
// version) and of Ongaro's dissertation. Each test names the section and
// quotes or paraphrases the sentence it checks.

#include <algorithm>
#include <set>

#include "gtest/gtest.h"
#include "raft/raft.h"
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

std::vector<Message> Take(Raft& r) { return r.TakeMessages(); }

// Makes node 1 of `voters` the leader of term 1, with its no-op committed.
TestNetwork ElectedNetwork(std::vector<NodeId> voters = kThree) {
  TestNetwork net(std::move(voters));
  net.Campaign(1);
  return net;
}

// §5.1: "If one server's current term is smaller than the other's, then it
// updates its current term to the larger value. If a candidate or leader
// discovers that its term is out of date, it immediately reverts to follower
// state."
TEST(RaftPaperTest, UpdatesTermFromMessageAndRevertsToFollower) {
  for (Role start : {Role::kFollower, Role::kCandidate, Role::kLeader}) {
    TestNode n = MakeNode(1, kThree);
    Raft& r = *n.raft;
    if (start != Role::kFollower) r.Campaign();
    if (start == Role::kLeader) {
      Message grant = Msg(MessageType::kVoteResponse, 2, 1, r.term());
      r.Step(grant);
      ASSERT_EQ(r.role(), Role::kLeader);
    }
    r.Step(Msg(MessageType::kAppend, 2, 1, 5));
    EXPECT_EQ(r.term(), 5u) << RoleName(start);
    EXPECT_EQ(r.role(), Role::kFollower) << RoleName(start);
  }
}

// §5.1: "If a server receives a request with a stale term number, it rejects
// the request."
TEST(RaftPaperTest, IgnoresRequestWithStaleTerm) {
  TestNode n = MakeNode(1, kThree, {}, {}, HardState{2, kNoNode, 0});
  Raft& r = *n.raft;
  r.Step(Msg(MessageType::kVote, 2, 1, 1));
  EXPECT_TRUE(Take(r).empty());
  EXPECT_EQ(r.vote(), kNoNode);
  EXPECT_EQ(r.term(), 2u);
}

// §5.2: "When servers start up, they begin as followers."
TEST(RaftPaperTest, StartsAsFollower) {
  TestNode n = MakeNode(1, kThree);
  EXPECT_EQ(n.raft->role(), Role::kFollower);
  EXPECT_EQ(n.raft->term(), 0u);
}

// §5.2: "Leaders send periodic heartbeats (AppendEntries RPCs that carry no
// log entries) to all followers in order to maintain their authority."
TEST(RaftPaperTest, LeaderSendsHeartbeatsEveryHeartbeatTick) {
  TestNetwork net = ElectedNetwork();
  Raft& leader = net.node(1);
  leader.TakeMessages();
  leader.Tick();  // heartbeat_tick = 1
  std::set<NodeId> to;
  for (const Message& m : Take(leader)) {
    EXPECT_EQ(m.type, MessageType::kHeartbeat);
    EXPECT_TRUE(m.entries.empty());
    to.insert(m.to);
  }
  EXPECT_EQ(to, (std::set<NodeId>{2, 3}));
}

// §5.2: "If a follower receives no communication over a period of time
// called the election timeout, then it ... begins an election ... A follower
// increments its current term and transitions to candidate state. It then
// votes for itself and issues RequestVote RPCs in parallel to each of the
// other servers."
TEST(RaftPaperTest, FollowerStartsElectionAfterTimeout) {
  TestNode n = MakeNode(1, kThree);
  Raft& r = *n.raft;
  for (int i = 0; i < 2 * 10; ++i) r.Tick();
  EXPECT_EQ(r.role(), Role::kCandidate);
  EXPECT_EQ(r.term(), 1u);
  EXPECT_EQ(r.vote(), 1u);
  std::set<NodeId> to;
  for (const Message& m : Take(r)) {
    EXPECT_EQ(m.type, MessageType::kVote);
    EXPECT_EQ(m.term, 1u);
    to.insert(m.to);
  }
  EXPECT_EQ(to, (std::set<NodeId>{2, 3}));
}

// §5.2: "A candidate wins an election if it receives votes from a majority of
// the servers in the full cluster for the same term." ... "if many followers
// become candidates at the same time, votes could be split so that no
// candidate obtains a majority."
TEST(RaftPaperTest, ElectionOutcomeFollowsMajority) {
  struct Case {
    size_t size;
    std::map<NodeId, bool> votes;
    Role want;
  } cases[] = {
      {1, {}, Role::kLeader},
      {3, {{2, true}, {3, true}}, Role::kLeader},
      {3, {{2, true}}, Role::kLeader},
      {5, {{2, true}, {3, true}, {4, true}, {5, true}}, Role::kLeader},
      {5, {{2, true}, {3, true}}, Role::kLeader},
      {3, {{2, false}, {3, false}}, Role::kFollower},
      {5, {{2, false}, {3, false}, {4, false}}, Role::kFollower},
      {3, {}, Role::kCandidate},
      {5, {{2, true}}, Role::kCandidate},
      {5, {{2, false}, {3, false}}, Role::kCandidate},
  };
  for (const Case& c : cases) {
    std::vector<NodeId> voters;
    for (NodeId i = 1; i <= c.size; ++i) voters.push_back(i);
    TestNode n = MakeNode(1, voters);
    Raft& r = *n.raft;
    r.Campaign();
    for (const auto& [from, granted] : c.votes) {
      Message m = Msg(MessageType::kVoteResponse, from, 1, 1);
      m.reject = !granted;
      r.Step(m);
    }
    EXPECT_EQ(r.role(), c.want) << "size=" << c.size;
    EXPECT_EQ(r.term(), 1u);
  }
}

// §5.2: "Each server will vote for at most one candidate in a given term, on a
// first-come-first-served basis."
TEST(RaftPaperTest, VotesForAtMostOneCandidatePerTerm) {
  struct Case {
    NodeId voted;
    NodeId candidate;
    bool reject;
  } cases[] = {{kNoNode, 2, false}, {kNoNode, 3, false}, {2, 2, false},
               {3, 3, false},       {2, 3, true},        {3, 2, true}};
  for (const Case& c : cases) {
    TestNode n = MakeNode(1, kThree, {}, {}, HardState{1, c.voted, 0});
    Raft& r = *n.raft;
    std::vector<Message> out =
        StepAndTake(r, Msg(MessageType::kVote, c.candidate, 1, 1));
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].type, MessageType::kVoteResponse);
    EXPECT_EQ(out[0].reject, c.reject)
        << "voted=" << c.voted << " candidate=" << c.candidate;
  }
}

// §5.2: "If the leader's term (included in its RPC) is at least as large as
// the candidate's current term, then the candidate recognizes the leader as
// legitimate and returns to follower state."
TEST(RaftPaperTest, CandidateFallsBackOnAppendFromLeaderOfItsTerm) {
  for (Term term : {1u, 2u}) {
    TestNode n = MakeNode(1, kThree);
    Raft& r = *n.raft;
    r.Campaign();
    ASSERT_EQ(r.role(), Role::kCandidate);
    r.Step(Msg(MessageType::kAppend, 2, 1, term));
    EXPECT_EQ(r.role(), Role::kFollower);
    EXPECT_EQ(r.term(), term);
    EXPECT_EQ(r.lead(), 2u);
  }
}

// §5.2: "Raft uses randomized election timeouts ... chosen randomly from a
// fixed interval (e.g., 150-300ms)."
TEST(RaftPaperTest, ElectionTimeoutIsRandomizedWithinOneToTwoTimeouts) {
  std::set<int> seen;
  TestNode n = MakeNode(1, kThree);
  Raft& r = *n.raft;
  for (int round = 0; round < 200; ++round) {
    r.Step(Msg(MessageType::kAppend, 2, 1, r.term() + 1));  // resets timer
    int t = r.randomized_election_timeout();
    ASSERT_GE(t, 10);
    ASSERT_LT(t, 20);
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 5u);
}

// §5.3: "Once a leader has been elected ... it appends the command to its log
// as a new entry, then issues AppendEntries RPCs in parallel to each of the
// other servers to replicate the entry."
TEST(RaftPaperTest, LeaderReplicatesProposedEntry) {
  TestNetwork net = ElectedNetwork();
  Raft& leader = net.node(1);
  absl::StatusOr<Index> index = leader.Propose("x");
  ASSERT_TRUE(index.ok());
  EXPECT_EQ(*index, 2u);  // after the no-op
  std::set<NodeId> to;
  for (const Message& m : Take(leader)) {
    ASSERT_EQ(m.type, MessageType::kAppend);
    EXPECT_EQ(m.index, 1u);
    EXPECT_EQ(m.log_term, 1u);
    ASSERT_EQ(m.entries.size(), 1u);
    EXPECT_EQ(m.entries[0].data, "x");
    to.insert(m.to);
  }
  EXPECT_EQ(to, (std::set<NodeId>{2, 3}));
}

// §5.3: "A log entry is committed once the leader that created the entry has
// replicated it on a majority of the servers." ... "The leader keeps track of
// the highest index it knows to be committed, and it includes that index in
// future AppendEntries RPCs."
TEST(RaftPaperTest, LeaderCommitsOnMajorityAndTellsFollowers) {
  for (size_t size : {1u, 3u, 5u}) {
    std::vector<NodeId> voters;
    for (NodeId i = 1; i <= size; ++i) voters.push_back(i);
    for (size_t acks = 0; acks < size; ++acks) {
      TestNetwork net = ElectedNetwork(voters);
      Raft& leader = net.node(1);
      ASSERT_EQ(leader.role(), Role::kLeader);
      ASSERT_TRUE(leader.Propose("x").ok());
      Take(leader);
      for (NodeId f = 2; f < 2 + acks; ++f) {
        Message ack = Msg(MessageType::kAppendResponse, f, 1, 1);
        ack.index = 2;
        leader.Step(ack);
      }
      const bool majority = acks + 1 >= size / 2 + 1;
      EXPECT_EQ(leader.log().committed(), majority ? 2u : 1u)
          << "size=" << size << " acks=" << acks;
    }
  }
}

// §5.3: "Once a follower learns that a log entry is committed, it applies the
// entry to its local state machine (in log order)."
TEST(RaftPaperTest, FollowerCommitsWhatLeaderSaysIsCommitted) {
  TestNetwork net = ElectedNetwork();
  ASSERT_TRUE(net.Propose(1, "a").ok());
  ASSERT_TRUE(net.Propose(1, "b").ok());
  net.TickN(1, 1);  // a heartbeat carries the latest commit index
  for (NodeId id : kThree) {
    EXPECT_EQ(net.node(id).log().committed(), 3u) << "node " << id;
  }
}

// §5.3: "If the follower does not find an entry in its log with the same
// index and term, then it refuses the new entries."
TEST(RaftPaperTest, FollowerRejectsAppendWithoutMatchingPrevious) {
  struct Case {
    Term prev_term;
    Index prev_index;
    bool reject;
  } cases[] = {
      {0, 0, false}, {1, 1, false}, {2, 2, false}, {1, 2, true}, {3, 3, true}};
  for (const Case& c : cases) {
    TestNode n = MakeNode(1, kThree, {}, EntriesWithTerms({1, 2}),
                          HardState{2, kNoNode, 0});
    Raft& r = *n.raft;
    Message m = Msg(MessageType::kAppend, 2, 1, 2);
    m.index = c.prev_index;
    m.log_term = c.prev_term;
    std::vector<Message> out = StepAndTake(r, m);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].reject, c.reject) << "prev=" << c.prev_index;
  }
}

// §5.3: "If an existing entry conflicts with a new one (same index but
// different terms), delete the existing entry and all that follow it; append
// any new entries not already in the log."
TEST(RaftPaperTest, FollowerReplacesConflictingSuffix) {
  struct Case {
    Index prev_index;
    Term prev_term;
    std::vector<Entry> entries;
    std::vector<Term> want_terms;
  } cases[] = {
      {2, 2, {{3, 3, EntryType::kNormal, {}}}, {1, 2, 3}},
      {1,
       1,
       {{3, 2, EntryType::kNormal, {}}, {4, 3, EntryType::kNormal, {}}},
       {1, 3, 4}},
      {0, 0, {{1, 1, EntryType::kNormal, {}}}, {1, 2}},
      {0, 0, {{3, 1, EntryType::kNormal, {}}}, {3}},
  };
  for (const Case& c : cases) {
    TestNode n = MakeNode(1, kThree, {}, EntriesWithTerms({1, 2}),
                          HardState{2, kNoNode, 0});
    Raft& r = *n.raft;
    Message m = Msg(MessageType::kAppend, 2, 1, 2);
    m.index = c.prev_index;
    m.log_term = c.prev_term;
    m.entries = c.entries;
    r.Step(m);
    std::vector<Term> got;
    for (Index i = 1; i <= r.log().LastIndex(); ++i) {
      got.push_back(*r.log().TermAt(i));
    }
    EXPECT_EQ(got, c.want_terms) << "prev=" << c.prev_index;
  }
}

// §5.3, Figure 7: "the leader must find the latest log entry where the two
// logs agree, delete any entries in the follower's log after that point, and
// send the follower all of the leader's entries after that point." Every
// follower log of Figure 7 converges to the leader's.
TEST(RaftPaperTest, LeaderBringsEveryFigure7FollowerInSync) {
  const std::vector<Term> leader_terms = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
  const std::vector<std::vector<Term>> followers = {
      {1, 1, 1, 4, 4, 5, 5, 6, 6},           // (a)
      {1, 1, 1, 4},                          // (b)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6},     // (c)
      {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7},  // (d)
      {1, 1, 1, 4, 4, 4, 4},                 // (e)
      {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3},     // (f)
  };
  for (size_t f = 0; f < followers.size(); ++f) {
    TestNetwork net(kThree);
    net.Set(1, MakeNode(1, kThree, {}, EntriesWithTerms(leader_terms),
                        HardState{7, kNoNode, 0}));
    net.Set(2, MakeNode(2, kThree, {}, EntriesWithTerms(followers[f]),
                        HardState{7, kNoNode, 0}));
    // Node 3 has an empty log and so votes for anyone.
    net.Set(3, MakeNode(3, kThree, {}, {}, HardState{7, kNoNode, 0}));
    net.Campaign(1);
    ASSERT_EQ(net.node(1).role(), Role::kLeader) << "case " << f;
    net.TickN(1, 1);
    const RaftLog& want = net.node(1).log();
    const RaftLog& got = net.node(2).log();
    ASSERT_EQ(got.LastIndex(), want.LastIndex()) << "case " << f;
    for (Index i = 1; i <= want.LastIndex(); ++i) {
      EXPECT_EQ(got.TermAt(i), want.TermAt(i)) << "case " << f << " i=" << i;
    }
  }
}

// §5.4.1: "Raft determines which of two logs is more up-to-date by comparing
// the index and term of the last entries in the logs. If the logs have last
// entries with different terms, then the log with the later term is more
// up-to-date. If the logs end with the same term, then whichever log is
// longer is more up-to-date."
TEST(RaftPaperTest, VotesOnlyForCandidateWithUpToDateLog) {
  struct Case {
    Term last_term;
    Index last_index;
    bool reject;
  } cases[] = {{2, 1, true},  {2, 2, true},  {3, 1, true}, {3, 2, false},
               {3, 3, false}, {4, 1, false}, {1, 9, true}};
  for (const Case& c : cases) {
    TestNode n = MakeNode(1, kThree, {}, EntriesWithTerms({2, 3}),
                          HardState{3, kNoNode, 0});
    Raft& r = *n.raft;
    Message m = Msg(MessageType::kVote, 2, 1, 4);
    m.log_term = c.last_term;
    m.index = c.last_index;
    std::vector<Message> out = StepAndTake(r, m);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].reject, c.reject)
        << "last=" << c.last_index << "/" << c.last_term;
  }
}

// §5.4.2: "Raft never commits log entries from previous terms by counting
// replicas. Only log entries from the leader's current term are committed by
// counting replicas."
TEST(RaftPaperTest, LeaderOnlyCommitsByCountingEntriesOfItsTerm) {
  // Node 1 holds entries of terms 1 and 2 that no one else has.
  TestNode n = MakeNode(1, kThree, {}, EntriesWithTerms({1, 2}),
                        HardState{2, kNoNode, 0});
  Raft& r = *n.raft;
  r.Campaign();
  Message grant = Msg(MessageType::kVoteResponse, 2, 1, 3);
  r.Step(grant);
  ASSERT_EQ(r.role(), Role::kLeader);
  ASSERT_EQ(r.log().LastIndex(), 3u);  // + the no-op of term 3
  // A follower acknowledging the old entries alone commits nothing...
  Message ack = Msg(MessageType::kAppendResponse, 2, 1, 3);
  ack.index = 2;
  r.Step(ack);
  EXPECT_EQ(r.log().committed(), 0u);
  // ...once it acknowledges the entry of term 3, everything before commits.
  ack.index = 3;
  r.Step(ack);
  EXPECT_EQ(r.log().committed(), 3u);
}

// Dissertation §9.6: "the PreVote algorithm ... a candidate would first ask
// other servers whether its log was up-to-date enough to get their vote.
// Only if the candidate believed it could get votes from a majority of the
// cluster would it increment its term and start a normal election."
TEST(RaftPaperTest, PreVoteDoesNotIncrementTermOnItsOwn) {
  TestOptions opts;
  opts.pre_vote = true;
  TestNode n = MakeNode(1, kThree, opts);
  Raft& r = *n.raft;
  r.Campaign();
  EXPECT_EQ(r.role(), Role::kPreCandidate);
  EXPECT_EQ(r.term(), 0u);
  for (const Message& m : Take(r)) {
    EXPECT_EQ(m.type, MessageType::kPreVote);
    EXPECT_EQ(m.term, 1u);
  }
  // A majority of pre-votes starts the real election.
  Message grant = Msg(MessageType::kPreVoteResponse, 2, 1, 1);
  r.Step(grant);
  EXPECT_EQ(r.role(), Role::kCandidate);
  EXPECT_EQ(r.term(), 1u);
}

// Dissertation §9.6: a server that was partitioned away and kept timing out
// does not raise the cluster's term when it comes back, so it cannot depose
// a working leader.
TEST(RaftPaperTest, PreVoteKeepsRejoiningNodeFromDisruptingLeader) {
  TestOptions opts;
  opts.pre_vote = true;
  TestNetwork net(kThree, opts);
  net.Campaign(1);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  net.Isolate(3);
  ASSERT_TRUE(net.Propose(1, "x").ok());        // node 3 falls behind
  for (int i = 0; i < 5; ++i) net.Campaign(3);  // times out again and again
  EXPECT_EQ(net.node(3).term(), 1u);
  net.Recover();
  net.Campaign(3);  // its pre-vote fails: its log is behind
  EXPECT_EQ(net.node(1).role(), Role::kLeader);
  EXPECT_EQ(net.node(1).term(), 1u);
  EXPECT_EQ(net.node(3).role(), Role::kFollower);
  EXPECT_EQ(net.node(3).term(), 1u);
}

// Dissertation §6.2: "a leader steps down if an election timeout elapses
// without a successful round of heartbeats to a majority of its cluster."
TEST(RaftPaperTest, CheckQuorumMakesIsolatedLeaderStepDown) {
  TestOptions opts;
  opts.check_quorum = true;
  TestNetwork net(kThree, opts);
  net.Campaign(1);
  ASSERT_EQ(net.node(1).role(), Role::kLeader);
  net.Isolate(1);
  net.TickN(1, 10);
  EXPECT_EQ(net.node(1).role(), Role::kLeader);  // one timeout of grace
  net.TickN(1, 10);
  EXPECT_EQ(net.node(1).role(), Role::kFollower);
  EXPECT_EQ(net.node(1).lead(), kNoNode);
}

// Dissertation §4.2.3: "if a server receives a RequestVote request within the
// minimum election timeout of hearing from a current leader, it does not
// update its term or grant its vote."
TEST(RaftPaperTest, CheckQuorumFollowerIgnoresVotesWhileLeaderIsHeard) {
  TestOptions opts;
  opts.check_quorum = true;
  TestNetwork net(kThree, opts);
  net.Campaign(1);
  Raft& follower = net.node(2);
  ASSERT_EQ(follower.lead(), 1u);
  Message vote = Msg(MessageType::kVote, 3, 2, 2);
  vote.index = 1;
  vote.log_term = 1;
  follower.Step(vote);
  EXPECT_EQ(follower.term(), 1u);
  EXPECT_TRUE(follower.TakeMessages().empty());
}

}  // namespace
}  // namespace tally::raft
