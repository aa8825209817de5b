#ifndef TALLY_CLIENT_INTERNAL_OVERLOAD_H_
#define TALLY_CLIENT_INTERNAL_OVERLOAD_H_

// What keeps a client from turning a cluster's slowdown into a retry storm:
// a retry budget and throttling for the whole client, and a circuit breaker
// per endpoint. Each takes the time as an argument, so that tests choose it.

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>

namespace tally::client::internal {

using SteadyClock = std::chrono::steady_clock;

// Retries a client may make a second whatever its share (ClientOptions).
inline constexpr double kRetryFloorPerSecond = 10;

// Two counts over the last 10 s, kept in ten slots of a second.
//
// Thread safety: not thread-safe.
class WindowCounts {
 public:
  static constexpr auto kWindow = std::chrono::seconds(10);
  void Add(SteadyClock::time_point now, uint64_t first, uint64_t second);
  // The sums of both counts over the window ending at `now`.
  std::array<uint64_t, 2> Sum(SteadyClock::time_point now) const;

 private:
  static constexpr int kSlots = 10;
  struct Slot {
    int64_t second = -1;  // which second it counts
    std::array<uint64_t, 2> counts{};
  };
  std::array<Slot, kSlots> slots_;
};

// Retries allowed over a sliding window: `ratio` of the calls made in it,
// plus `floor_per_second` (so that a client making few calls can still
// retry a few). A retry beyond it is not made: the call fails at once with
// its last error. Retries then add at most `ratio` to the load a client
// puts on the cluster, however slow or overloaded the cluster is.
//
// Thread safety: not thread-safe.
class RetryBudget {
 public:
  RetryBudget(double ratio, double floor_per_second)
      : ratio_(ratio),
        floor_(floor_per_second * WindowCounts::kWindow.count()) {}

  // A call (its first attempt) was made.
  void Called(SteadyClock::time_point now) { counts_.Add(now, 1, 0); }
  // Takes one retry; false when the budget is spent.
  bool Withdraw(SteadyClock::time_point now);

 private:
  const double ratio_;
  const double floor_;
  WindowCounts counts_;  // calls, retries
};

// How many calls a client keeps in flight to one node, found much as TCP
// finds its congestion window (additive increase, multiplicative
// decrease). The limit grows while the node answers with the limit in use:
// by one per answer as long as the node answers about as fast as it ever
// has and has never been congested (so the limit doubles per round of
// answers until calls start to queue), by one per round of answers after
// that. It shrinks by `decrease` when the node refuses a call as
// overloaded, once per round: answers to calls sent before the last
// decrease do not decrease it again. A slow answer, or none in time, is no
// sign: the slowest answers of a node that keeps up would otherwise shrink
// the limit until it could not (its admission knows its queue, and refuses
// what it cannot serve in time). The node then receives about what it
// admits, and what a client offers beyond waits in the client (CallGate),
// where waiting costs the node nothing.
//
// Thread safety: not thread-safe.
class InFlightLimit {
 public:
  struct Options {
    double initial = 256;
    double least = 4;
    double most = 100000;
    double decrease = 0.8;
  };
  InFlightLimit() : InFlightLimit(Options{}) {}
  explicit InFlightLimit(Options o) : o_(o), limit_(o.initial) {}

  bool HasRoom() const { return static_cast<double>(in_flight_) < limit_; }
  // A call is sent: its sequence number, for Answered.
  uint64_t Sent() {
    ++in_flight_;
    return ++sent_;
  }
  // The call `seq` was answered (or failed) `latency` after it was sent;
  // `congested`: refused as overloaded.
  void Answered(uint64_t seq, bool congested,
                std::chrono::microseconds latency);

  double limit() const { return limit_; }
  size_t in_flight() const { return in_flight_; }

 private:
  const Options o_;
  double limit_;
  size_t in_flight_ = 0;
  uint64_t sent_ = 0;
  // Calls sent up to this one were sent before the last decrease.
  uint64_t decreased_after_ = 0;
  bool congested_ever_ = false;
  std::chrono::microseconds fastest_ = std::chrono::microseconds::max();
};

// The calls to one node held to its InFlightLimit. A call finding no room
// waits for one until its deadline; the newest waiter is let through first,
// so that under overload the calls sent are those with the most time left
// to be served in, and those that waited longest fail in the client,
// unsent, instead of reaching the node too late to be of use. At most
// kWaitingPerPlace waiters per place in the limit wait: a call beyond
// fails the oldest waiter at once, rather than keep thousands of threads
// waiting (and waking) for places that cannot come in time. A wait is
// timed by the steady clock (std::condition_variable; absl's timed waits
// end at a wall-clock time, which a clock stepped back would postpone).
//
// Thread safety: thread-safe.
class CallGate {
 public:
  using Clock = std::chrono::system_clock;
  static constexpr double kWaitingPerPlace = 4;
  explicit CallGate(InFlightLimit::Options o = {}) : limit_(o) {}

