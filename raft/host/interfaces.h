#ifndef TALLY_RAFT_HOST_INTERFACES_H_
#define TALLY_RAFT_HOST_INTERFACES_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "raft/message.h"
#include "raft/types.h"

// The seams between the node host (threads, batching) and the world: durable
// raft log, network, state machines, time and background work. Each has a
// real implementation (LevelDB, gRPC, the KV state machine, the steady
// clock, a thread pool) and a simulated one (tests/hostsim).
namespace tally::raft::host {

using GroupId = uint64_t;

// A raft message of one group.
struct GroupMessage {
  GroupId group = 0;
  Message msg;
  // From the host, not the raft core: the group's leader goes quiet (see
  // NodeHost); `msg` is a heartbeat naming the leader and its term.
  bool quiesce = false;
};

// What a group has on stable storage.
struct PersistedGroup {
  HardState hard_state;
  // Metadata only: the log starts after it. Index 0 if there is none.
  Snapshot snapshot;
  // Entries after the snapshot, contiguous.
  std::vector<Entry> entries;
};

// One group's share of a storage batch.
struct GroupWrite {
  GroupId group = 0;
  std::optional<HardState> hard_state;
  // Replaces the log up to its index (entries at or below it are deleted).
  std::optional<Snapshot> snapshot;
  // Appended, replacing any stored entries from entries[0].index on.
  std::vector<Entry> entries;
  // Log compaction: records this snapshot (metadata) and deletes entries up
  // to and including compact_to (<= the snapshot's index; entries between
  // the two stay for slow followers).
  std::optional<Snapshot> compact;
  Index compact_to = 0;
};

// The durable raft log of every group of a node.
//
// Thread safety: Write is called from one thread at a time.
class LogStore {
 public:
  virtual ~LogStore() = default;
  // Everything stored, by group.
  virtual absl::StatusOr<std::map<GroupId, PersistedGroup>> Load() = 0;
  // Applies the whole batch atomically; when `sync`, it is durable on
  // return. An error is fatal to the caller (the log may be in doubt).
  virtual absl::Status Write(const std::vector<GroupWrite>& batch,
                             bool sync) = 0;
};

// A piece of a group's state machine state, streamed between nodes.
struct SnapshotChunk {
  // Set in the first chunk: the applied index the state is at.
  Index applied_index = 0;
  std::vector<std::pair<std::string, std::string>> kvs;
  bool done = false;
};
using ChunkSink = std::function<absl::Status(SnapshotChunk)>;
using ChunkSource = std::function<absl::StatusOr<SnapshotChunk>()>;

// The applies of several groups' state machines written to their store at
// once: the apply thread applies what each group committed into one pass,
// then commits it, one write for all of them instead of one per group.
class ApplyPass {
 public:
  virtual ~ApplyPass() = default;
  // Writes what was applied into the pass, at once and not synced; only
  // then do the state machines' applied() and reads show it. An error is
  // fatal.
  virtual absl::Status Commit() = 0;
};

// One group's replicated state machine.
//
// Thread safety: Apply, ApplyInto, NewPass, Import, Sync and OnLeadership
// are called from the host's apply thread only; applied() and Export from
// any thread.
class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // The last index applied (entries at or below it are skipped by Apply).
  virtual Index applied() const = 0;
  // Applies the normal entries above applied(), in order, and returns one
  // result per entry (empty for skipped ones). The applied index is written
  // with the data it covers. An error is fatal.
  virtual absl::StatusOr<std::vector<std::string>> Apply(
      const std::vector<Entry>& entries) = 0;
  // For applying several groups at once: a pass this state machine can
  // apply into, or nullptr if it cannot (then the host calls Apply).
  virtual std::unique_ptr<ApplyPass> NewPass() { return nullptr; }
  // Whether ApplyInto can take `pass` (one from some state machine's
  // NewPass: another group's, over the same store).
  virtual bool Joins(const ApplyPass& pass) const {
    (void)pass;
    return false;
  }
  // Apply, into `pass` (Joins says it may): the results now, the writes
  // and applied() by pass.Commit(). A group may apply into one pass more
  // than once; each time starts where the last ended. By default the
  // writes are made at once (Apply).
  virtual absl::StatusOr<std::vector<std::string>> ApplyInto(
      ApplyPass& pass, const std::vector<Entry>& entries) {
    (void)pass;
    return Apply(entries);
  }
  // Makes everything applied so far durable; returns the applied index.
  virtual absl::StatusOr<Index> Sync() = 0;
  // Streams the current state (applied index >= min_index) to `sink`.
  // UNAVAILABLE if applied() < min_index.
  virtual absl::Status Export(Index min_index, const ChunkSink& sink) = 0;
  // Replaces the state with the one `source` streams.
  virtual absl::Status Import(const ChunkSource& source) = 0;
  // This node's leadership of the group, in apply order. `leading`: it
  // leads in `term` and has applied every entry of earlier terms (so the
  // state is that of every committed entry before its own), and work that
  // only a leader does (proposing expiries) may start. Then, once that
  // leadership has ended, the same term with `leading` false. Proposals
  // made on this news still fail if leadership ended in the meantime.
  virtual void OnLeadership(Term term, bool leading) {
    (void)term;
    (void)leading;
  }
};

