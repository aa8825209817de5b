// One node's disk slowed (its fsync and fdatasync made slow by the
// slow_sync library, preloaded into every node): the leader whose syncs
// hold up its groups hands them to followers, while a disk slow on every
// node moves nothing. Prints the 99th percentile of linearizable reads in
// each phase, with the hand-off (the default) and without
// (--slow-disk-factor 0); docs/performance.md has the figures.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Each group's leader, as the nodes report it (0: none known).
std::map<uint64_t, int> Leaders(client::Client* c) {
  std::map<uint64_t, int> out;
  for (const std::string& ep : c->endpoints()) {
    absl::StatusOr<rpc::StatusResponse> s = c->Status(ep);
    if (!s.ok()) continue;
    for (const auto& g : s->groups()) {
      out.try_emplace(g.group(), 0);
      if (g.role() == "LEADER") out[g.group()] = static_cast<int>(s->node());
    }
  }
  return out;
}

bool Leads(const std::map<uint64_t, int>& leaders, int node) {
  return std::any_of(leaders.begin(), leaders.end(),
                     [&](const auto& gl) { return gl.second == node; });
}

// Puts all along (so that every node syncs its log), and linearizable
// gets whose latencies are kept, phase by phase.
class Load {
 public:
  explicit Load(client::Client* c) : c_(c) {
    writer_ = std::thread([this] {
      for (int i = 0; !stop_; ++i) {
        c_->Put(absl::StrCat("slow/", i % 100), "v").IgnoreError();
      }
    });
    reader_ = std::thread([this] {
      while (!stop_) {
        const auto start = Clock::now();
        const bool ok = c_->Get("slow/1").ok();
        const double ms =
            std::chrono::duration<double, std::milli>(Clock::now() - start)
                .count();
        std::lock_guard<std::mutex> l(mu_);
        if (ok) latencies_.push_back(ms);
        ++(ok ? ok_ : failed_);
        std::this_thread::sleep_for(milliseconds(5));
      }
    });
  }
  ~Load() {
    stop_ = true;
    writer_.join();
    reader_.join();
  }
  // The 99th percentile of the gets since the last call, in ms, and how
  // many failed.
  std::pair<double, int> Take() {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<double> v = std::move(latencies_);
    latencies_.clear();
    const int failed = failed_;
    failed_ = 0;
    if (v.empty()) return {0, failed};
    std::sort(v.begin(), v.end());
    return {v[std::min(v.size() - 1, v.size() * 99 / 100)], failed};
  }

 private:
  client::Client* c_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<double> latencies_;
  int ok_ = 0, failed_ = 0;
  std::thread writer_, reader_;
};

class SlowDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tally-slow-XXXXXX";
    dir_ = mkdtemp(tmpl);
    // Inherited by the nodes the cluster starts, and by nothing else.
    setenv("TALLY_SLOW_SYNC", (dir_ + "/sync").c_str(), 1);
    setenv("LD_PRELOAD", TALLY_SLOW_SYNC_LIB, 1);
  }
  void TearDown() override {
    client_.reset();
    cluster_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Starts the nodes (with the library preloaded) and connects; false if
  // either fails.
  bool Start(const std::string& kvd_args = "") {
    cluster_ = std::make_unique<testing::TestCluster>("", kvd_args);
    const bool started = cluster_->Start();
    unsetenv("LD_PRELOAD");
    if (!started) return false;
    auto c = client::Client::Connect(cluster_->ClientOptions());
    if (!c.ok()) return false;
    client_ = std::move(*c);
    return true;
  }

  // The node leading the data's range (the group of the highest id: the
  // metadata group is the first).
  int DataLeader() {
    return cluster_->Leader(Leaders(client_.get()).rbegin()->first);
  }

  void SlowDown(int node, int ms) {
    const std::string path = absl::StrCat(dir_, "/sync.", cluster_->Pid(node));
    if (ms == 0) {
      std::filesystem::remove(path);
    } else {
      std::ofstream(path) << ms << "\n";
    }
  }

  std::string dir_;
  std::unique_ptr<testing::TestCluster> cluster_;
  std::unique_ptr<client::Client> client_;
};

constexpr int kSlowMs = 50;

TEST_F(SlowDiskTest,
       TheLeaderWithTheSlowDiskHandsOffAndASharedSlowDiskMovesNothing) {
  ASSERT_TRUE(Start());
  client::Client* c = client_.get();
  Load load(c);
  std::this_thread::sleep_for(seconds(3));
  const auto [before, f0] = load.Take();

  // Every disk slow alike (one disk shared by all): nobody's fault.
  const std::map<uint64_t, int> leaders = Leaders(c);
  for (int n = 1; n <= 3; ++n) SlowDown(n, kSlowMs);
  std::this_thread::sleep_for(seconds(8));
  EXPECT_EQ(Leaders(c), leaders);
  const auto [shared, f1] = load.Take();
  for (int n = 1; n <= 3; ++n) SlowDown(n, 0);
  std::this_thread::sleep_for(seconds(2));
  load.Take();

  // The disk of the node leading the data's group slow: it hands off
  // every group it leads, and does not take them back while slow.
  const int slow = DataLeader();
  ASSERT_NE(slow, 0);
  SlowDown(slow, kSlowMs);
  const auto slowed = Clock::now();
  const auto deadline = slowed + seconds(20);
  while (Leads(Leaders(c), slow) && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(200));
  }
  const double moved_s =
      std::chrono::duration<double>(Clock::now() - slowed).count();
  EXPECT_FALSE(Leads(Leaders(c), slow))
      << "n" << slow << " still leads " << moved_s << " s after its disk "
      << "was slowed";
  const auto [during, f2] = load.Take();
  std::this_thread::sleep_for(seconds(8));
  const auto [after, f3] = load.Take();
  EXPECT_FALSE(Leads(Leaders(c), slow));
  std::printf(
      "p99 of linearizable gets: %.1f ms before; %.1f ms with every disk "
      "slowed by %d ms; %.1f ms for the %.1f s until n%d (leader, its disk "
      "alone slowed) handed off; %.1f ms after (failed gets: %d, %d, %d, "
      "%d)\n",
      before, shared, kSlowMs, during, moved_s, slow, after, f0, f1, f2, f3);
}

TEST_F(SlowDiskTest, WithoutHandOffTheSlowLeaderStaysAndReadsWaitForIt) {
  ASSERT_TRUE(Start("--slow-disk-factor 0"));
  client::Client* c = client_.get();
  Load load(c);
  std::this_thread::sleep_for(seconds(3));
  const auto [before, f0] = load.Take();
  const int slow = DataLeader();
  ASSERT_NE(slow, 0);
  SlowDown(slow, kSlowMs);
  std::this_thread::sleep_for(seconds(10));
  EXPECT_TRUE(Leads(Leaders(c), slow));
  const auto [after, f1] = load.Take();
  std::printf(
      "p99 of linearizable gets without hand-off: %.1f ms before; %.1f ms "
      "with n%d's disk (the leader's) slowed by %d ms (failed gets: %d, "
      "%d)\n",
      before, after, slow, kSlowMs, f0, f1);
}

}  // namespace
}  // namespace tally
