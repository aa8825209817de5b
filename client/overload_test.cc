#include "client/internal/overload.h"

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
