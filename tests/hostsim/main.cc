// host_sim: runs the shipped NodeHost and kv state machines in the
// deterministic simulation over a range of seeds, and prints, for every seed
// that broke a rule, what broke and the command that replays it.
//
//   host_sim --seeds 1..2000 --ticks 1000 [--jobs 2]
//   host_sim --seeds 42 --trace                  # replay one seed, verbosely
//   host_sim --seeds 1..500 --defect leader-skips-sync --expect-violation
//
// Each seed runs in a child process, so that a broken invariant that aborts
// (a TALLY_CHECK in the raft core or the host) is reported like any other
// violation, with its seed.

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <map>
#include <string>
#include <thread>
#include <type_traits>

#include "CLI/CLI.hpp"
#include "spdlog/spdlog.h"
#include "tests/hostsim/host_simulation.h"
#include "tests/sim/seeds.h"

namespace {

using tally::hostsim::HostSimOptions;
using tally::hostsim::HostSimResult;

constexpr int kExitViolation = 3;
static_assert(std::is_trivially_copyable_v<tally::hostsim::HostSimCounts>,
              "the counts cross a pipe as bytes");

// A seed that runs longer than this (wall time) has gone wrong: its child
// is killed by SIGALRM and the seed reported.
constexpr unsigned kSeedTimeLimitS = 120;

[[noreturn]] void RunChild(const HostSimOptions& o, int fd,
                           const std::string& replay) {
  alarm(kSeedTimeLimitS);
  HostSimResult r = tally::hostsim::RunHostSimulation(o);
  // The counts go to the parent through the pipe, as they are.
  const tally::hostsim::HostSimCounts& c = r.counts;
  if (write(fd, &c, sizeof(c)) != sizeof(c)) _exit(1);
  if (r.violation) {
    std::printf("seed %" PRIu64 ": %s\n  faults: %s\n  replay: %s\n", o.seed,
                r.violation->c_str(), r.plan.c_str(), replay.c_str());
    std::fflush(stdout);
    _exit(kExitViolation);
  }
  std::fflush(stdout);
  _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Deterministic simulation of the shipped raft host and kv state "
      "machines under faults"};
  std::string seeds = "1..100";
  uint64_t ticks = 1000;
  int nodes = 0;
  int jobs =
      static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string defect_name = "none";
  bool expect_violation = false;
  bool trace = false;
  app.add_option("--seeds", seeds, "Seed or inclusive range A..B")
      ->capture_default_str();
  app.add_option("--ticks", ticks, "Raft ticks with faults on, per seed")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1}, uint64_t{10'000'000}));
  app.add_option("--nodes", nodes, "Cluster size (0: the seed picks 3 or 5)")
      ->capture_default_str()
      ->check(CLI::Range(0, 9));
  app.add_option("--jobs", jobs, "Seeds run in parallel")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--defect", defect_name,
                 "Plant a defect: none, disk-forgets-synced, "
                 "leader-skips-sync, read-before-applied, "
                 "clock-drift-beyond-bound")
      ->capture_default_str();
  app.add_flag("--expect-violation", expect_violation,
               "Succeed only if some seed breaks a rule (stops at the first)");
  app.add_flag("--trace", trace, "Print every event (use with one seed)");
  CLI11_PARSE(app, argc, argv);

  uint64_t first, last;
  if (!tally::sim::ParseSeeds(seeds, &first, &last)) {
    std::fprintf(stderr,
                 "host_sim: --seeds must be N or A..B with A <= B, got '%s'\n",
                 seeds.c_str());
    return 2;
  }
  std::optional<tally::hostsim::Defect> defect =
      tally::hostsim::ParseDefect(defect_name);
  if (!defect) {
    std::fprintf(stderr, "host_sim: unknown --defect '%s'\n",
                 defect_name.c_str());
    return 2;
  }
  if (trace) {
    jobs = 1;
    spdlog::set_level(spdlog::level::info);
  } else {
    spdlog::set_level(spdlog::level::off);
  }
  const std::string flags =
      std::string(argv[0]) + " --ticks " + std::to_string(ticks) +
      (nodes ? " --nodes " + std::to_string(nodes) : "") +
      (*defect != tally::hostsim::Defect::kNone ? " --defect " + defect_name
                                                : "");
  auto replay = [&](uint64_t seed) {
    return flags + " --seeds " + std::to_string(seed) + " --trace";
  };

  const auto start = std::chrono::steady_clock::now();
  struct Child {
    uint64_t seed;
    int fd;
  };
  std::map<pid_t, Child> running;
  tally::hostsim::HostSimCounts total;
  uint64_t violations = 0, done = 0;
  uint64_t next = first;
  bool stop = false;
  auto reap = [&]() {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, 0);
    if (pid <= 0) return;
    auto it = running.find(pid);
    if (it == running.end()) return;
    const Child child = it->second;
    running.erase(it);
    ++done;
    tally::hostsim::HostSimCounts c;
    if (read(child.fd, &c, sizeof(c)) == sizeof(c)) total += c;
    close(child.fd);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
    ++violations;
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == kExitViolation)) {
      std::printf("seed %" PRIu64
                  ": died (%s %d) on a broken invariant (message above)\n"
                  "  replay: %s\n",
                  child.seed, WIFSIGNALED(status) ? "signal" : "exit code",
                  WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                  replay(child.seed).c_str());
    }
    if (expect_violation) stop = true;
  };
  while ((next <= last && !stop) || !running.empty()) {
    if (next <= last && !stop && static_cast<int>(running.size()) < jobs) {
      int fds[2];
      if (pipe(fds) != 0) {
        std::perror("host_sim: pipe");
        return 2;
      }
      std::fflush(stdout);
      const pid_t pid = fork();
      if (pid < 0) {
        std::perror("host_sim: fork");
        return 2;
      }
      HostSimOptions o;
      o.seed = next;
      o.ticks = ticks;
      o.nodes = nodes;
      o.defect = *defect;
      o.trace = trace;
      if (pid == 0) {
        close(fds[0]);
        RunChild(o, fds[1], replay(next));
      }
      close(fds[1]);
      running[pid] = {next, fds[0]};
      ++next;
      continue;
    }
    reap();
  }
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  std::printf(
      "host_sim: seeds=%" PRIu64 " ticks=%" PRIu64 " writes=%" PRIu64
      " reads=%" PRIu64 " unknown=%" PRIu64 " crashes=%" PRIu64
      " partitions=%" PRIu64 " pauses=%" PRIu64 " snapshots=%" PRIu64
      " conf_changes=%" PRIu64 " transfers=%" PRIu64 " leaderships=%" PRIu64
      " unchecked_keys=%" PRIu64 " locks_held=%" PRIu64 " lock_pauses=%" PRIu64
      " fenced_writes=%" PRIu64 " stale_writes_refused=%" PRIu64
      " idem_completed=%" PRIu64 " idem_replays=%" PRIu64
      " idem_stale_refused=%" PRIu64 " violations=%" PRIu64 " elapsed_s=%.1f\n",
      done, total.ticks, total.acked_writes, total.acked_reads, total.unknown,
      total.crashes, total.partitions, total.pauses, total.snapshots_fetched,
      total.conf_changes, total.transfers, total.leaderships,
      total.unchecked_keys, total.locks_held, total.lock_pauses,
      total.fenced_writes, total.stale_writes_refused, total.idem_completed,
      total.idem_replays, total.idem_stale_refused, violations, elapsed);
  if (expect_violation) {
    if (violations == 0) {
      std::printf(
          "host_sim: expected the planted defect '%s' to be caught, "
          "and no seed caught it\n",
          defect_name.c_str());
    }
    return violations > 0 ? 0 : 1;
  }
  return violations == 0 ? 0 : 1;
}
