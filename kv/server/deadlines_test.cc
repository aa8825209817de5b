// The server's call timers and its blocking waits on a call's deadline run
// by the steady clock: a wall clock stepped either way ends no call early and
// keeps none past its deadline. ctest runs these under libfaketime
// (deadlines_wall_clock_test), which reads the wall clock's offset from
// FAKETIME_TIMESTAMP_FILE; without it, they are skipped.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include "gtest/gtest.h"
#include "kv/server/internal/reply.h"

namespace tally::kv::server {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;
using Wall = std::chrono::system_clock;

bool WaitFor(const std::atomic<bool>& flag, Steady::duration limit) {
  const auto until = Steady::now() + limit;
  while (!flag && Steady::now() < until) std::this_thread::sleep_for(10ms);
  return flag;
}

// How far the wall clock is ahead of the steady one.
Steady::duration WallAhead() {
  return Wall::now().time_since_epoch() - Steady::now().time_since_epoch();
}

// The wall clock's offset in libfaketime's file, in seconds, and put back
// to "+0" when the test ends.
class WallOffset {
 public:
  explicit WallOffset(const char* file) : file_(file) {}
  ~WallOffset() { Set(0); }

  long Now() const {
    long offset = 0;
    std::ifstream(file_) >> offset;
    return offset;
  }
  // libfaketime reads the file at most once a second: returns once the
  // wall clock has moved by most of the change (false after 3 s).
  bool Set(long seconds) {
    const long change = seconds - Now();
    const Steady::duration before = WallAhead();
    std::ofstream(file_) << (seconds < 0 ? "" : "+") << seconds << "\n";
    const auto until = Steady::now() + 3s;
    auto moved = [&] {
      const auto by =
          std::chrono::duration_cast<std::chrono::seconds>(WallAhead() - before)
              .count();
      return std::abs(by - change) < std::abs(change) / 10 + 1;
    };
    while (!moved() && Steady::now() < until) std::this_thread::sleep_for(10ms);
    return moved();
  }

 private:
  const std::string file_;
};

TEST(DeadlinesTest, ACancelledTimerNeverRuns) {
  Deadlines deadlines;
  std::atomic<bool> cancelled_ran{false};
  std::atomic<bool> other_ran{false};
  const Deadlines::Timer t =
      deadlines.At(Wall::now() + 50ms, [&] { cancelled_ran = true; });
  deadlines.At(Wall::now() + 100ms, [&] { other_ran = true; });
  EXPECT_EQ(deadlines.pending(), 2u);
  deadlines.Cancel(t);
  EXPECT_EQ(deadlines.pending(), 1u);
  ASSERT_TRUE(WaitFor(other_ran, 5s));
  EXPECT_FALSE(cancelled_ran);
  EXPECT_EQ(deadlines.pending(), 0u);
}

TEST(DeadlinesTest, CancellingATimerThatRanChangesNothing) {
  Deadlines deadlines;
  std::atomic<int> runs{0};
  const Deadlines::Timer first = deadlines.At(Wall::now(), [&] { ++runs; });
  // Two timers due at the same time are two timers.
  const auto later = Wall::now() + 60s;
  const Deadlines::Timer a = deadlines.At(later, [&] { ++runs; });
  deadlines.At(later, [&] { ++runs; });
  for (int i = 0; i < 500 && runs == 0; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_EQ(runs, 1);
  deadlines.Cancel(first);
  EXPECT_EQ(deadlines.pending(), 2u);
  deadlines.Cancel(a);
  EXPECT_EQ(deadlines.pending(), 1u);
}

TEST(DeadlinesTest, AWallClockSteppedForwardEndsNoCallEarly) {
  const char* file = std::getenv("FAKETIME_TIMESTAMP_FILE");
  if (file == nullptr) {
    GTEST_SKIP() << "runs under libfaketime: ctest -R deadlines_wall_clock";
  }
  WallOffset offset(file);

  Deadlines deadlines;
  std::atomic<bool> expired{false};
  const Steady::time_point registered = Steady::now();
  deadlines.At(Wall::now() + 4s, [&] { expired = true; });

  // 900 s past the offset in effect (ctest's file starts as "+0", but a
  // run killed midway leaves its own).
  ASSERT_TRUE(offset.Set(offset.Now() + 900)) << "the wall clock did not move";
  // A call registered after the step wakes the timer thread, which then
  // looks at the clock.
  std::atomic<bool> woke{false};
  deadlines.At(Wall::now() + 10ms, [&] { woke = true; });
  ASSERT_TRUE(WaitFor(woke, 2s));
  EXPECT_FALSE(expired) << "a 4 s timer ended by a wall clock stepped 900 s";

  ASSERT_TRUE(WaitFor(expired, 4s));
  EXPECT_GE(Steady::now() - registered, 4s - 50ms);
}

// What Node::Read, Write and the other blocking calls do with a call's
// deadline. The wall clock of this process is set 900 s ahead of the
// kernel's, then 900 s behind it: as if it were stepped back, then forward,
// by 900 s right after the deadline was taken. A wait on the wall clock
// would be kept 900 s past its deadline, then end at once.
TEST(DeadlinesTest, AWaitOnADeadlineLastsItsTimeoutWhereverTheWallClockIs) {
  const char* file = std::getenv("FAKETIME_TIMESTAMP_FILE");
  if (file == nullptr) {
    GTEST_SKIP() << "runs under libfaketime: ctest -R deadlines_wall_clock";
  }
  WallOffset offset(file);
  const long start = offset.Now();
  for (long step : {900, -900}) {
    SCOPED_TRACE(testing::Message() << "wall clock " << step << " s away");
    ASSERT_TRUE(offset.Set(start + step)) << "the wall clock did not move";
    std::promise<int> never;
    std::future<int> f = never.get_future();
    std::atomic<bool> returned{false};
    const Steady::time_point began = Steady::now();
    Steady::duration waited{};
    std::thread waiter([&] {
      EXPECT_FALSE(WaitUntil(f, Wall::now() + 1s));
      waited = Steady::now() - began;
      returned = true;
    });
    const bool in_time = WaitFor(returned, 4s);
    if (!in_time) never.set_value(0);  // lets a wait kept past it end
    waiter.join();
    EXPECT_TRUE(in_time) << "a 1 s wait still waiting after 4 s";
    EXPECT_GE(waited, 1s - 50ms);
    EXPECT_LE(waited, 2s);
  }
}

}  // namespace
}  // namespace tally::kv::server
