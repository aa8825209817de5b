#ifndef TALLY_CMD_KVBENCH_LOCK_BENCH_H_
#define TALLY_CMD_KVBENCH_LOCK_BENCH_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/kvbench/workload.h"

namespace tally::kvbench {

struct LockBenchOptions {
  std::string target = "tally";  // or "etcd" (its v3lock service)
  std::vector<std::string> endpoints;
  int clients = 64;
  // Every client contends for one lock; otherwise each has its own.
  bool hot = false;
  double warmup_s = 2, duration_s = 10;
  int64_t lease_ttl_s = 60;
  // keep-alive: leases per message (Tally only; etcd's take one).
  int keep_alive_batch = 1;
  // Called when the measured phase begins (true) and ends (false).
  std::function<void(bool)> mark;
};

// Each client (a thread) holds a lease and loops: acquire (waiting as
// long as it takes), release. One operation is the pair.
absl::StatusOr<Summary> RunLockBench(const LockBenchOptions& o);

// Each client (a thread) loops over keys of its own: claims one and stores
// a 64-byte response. Tally: Idempotency.Begin, then Complete. etcd: a
// transaction that creates the key if absent (the claim), then a put of the
// response. One operation is the pair.
absl::StatusOr<Summary> RunIdemBench(const LockBenchOptions& o);

// `leases` leases of `lease_ttl_s`, each kept alive every third of its TTL
// by `clients` threads, one keep-alive stream each, `keep_alive_batch`
// leases per message. One operation is one lease's keep-alive answered.
absl::StatusOr<Summary> RunKeepAliveBench(const LockBenchOptions& o,
                                          int leases);

}  // namespace tally::kvbench

#endif  // TALLY_CMD_KVBENCH_LOCK_BENCH_H_
