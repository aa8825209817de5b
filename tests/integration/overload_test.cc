// Overload through real nodes: what a node refuses is not applied, what it
// acknowledges is; a caller's deadline stops a call before it is sent, and
// ends its wait for a session.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

TEST(OverloadTest, RefusedWritesAreNotAppliedAndAcknowledgedOnesAre) {
  // One write admitted at a time: concurrent writers are refused.
  testing::TestCluster cluster("", "--max-inflight-writes 1");
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.retry_budget = 0;  // the floor only: most refusals reach the caller
  opts.throttle = 0;
  auto c = client::Client::Connect(opts);
  ASSERT_TRUE(c.ok());
  client::Client& client = **c;
  ASSERT_TRUE(client.Put("warm", "up").ok());

  constexpr int kWriters = 32, kWrites = 10;
  absl::Mutex mu;
  std::map<std::string, absl::StatusCode> outcome;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; i < kWrites; ++i) {
        const std::string key = absl::StrCat("ov/", w, "-", i);
        absl::StatusCode code = client.Put(key, "x").status().code();
        absl::MutexLock l(&mu);
        outcome[key] = code;
      }
    });
  }
  for (auto& t : writers) t.join();

  int ok = 0, refused = 0;
  for (const auto& [key, code] : outcome) {
    ok += code == absl::StatusCode::kOk;
    refused += code == absl::StatusCode::kResourceExhausted;
  }
  EXPECT_GT(refused, 0) << "no write was refused: nothing was tested";
  EXPECT_GT(ok, 0);
  const client::CallStats stats = client.call_stats();
  EXPECT_GT(stats.retries_refused, 0u);
  // The refusals shrank what the client keeps in flight to the leader.
  double least = client::internal::InFlightLimit::Options{}.initial;
  for (const auto& [address, limit] : stats.in_flight_limits) {
    least = std::min(least, limit);
  }
  EXPECT_LT(least, client::internal::InFlightLimit::Options{}.initial);

  auto all = client.Scan("ov/", "ov0", 0);
  ASSERT_TRUE(all.ok()) << all.status();
  std::map<std::string, int64_t> stored;
  for (const auto& kv : *all) stored[kv.key()] = kv.version();
  for (const auto& [key, code] : outcome) {
    if (code == absl::StatusCode::kOk) {
      EXPECT_EQ(stored.count(key), 1u) << key << " acknowledged, not stored";
      EXPECT_EQ(stored[key], 1) << key;
    } else if (code == absl::StatusCode::kResourceExhausted) {
      EXPECT_EQ(stored.count(key), 0u) << key << " refused, yet stored";
    }
  }
}

TEST(OverloadTest, ACallPastItsCallersDeadlineIsNotSent) {
  testing::TestCluster cluster;
  ASSERT_TRUE(cluster.Start());
  auto c = client::Client::Connect(cluster.ClientOptions());
  ASSERT_TRUE(c.ok());
  client::Client& client = **c;
  ASSERT_TRUE(client.Put("k", "1").ok());
  const uint64_t attempts = client.call_stats().attempts;
  {
    client::ScopedDeadline d(std::chrono::system_clock::now() -
                             std::chrono::milliseconds(1));
    auto r = client.Put("k", "2");
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded)
        << r.status();
  }
  EXPECT_EQ(client.call_stats().attempts, attempts);
  auto got = client.Get("k");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kv().value(), "1");
}

// The client opens at most 64 sessions of a shard at once; a write that
// finds them all being opened waits for one. With every node paused, 64
// writers are opening sessions for as long as the client's timeout; a
// 65th write under a caller's deadline of 200 ms ends by then all the same.
TEST(OverloadTest, AWriteWaitingForASessionEndsByItsCallersDeadline) {
  testing::TestCluster cluster;
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions o = cluster.ClientOptions();
  o.timeout = std::chrono::seconds(4);
  auto c = client::Client::Connect(o);
  ASSERT_TRUE(c.ok()) << c.status();
  client::Client& client = **c;
  // The range map, and no session yet.
  auto got = client.Get("k");
  ASSERT_TRUE(got.ok() || absl::IsNotFound(got.status())) << got.status();
  for (int id = 1; id <= 3; ++id) cluster.Signal(id, SIGSTOP);
  std::vector<std::jthread> openers;
  for (int i = 0; i < 64; ++i) {
    openers.emplace_back(
        [&client, i] { client.Put(absl::StrCat("o", i), "v").IgnoreError(); });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto start = std::chrono::steady_clock::now();
  absl::Status st;
  {
    client::ScopedDeadline d(std::chrono::system_clock::now() +
                             std::chrono::milliseconds(200));
    st = client.Put("k", "1").status();
  }
  const auto took = std::chrono::steady_clock::now() - start;
  for (int id = 1; id <= 3; ++id) cluster.Signal(id, SIGCONT);
  openers.clear();
  EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
  EXPECT_LT(took, std::chrono::seconds(1))
      << "the write took "
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
      << " ms";
}

// The slowest of `n` serializable reads of `key`.
std::chrono::milliseconds SlowestRead(client::Client& c, int n) {
  std::chrono::milliseconds slowest{0};
  for (int i = 0; i < n; ++i) {
    const auto start = std::chrono::steady_clock::now();
    auto r = c.Get("k", rpc::SERIALIZABLE);
    EXPECT_TRUE(r.ok()) << r.status();
    slowest =
        std::max(slowest, std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::steady_clock::now() - start));
  }
  return slowest;
}

