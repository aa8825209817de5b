#ifndef TALLY_TESTS_SIM_SIMULATION_H_
#define TALLY_TESTS_SIM_SIMULATION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "raft/raw_node.h"
#include "raft/storage.h"
#include "tests/sim/checker.h"
#include "tests/sim/sim_disk.h"
#include "tests/sim/sim_network.h"
#include "util/random.h"

namespace tally::sim {

struct SimOptions {
  uint64_t seed = 1;
  // Steps (ticks of simulated time) with faults on. A liveness phase with
  // faults off follows.
  uint64_t steps = 2000;
  // 0 lets the seed choose 3 or 5.
  int nodes = 0;
  // The disk forgets synced terms and votes on crash (see SimDisk).
  bool faulty_disk = false;
  // Also exercise snapshots and compaction, membership changes (learners,
  // promotions, removals including the leader's, joint changes),
  // leadership transfers, ReadIndex and lease reads, and nodes whose clocks
  // run at different rates.
  bool all_features = false;
  // Lease reads on, with clock rates drifting apart by more than the lease
  // margin allows: stale reads are expected (implies all_features).
  bool lease_drift_beyond_bound = false;
  // Print every event to stdout.
  bool trace = false;
};

// Fault rates for one run, drawn from the seed.
struct FaultPlan {
  int nodes = 3;
  NetworkFaults network;
  double crash = 0;         // per step, that some live node crashes
  int max_downtime = 100;   // ticks a crashed node stays down, at most
  double partition = 0;     // per step, that a new partition starts
  int max_partition = 200;  // ticks a partition lasts, at most
  double flush = 0.1;       // per step and node, that the OS flushes writes
  double client = 0.3;      // per step and client, that it invokes an op
  // With all_features:
  int voters = 0;            // initial voters (nodes 1..voters)
  double snapshot = 0;       // per step and node, that it snapshots
  double conf_change = 0;    // per step, that the leader changes membership
  double transfer = 0;       // per step, that the leader hands over
  bool lease_reads = false;  // nodes answer reads from a lease
  double clock_drift = 0;    // node clock rates in [1 - d, 1 + d]
  std::string Describe() const;
};

struct SimResult {
  uint64_t steps = 0;
  uint64_t acked_ops = 0;
  uint64_t elections = 0;
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t snapshots_sent = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  uint64_t index_reads = 0;  // reads answered through ReadIndex or a lease
  std::optional<std::string> violation;
  uint64_t violation_step = 0;
  FaultPlan plan;
};

// One deterministic run of a raft group under faults: everything, from
// timeouts to message order, follows from the seed.
SimResult RunSimulation(const SimOptions& options);

}  // namespace tally::sim

#endif  // TALLY_TESTS_SIM_SIMULATION_H_
