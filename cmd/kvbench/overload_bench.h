#ifndef TALLY_CMD_KVBENCH_OVERLOAD_BENCH_H_
#define TALLY_CMD_KVBENCH_OVERLOAD_BENCH_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/kvbench/workload.h"
#include "rpc/tls.h"

namespace tally::kvbench {

struct OverloadOptions {
  std::vector<std::string> endpoints;
  rpc::TlsFiles tls;
  // Puts offered a second, open loop: each of `threads` sends on its own
  // schedule, whatever the answers (as independent users would).
  double rate = 1000;
  int threads = 512;
  double warmup_s = 3, duration_s = 10;
  // Each put's deadline, retries included.
  int64_t timeout_ms = 1000;
  // The client library's retry budget, throttling, in-flight limits and
  // circuit breakers; off: retries until the deadline, as a naive client
  // does. `in_flight_limit` false: the in-flight limits alone off.
  bool protection = true;
  bool in_flight_limit = true;
  // The library's throttling factor (ClientOptions::throttle); 0: its
  // default.
  double throttle = 0;
  // Leases kept alive (by a client of their own) all along; each that ends
  // is counted as lost.
  int leases = 1000;
  int64_t lease_ttl_s = 6;
  Workload workload;
  std::function<void(bool)> mark;
};

struct OverloadSummary {
  double seconds = 0;
  // Puts the application made, and those that succeeded.
  uint64_t calls = 0, ok = 0;
  // Attempts sent to the nodes (retries included), retries the budget
  // refused, calls failed as every node's breaker was open, calls the
  // client refused itself (throttling), calls failed unsent because the
  // node's in-flight limit had no place for them in time.
  uint64_t attempts = 0, retries_refused = 0, breaker_refusals = 0,
           throttled = 0, held = 0;
  std::map<std::string, uint64_t> errors;  // by status code
  Summary latency;                         // of the puts that succeeded
  // Lost: ended (the keeper saw it, or the cluster no longer holds it
  // after the run); unknown: the cluster did not answer whether it holds it
  // within 30 s of the run's end.
  int leases = 0, leases_lost = 0, leases_unknown = 0;
  // The slowest renewal the keeper saw answered: from sending the
  // keep-alive to its answer, retries included.
  double lease_renewal_max_ms = 0;
  // Of the lost: those the keeper gave up on, no renewal confirmed before
  // the lease's time ran out (the rest the cluster said had ended).
  int leases_unrenewed = 0;
};

// Puts at `rate` through the client library (sessions, retries, budget,
// breakers), with leases kept alive alongside.
absl::StatusOr<OverloadSummary> RunOverloadBench(const OverloadOptions& o);

}  // namespace tally::kvbench

#endif  // TALLY_CMD_KVBENCH_OVERLOAD_BENCH_H_
