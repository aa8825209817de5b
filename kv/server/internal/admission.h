#ifndef TALLY_KV_SERVER_INTERNAL_ADMISSION_H_
#define TALLY_KV_SERVER_INTERNAL_ADMISSION_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace tally::kv::server {

// The classes of client calls, most important first. Raft traffic (the
// peer service) and lease keep-alive streams never pass through admission:
// they come before every class here.
enum class Priority : uint8_t {
  // Calls that give resources back: lock releases, lease revocations.
  kControl,
  kWrite,
  kRead,
  // Ranges of more than kMaxPointRange keys.
  kScan,
};
inline constexpr size_t kPriorities = 4;
const char* PriorityName(Priority p);
// The class of a call by its method name (RpcStats' names); `write`: it
// proposes a command; `scan`: it reads a long range.
Priority PriorityOf(const char* method, bool write, bool scan);

// Admission control of a node's client calls. Each class has a bound on
// the calls admitted and not yet answered, its queue (to raft, to the read
// threads); beyond it a call is refused at once, before doing any work,
// with RESOURCE_EXHAUSTED and a hint of when to retry. The bound adapts to
// keep the class's calls within a target latency: it shrinks by a tenth
// while their mean latency is above the target, and grows by a twentieth
// (up to its most) while it is below and the bound is half used; so an
// overloaded node keeps a queue it serves in time instead of one whose
// calls all outlive their deadlines. A call whose
// deadline leaves less time than the class's calls take now, while others
// wait: it would most likely be served for nobody. A call whose deadline
// has passed is dropped (DEADLINE_EXCEEDED): its client stopped waiting.
//
// Thread safety: thread-safe.
class Admission {
 public:
  using Clock = std::chrono::system_clock;
  using Steady = std::chrono::steady_clock;
  struct Options {
    // The most calls admitted at once: writes, and as many releases;
    // reads, and as many scans.
    size_t most_writes = 1024;
    size_t most_reads = 4096;
    // The mean latency kept to; scans get five times as much.
    std::chrono::milliseconds target{200};
  };
  // The bound never goes below this many calls.
  static constexpr double kLeastLimit = 8;
  // How often a bound changes, at most.
  static constexpr auto kAdjustEvery = std::chrono::milliseconds(50);
  explicit Admission(Options options);

  // OK: admitted (Release it when answered). RESOURCE_EXHAUSTED: the
  // class is full, or `deadline` is nearer than its calls take.
  // DEADLINE_EXCEEDED: `deadline` has passed.
  absl::Status Admit(Priority p, Clock::time_point deadline);
  // An admitted call was answered `seconds` after it was admitted, at
  // `now`.
  void Release(Priority p, double seconds, Steady::time_point now);
  void Release(Priority p, double seconds) {
    Release(p, seconds, Steady::now());
  }
  // When a refused call of class `p` should come back: the time an admitted
  // call of that class takes now (a moving average), so that retries
  // arrive once the queue has turned over; 5 ms to 1 s.
  std::chrono::milliseconds RetryAfter(Priority p) const;

  struct ClassStats {
    uint64_t limit = 0;  // now
    uint64_t most = 0;
    uint64_t in_flight = 0;
    uint64_t admitted = 0;
    uint64_t shed = 0;     // refused as the class was full
    uint64_t late = 0;     // refused as their deadline was too near
    uint64_t expired = 0;  // dropped as their deadline had passed
  };
  ClassStats Stats(Priority p) const;
  // Prometheus text: tally_admission_in_flight{class},
  // tally_admission_limit{class} (the bound now),
  // tally_admission_admitted_total{class},
  // tally_admission_shed_total{class,reason} (overload, late, expired).
  std::string Render() const;

 private:
  struct Class {
    ClassStats stats;
    double limit = 0;  // stats.limit, with its fraction
    double target_seconds = 0;
    double mean_seconds = 0;  // exponentially weighted
    Steady::time_point adjusted;
  };
  mutable absl::Mutex mu_;
  std::array<Class, kPriorities> classes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_ADMISSION_H_
