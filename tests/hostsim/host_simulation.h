#ifndef TALLY_TESTS_HOSTSIM_HOST_SIMULATION_H_
#define TALLY_TESTS_HOSTSIM_HOST_SIMULATION_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tally::hostsim {

// A defect planted on purpose, to show that the simulation catches it.
enum class Defect : uint8_t {
  kNone,
  // The raft log's disk forgets writes it had synced, on a crash.
  kDiskForgetsSynced,
  // A leader counts its own copy of new entries toward the commit quorum
  // without having synced them (HostOptions::Defects::leader_skips_sync).
  kLeaderSkipsSync,
  // A linearizable read is answered before the state machine has applied
  // the read index (HostOptions::Defects::read_before_applied).
  kReadBeforeApplied,
  // The nodes' clocks run up to 30% apart, beyond the 2% that lock holders
  // allow for (client::LockSession): a fast leader ends a lease while its
  // holder still counts on it. (Reads use ReadIndex only in this mode, so
  // that what is caught is the lock clients' violation.)
  kClockDriftBeyondBound,
};
// "none", "disk-forgets-synced", "leader-skips-sync", "read-before-applied",
// "clock-drift-beyond-bound".
std::string_view DefectName(Defect d);
std::optional<Defect> ParseDefect(std::string_view name);

struct HostSimOptions {
  uint64_t seed = 1;
  // Raft ticks with faults on; a liveness phase with faults off follows.
  uint64_t ticks = 1000;
  // 0 lets the seed choose 3 or 5.
  int nodes = 0;
  Defect defect = Defect::kNone;
  // Print every event (and the hosts' logs) to stdout.
  bool trace = false;
  // Lock clients (and their fenced writes) and idempotency clients run
  // alongside the register clients. Off, a seed runs as it did before they
  // were added (the regression seeds of host_sim_test).
  bool lock_clients = true;
};

// What a run did: plain numbers, summed over runs.
struct HostSimCounts {
  uint64_t ticks = 0;
  uint64_t acked_writes = 0;
  uint64_t acked_reads = 0;
  // Writes whose outcome the client never learned.
  uint64_t unknown = 0;
  uint64_t crashes = 0;
  uint64_t partitions = 0;
  uint64_t pauses = 0;
  uint64_t snapshots_fetched = 0;
  uint64_t conf_changes = 0;
  uint64_t transfers = 0;
  // Times a state machine was told that its node leads its group.
  uint64_t leaderships = 0;
  // Keys whose history was too tangled for the linearizability search's
  // bound: neither passed nor failed.
  uint64_t unchecked_keys = 0;
  // Grants of the lock that a lock client held, and pauses of lock clients.
  uint64_t locks_held = 0;
  uint64_t lock_pauses = 0;
  // Writes under the lock's fence: accepted, and refused for a stale token.
  uint64_t fenced_writes = 0;
  uint64_t stale_writes_refused = 0;
  // Idempotency keys: completions accepted, replays of a stored response,
  // and completions of owners taken over, refused.
  uint64_t idem_completed = 0;
  uint64_t idem_replays = 0;
  uint64_t idem_stale_refused = 0;

  HostSimCounts& operator+=(const HostSimCounts& o);
};

struct HostSimResult {
  HostSimCounts counts;
  std::optional<std::string> violation;
  // The fault rates the seed drew.
  std::string plan;
};

// One deterministic run of the shipped raft::host::NodeHost, with the kv
// state machines (kv::StateMachine over storage::MemoryEngine) and the raft
// log store (storage::LogStore over a MemoryEngine), on a simulated clock,
// network and disk: messages delayed, lost, duplicated and reordered,
// partitions, pauses, crashes that lose every unsynced write. Clients put
// and read registers through the hosts; their history must be
// linearizable. Lock clients hold a lock under leases kept alive, pausing
// past them at times, and write under its fence (in the other group); no
// two may ever believe they hold it at once, tokens must grow, and the
// fenced writes accepted must carry tokens that never go down (the leader ends
// leases as kv/server's leader duties do, with kv::LeaderDuties).
// Idempotency clients race for keys and complete them with an effect; per
// key one owner's completion at most, its response and effect stored, every
// replay that response. Once faults stop, the cluster must make progress,
// every replica must hold the same data, and the leases of the clients
// gone quiet must end. A state machine told
// that its node leads (StateMachine::OnLeadership) must have applied every
// entry committed in earlier terms, and no two in one term. Everything follows
// from the seed.
HostSimResult RunHostSimulation(const HostSimOptions& options);

}  // namespace tally::hostsim

#endif  // TALLY_TESTS_HOSTSIM_HOST_SIMULATION_H_
