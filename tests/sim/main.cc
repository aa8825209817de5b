// raft_sim: runs the deterministic Raft simulation over a range of seeds and
// reports any broken invariant with the command that replays it.
//
//   raft_sim --seeds 1..300 --steps 2000 [--faulty-disk] [--jobs 2]
//   raft_sim --seeds 42 --steps 2000 --trace      # replay one seed, verbosely

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "tests/sim/seeds.h"
#include "tests/sim/simulation.h"

namespace {

// The seed each thread is running, and the flags to replay it, so that an
// abort inside the core (a broken invariant) still says how to reproduce it.
thread_local uint64_t current_seed = 0;
std::string replay_flags;

void OnAbort(int) {
  std::fprintf(stderr,
               "seed %" PRIu64
               ": aborted on a broken invariant (message above)\n"
               "  replay: %s --seeds %" PRIu64 " --trace\n",
               current_seed, replay_flags.c_str(), current_seed);
  std::signal(SIGABRT, SIG_DFL);
  std::raise(SIGABRT);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Deterministic simulation of a Raft group under faults"};
  std::string seeds = "1..100";
  uint64_t steps = 2000;
  int nodes = 0;
  int jobs =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool faulty_disk = false;
  bool all_features = false;
  bool lease_drift = false;
  bool trace = false;
  app.add_option("--seeds", seeds, "Seed or inclusive range A..B")
      ->capture_default_str();
  app.add_option("--steps", steps, "Ticks with faults on, per seed")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{100'000'000}));
  app.add_option("--nodes", nodes, "Group size (0: the seed picks 3 or 5)")
      ->capture_default_str()
      ->check(CLI::Range(0, 9));
  app.add_option("--jobs", jobs, "Seeds run in parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_flag("--faulty-disk", faulty_disk,
               "Use a disk that forgets synced terms and votes on crash; "
               "violations are expected");
  app.add_flag("--all-features", all_features,
               "Also snapshots, membership changes, leadership transfers, "
               "ReadIndex and lease reads, and drifting clocks");
  app.add_flag("--lease-drift-beyond-bound", lease_drift,
               "Lease reads with clocks drifting beyond the lease margin; "
               "stale reads are expected");
  app.add_flag("--trace", trace, "Print every event (use with one seed)");
  CLI11_PARSE(app, argc, argv);

  uint64_t first, last;
  if (!tally::sim::ParseSeeds(seeds, &first, &last)) {
    std::fprintf(stderr,
                 "raft_sim: --seeds must be N or A..B with A <= B, got '%s'\n",
                 seeds.c_str());
    return 2;
  }
  if (trace) jobs = 1;
  replay_flags = std::string(argv[0]) + " --steps " + std::to_string(steps) +
                 (nodes ? " --nodes " + std::to_string(nodes) : "") +
                 (faulty_disk ? " --faulty-disk" : "") +
                 (all_features ? " --all-features" : "") +
                 (lease_drift ? " --lease-drift-beyond-bound" : "");
  std::signal(SIGABRT, OnAbort);
  const uint64_t count = last - first + 1;
  std::vector<tally::sim::SimResult> results(count);
  std::atomic<uint64_t> next{0};
  const auto start = std::chrono::steady_clock::now();
  auto worker = [&] {
    for (uint64_t i = next++; i < count; i = next++) {
      tally::sim::SimOptions o;
      o.seed = first + i;
      current_seed = o.seed;
      o.steps = steps;
      o.nodes = nodes;
      o.faulty_disk = faulty_disk;
      o.all_features = all_features;
      o.lease_drift_beyond_bound = lease_drift;
      o.trace = trace;
      results[i] = tally::sim::RunSimulation(o);
    }
  };
  std::vector<std::thread> threads;
  for (int j = 1; j < jobs; ++j) threads.emplace_back(worker);
  worker();
  for (std::thread& t : threads) t.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();

  uint64_t total_steps = 0, violations = 0;
  for (uint64_t i = 0; i < count; ++i) {
    const tally::sim::SimResult& r = results[i];
    total_steps += r.steps;
    if (!r.violation) continue;
    ++violations;
    const uint64_t seed = first + i;
    std::printf("seed %" PRIu64 ": violation at step %" PRIu64 ": %s\n", seed,
                r.violation_step, r.violation->c_str());
    std::printf("  faults: %s\n", r.plan.Describe().c_str());
    std::printf("  replay: %s --seeds %" PRIu64 " --trace\n",
                replay_flags.c_str(), seed);
  }
  std::printf("sim: seeds=%" PRIu64 " steps=%" PRIu64 " violations=%" PRIu64
              " elapsed_s=%.1f\n",
              count, total_steps, violations, elapsed);
  return violations == 0 ? 0 : 1;
}