  // The call's sequence number once it may be sent; nullopt when
  // `deadline` (a wall-clock time, counted from its distance to now) came
  // first or newer calls took its place in the waiting list (the call is
  // not sent).
  std::optional<uint64_t> Enter(Clock::time_point deadline);
  void Leave(uint64_t seq, bool congested, std::chrono::microseconds latency);

  struct State {
    double limit = 0;
    size_t in_flight = 0;
    size_t waiting = 0;
  };
  State state() const;

 private:
  struct Waiter {
    std::condition_variable cv;
    std::optional<uint64_t> seq;  // set when let through
    bool dropped = false;         // failed to make way for a newer call
  };
  mutable std::mutex mu_;
  // Guarded by mu_.
  InFlightLimit limit_;
  std::deque<Waiter*> waiting_;  // newest last
};

// Client-side throttling (adaptive, as in Google's SRE book, "Handling
// Overload"): over a sliding window the client counts the attempts it sent
// and those the cluster accepted (answered other than overloaded); once
// attempts exceed `k` times the accepted ones, it refuses a new call itself
// with probability (attempts - k * accepted) / (attempts + 1). An
// overloaded cluster then receives about k times what it can serve instead
// of everything offered, and spends its CPU serving rather than refusing.
//
// Thread safety: not thread-safe.
class Throttle {
 public:
  explicit Throttle(double k) : k_(k) {}

  // The probability of refusing a call now (0 when the cluster keeps up).
  double RefuseProbability(SteadyClock::time_point now) const;
  // An attempt was answered: `accepted` unless the node said it was
  // overloaded (or did not answer in time).
  void Answered(SteadyClock::time_point now, bool accepted) {
    counts_.Add(now, 1, accepted ? 1 : 0);
  }

 private:
  const double k_;
  WindowCounts counts_;  // attempts, accepted
};

// A circuit breaker for one endpoint. Closed: calls go through. After
// `failures_to_open` failures in a row (the node could not be reached),
// open: calls skip the endpoint for a second. Then half-open: one call goes
// through as a probe; an answer closes the breaker, a failure opens it again
// for twice as long (up to kMostOpen).
//
// Thread safety: not thread-safe.
class CircuitBreaker {
 public:
  enum class State { kClosed, kOpen, kHalfOpen };
  static constexpr auto kFirstOpen = std::chrono::milliseconds(1000);
  static constexpr auto kMostOpen = std::chrono::milliseconds(30000);

  explicit CircuitBreaker(int failures_to_open)
      : failures_to_open_(failures_to_open) {}

  // Whether a call may go to the endpoint now; in half-open state, true
  // for the probe only (and again if the probe has not reported within the
  // open time).
  bool Allow(SteadyClock::time_point now);
  // The endpoint answered (whatever the answer).
  void Answered();
  // The endpoint did not answer.
  void Failed(SteadyClock::time_point now);
  State state() const { return state_; }

 private:
  const int failures_to_open_;
  State state_ = State::kClosed;
  int failures_ = 0;
  std::chrono::milliseconds open_for_ = kFirstOpen;
  // Open: until when. Half-open: when the probe was let through.
  SteadyClock::time_point since_;
};

const char* BreakerStateName(CircuitBreaker::State s);

// A quantile of the last kSamples latencies recorded: when to hedge a read
// (send it to a second node) because the first has not answered.
//
// Thread safety: not thread-safe.
class LatencyQuantile {
 public:
  static constexpr size_t kSamples = 256;
  // Fewer samples than this: no estimate.
  static constexpr size_t kLeastSamples = 20;

  explicit LatencyQuantile(double q) : q_(q) {}
  void Add(std::chrono::microseconds latency);
  // The quantile of the samples, or zero while there are too few.
  std::chrono::microseconds Get();

 private:
  const double q_;
  std::array<int64_t, kSamples> samples_{};
  size_t count_ = 0;  // recorded, ever
  // Recomputed every kSamples / 8 samples.
  int64_t cached_ = 0;
  size_t cached_at_ = 0;
};

}  // namespace tally::client::internal

#endif  // TALLY_CLIENT_INTERNAL_OVERLOAD_H_
