#include "kv/state_machine.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "kv/storage/leveldb_util.h"

namespace tally::kv {
namespace {

class StateMachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("tally-sm-" + std::to_string(getpid())))
               .string();
    std::filesystem::remove_all(dir_);
    auto db = storage::OpenLevelDB(dir_);
    ASSERT_TRUE(db.ok());
    db_ = std::move(*db);
    auto sm = StateMachine::Open(db_.get(), 2);
    ASSERT_TRUE(sm.ok());
    sm_ = std::move(*sm);
  }
  void TearDown() override {
    sm_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  rpc::CommandResult Apply(const rpc::Command& cmd) {
    raft::Entry e{1, ++index_, raft::EntryType::kNormal,
                  cmd.SerializeAsString()};
    auto r = sm_->Apply({e});
    EXPECT_TRUE(r.ok());
    rpc::CommandResult out;
    out.ParseFromString(r->at(0));
    return out;
  }
  static rpc::Command Put(std::string k, std::string v, uint64_t client = 0,
                          uint64_t seq = 0) {
    rpc::Command c;
    c.mutable_put()->set_key(std::move(k));
    c.mutable_put()->set_value(std::move(v));
    c.mutable_session()->set_client_id(client);
    c.mutable_session()->set_sequence(seq);
    return c;
  }

  std::string dir_;
  std::unique_ptr<leveldb::DB> db_;
  std::unique_ptr<StateMachine> sm_;
  raft::Index index_ = 0;
};

TEST_F(StateMachineTest, PutAssignsRevisionsAndVersions) {
  EXPECT_EQ(Apply(Put("a", "1")).put().header().revision(), 1);
  rpc::CommandResult r = Apply(Put("a", "2"));
  EXPECT_EQ(r.put().header().revision(), 2);
  EXPECT_TRUE(r.put().had_prev());
  EXPECT_EQ(r.put().prev().value(), "1");
  auto kv = sm_->Get("a");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->value(), "2");
  EXPECT_EQ((*kv)->version(), 2);
  EXPECT_EQ((*kv)->create_revision(), 1);
  EXPECT_EQ(sm_->applied(), 2u);
}

TEST_F(StateMachineTest, TxnComparesThenAppliesOneBranch) {
  Apply(Put("k", "v1"));
  rpc::Command c;
  rpc::Compare* cmp = c.mutable_txn()->add_compare();
  cmp->set_key("k");
  cmp->set_target(rpc::Compare::VALUE);
  cmp->set_value("v0");
  auto* put = c.mutable_txn()->add_success()->mutable_put();
  put->set_key("k");
  put->set_value("v2");
  c.mutable_txn()->add_failure()->mutable_get()->set_key("k");
  rpc::CommandResult r = Apply(c);
  EXPECT_FALSE(r.txn().succeeded());
  EXPECT_EQ(r.txn().results(0).get().kv().value(), "v1");
  cmp->set_value("v1");
  r = Apply(c);
  EXPECT_TRUE(r.txn().succeeded());
  EXPECT_EQ((*sm_->Get("k"))->value(), "v2");
}

TEST_F(StateMachineTest, RetriedSessionRequestIsAnsweredNotReapplied) {
  rpc::CommandResult first = Apply(Put("a", "x", 42, 1));
  rpc::CommandResult again = Apply(Put("a", "x", 42, 1));
  EXPECT_TRUE(again.put().header().replayed());
  EXPECT_EQ(again.put().header().revision(), first.put().header().revision());
  EXPECT_EQ((*sm_->Get("a"))->version(), 1);
  // An unknown session that claims earlier answers is refused.
  rpc::Command late = Put("a", "y", 43, 5);
  late.mutable_session()->set_first_incomplete(5);
  EXPECT_EQ(Apply(late).error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
}

TEST_F(StateMachineTest, RemovedMemberIdCannotComeBack) {
  rpc::Command add;
  add.mutable_set_member()->set_id(4);
  add.mutable_set_member()->set_peer_address("127.0.0.1:7104");
  EXPECT_EQ(Apply(add).error_code(), 0);
  ASSERT_EQ(sm_->Members()->size(), 1u);
  rpc::Command remove;
  remove.set_remove_member(4);
  Apply(remove);
  EXPECT_TRUE(sm_->Members()->empty());
  EXPECT_TRUE(sm_->WasRemoved(4));
  EXPECT_EQ(Apply(add).error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(sm_->Members()->empty());
}

TEST_F(StateMachineTest, BootstrapRecordsMembersAndRanges) {
  rpc::Member m;
  m.set_id(1);
  std::vector<rpc::RangeDescriptor> ranges(2);
  ranges[0].set_group(2);
  ranges[0].set_end("m");
  ranges[1].set_group(3);
  ranges[1].set_start("m");
  ASSERT_TRUE(sm_->Bootstrap(1, {m}, {ranges[1], ranges[0]}).ok());
  EXPECT_EQ(sm_->applied(), 1u);
  EXPECT_EQ(sm_->Members()->size(), 1u);
  auto got = sm_->Ranges();
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].group(), 2u);  // in key order
  EXPECT_EQ((*got)[1].start(), "m");
}

TEST_F(StateMachineTest, SkipsEntriesAlreadyApplied) {
  Apply(Put("a", "1"));
  raft::Entry old{1, 1, raft::EntryType::kNormal,
                  Put("a", "stale").SerializeAsString()};
  ASSERT_TRUE(sm_->Apply({old}).ok());
  EXPECT_EQ((*sm_->Get("a"))->value(), "1");
}

TEST_F(StateMachineTest, SnapshotRoundTripsIntoAnotherGroupReplica) {
  for (int i = 0; i < 100; ++i) Apply(Put("k" + std::to_string(i), "v"));
  std::vector<raft::host::SnapshotChunk> chunks;
  ASSERT_TRUE(sm_->Export(100,
                          [&](raft::host::SnapshotChunk c) {
                            chunks.push_back(std::move(c));
                            return absl::OkStatus();
                          })
                  .ok());
  EXPECT_EQ(sm_->Export(1000, [](auto) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kUnavailable);
  auto other_db = storage::OpenLevelDB(dir_ + "-b");
  ASSERT_TRUE(other_db.ok());
  auto other = StateMachine::Open(other_db->get(), 2);
  ASSERT_TRUE(other.ok());
  size_t next = 0;
  ASSERT_TRUE((*other)
                  ->Import([&]() -> absl::StatusOr<raft::host::SnapshotChunk> {
                    return chunks.at(next++);
                  })
                  .ok());
  EXPECT_EQ((*other)->applied(), 100u);
  EXPECT_EQ((*other)->revision(), 100);
  bool more = false;
  auto all = (*other)->Range("", "", 1000, &more);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 100u);
  other->reset();
  other_db->reset();
  std::filesystem::remove_all(dir_ + "-b");
}

}  // namespace
}  // namespace tally::kv