// What the slowest of 20 serializable reads takes while n1, the node they
// go to, is paused, with or without hedging; `stats`: the client's counts.
std::chrono::milliseconds SlowestReadWithANodePaused(bool hedge,
                                                     client::CallStats* stats) {
  testing::TestCluster cluster;
  EXPECT_TRUE(cluster.Start());
  // n1 first: the node serializable reads go to until it fails them.
  client::ClientOptions o = cluster.ClientOptions();
  o.hedge_reads = hedge;
  auto c = client::Client::Connect(o);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return {};
  EXPECT_TRUE((*c)->Put("k", "1").ok());
  SlowestRead(**c, 100);  // what the reads take: the hedge's delay
  cluster.Signal(1, SIGSTOP);
  const std::chrono::milliseconds slowest = SlowestRead(**c, 20);
  cluster.Signal(1, SIGCONT);
  *stats = (*c)->call_stats();
  return slowest;
}

// Also run with the client's wall clock 15 minutes ahead of the kernel's
// (hedged_read_wall_clock_ahead_test): the delay is timed by the steady
// clock.
TEST(OverloadTest, AHedgedReadCostsAPausedNodeItsDelay) {
  client::CallStats stats;
  const std::chrono::milliseconds slowest =
      SlowestReadWithANodePaused(true, &stats);
  std::cout << "slowest serializable read with n1 paused, hedged: "
            << slowest.count() << " ms (" << stats.hedged << " hedged, "
            << stats.hedges_won << " won)\n";
  EXPECT_GE(stats.hedges_won, 1u);
  EXPECT_LT(slowest.count(), 500);
}

TEST(OverloadTest, AnUnhedgedReadToAPausedNodeWaitsForItsAttemptTimeout) {
  client::CallStats stats;
  const std::chrono::milliseconds slowest =
      SlowestReadWithANodePaused(false, &stats);
  std::cout << "slowest serializable read with n1 paused, not hedged: "
            << slowest.count() << " ms\n";
  EXPECT_EQ(stats.hedged, 0u);
  // The read goes elsewhere only once its first attempt has timed out.
  EXPECT_GE(slowest.count(), 1000);
}

// Two answers of a lock that are the cluster's decision, not a failure to
// reach it: a wait that ran out (DEADLINE_EXCEEDED, withdrawn through the
// log) and a wait refused because the lock's queue is full
// (RESOURCE_EXHAUSTED, not overload). The caller gets each at once; the
// client neither retries them nor takes them as congestion.
TEST(OverloadTest, ALockWaitThatRunsOutOrFindsTheQueueFullIsNotRetried) {
  using std::chrono::milliseconds;
  using Clock = std::chrono::steady_clock;
  testing::TestCluster cluster;
  ASSERT_TRUE(cluster.Start());
  auto c = client::Client::Connect(cluster.ClientOptions());
  ASSERT_TRUE(c.ok());
  client::Client& client = **c;
  auto lease = client.GrantLease(std::chrono::seconds(60));
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto held = client.Acquire("q", lease->id(), milliseconds(0));
  ASSERT_TRUE(held.ok() && held->acquired()) << held.status();

  // 64 waiters with the largest value a lock takes (64 KiB) fill the
  // queue's 4 MiB. One at a time: sent together, their 4 MiB would be
  // shed as overload, which is not what this test is about.
  constexpr int kWaiters = 64;
  constexpr auto kWait = milliseconds(6'000);
  const std::string value(64 * 1024, 'v');
  absl::Mutex mu;
  std::vector<std::pair<absl::Status, Clock::duration>> waited;
  // Joined however the test ends: a thread left running would abort the
  // process before the cluster is stopped, leaving its nodes behind.
  std::vector<std::jthread> waiters;
  int queued = 0;
  absl::Status inspected;
  const auto until = Clock::now() + kWait - milliseconds(2'000);
  while (queued < kWaiters && Clock::now() < until) {
    if (static_cast<int>(waiters.size()) == queued) {
      waiters.emplace_back([&] {
        const auto start = Clock::now();
        absl::Status st =
            client.Acquire("q", lease->id(), kWait, value).status();
        absl::MutexLock l(&mu);
        waited.emplace_back(st, Clock::now() - start);
      });
    }
    auto seen = client.Inspect("q");
    inspected = seen.status();
    if (seen.ok()) queued = seen->waiters_size();
  }
  ASSERT_EQ(queued, kWaiters) << inspected;

  const client::CallStats before = client.call_stats();
  const auto sent = Clock::now();
  auto refused = client.Acquire("q", lease->id(), kWait, value);
  const auto took = Clock::now() - sent;
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted)
      << refused.status();
  EXPECT_NE(refused.status().message().find("64 waiters already"),
            std::string::npos)
      << refused.status();
  EXPECT_LT(took, milliseconds(1'000)) << "answered late: retried";
  const client::CallStats after = client.call_stats();
  EXPECT_EQ(after.attempts, before.attempts + 1);
  for (const auto& [address, limit] : after.in_flight_limits) {
    EXPECT_GE(limit, before.in_flight_limits.at(address))
        << address << ": a full queue taken as congestion";
  }

  for (auto& t : waiters) t.join();
  for (const auto& [st, wait] : waited) {
    EXPECT_EQ(st.code(), absl::StatusCode::kDeadlineExceeded) << st;
    EXPECT_NE(st.message().find("not acquired within"), std::string::npos)
        << st;
    EXPECT_LT(wait, kWait + milliseconds(1'000)) << "waited again: retried";
  }
}

}  // namespace
}  // namespace tally
