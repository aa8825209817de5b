#ifndef TALLY_UTIL_WAKER_H_
#define TALLY_UTIL_WAKER_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace tally::util {

// The steady-clock time at which the wall-clock time `at` comes, counted
// from now (at most a day ahead). Deadlines arrive as wall-clock times (gRPC
// gives them so); waits on them run by this, so a wall clock stepped
// afterwards moves none.
inline std::chrono::steady_clock::time_point SteadyAt(
    std::chrono::system_clock::time_point at) {
  const auto in = std::clamp<std::chrono::system_clock::duration>(
      at - std::chrono::system_clock::now(), {}, std::chrono::hours(24));
  return std::chrono::steady_clock::now() +
         std::chrono::duration_cast<std::chrono::steady_clock::duration>(in);
}

// A sleep by the steady clock that another thread can cut short.
//
// absl::Mutex's and absl::CondVar's timed waits end at a wall-clock
// deadline (in the abseil this builds with): a wall clock stepped back
// while a thread waits, or one set ahead of the kernel's (libfaketime),
// stretches the wait by as much. The timers that keep a node live (the
// raft tick, leader duties, lease keep-alives) sleep here instead:
// std::condition_variable waits by the steady clock.
//
// Thread safety: every method may be called from any thread.
class Waker {
 public:
  using Clock = std::chrono::steady_clock;

  // Ends the current Sleep, or else the next one, at once.
  void Wake() {
    {
      std::lock_guard<std::mutex> l(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }
  // Ends every Sleep, now and from now on, at once.
  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopped_ = true;
    }
    cv_.notify_all();
  }
  // Sleeps until `until`, or until woken or stopped. Returns whether
  // stopped.
  bool SleepUntil(Clock::time_point until) {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait_until(l, until, [this] { return woken_ || stopped_; });
    woken_ = false;
    return stopped_;
  }
  bool SleepFor(Clock::duration d) { return SleepUntil(Clock::now() + d); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool stopped_ = false;
};

}  // namespace tally::util

#endif  // TALLY_UTIL_WAKER_H_
