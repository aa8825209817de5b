// The checker must catch each kind of violation it claims to; these tests
// feed it broken histories directly.

#include "tests/sim/checker.h"

#include "gtest/gtest.h"
#include "raft/storage.h"

namespace tally::sim {
namespace {

using raft::Entry;
using raft::EntryType;

Entry E(raft::Index i, raft::Term t, std::string data = "") {
  return Entry{t, i, EntryType::kNormal, std::move(data)};
}

// A log view holding `entries`, for the checker's log arguments.
struct LogView {
  explicit LogView(const std::vector<Entry>& entries) : log(&storage) {
    storage.Append(entries);
  }
  raft::MemoryStorage storage;
  raft::RaftLog log;
};

const raft::ConfState kConf{.voters = {1, 2, 3}};

bool Mentions(const Checker& c, const std::string& what) {
  return c.violation() && c.violation()->find(what) != std::string::npos;
}

TEST(CheckerTest, TwoLeadersInOneTerm) {
  Checker c(3);
  LogView empty({});
  c.OnBecomeLeader(1, 5, empty.log, kConf);
  c.OnBecomeLeader(1, 5, empty.log, kConf);  // same node again is fine
  EXPECT_FALSE(c.violation());
  c.OnBecomeLeader(2, 5, empty.log, kConf);
  EXPECT_TRUE(Mentions(c, "election safety")) << c.violation().value_or("");
}

TEST(CheckerTest, LogMatching) {
  Checker c(3);
  c.OnPersist(1, {E(1, 1, "a"), E(2, 2, "b")});
  c.OnPersist(2, {E(1, 1, "a"), E(2, 2, "b")});
  EXPECT_FALSE(c.violation());
  c.OnPersist(3, {E(1, 1, "x"), E(2, 2, "b")});
  EXPECT_TRUE(Mentions(c, "log matching")) << c.violation().value_or("");
}

TEST(CheckerTest, CommittedEntryChanges) {
  Checker c(3);
  LogView a({E(1, 1), E(2, 1)});
  LogView b({E(1, 1), E(2, 2)});
  c.OnCommit(1, 1, 2, a.log);
  c.OnCommit(2, 2, 1, b.log);
  EXPECT_FALSE(c.violation());
  c.OnCommit(2, 2, 2, b.log);
  EXPECT_TRUE(Mentions(c, "committed entry changed"))
      << c.violation().value_or("");
}

TEST(CheckerTest, LeaderMissingCommittedEntry) {
  Checker c(3);
  LogView full({E(1, 1), E(2, 1)});
  LogView shorter({E(1, 1)});
  c.OnCommit(1, 1, 2, full.log);
  c.OnBecomeLeader(2, 2, shorter.log, kConf);
  EXPECT_TRUE(Mentions(c, "leader completeness")) << c.violation().value_or("");
}

TEST(CheckerTest, LateLeaderOfOlderTermNeedNotHaveNewerCommits) {
  // Entry 2 was committed in term 3; a leader of term 2 (votes delayed)
  // may lack it without breaking Leader Completeness.
  Checker c(3);
  LogView full({E(1, 1), E(2, 1)});
  LogView shorter({E(1, 1)});
  c.OnCommit(1, 3, 2, full.log);
  c.OnBecomeLeader(2, 2, shorter.log, kConf);
  EXPECT_FALSE(c.violation());
}

TEST(CheckerTest, DifferentEntriesAppliedAtOneIndex) {
  Checker c(3);
  LogView log({E(1, 1, "a")});
  c.OnCommit(1, 1, 1, log.log);
  c.OnApply(1, E(1, 1, "a"));
  c.OnApply(2, E(1, 1, "a"));
  EXPECT_FALSE(c.violation());
  c.OnApply(3, E(1, 1, "b"));
  EXPECT_TRUE(Mentions(c, "state machine safety"))
      << c.violation().value_or("");
}

TEST(CheckerTest, StaleReadAndRealTimeOrder) {
  Op w{1, Op::Kind::kWrite, 0, 42, 0};
  Op r{2, Op::Kind::kRead, 0, 0, 0};
  LogView log({E(1, 1, EncodeOp(w)), E(2, 1, EncodeOp(r))});
  {
    Checker c(3);
    c.OnCommit(1, 1, 2, log.log);
    c.OnApply(1, log.storage.Entries(1, 2, UINT64_MAX)->front());
    c.OnApply(1, log.storage.Entries(2, 3, UINT64_MAX)->front());
    c.OnAck(w, 1, 1, 0);
    EXPECT_FALSE(c.violation());
    c.OnAck(r, 2, 1, /*read_value=*/7);  // must have read 42
    EXPECT_TRUE(Mentions(c, "returned 7, expected 42"))
        << c.violation().value_or("");
  }
  {
    Checker c(3);
    c.OnCommit(1, 1, 2, log.log);
    c.OnApply(1, log.storage.Entries(1, 2, UINT64_MAX)->front());
    c.OnApply(1, log.storage.Entries(2, 3, UINT64_MAX)->front());
    Op late = w;
    late.must_follow = 1;  // invoked after an op at index 1 was acknowledged
    c.OnAck(late, 1, 1, 0);
    EXPECT_TRUE(Mentions(c, "linearizability")) << c.violation().value_or("");
  }
}

TEST(CheckerTest, LeaderOutsideItsConfiguration) {
  Checker c(4);
  LogView empty({});
  c.OnBecomeLeader(4, 1, empty.log, kConf);
  EXPECT_TRUE(Mentions(c, "membership")) << c.violation().value_or("");
}

TEST(CheckerTest, CommitWithoutBothMajorities) {
  LogView log({E(1, 1, "a")});
  raft::ConfState joint{.voters = {1, 2, 3}, .voters_outgoing = {1, 4, 5}};
  {
    Checker c(5);
    for (raft::NodeId id : {1, 2, 4}) c.OnPersist(id, {E(1, 1, "a")});
    c.OnCommit(1, 1, 1, log.log);
    c.OnLeaderCommit(1, joint, 1);
    EXPECT_FALSE(c.violation());
  }
  {
    Checker c(5);
    // A majority of the incoming half only.
    for (raft::NodeId id : {1, 2, 3}) c.OnPersist(id, {E(1, 1, "a")});
    c.OnCommit(1, 1, 1, log.log);
    c.OnLeaderCommit(1, joint, 1);
    EXPECT_TRUE(Mentions(c, "commit quorum")) << c.violation().value_or("");
  }
  {
    Checker c(5);
    // Learners holding the entry do not count.
    raft::ConfState with_learners{.voters = {1, 2, 3}, .learners = {4, 5}};
    for (raft::NodeId id : {1, 4, 5}) c.OnPersist(id, {E(1, 1, "a")});
    c.OnCommit(1, 1, 1, log.log);
    c.OnLeaderCommit(1, with_learners, 1);
    EXPECT_TRUE(Mentions(c, "commit quorum")) << c.violation().value_or("");
  }
}

TEST(CheckerTest, StateDivergence) {
  Checker c(3);
  c.OnStateHash(1, 5, 42);
  c.OnStateHash(2, 5, 42);
  EXPECT_FALSE(c.violation());
  c.OnStateHash(3, 5, 43);
  EXPECT_TRUE(Mentions(c, "state divergence")) << c.violation().value_or("");
}

TEST(CheckerTest, OpEncodingRoundTrips) {
  Op w{7, Op::Kind::kWrite, 2, 99, 0};
  std::optional<Op> d = DecodeOp(EncodeOp(w));
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->id, 7u);
  EXPECT_EQ(d->key, 2);
  EXPECT_EQ(d->value, 99u);
  EXPECT_FALSE(DecodeOp("").has_value());
  EXPECT_FALSE(DecodeOp("1 x 2").has_value());
}

}  // namespace
}  // namespace tally::sim
