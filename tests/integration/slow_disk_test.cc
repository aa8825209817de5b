// One node's disk slowed (its fsync and fdatasync made slow by the
// slow_sync library, preloaded into every node): the leader whose syncs
// hold up its groups hands them to followers, while a disk slow on every
// node moves nothing. Prints the 99th percentile of linearizable reads in
// each phase, with the hand-off (the default) and without
// (--slow-disk-factor 0); docs/performance.md has the figures. And a disk
// whose syncs fail: the node stops, and nothing acknowledged is lost.
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
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

  void ExpectFaultStopsTheNode(const std::string& control,
                               const std::string& error);

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

// A storage fault on the data leader (`control`: for its slow_sync control
// file) while a client writes: the node stops, saying why in its log (a
// critical line with `error`), the others serve on, no acknowledged write is
// lost, and the node restarted catches up.
void SlowDiskTest::ExpectFaultStopsTheNode(const std::string& control,
                                           const std::string& error) {
  ASSERT_TRUE(Start());
  int failing = 0;  // the data leader, once elected
  for (int i = 0; i < 100 && failing == 0; ++i) {
    failing = DataLeader();
    if (failing == 0) std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_NE(failing, 0) << "no leader of the data's range within 10 s";
  const int pid = cluster_->Pid(failing);
  std::mutex mu;
  std::vector<std::string> acked;
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      const std::string key = absl::StrCat("fault/", i);
      if (client_->Put(key, key).ok()) {
        std::lock_guard<std::mutex> l(mu);
        acked.push_back(key);
      }
    }
  });
  std::this_thread::sleep_for(milliseconds(500));
  std::ofstream(absl::StrCat(dir_, "/sync.", pid)) << control << "\n";
  EXPECT_TRUE(testing::TestCluster::WaitForExit(pid, seconds(10)))
      << "n" << failing << " went on after " << error;
  size_t at_stop = 0;
  {
    std::lock_guard<std::mutex> l(mu);
    at_stop = acked.size();
  }
  std::this_thread::sleep_for(seconds(3));
  stop = true;
  writer.join();
  EXPECT_GT(acked.size(), at_stop) << "no write acknowledged without it";

  std::ifstream in(cluster_->LogPath(failing));
  const std::string log((std::istreambuf_iterator<char>(in)),
                        std::istreambuf_iterator<char>());
  EXPECT_TRUE(log.find("[critical]") != std::string::npos &&
              log.find(error) != std::string::npos)
      << "its log (" << log.size() << " bytes) does not say why it stopped:\n"
      << log.substr(log.size() > 2000 ? log.size() - 2000 : 0);

  std::filesystem::remove(absl::StrCat(dir_, "/sync.", pid));
  ASSERT_TRUE(cluster_->Start());
  size_t missing = 0;
  for (const std::string& key : acked) {
    auto got = client_->Get(key);
    if (!got.ok() || got->kv().value() != key) ++missing;
  }
  EXPECT_EQ(missing, 0u);
  // The restarted node has the last of them.
  auto direct = cluster_->ClientOptions();
  direct.endpoints = {direct.endpoints[static_cast<size_t>(failing - 1)]};
  auto c = client::Client::Connect(direct);
  ASSERT_TRUE(c.ok()) << c.status();
  bool caught_up = false;
  for (int i = 0; i < 100 && !caught_up; ++i) {
    auto got = (*c)->Get(acked.back(), rpc::SERIALIZABLE);
    caught_up = got.ok() && got->kv().value() == acked.back();
    if (!caught_up) std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_TRUE(caught_up) << "n" << failing << " did not catch up";
  std::printf(
      "n%d stopped on \"%s\"; %zu acknowledged puts (%zu after it "
      "stopped), %zu missing; it caught up once restarted\n",
      failing, error.c_str(), acked.size(), acked.size() - at_stop, missing);
}

// An fsync that fails is never ignored: Linux may have dropped the pages it
// could not write, so a later fsync that succeeds proves nothing.
TEST_F(SlowDiskTest, AFailedSyncStopsTheNodeAndLosesNoAcknowledgedWrite) {
  ExpectFaultStopsTheNode("-5", "Input/output error");  // fsync: EIO
}

// A full disk: writes to the node's files fail with ENOSPC.
TEST_F(SlowDiskTest, AFullDiskStopsTheNodeAndLosesNoAcknowledgedWrite) {
  ExpectFaultStopsTheNode("0 -28", "No space left on device");
}

}  // namespace
}  // namespace tally
