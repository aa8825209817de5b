#include "raft/conf_change.h"

#include "gtest/gtest.h"

namespace tally::raft {
namespace {

using Type = ConfChangeSingle::Type;

ConfChange Change(std::vector<ConfChangeSingle> changes,
                  ConfChange::Transition t = ConfChange::Transition::kAuto) {
  return ConfChange{std::move(changes), t};
}

TEST(ConfChangeTest, EncodingRoundTrips) {
  ConfChange cc = Change(
      {{Type::kAddVoter, 4}, {Type::kAddLearner, 5}, {Type::kRemoveNode, 2}},
      ConfChange::Transition::kJoint);
  absl::StatusOr<ConfChange> back = DecodeConfChange(EncodeConfChange(cc));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, cc);
  EXPECT_EQ(*DecodeConfChange(EncodeConfChange(ConfChange{})), ConfChange{});
}

TEST(ConfChangeTest, MalformedEncodingIsRejectedWithReason) {
  for (const char* bad : {"", "cc2 auto", "cc1 sideways", "cc1 auto x4",
                          "cc1 auto v0", "cc1 auto vx"}) {
    absl::StatusOr<ConfChange> cc = DecodeConfChange(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(cc.status())) << bad;
  }
}

TEST(ConfChangeTest, SingleVoterChangeIsOneStep) {
  ConfState cs{.voters = {1, 2, 3}};
  absl::StatusOr<ConfState> next =
      ApplyChange(cs, Change({{Type::kAddVoter, 4}}));
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->voters, (std::vector<NodeId>{1, 2, 3, 4}));
  EXPECT_FALSE(next->IsJoint());
}

TEST(ConfChangeTest, LargerChangeGoesThroughJointAndLeaves) {
  ConfState cs{.voters = {1, 2, 3}};
  absl::StatusOr<ConfState> joint =
      ApplyChange(cs, Change({{Type::kAddVoter, 4}, {Type::kRemoveNode, 1}}));
  ASSERT_TRUE(joint.ok());
  EXPECT_EQ(joint->voters, (std::vector<NodeId>{2, 3, 4}));
  EXPECT_EQ(joint->voters_outgoing, (std::vector<NodeId>{1, 2, 3}));
  EXPECT_TRUE(joint->auto_leave);
  // No other change while joint.
  EXPECT_TRUE(absl::IsFailedPrecondition(
      ApplyChange(*joint, Change({{Type::kAddLearner, 9}})).status()));
  absl::StatusOr<ConfState> left = ApplyChange(*joint, ConfChange{});
  ASSERT_TRUE(left.ok());
  EXPECT_FALSE(left->IsJoint());
  EXPECT_FALSE(left->auto_leave);
  EXPECT_EQ(left->voters, (std::vector<NodeId>{2, 3, 4}));
}

TEST(ConfChangeTest, ExplicitJointWaitsForLeave) {
  ConfState cs{.voters = {1, 2, 3}};
  absl::StatusOr<ConfState> joint = ApplyChange(
      cs, Change({{Type::kAddVoter, 4}}, ConfChange::Transition::kJoint));
  ASSERT_TRUE(joint.ok());
  EXPECT_TRUE(joint->IsJoint());
  EXPECT_FALSE(joint->auto_leave);
}

TEST(ConfChangeTest, LearnersAndPromotion) {
  ConfState cs{.voters = {1, 2, 3}};
  ConfState with_learner = *ApplyChange(cs, Change({{Type::kAddLearner, 4}}));
  EXPECT_TRUE(with_learner.IsLearner(4));
  EXPECT_FALSE(with_learner.IsVoter(4));
  ConfState promoted =
      *ApplyChange(with_learner, Change({{Type::kAddVoter, 4}}));
  EXPECT_TRUE(promoted.IsVoter(4));
  EXPECT_FALSE(promoted.IsLearner(4));
  // Demoting a voter straight to learner is refused with a way out.
  absl::Status demote =
      ApplyChange(promoted, Change({{Type::kAddLearner, 4}})).status();
  EXPECT_TRUE(absl::IsInvalidArgument(demote));
  EXPECT_NE(demote.message().find("remove it"), std::string::npos);
}

TEST(ConfChangeTest, RefusesNoVotersAndStrayLeave) {
  ConfState cs{.voters = {1}};
  EXPECT_TRUE(absl::IsInvalidArgument(
      ApplyChange(cs, Change({{Type::kRemoveNode, 1}})).status()));
  EXPECT_TRUE(
      absl::IsFailedPrecondition(ApplyChange(cs, ConfChange{}).status()));
}

}  // namespace
}  // namespace tally::raft
