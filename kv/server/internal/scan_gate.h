#ifndef TALLY_KV_SERVER_INTERNAL_SCAN_GATE_H_
#define TALLY_KV_SERVER_INTERNAL_SCAN_GATE_H_

#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tally::kv::server {

// How many scans' answers a node has in flight at once. A scan (a range of
// more than kMaxPointRange keys, an answer of up to megabytes) is read on
// the scan threads at the lowest CPU priority, but gRPC sends its answer
// from its own threads at normal priority; with every queued scan answered
// at once, sending them takes the CPU from writes. So a scan takes a place
// before it is read and gives it back once gRPC is done with its answer
// (sent, or dropped); while every place is taken, the next scan waits. It
// waits at most `most_wait`: a client slow to read its answer holds a
// place, and delays the others by no more than that.
//
// Thread safety: thread-safe.
class ScanGate {
 public:
  ScanGate(int places, absl::Duration most_wait);

  // Takes a place, waiting for one for at most `most_wait` (then takes one
  // beyond the bound), or none once stopped.
  void Enter();
  // Gives back a place taken by Enter.
  void Leave();
  // Lets every Enter through at once from now on (shutting down).
  void Stop();

  struct Stats {
    uint64_t answering = 0;  // places taken now
    uint64_t entered = 0;
    uint64_t waited = 0;     // found every place taken
    uint64_t overtaken = 0;  // waited `most_wait` and went ahead
  };
  Stats stats() const;
  // Prometheus text: tally_scans_answering, tally_scans_waited_total,
  // tally_scans_overtaken_total.
  std::string Render() const;

 private:
  const uint64_t places_;
  const absl::Duration most_wait_;
  mutable absl::Mutex mu_;
  Stats stats_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_SCAN_GATE_H_
