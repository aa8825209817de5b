#include "kv/server/internal/group_registry.h"

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kv/storage/leveldb_engine.h"

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

}  // namespace
}  // namespace tally::kv::server
