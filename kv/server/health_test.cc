#include "kv/server/internal/health.h"

#include "gtest/gtest.h"

namespace tally::kv::server {
namespace {

raft::host::GroupInfo Group(uint64_t id, raft::NodeId leader,
                            raft::Index commit = 10, raft::Index applied = 10) {
  raft::host::GroupInfo g;
  g.group = id;
  g.leader = leader;
  g.commit = commit;
  g.applied = applied;
  return g;
}

TEST(HealthTest, ServesWithALeaderOfTheMetadataGroup) {
  EXPECT_EQ(Unhealthy({Group(1, 2), Group(2, 3)}, 1), std::nullopt);
  // A data group in an election does not take the node out.
  EXPECT_EQ(Unhealthy({Group(1, 2), Group(2, raft::kNoNode)}, 1), std::nullopt);
}

TEST(HealthTest, NotWithoutTheMetadataGroupOrItsLeader) {
  EXPECT_NE(Unhealthy({}, 1), std::nullopt);
  EXPECT_NE(Unhealthy({Group(2, 3)}, 1), std::nullopt);
  std::optional<std::string> why =
      Unhealthy({Group(1, raft::kNoNode), Group(2, 3)}, 1);
  ASSERT_NE(why, std::nullopt);
  EXPECT_NE(why->find("no leader of the metadata group"), std::string::npos);
}

TEST(HealthTest, NotWhenApplyingFarBehind) {
  EXPECT_EQ(Unhealthy({Group(1, 2, kHealthyApplyLag + 5, 5)}, 1), std::nullopt);
  std::optional<std::string> why =
      Unhealthy({Group(1, 2), Group(3, 2, kHealthyApplyLag + 6, 5)}, 1);
  ASSERT_NE(why, std::nullopt);
  EXPECT_NE(why->find("group 3 applies far behind"), std::string::npos);
}

}  // namespace
}  // namespace tally::kv::server
