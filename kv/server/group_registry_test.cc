#include "kv/server/internal/group_registry.h"

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kv/storage/leveldb_engine.h"
#include "kv/storage/memory_engine.h"

namespace tally::kv::server {
namespace {

// Issue: the group factory inserted into a plain map on the raft loop while
// gRPC threads read it (a node joining a running cluster opens its groups
// as their leaders reach out, while clients already read from it).
TEST(GroupRegistryTest, GroupsOpenWhileOtherThreadsLookThemUp) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("tally-registry-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto db = storage::LevelDBEngine::Open((dir / "data").string());
  ASSERT_TRUE(db.ok()) << db.status();
  GroupRegistry registry(
      [&](raft::host::GroupId g) { return StateMachine::Open(db->get(), g); });
  constexpr raft::host::GroupId kGroups = 200;
  std::atomic<raft::host::GroupId> opened{0};
  std::atomic<bool> wrong{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&] {
      while (opened.load() < kGroups) {
        const raft::host::GroupId known = opened.load();
        for (raft::host::GroupId g = 1; g <= kGroups; ++g) {
          StateMachine* sm = registry.Find(g);
          if ((g <= known && sm == nullptr) ||
              (sm != nullptr && sm->applied() != 0)) {
            wrong = true;
          }
        }
      }
    });
  }
  for (raft::host::GroupId g = 1; g <= kGroups; ++g) {
    absl::StatusOr<StateMachine*> sm = registry.GetOrOpen(g);
    ASSERT_TRUE(sm.ok()) << sm.status();
    ASSERT_EQ(*registry.GetOrOpen(g), *sm) << "opened twice";
    opened = g;
  }
  for (std::thread& t : readers) t.join();
  EXPECT_FALSE(wrong.load()) << "a reader saw a group missing or mangled";
  db->reset();
  std::filesystem::remove_all(dir);
}

// The leader duties thread asks only WithDuties(), so a group must be there
// whenever it leads with work pending: after winning an election, and after
// an apply pass that grants a lease.
TEST(GroupRegistryTest, GroupsWithLeaderDutiesAreListedUntilTheyHaveNone) {
  storage::MemoryEngine db;
  GroupRegistry registry(
      [&](raft::host::GroupId g) { return StateMachine::Open(&db, g); });
  StateMachine* a = *registry.GetOrOpen(1);
  StateMachine* b = *registry.GetOrOpen(2);
  (void)b;
  auto listed = [&] {
    std::vector<raft::host::GroupId> out;
    for (const auto& [g, sm] : registry.WithDuties()) out.push_back(g);
    return out;
  };
  EXPECT_TRUE(listed().empty());  // leading nothing
  a->OnLeadership(3, true);
  EXPECT_EQ(listed(), std::vector<raft::host::GroupId>{1});  // unknown: ask
  EXPECT_TRUE(a->Due().empty());                             // no leases
  registry.NoDuties(1);
  EXPECT_TRUE(listed().empty());
  kvpb::Command grant;
  grant.mutable_lease_grant()->set_ttl_ms(5'000);
  grant.set_time_ms(a->ProposalTimeMs());
  ASSERT_TRUE(
      a->Apply({{3, 1, raft::EntryType::kNormal, grant.SerializeAsString()}})
          .ok());
  EXPECT_EQ(listed(), std::vector<raft::host::GroupId>{1});
  registry.NoDuties(1);  // still has a lease to expire: stays
  EXPECT_EQ(listed(), std::vector<raft::host::GroupId>{1});
  a->OnLeadership(3, false);
  registry.NoDuties(1);
  EXPECT_TRUE(listed().empty());
}

}  // namespace
}  // namespace tally::kv::server
