// A lease across a leader failover: granted with a 10 s TTL, the metadata
// group's leader killed (kill -9) at 5 s. The lease must end neither before
// 10 s nor after 10 s plus the failover bound of docs/guarantees.md (the
// longest election timeout, the leader's duty period and a commit). Its
// actual end is when a waiter on a lock it held gets the lock.

#include <chrono>
#include <cstdio>
#include <thread>

#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr auto kTtl = milliseconds(10'000);
// The longest randomized election timeout (2 x 10 ticks of 50 ms), the
// leader's duty period (100 ms) and 400 ms for commits and answers.
constexpr auto kFailoverBound = milliseconds(1'000 + 100 + 400);

double Seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

TEST(LeaseFailoverTest, LeaseOutlivesALeaderKillByNoMoreThanTheBound) {
  testing::TestCluster cluster;
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.timeout = std::chrono::seconds(10);
  auto c = client::Client::Connect(opts);
  ASSERT_TRUE(c.ok());
  client::Client& client = **c;
  auto waiter_lease = client.GrantLease(std::chrono::seconds(60));
  ASSERT_TRUE(waiter_lease.ok()) << waiter_lease.status();

  // Sent before the grant: the lease's TTL starts no earlier than this.
  const Clock::time_point sent = Clock::now();
  auto lease = client.GrantLease(kTtl);
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto held = client.Acquire("failover", lease->id(), milliseconds(0));
  ASSERT_TRUE(held.ok() && held->acquired());

  // The waiter gets the lock when the lease ends.
  Clock::time_point ended;
  std::thread waiter([&] {
    auto w = client.Acquire("failover", waiter_lease->id(),
                            std::chrono::seconds(30));
    ended = Clock::now();
    EXPECT_TRUE(w.ok() && w->acquired()) << w.status();
  });

  std::this_thread::sleep_until(sent + milliseconds(5'000));
  const int leader = cluster.Leader(1);
  ASSERT_NE(leader, 0);
  cluster.Kill(leader);
  const Clock::time_point killed = Clock::now();

  // The new leader's view of the lease.
  absl::StatusOr<rpc::LeaseTimeToLiveResponse> ttl;
  do {
    ttl = client.LeaseTimeToLive(lease->id());
  } while (!ttl.ok() && Clock::now() < killed + std::chrono::seconds(4));
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  const double asked = Seconds(Clock::now() - sent);
  const double expected_end = asked + ttl->remaining_ms() / 1000.0;
  std::printf(
      "leader n%d killed at %.3f s; TimeToLive from n%lu at %.3f s: TTL %ld "
      "ms, remaining %ld ms (ends at %.3f s)\n",
      leader, Seconds(killed - sent),
      static_cast<unsigned long>(ttl->header().node()), asked,
      static_cast<long>(ttl->ttl_ms()), static_cast<long>(ttl->remaining_ms()),
      expected_end);
  EXPECT_EQ(ttl->ttl_ms(), kTtl.count());
  EXPECT_GE(expected_end, Seconds(kTtl) - 0.05) << "TimeToLive cut short";

  waiter.join();
  const double end = Seconds(ended - sent);
  std::printf(
      "lease ended (the waiter got the lock) at %.3f s; bound [%.3f, "
      "%.3f] s\n",
      end, Seconds(kTtl), Seconds(kTtl + kFailoverBound));
  EXPECT_GE(end, Seconds(kTtl)) << "the lease ended early";
  EXPECT_LE(end, Seconds(kTtl + kFailoverBound)) << "the lease ended late";
}

}  // namespace
}  // namespace tally
