#include "kv/leader_duties.h"

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kv/storage/memory_engine.h"

namespace tally::kv {
namespace {

// One group's state machine on a hand-set clock, holding a 1 s lease granted
// at log time 0, and the proposals a LeaderDuties makes for it.
class LeaderDutiesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sm = StateMachine::Open(&engine_, 1, [this] { return now_ms_; });
    ASSERT_TRUE(sm.ok());
    sm_ = std::move(*sm);
    kvpb::Command grant;
    grant.mutable_lease_grant()->set_ttl_ms(1'000);
    grant.set_time_ms(0);
    ASSERT_TRUE(sm_->Apply({{1, 1, raft::EntryType::kNormal,
                             grant.SerializeAsString()}})
                    .ok());
  }

  std::vector<raft::host::GroupId> Run() {
    return duties_.Run({{1, sm_.get()}});
  }

  storage::MemoryEngine engine_;
  int64_t now_ms_ = 0;
  std::unique_ptr<StateMachine> sm_;
  // The done callbacks of the proposals made, unanswered.
  std::vector<std::function<void()>> proposed_;
  LeaderDuties duties_{[this](raft::host::GroupId, kvpb::Command cmd,
                              std::function<void()> done) {
    EXPECT_TRUE(cmd.has_lease_expire());
    proposed_.push_back(std::move(done));
  }};
};

TEST_F(LeaderDutiesTest, ProposesWhatIsDueOnceUntilAnswered) {
  EXPECT_EQ(Run(), std::vector<raft::host::GroupId>{1});  // not leading
  sm_->OnLeadership(2, true);
  EXPECT_EQ(Run(), std::vector<raft::host::GroupId>{1});  // nothing due yet
  now_ms_ = 1'000;
  EXPECT_TRUE(Run().empty());
  EXPECT_EQ(proposed_.size(), 1u);
  EXPECT_TRUE(Run().empty());  // in flight: neither idle nor proposed again
  EXPECT_EQ(proposed_.size(), 1u);
  proposed_[0]();  // lost (say): due still, so proposed again
  Run();
  EXPECT_EQ(proposed_.size(), 2u);
}

// The host never answers a proposal whose leader lost its term before the
// entry's fate was known. Such a proposal held the group's duties for good,
// and a node that led again never ended another lease.
TEST_F(LeaderDutiesTest,
       LeadingAgainInALaterTermProposesAfreshWithoutAnAnswer) {
  sm_->OnLeadership(2, true);
  now_ms_ = 1'000;
  Run();
  ASSERT_EQ(proposed_.size(), 1u);
  sm_->OnLeadership(2, false);
  EXPECT_EQ(Run(), std::vector<raft::host::GroupId>{1});
  sm_->OnLeadership(4, true);
  Run();
  EXPECT_EQ(proposed_.size(), 2u);
  // The first term's answer, late, frees nothing of the second's.
  proposed_[0]();
  Run();
  EXPECT_EQ(proposed_.size(), 2u);
}

}  // namespace
}  // namespace tally::kv
