#include "client/internal/overload.h"

#include <optional>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace tally::client::internal {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using State = CircuitBreaker::State;

const SteadyClock::time_point kStart = SteadyClock::time_point(seconds(1000));

TEST(RetryBudgetTest, RetriesStayWithinTheShareOfCallsPlusTheFloor) {
  RetryBudget b(0.1, 1);  // 10 retries of floor over the 10 s window
  for (int i = 0; i < 1000; ++i) b.Called(kStart);
  int retries = 0;
  while (b.Withdraw(kStart)) ++retries;
  EXPECT_EQ(retries, 100 + 10);
}

TEST(RetryBudgetTest, NoShareStillAllowsTheFloor) {
  RetryBudget b(0, 2);
  for (int i = 0; i < 1000; ++i) b.Called(kStart);
  int retries = 0;
  while (b.Withdraw(kStart)) ++retries;
  EXPECT_EQ(retries, 20);
}

TEST(RetryBudgetTest, CallsAndRetriesLeaveTheWindow) {
  RetryBudget b(0.5, 0);
  for (int i = 0; i < 10; ++i) b.Called(kStart);
  int retries = 0;
  while (b.Withdraw(kStart)) ++retries;
  EXPECT_EQ(retries, 5);
  // Nine tenths of the window later both still count.
  EXPECT_FALSE(b.Withdraw(kStart + seconds(9)));
  // A window later they are gone: new calls earn new retries.
  const auto later = kStart + seconds(11);
  EXPECT_FALSE(b.Withdraw(later));
  for (int i = 0; i < 4; ++i) b.Called(later);
  EXPECT_TRUE(b.Withdraw(later));
  EXPECT_TRUE(b.Withdraw(later));
  EXPECT_FALSE(b.Withdraw(later));
}

TEST(ThrottleTest, RefusesNothingWhileTheClusterAcceptsEnough) {
  Throttle t(2);
  for (int i = 0; i < 100; ++i) t.Answered(kStart, i % 2 == 0);  // half
  EXPECT_EQ(t.RefuseProbability(kStart), 0);
}

TEST(ThrottleTest, RefusesWhatExceedsKTimesTheAccepted) {
  Throttle t(2);
  for (int i = 0; i < 100; ++i) t.Answered(kStart, i < 20);
  // (100 - 2 * 20) / 101
  EXPECT_NEAR(t.RefuseProbability(kStart), 60.0 / 101, 1e-9);
  // A window later it is forgotten.
  EXPECT_EQ(t.RefuseProbability(kStart + seconds(11)), 0);
}

// Fills the limit: the sequence numbers of the calls sent.
std::vector<uint64_t> Fill(InFlightLimit& l) {
  std::vector<uint64_t> seqs;
  while (l.HasRoom()) seqs.push_back(l.Sent());
  return seqs;
}

const auto kFast = std::chrono::microseconds(1000);

TEST(InFlightLimitTest, GrowsByOnePerAnswerUntilTheFirstCongestion) {
  InFlightLimit l({.initial = 4});
  EXPECT_EQ(Fill(l).size(), 4u);
  EXPECT_FALSE(l.HasRoom());
  const uint64_t first = 1;
  l.Answered(first, false, kFast);
  EXPECT_EQ(l.limit(), 5);  // one answer: one more
  EXPECT_EQ(Fill(l).size(), 2u);
  EXPECT_EQ(l.in_flight(), 5u);
}

TEST(InFlightLimitTest, GrowsByLessThanOnePerRoundOnceCallsQueue) {
  InFlightLimit l({.initial = 10});
  std::vector<uint64_t> round = Fill(l);
  l.Answered(round[0], false, kFast);
  EXPECT_EQ(l.limit(), 11);
  // More than twice as slow as the fastest answer: the node queues.
  l.Answered(round[1], false, 3 * kFast);
  EXPECT_NEAR(l.limit(), 11 + 1.0 / 11, 1e-9);
  // A slow answer is no congestion: the limit does not shrink.
  l.Answered(round[2], false, 1000 * kFast);
  EXPECT_GT(l.limit(), 11);
}

