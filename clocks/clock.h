#ifndef TALLY_CLOCKS_CLOCK_H_
#define TALLY_CLOCKS_CLOCK_H_

#include <cstdint>

namespace tally::clocks {

// Where time comes from: everything that reads a wall clock takes one, so
// tests and simulations can drive time by hand.
//
// Thread safety: implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch. May go backwards (wall clocks do).
  virtual int64_t NowMillis() const = 0;
};

// The system's wall clock.
class SystemClock final : public Clock {
 public:
  int64_t NowMillis() const override;
};

// A clock that moves only when told to.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t now_ms = 0) : now_ms_(now_ms) {}
  int64_t NowMillis() const override { return now_ms_; }
  void Set(int64_t now_ms) { now_ms_ = now_ms; }
  void Advance(int64_t ms) { now_ms_ += ms; }

 private:
  int64_t now_ms_;  // not synchronised: tests drive it from one thread
};

}  // namespace tally::clocks

#endif  // TALLY_CLOCKS_CLOCK_H_
