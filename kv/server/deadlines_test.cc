// The server's call timers run by the steady clock: a wall clock stepped
// forward ends no call early. ctest runs this under libfaketime
// (deadlines_wall_clock_test), which reads the wall clock's offset from
// FAKETIME_TIMESTAMP_FILE; without it, the test is skipped.

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
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

TEST(DeadlinesTest, AWallClockSteppedForwardEndsNoCallEarly) {
  const char* file = std::getenv("FAKETIME_TIMESTAMP_FILE");
  if (file == nullptr) {
    GTEST_SKIP() << "runs under libfaketime: ctest -R deadlines_wall_clock";
  }
  // How far the wall clock is ahead of the steady one.
  auto wall_ahead = [] {
    return Wall::now().time_since_epoch() - Steady::now().time_since_epoch();
  };
  // libfaketime reads the offset from the file at most once a second.
  auto set_wall_offset = [&](const char* offset) {
    std::ofstream(file) << offset << "\n";
  };
  struct Restore {
    std::function<void()> fn;
    ~Restore() { fn(); }
  } restore{[&] { set_wall_offset("+0"); }};

  Deadlines deadlines;
  std::atomic<bool> expired{false};
  const Steady::time_point registered = Steady::now();
  const auto ahead_then = wall_ahead();
  deadlines.At(Wall::now() + 4s, [&] { expired = true; });

  // 900 s past the offset in effect (ctest's file starts as "+0", but a
  // run killed midway leaves its own).
  long now_offset = 0;
  std::ifstream(file) >> now_offset;
  set_wall_offset(("+" + std::to_string(now_offset + 900)).c_str());
  while (wall_ahead() - ahead_then < 800s && Steady::now() < registered + 3s) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_GT(wall_ahead() - ahead_then, 800s) << "the wall clock did not move";
  // A call registered after the step wakes the timer thread, which then
  // looks at the clock.
  std::atomic<bool> woke{false};
  deadlines.At(Wall::now() + 10ms, [&] { woke = true; });
  ASSERT_TRUE(WaitFor(woke, 2s));
  EXPECT_FALSE(expired) << "a 4 s timer ended by a wall clock stepped 900 s";

  ASSERT_TRUE(WaitFor(expired, 4s));
  EXPECT_GE(Steady::now() - registered, 4s - 50ms);
}

}  // namespace
}  // namespace tally::kv::server