TEST(InFlightLimitTest, ShrinksOncePerRoundOfCongestionThenGrowsSlowly) {
  InFlightLimit l({.initial = 10, .least = 2, .decrease = 0.5});
  std::vector<uint64_t> round = Fill(l);
  // Every call of the round refused as overloaded: one decrease.
  for (uint64_t seq : round) l.Answered(seq, true, kFast);
  EXPECT_EQ(l.limit(), 5);
  // Calls sent after it count again.
  round = Fill(l);
  ASSERT_EQ(round.size(), 5u);
  l.Answered(round[0], true, kFast);
  EXPECT_EQ(l.limit(), 2.5);
  l.Answered(round[1], true, kFast);
  EXPECT_EQ(l.limit(), 2.5);
  // Never below the least.
  for (uint64_t seq : {round[2], round[3], round[4]})
    l.Answered(seq, false, kFast);
  for (int i = 0; i < 3; ++i) {
    for (uint64_t seq : Fill(l)) l.Answered(seq, true, kFast);
  }
  EXPECT_EQ(l.limit(), 2);
}

TEST(InFlightLimitTest, AfterCongestionGrowsByLessThanOnePerRound) {
  InFlightLimit l({.initial = 10, .decrease = 0.8});
  l.Answered(l.Sent(), true, kFast);
  EXPECT_EQ(l.limit(), 8);
  for (uint64_t seq : Fill(l)) l.Answered(seq, false, kFast);
  EXPECT_GT(l.limit(), 8.4);
  EXPECT_LT(l.limit(), 9);
}

TEST(InFlightLimitTest, DoesNotGrowWhileLittleOfItIsUsed) {
  InFlightLimit l({.initial = 10});
  for (int i = 0; i < 100; ++i)
    l.Answered(l.Sent(), false, kFast);  // one at a time
  EXPECT_EQ(l.limit(), 10);
}

TEST(CallGateTest, AWaiterGetsThePlaceOfACallThatEnds) {
  CallGate g({.initial = 1, .least = 1});
  const auto soon = CallGate::Clock::now() + seconds(10);
  std::optional<uint64_t> first = g.Enter(soon);
  ASSERT_TRUE(first.has_value());
  std::optional<uint64_t> second;
  std::thread t([&] { second = g.Enter(soon); });
  while (g.state().waiting == 0) std::this_thread::yield();
  g.Leave(*first, true, kFast);  // congested: the limit stays at its least
  t.join();
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(g.state().in_flight, 1u);
  EXPECT_EQ(g.state().limit, 1);
}

TEST(CallGateTest, TheNewestWaiterGoesFirstAndTheOthersFailAtTheirDeadline) {
  CallGate g({.initial = 1, .least = 1});
  const auto now = CallGate::Clock::now();
  std::optional<uint64_t> held = g.Enter(now + seconds(10));
  ASSERT_TRUE(held.has_value());
  std::optional<uint64_t> older, newer;
  std::thread a([&] { older = g.Enter(now + milliseconds(300)); });
  while (g.state().waiting < 1) std::this_thread::yield();
  std::thread b([&] { newer = g.Enter(now + seconds(10)); });
  while (g.state().waiting < 2) std::this_thread::yield();
  g.Leave(*held, true, kFast);
  b.join();
  EXPECT_TRUE(newer.has_value());
  a.join();  // its deadline passes while the newer call holds the place
  EXPECT_FALSE(older.has_value());
  EXPECT_EQ(g.state().waiting, 0u);
  EXPECT_EQ(g.state().in_flight, 1u);
}

TEST(CallGateTest, AFullWaitingListFailsItsOldestWaiterAtOnce) {
  CallGate g({.initial = 1, .least = 1});
  const auto later = CallGate::Clock::now() + seconds(60);
  std::optional<uint64_t> held = g.Enter(later);
  ASSERT_TRUE(held.has_value());
  // One place: kWaitingPerPlace waiters, then each newcomer fails the
  // oldest long before its deadline.
  const int kWaiters = static_cast<int>(CallGate::kWaitingPerPlace);
  std::vector<std::optional<uint64_t>> got(kWaiters + 2);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWaiters + 2; ++i) {
    threads.emplace_back([&, i] { got[i] = g.Enter(later); });
    if (i < kWaiters) {
      while (g.state().waiting < static_cast<size_t>(i + 1)) {
        std::this_thread::yield();
      }
    } else {
      threads[i - kWaiters].join();  // failed as this one came
    }
  }
  EXPECT_FALSE(got[0].has_value());
  EXPECT_FALSE(got[1].has_value());
  EXPECT_EQ(g.state().waiting, static_cast<size_t>(kWaiters));
  // The places that come go to the newest.
  g.Leave(*held, false, kFast);
  threads.back().join();
  EXPECT_TRUE(got.back().has_value());
  for (int i = kWaiters + 1; i > 2; --i) {
    g.Leave(*got[i], true, kFast);
    threads[i - 1].join();
    EXPECT_TRUE(got[i - 1].has_value());
  }
}

