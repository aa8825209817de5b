#ifndef TALLY_RAFT_PROGRESS_H_
#define TALLY_RAFT_PROGRESS_H_

#include <cstdint>
#include <deque>
#include <string>

#include "raft/types.h"

namespace tally::raft {

// The append messages in flight to one follower, bounded both in count and in
// bytes. Each is remembered by the last index it carried.
//
// Thread safety: not thread-safe.
class Inflights {
 public:
  Inflights(size_t max_count, uint64_t max_bytes)
      : max_count_(max_count), max_bytes_(max_bytes) {}

  // REQUIRES: !Full(); indexes are added in increasing order.
  void Add(Index last_index, uint64_t bytes);
  // Frees every message whose last index is <= index (acknowledged).
  void FreeLE(Index index);
  void FreeFirstOne();
  void Reset();

  // True when no further message may be sent: the count limit is reached, or
  // the byte limit is (a single message may exceed it on its own, so an empty
  // window is never full).
  bool Full() const;
  size_t count() const { return entries_.size(); }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Inflight {
    Index last_index;
    uint64_t bytes;
  };
  size_t max_count_;
  uint64_t max_bytes_;
  uint64_t bytes_ = 0;
  std::deque<Inflight> entries_;
};

// The leader's view of one follower's log (§5.3 nextIndex/matchIndex) and how
// it is currently replicating to it:
//   kProbe:     nextIndex is a guess; send one append at a time and wait for
//               its answer (or a heartbeat response) before the next.
//   kReplicate: the follower is known to match up to `match`; stream appends
//               optimistically, bounded by the inflight window.
//   kSnapshot:  the follower needs a snapshot; send no appends until it has
//               installed one at pending_snapshot.
//
// Thread safety: not thread-safe.
class Progress {
 public:
  enum class State : uint8_t { kProbe, kReplicate, kSnapshot };

  Progress(Index next, size_t max_inflight, uint64_t max_inflight_bytes)
      : next_(next), inflights_(max_inflight, max_inflight_bytes) {}

  Index match() const { return match_; }
  Index next() const { return next_; }
  State state() const { return state_; }
  Index pending_snapshot() const { return pending_snapshot_; }
  const Inflights& inflights() const { return inflights_; }

  bool recent_active() const { return recent_active_; }
  void set_recent_active(bool active) { recent_active_ = active; }

  // The latest heartbeat this follower acknowledged: its sequence number and
  // the leader's tick when it was sent (the start of the lease it grants).
  uint64_t acked_heartbeat_seq() const { return acked_heartbeat_seq_; }
  uint64_t acked_heartbeat_tick() const { return acked_heartbeat_tick_; }
  void OnHeartbeatAck(uint64_t seq, uint64_t sent_tick) {
    if (seq <= acked_heartbeat_seq_) return;
    acked_heartbeat_seq_ = seq;
    acked_heartbeat_tick_ = sent_tick;
  }

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(Index snapshot_index);

  // The follower acknowledged entries up to index. Returns whether match
  // advanced. Also unpauses a probe and frees the acknowledged messages from
  // the inflight window.
  bool MaybeUpdate(Index index);
  // The leader sent entries ending at last_index (bytes in total); updates
  // next and the inflight window according to the state.
  void SentEntries(Index last_index, uint64_t bytes);
  // The follower rejected an append whose previous index was `rejected`;
  // `hint` is where to try next. Returns false if the rejection is stale
  // (it concerns an older message) and nothing changed.
  bool MaybeDecreaseTo(Index rejected, Index hint);
  // A heartbeat response arrived: allows a paused probe to send again, and
  // frees one inflight slot so that a replicate stream whose messages were
  // all lost can make progress (the follower then accepts or rejects).
  void OnHeartbeatResponse();

  // Whether the leader must hold back appends to this follower.
  bool IsPaused() const;

  std::string DebugString() const;

 private:
  Index match_ = 0;
  Index next_;
  State state_ = State::kProbe;
  Index pending_snapshot_ = 0;
  // In kProbe: an append was sent and is not yet answered.
  bool probe_sent_ = false;
  bool recent_active_ = false;
  uint64_t acked_heartbeat_seq_ = 0;
  uint64_t acked_heartbeat_tick_ = 0;
  Inflights inflights_;
};

const char* ProgressStateName(Progress::State state);

}  // namespace tally::raft

#endif  // TALLY_RAFT_PROGRESS_H_
