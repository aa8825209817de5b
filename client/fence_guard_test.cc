#include "client/fence_guard.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tally::client {
namespace {

class FenceGuardTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tally-fence-" + std::to_string(getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "resource.fence").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::string path_;
};

TEST_F(FenceGuardTest, AdmitsTokensThatDoNotGoBackAndRemembersAcrossOpens) {
  auto g = FenceGuard::Open(path_);
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_TRUE((*g)->Admit(5).ok());
  EXPECT_TRUE((*g)->Admit(5).ok());  // the same holder again
  absl::Status stale = (*g)->Admit(4);
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(stale.message().find("token 5 was admitted"), std::string::npos)
      << stale;
  EXPECT_TRUE((*g)->Admit(9).ok());
  // Another process (or a restart) sees what was stored.
  auto again = FenceGuard::Open(path_);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*(*again)->Highest(), 9u);
  EXPECT_FALSE((*again)->Admit(7).ok());
}

TEST_F(FenceGuardTest, ConcurrentAdmitsEndAtTheHighestToken) {
  std::vector<std::thread> threads;
  for (uint64_t t = 1; t <= 8; ++t) {
    threads.emplace_back([&, t] {
      auto g = FenceGuard::Open(path_);
      ASSERT_TRUE(g.ok());
      for (uint64_t i = 0; i < 20; ++i) (void)(*g)->Admit(t * 100 + i);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(*(*FenceGuard::Open(path_))->Highest(), 819u);
}

TEST_F(FenceGuardTest, CorruptFileIsDataLossNotAReset) {
  std::ofstream(path_) << "not a token";
  auto g = FenceGuard::Open(path_);
  EXPECT_EQ(g.status().code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace tally::client
