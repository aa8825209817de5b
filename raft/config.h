#ifndef TALLY_RAFT_CONFIG_H_
#define TALLY_RAFT_CONFIG_H_

#include <cstdint>

#include "absl/status/status.h"
#include "raft/storage.h"
#include "raft/types.h"
#include "util/random.h"

namespace tally::raft {

// How a leader confirms it still leads before answering a read (§6.4).
enum class ReadOnlyOption : uint8_t {
  // ReadIndex: a round of heartbeats acknowledged by a quorum.
  kSafe,
  // Lease: no round while the leader heard from a quorum recently enough.
  // Safe only if clocks drift apart by less than the configured margin.
  kLeaseBased,
};

// Parameters of one raft node. Times are in ticks; the application decides
// how long a tick is (typically 10-100 ms).
struct Config {
  // This node's id. REQUIRES: != kNoNode.
  NodeId id = kNoNode;

  // A follower that hears nothing from a leader for a randomized time in
  // [election_tick, 2 * election_tick) starts an election (§5.2).
  // REQUIRES: election_tick > heartbeat_tick.
  int election_tick = 10;
  // A leader sends heartbeats every heartbeat_tick ticks.
  int heartbeat_tick = 1;

  // Pre-vote (dissertation §9.6): a node first checks it could win before
  // disturbing the cluster with a higher term.
  bool pre_vote = true;
  // Check-quorum (dissertation §6.2): a leader that has not heard from a
  // quorum within an election timeout steps down; a follower that has heard
  // from a leader within it ignores vote requests.
  bool check_quorum = true;

  // How reads are confirmed. kLeaseBased REQUIRES check_quorum.
  ReadOnlyOption read_only = ReadOnlyOption::kSafe;
  // With lease reads, the lease lasts L = election_tick - 1 -
  // lease_drift_margin ticks of the leader's clock from the sending of the
  // heartbeat a quorum acknowledged. A follower that received it ignores
  // votes until election_tick of its own ticks have passed, the first of
  // which may come at once: election_tick - 1 of its tick lengths. The lease
  // is safe while followers' clocks run at most (election_tick - 1) / L
  // times as fast as the leader's: 9/7, 28%, with the defaults (10 and 2).
  // REQUIRES: 0 < margin < election_tick - 1.
  int lease_drift_margin = 2;

  // Upper bound on the bytes of entries in one append message (at least one
  // entry is always sent).
  uint64_t max_size_per_msg = 1 << 20;
  // Flow control per follower in the replicate state: at most this many
  // append messages, and at most this many bytes (0 = no byte limit), in
  // flight at once.
  size_t max_inflight_msgs = 256;
  uint64_t max_inflight_bytes = 32 << 20;
  // A leader refuses proposals (RESOURCE_EXHAUSTED) while the payload bytes
  // of its uncommitted entries exceed this (0 = no limit). One proposal is
  // always admitted when nothing is uncommitted.
  uint64_t max_uncommitted_entries_size = 64 << 20;
  // Upper bound on the bytes of committed entries handed out per Ready.
  uint64_t max_committed_size_per_ready = 16 << 20;

  // The index the application has already applied (on restart).
  Index applied = 0;

  // Where persisted entries and state are read from. Not owned; must outlive
  // the node. REQUIRES: non-null.
  const Storage* storage = nullptr;
  // Source of randomized election timeouts. Not owned; must outlive the
  // node. REQUIRES: non-null.
  util::RandomSource* random = nullptr;

  // INVALID_ARGUMENT naming the first broken requirement, or OK.
  absl::Status Validate() const;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_CONFIG_H_
