#include "raft/raw_node.h"

#include "gtest/gtest.h"

namespace tally::raft {
namespace {

class RawNodeTest : public ::testing::Test {
 protected:
  std::unique_ptr<RawNode> Start(NodeId id, std::vector<NodeId> voters) {
    storage_ =
        std::make_unique<MemoryStorage>(ConfState{.voters = std::move(voters)});
    return Restart(id);
  }
  std::unique_ptr<RawNode> Restart(NodeId id, Index applied = 0) {
    Config c;
    c.id = id;
    c.storage = storage_.get();
    c.random = &random_;
    c.applied = applied;
    absl::StatusOr<std::unique_ptr<RawNode>> n = RawNode::Create(c);
    EXPECT_TRUE(n.ok()) << n.status();
    return std::move(*n);
  }
  // Persists a Ready the way the contract says, then advances.
  void Handle(RawNode& n, const Ready& rd) {
    if (rd.hard_state) storage_->SetHardState(*rd.hard_state);
    storage_->Append(rd.entries);
    for (const Entry& e : rd.committed_entries) applied_.push_back(e);
    n.Advance(rd);
  }

  std::unique_ptr<MemoryStorage> storage_;
  util::SeededRandom random_{1};
  std::vector<Entry> applied_;
};

TEST_F(RawNodeTest, FreshNodeHasNothingToDo) {
  auto n = Start(1, {1, 2, 3});
  EXPECT_FALSE(n->HasReady());
  EXPECT_TRUE(n->GetReady().Empty());
}

TEST_F(RawNodeTest, VoteMustBeSyncedBeforeItIsSent) {
  auto n = Start(1, {1, 2, 3});
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = 2;
  vote.to = 1;
  vote.term = 1;
  ASSERT_TRUE(n->Step(vote).ok());
  ASSERT_TRUE(n->HasReady());
  Ready rd = n->GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->vote, 2u);
  EXPECT_EQ(rd.hard_state->term, 1u);
  EXPECT_TRUE(rd.must_sync);
  ASSERT_EQ(rd.messages.size(), 1u);
  EXPECT_FALSE(rd.messages[0].reject);
  Handle(*n, rd);
  EXPECT_FALSE(n->HasReady());
}

TEST_F(RawNodeTest, SingleNodeProposalFlowsThroughReady) {
  auto n = Start(1, {1});
  n->Campaign();
  Handle(*n, n->GetReady());  // becomes leader, no-op entry
  absl::StatusOr<Index> index = n->Propose("hello");
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(*index, 2u);
  Ready rd = n->GetReady();
  ASSERT_EQ(rd.entries.size(), 1u);
  EXPECT_EQ(rd.entries[0].data, "hello");
  EXPECT_TRUE(rd.must_sync);
  Handle(*n, rd);
  ASSERT_EQ(applied_.size(), 2u);
  EXPECT_EQ(applied_[1].data, "hello");
  EXPECT_EQ(storage_->LastIndex(), 2u);
  EXPECT_FALSE(n->HasReady());
}

TEST_F(RawNodeTest, CommitOnlyChangeNeedsNoSync) {
  auto n = Start(1, {1, 2});
  n->Campaign();  // pre-vote first
  Handle(*n, n->GetReady());
  Message grant;
  grant.type = MessageType::kPreVoteResponse;
  grant.from = 2;
  grant.to = 1;
  grant.term = 1;
  ASSERT_TRUE(n->Step(grant).ok());
  grant.type = MessageType::kVoteResponse;
  ASSERT_TRUE(n->Step(grant).ok());
  ASSERT_EQ(n->raft().role(), Role::kLeader);
  Handle(*n, n->GetReady());  // no-op appended
  Message ack;
  ack.type = MessageType::kAppendResponse;
  ack.from = 2;
  ack.to = 1;
  ack.term = 1;
  ack.index = 1;
  ASSERT_TRUE(n->Step(ack).ok());
  Ready rd = n->GetReady();
  ASSERT_TRUE(rd.hard_state.has_value());
  EXPECT_EQ(rd.hard_state->commit, 1u);
  EXPECT_FALSE(rd.must_sync);
  EXPECT_EQ(rd.committed_entries.size(), 1u);
}

TEST_F(RawNodeTest, RestartResumesFromStorage) {
  auto n = Start(1, {1});
  n->Campaign();
  Handle(*n, n->GetReady());
  ASSERT_TRUE(n->Propose("a").ok());
  Handle(*n, n->GetReady());
  n.reset();
  applied_.clear();
  auto again = Restart(1);
  EXPECT_EQ(again->raft().term(), 1u);
  EXPECT_EQ(again->raft().vote(), 1u);
  EXPECT_EQ(again->raft().log().committed(), 2u);
  // Not yet applied in this incarnation: handed out again.
  Ready rd = again->GetReady();
  EXPECT_EQ(rd.committed_entries.size(), 2u);
  // With the applied index given, nothing is applied twice.
  again.reset();
  auto third = Restart(1, /*applied=*/2);
  EXPECT_TRUE(third->GetReady().committed_entries.empty());
}

TEST_F(RawNodeTest, StepRejectsMisaddressedMessages) {
  auto n = Start(1, {1, 2, 3});
  Message m;
  m.type = MessageType::kAppend;
  m.from = 2;
  m.to = 3;
  m.term = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(n->Step(m)));
  EXPECT_EQ(n->raft().term(), 0u);
  EXPECT_FALSE(n->HasReady());
}

// No voters is only valid for an empty replica (a new member waiting for a
// snapshot); with a hard state, the storage is corrupt.
// A replica with no configuration is a new member waiting for its first
// snapshot, even with a term and vote (it heard from a leader, then
// restarted); with a log, it is corrupt storage.
TEST_F(RawNodeTest, CreateRejectsMissingVotersUnlessNoLog) {
  storage_ = std::make_unique<MemoryStorage>();
  storage_->SetHardState({.term = 1});
  Config c;
  c.id = 1;
  c.storage = storage_.get();
  c.random = &random_;
  EXPECT_TRUE(RawNode::Create(c).ok());
  storage_->Append({Entry{1, 1, EntryType::kNormal, ""}});
  absl::StatusOr<std::unique_ptr<RawNode>> n = RawNode::Create(c);
  EXPECT_TRUE(absl::IsInvalidArgument(n.status())) << n.status();
}

}  // namespace
}  // namespace tally::raft
