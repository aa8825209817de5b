#ifndef TALLY_CMD_KVBENCH_WATCH_BENCH_H_
#define TALLY_CMD_KVBENCH_WATCH_BENCH_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/kvbench/workload.h"

namespace tally::kvbench {

struct WatchBenchOptions {
  std::string target = "tally";  // or "etcd"
  // Where the puts go (etcd: its leader's endpoint first; Tally's client
  // routes to the range's leader).
  std::vector<std::string> endpoints;
  // The watchers' streams, spread over these in turn.
  std::vector<std::string> watch_endpoints;
  int watchers = 1000;
  double writes_per_sec = 1000;
  int writers = 16;  // threads putting, each one put at a time
  size_t value_size = 256;
  double warmup_s = 2, duration_s = 10;
  // Called when the measured phase begins (true) and ends (false).
  std::function<void(bool)> mark;
};

struct WatchSummary {
  // One operation: one change delivered to one watcher; its latency runs
  // from the put's sending to the watcher's receiving it.
  Summary delivery;
  uint64_t writes = 0;      // acknowledged puts sent in the measured phase
  uint64_t missing = 0;     // of those, deliveries never seen
  uint64_t duplicates = 0;  // deliveries seen twice (any phase)
};

// `watchers` watches of one fresh prefix, each a stream of its own, then
// puts of new keys under it at `writes_per_sec`, paced. Every watcher must
// see every acknowledged put once: what it misses within 10 s after the
// phase counts as missing.
absl::StatusOr<WatchSummary> RunWatchBench(const WatchBenchOptions& o);

}  // namespace tally::kvbench

#endif  // TALLY_CMD_KVBENCH_WATCH_BENCH_H_
