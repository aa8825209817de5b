#ifndef TALLY_RAFT_RAW_NODE_H_
#define TALLY_RAFT_RAW_NODE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/config.h"
#include "raft/message.h"
#include "raft/raft.h"
#include "raft/types.h"

namespace tally::raft {

// Everything a node asks the application to do, in one batch.
struct Ready {
  // Changed leader or role; informational, nothing to persist.
  std::optional<SoftState> soft_state;
  // Changed term, vote or commit index: persist.
  std::optional<HardState> hard_state;
  // A snapshot from the leader to install: persist it (it replaces the log
  // up to its index), fetch its data by reference and restore the state
  // machine from it, before the entries below.
  std::optional<Snapshot> snapshot;
  // Entries to append to stable storage. They may replace entries already
  // stored from entries[0].index on.
  std::vector<Entry> entries;
  // Whether entries and hard_state must be durable (fsync) before anything
  // below happens. False only when the sole change is the commit index,
  // which Raft can recover after a crash.
  bool must_sync = false;
  // Messages to send, after the above is persisted.
  std::vector<Message> messages;
  // Entries known committed, to apply in order, after the above is persisted.
  // A kConfChange entry is applied by passing it to ApplyConfChange.
  std::vector<Entry> committed_entries;
  // Answers to ReadIndex requests: serve each read once the state machine
  // has applied its index.
  std::vector<ReadState> read_states;

  bool Empty() const {
    return !soft_state && !hard_state && !snapshot && entries.empty() &&
           messages.empty() && committed_entries.empty() && read_states.empty();
  }
};

// The interface an application uses to run one raft node. It wraps the pure
// state machine (raft.h) and hands out its effects as Ready batches.
//
// The contract, in this order, for every Ready:
//   1. Persist: append `entries` to storage (replacing any suffix from
//      entries[0].index on) and save `hard_state`; if `must_sync`, both must
//      be durable before step 2. Then make them visible through the Storage
//      the node reads from.
//   2. Send `messages` (they may refer to what step 1 persisted: a vote
//      given, an entry acknowledged).
//   3. Apply `committed_entries` to the state machine, in order, passing
//      each kConfChange entry to ApplyConfChange.
//   4. Call Advance(ready).
// Between GetReady() and Advance() call nothing else on the node but
// ApplyConfChange. A node that crashes part-way restarts from what step 1
// made durable.
//
// Thread safety: not thread-safe; one caller at a time.
class RawNode {
 public:
  // INVALID_ARGUMENT for a bad config or inconsistent stored state.
  static absl::StatusOr<std::unique_ptr<RawNode>> Create(const Config& config);

  // Advances logical time by one tick.
  void Tick() { raft_->Tick(); }
  // Time passed without ticks: expires the lease accordingly (Raft's).
  void AdvanceClock(uint64_t ticks) { raft_->AdvanceClock(ticks); }
  // Starts an election now (pre-vote first when enabled).
  void Campaign() { raft_->Campaign(); }
  // Hands the node a message received from a peer. INVALID_ARGUMENT if it is
  // addressed to another node (nothing is changed then).
  absl::Status Step(const Message& m);
  // Proposes data as a new log entry and returns the index it will commit at,
  // if it commits: a later leader may overwrite it, so the application must
  // compare the committed entry's term with the one this node has now
  // (raft().term()). UNAVAILABLE when not leader, RESOURCE_EXHAUSTED when the
  // uncommitted-bytes cap is reached; nothing is appended on error.
  absl::StatusOr<Index> Propose(std::string data) {
    return raft_->Propose(std::move(data));
  }
  // Several entries at once, with one append message per follower: see
  // Raft::ProposeAll.
  absl::StatusOr<Raft::Proposed> ProposeAll(std::vector<std::string> data) {
    return raft_->ProposeAll(std::move(data));
  }
  // See Raft (raft.h) for the contracts of these.
  absl::StatusOr<Index> ProposeConfChange(const ConfChange& cc) {
    return raft_->ProposeConfChange(cc);
  }
  absl::StatusOr<ConfState> ApplyConfChange(const ConfChange& cc) {
    return raft_->ApplyConfChange(cc);
  }
  absl::Status TransferLeadership(NodeId target) {
    return raft_->TransferLeadership(target);
  }
  absl::Status ReadIndex(uint64_t context, bool allow_lease = true) {
    return raft_->ReadIndex(context, allow_lease);
  }
  void ReportSnapshot(NodeId id, bool success) {
    raft_->ReportSnapshot(id, success);
  }
  void ReportUnreachable(NodeId id) { raft_->ReportUnreachable(id); }

  // Whether GetReady() would return something to do.
  bool HasReady() const;
  // REQUIRES: the previous Ready, if any, has been passed to Advance().
  Ready GetReady();
  // Acknowledges that the Ready was handled as described above.
  void Advance(const Ready& ready);

  const Raft& raft() const { return *raft_; }

 private:
  RawNode(std::unique_ptr<Raft> raft, uint64_t max_committed_size_per_ready);

  std::unique_ptr<Raft> raft_;
  const uint64_t max_committed_size_per_ready_;
  SoftState prev_soft_state_;
  HardState prev_hard_state_;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_RAW_NODE_H_