TEST(CircuitBreakerTest, OpensAfterFailuresInARowOnly) {
  CircuitBreaker b(3);
  b.Failed(kStart);
  b.Failed(kStart);
  b.Answered();  // the run is broken
  b.Failed(kStart);
  b.Failed(kStart);
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_TRUE(b.Allow(kStart));
  b.Failed(kStart);
  EXPECT_EQ(b.state(), State::kOpen);
  EXPECT_FALSE(b.Allow(kStart + milliseconds(999)));
}

TEST(CircuitBreakerTest, HalfOpenLetsOneProbeThroughAndItsAnswerCloses) {
  CircuitBreaker b(1);
  b.Failed(kStart);
  const auto t = kStart + CircuitBreaker::kFirstOpen;
  EXPECT_TRUE(b.Allow(t));
  EXPECT_EQ(b.state(), State::kHalfOpen);
  EXPECT_FALSE(b.Allow(t));  // the probe is out
  EXPECT_FALSE(b.Allow(t + milliseconds(500)));
  b.Answered();
  EXPECT_EQ(b.state(), State::kClosed);
  EXPECT_TRUE(b.Allow(t));
}

TEST(CircuitBreakerTest, AFailedProbeOpensForTwiceAsLongUpToTheMost) {
  CircuitBreaker b(1);
  auto t = kStart;
  b.Failed(t);
  auto open_for = CircuitBreaker::kFirstOpen;
  for (int i = 0; i < 8; ++i) {
    t += open_for;
    ASSERT_TRUE(b.Allow(t));
    b.Failed(t);  // the probe fails
    open_for = std::min<milliseconds>(open_for * 2, CircuitBreaker::kMostOpen);
    EXPECT_FALSE(b.Allow(t + open_for - milliseconds(1))) << i;
  }
  EXPECT_EQ(open_for, CircuitBreaker::kMostOpen);
  t += open_for;
  ASSERT_TRUE(b.Allow(t));
  b.Answered();
  b.Failed(t);  // closed again: opens for the first time's length
  EXPECT_TRUE(b.Allow(t + CircuitBreaker::kFirstOpen));
}

TEST(CircuitBreakerTest, AProbeThatNeverReportsDoesNotKeepTheNodeShut) {
  CircuitBreaker b(1);
  b.Failed(kStart);
  const auto t = kStart + CircuitBreaker::kFirstOpen;
  ASSERT_TRUE(b.Allow(t));
  EXPECT_FALSE(b.Allow(t + milliseconds(10)));
  EXPECT_TRUE(b.Allow(t + CircuitBreaker::kFirstOpen));
}

TEST(LatencyQuantileTest, NoEstimateUntilEnoughSamplesThenTheRecentOnes) {
  using std::chrono::microseconds;
  LatencyQuantile q(0.95);
  for (size_t i = 1; i < LatencyQuantile::kLeastSamples; ++i) {
    q.Add(microseconds(100));
  }
  EXPECT_EQ(q.Get(), microseconds(0));
  // 100 samples 1..100 us: the 95th percentile is 96.
  LatencyQuantile r(0.95);
  for (int i = 1; i <= 100; ++i) r.Add(microseconds(i));
  EXPECT_EQ(r.Get(), microseconds(96));
  // Only the last kSamples count: older, slower samples are forgotten.
  LatencyQuantile s(0.95);
  for (size_t i = 0; i < LatencyQuantile::kSamples; ++i) {
    s.Add(microseconds(1'000'000));
  }
  for (size_t i = 0; i < LatencyQuantile::kSamples; ++i) {
    s.Add(microseconds(50));
  }
  EXPECT_EQ(s.Get(), microseconds(50));
}

}  // namespace
}  // namespace tally::client::internal