// What the network calls on the node host: messages in, news of messages
// that could not be delivered, and snapshots out.
//
// Thread safety: all methods may be called from any thread.
class MessageHandler {
 public:
  virtual ~MessageHandler() = default;
  // Messages received from a peer.
  virtual void Deliver(std::vector<GroupMessage> msgs) = 0;
  // `node` cannot be reached (a failed send, a closed stream).
  virtual void ReportUnreachable(NodeId node) = 0;
  // A snapshot message to `node` was delivered and fetched (success), or
  // was lost.
  virtual void ReportSnapshot(GroupId group, NodeId node, bool success) = 0;
  // Streams `group`'s state (applied index >= min_index) to node `to`.
  virtual absl::Status ExportSnapshot(GroupId group, NodeId to, Index min_index,
                                      const ChunkSink& sink) = 0;
};

// The network between nodes.
//
// Thread safety: all methods may be called from any thread.
class Transport {
 public:
  virtual ~Transport() = default;
  // Queues messages for node `to` and returns at once; delivery is best
  // effort (raft retries). Messages that cannot be sent are reported through
  // the MessageHandler's ReportUnreachable / ReportSnapshot.
  virtual void Send(NodeId to, std::vector<GroupMessage> msgs) = 0;
  // Streams group `group`'s state (at an applied index >= min_index) from
  // node `from` to `sink`, chunk by chunk; blocks until the last chunk or an
  // error. Called on the host's fetch threads, never on the apply thread.
  virtual absl::Status FetchSnapshot(NodeId from, GroupId group,
                                     Index min_index,
                                     const ChunkSink& sink) = 0;
  // Ends every FetchSnapshot in progress (they return an error) and refuses
  // new ones: the host is stopping.
  virtual void CancelFetches() = 0;
};

// Where the host's time comes from: the steady clock in a process (the
// default), simulated time in the simulator.
//
// Thread safety: Now may be called from any thread.
class Clock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// std::chrono::steady_clock. Never null; lives for the whole process.
const Clock* SteadyClock();

// Runs the host's background work (snapshot fetches): a thread pool in a
// process, the simulator's own queue under simulation.
//
// Thread safety: Post may be called from any thread.
class Executor {
 public:
  virtual ~Executor() = default;
  // Runs `fn` later; false (and `fn` dropped) when it cannot take more.
  virtual bool Post(std::function<void()> fn) = 0;
};

}  // namespace tally::raft::host

#endif  // TALLY_RAFT_HOST_INTERFACES_H_
