#ifndef TALLY_RAFT_HOST_NODE_HOST_H_
#define TALLY_RAFT_HOST_NODE_HOST_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "raft/conf_change.h"
#include "raft/host/interfaces.h"
#include "raft/host/stats.h"
#include "raft/raw_node.h"
#include "raft/types.h"
#include "util/thread_pool.h"
#include "util/waker.h"

namespace tally::raft::host {

struct HostOptions {
  NodeId id = kNoNode;
  // Length of one raft tick. Elections time out after election_tick to
  // 2 * election_tick ticks; leaders heartbeat every heartbeat_tick.
  int tick_ms = 50;
  int election_tick = 10;
  int heartbeat_tick = 1;
  // Lease reads are allowed when requested (followers then refuse votes for
  // an election timeout after a restart; see raft/config.h).
  bool lease_reads = true;
  int lease_drift_margin = 2;
  // Proposals waiting for the raft loop, across groups. Beyond it, Propose
  // fails at once with RESOURCE_EXHAUSTED.
  size_t max_queued_proposals = 8192;
  // Committed entries waiting for the apply thread, across groups. Beyond
  // it, proposals fail at once with RESOURCE_EXHAUSTED until applying
  // catches up.
  size_t max_apply_backlog = 100000;
  // A group snapshots its state machine and compacts its log every this many
  // applied entries, keeping `compaction_lag` entries for slow followers.
  uint64_t snapshot_every = 10000;
  uint64_t compaction_lag = 1000;
  // A leader whose group has had nothing to do for this many ticks (every
  // member up to date, nothing pending) tells its followers, and the whole
  // group stops ticking and heartbeating until a proposal, a message or a
  // lost peer wakes it. 0: never.
  int quiesce_after_ticks = 20;
  // Threads that fetch snapshots from peers; a slow fetch holds one of them
  // and nothing else.
  int snapshot_fetchers = 2;
  // A leader that sent a follower a snapshot and has seen no fetch of it
  // for this many ticks (the message was lost, or the follower was busy
  // with another) sends it again.
  int snapshot_timeout_ticks = 40;
  // A leader whose synced raft log writes take this many times as long as
  // a follower's whole round trip for an append (for 3 s, and over 20 ms)
  // hands the groups it leads to followers, and takes no leadership handed
  // to it, until its writes are fast again (SlowDiskDetector). 0: never.
  double slow_disk_factor = 4;
  uint64_t seed = 1;

  // Where time comes from (not owned); null: the steady clock.
  const Clock* clock = nullptr;
  // Driven by its owner instead of its own threads (the simulator): Start
  // starts no thread, the owner calls RunRaftPass and RunApplyPass, and
  // snapshot fetches go to `fetch_executor` (not owned, required then).
  bool driven = false;
  Executor* fetch_executor = nullptr;

  // Deliberate defects, for the simulator's self-test only: each breaks a
  // safety rule the simulator must then catch.
  struct Defects {
    // The leader writes its own new entries without syncing them, yet
    // counts its own copy toward the commit quorum.
    bool leader_skips_sync = false;
    // A read is answered as soon as its read index is known, before the
    // state machine has applied up to it.
    bool read_before_applied = false;
  };
  Defects defects;
};

// What Propose's callback receives once the entry is applied.
struct Applied {
  Index index = 0;
  // The state machine's result for the entry.
  std::string result;
};
using ProposeCallback = std::function<void(absl::StatusOr<Applied>)>;
// Called with the read index once the state machine has applied it.
using ReadCallback = std::function<void(absl::StatusOr<Index>)>;

// A group's state as last seen by the raft loop.
struct GroupInfo {
  GroupId group = 0;
  NodeId leader = kNoNode;
  Term term = 0;
  Role role = Role::kFollower;
  Index commit = 0;
  Index applied = 0;
  Index first_index = 0;
  Index last_index = 0;
  ConfState conf;
  // Not ticking: the group is idle (see HostOptions::quiesce_after_ticks).
  bool quiet = false;
};

// Creates the state machine of a group this node learns about from a peer.
using StateMachineFactory =
    std::function<absl::StatusOr<StateMachine*>(GroupId)>;

// The index (and term) new groups start at: see BootstrapGroups.
inline constexpr Index kBootstrapIndex = 1;

// Writes the first state of new groups to `log`, synced: each starts as if
// from a snapshot at kBootstrapIndex (term 1) whose configuration has
// `voters`. Identical on every node that bootstraps, so logs match, and a
// node added later is sent a snapshot rather than a log from index 1. The
// state machines must start at kBootstrapIndex too.
absl::Status BootstrapGroups(LogStore* log, const std::vector<GroupId>& groups,
                             const std::vector<NodeId>& voters);

// Runs every raft group of one process.
//
// One raft loop thread owns all groups: it ticks them, steps incoming
// messages, takes proposals, and then, in one pass over every group with
// work, writes all new entries and hard states in ONE LogStore batch with
// at most ONE sync, sends the messages batched per destination node, and
// hands committed entries to the apply thread, which applies them in order
// per group without holding up the raft loop.
//
// Callbacks run on the raft loop or the apply thread: they must not block.
//
// Thread safety: thread-safe. Every public method may be called from any
// thread once Start() returned.
class SlowDiskDetector;

class NodeHost final : public MessageHandler {
 public:
  // `log` and `transport` are not owned and must outlive the host.
  NodeHost(const HostOptions& options, LogStore* log, Transport* transport,
           StateMachineFactory factory);
  ~NodeHost() override;
  NodeHost(const NodeHost&) = delete;
  NodeHost& operator=(const NodeHost&) = delete;

  // Loads every group from the log store (each group's state machine comes
  // from the factory) and starts the threads. REQUIRES: called once.
  absl::Status Start();
  // Stops the threads; callbacks still pending fail with UNAVAILABLE.
  void Stop();

  // Driven mode only (HostOptions::driven), from one thread. One pass of the
  // raft loop: the ticks due by the clock, the work posted since the last
  // pass, and everything they make ready (persist, send, hand to apply).
  // Returns whether there was anything to do.
  bool RunRaftPass();
  // Runs one pass of the apply thread over what it has queued; false if
  // there was nothing.
  bool RunApplyPass();

  // Proposes `data` to `group`. The callback receives the state machine's
  // result once the entry is applied here, or an error: UNAVAILABLE when
  // this node does not lead the group or the entry was lost to a leader
  // change (not applied), RESOURCE_EXHAUSTED when overloaded, NOT_FOUND for
  // an unknown group, DEADLINE_EXCEEDED when the outcome is unknown (the
  // host stopped, or a snapshot replaced the log before the entry was seen
  // to commit). It may never be called if leadership changes while
  // the outcome is undecided: callers bound their wait.
  void Propose(GroupId group, std::string data, ProposeCallback done);
  // As Propose; FAILED_PRECONDITION for promoting a learner that has not
  // caught up with the leader's log. A change already in effect at the
  // leader is answered at once with index 0, and nothing is proposed.
  void ProposeConfChange(GroupId group, ConfChange cc, ProposeCallback done);
  // A linearizable read: the callback gets an index at which reading the
  // state machine is linearizable, once it is applied here. With
  // `allow_lease`, a leader within its lease answers without a quorum round.
  // UNAVAILABLE when not leader.
  void ReadIndex(GroupId group, bool allow_lease, ReadCallback done);
  // Hands leadership of `group` to `target`; done when it has moved (or
  // fails after an election timeout).
  void TransferLeadership(GroupId group, NodeId target,
                          std::function<void(absl::Status)> done);

  // MessageHandler, for the transport.
  void Deliver(std::vector<GroupMessage> msgs) override;
  // Groups `node` leads wake up here, so that they elect a new leader if it
  // is gone, and so do groups this node leads with `node` as a member, so
  // that a leader cut off from its followers steps down (check-quorum).
  void ReportUnreachable(NodeId node) override;
  void ReportSnapshot(GroupId group, NodeId node, bool success) override;
  // Also reports the outcome to the group (ReportSnapshot).
  absl::Status ExportSnapshot(GroupId group, NodeId to, Index min_index,
                              const ChunkSink& sink) override;

  // What this host has done since it started.
  HostStats Stats() const { return counters_.Get(); }
  // The last published state of each group.
  std::vector<GroupInfo> Groups() const;
  absl::StatusOr<GroupInfo> Group(GroupId group) const;
  // What a health check needs, without copying every group's state: the
  // state of `group` (if held) and of the group whose applies trail its
  // commit index the furthest (if any does).
  std::vector<GroupInfo> GroupAndFurthestBehind(GroupId group) const;
  NodeId id() const { return options_.id; }

 private:
  struct GroupState;
  struct ApplyTask;

  void Post(std::function<void()> fn);
  void LogShedding(const char* why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A write or sync of this node's storage failed: logs why and aborts. Never
  // retried: after a failed fsync the kernel may have dropped the pages it
  // could not write, so a later one that succeeds proves nothing.
  [[noreturn]] void StorageFailed(const char* what, const absl::Status& st);
  void RaftLoop();
  // after_work: the inbox had work this pass (else only a tick happened).
  void ProcessReadies(bool after_work);
  void Persist(std::vector<std::pair<GroupState*, Ready>>& readies);
  // leader_appends: send only a leader's appends and heartbeats (before the
  // write), else only the rest (after it).
  void SendMessages(std::vector<std::pair<GroupState*, Ready>>& readies,
                    bool leader_appends);
  void DeliverCommitted(GroupState& g, const Ready& rd);
  // Has the apply thread tell the state machine of leadership gained
  // (once the leader's first entry is applied) or lost.
  void TellLeadership(GroupState& g, const Ready& rd);
  void LogRoleChange(GroupState& g, const SoftState& now);
  // Whether every change of `cc` is in effect in `conf` already.
  static bool InEffect(const ConfState& conf, const ConfChange& cc);
  // FAILED_PRECONDITION if `cc` promotes a learner that is far behind.
  absl::Status LearnersCaughtUp(const GroupState& g,
                                const ConfChange& cc) const;
  // Appends the proposals that arrived during this pass, each group's
  // together (GroupState::arrived).
  void ProposeArrived();
  // Waits for the proposal appended at `index` to be applied.
  void AddPending(GroupState& g, Index index, ProposeCallback done);
  // Proposals at or below a snapshot this node installed: their entries are
  // never handed out, and whether they are the proposals' is unknown.
  void FailPendingCoveredBy(GroupState& g, Index snapshot_index);
  // The callback of the proposal appended at e.index, if e is that entry;
  // a proposal that lost its index to another leader's entry fails.
  ProposeCallback TakeProposal(GroupState& g, const Entry& e);
  void FinishTransfers(GroupState& g);
  void HandleSnapshotMessage(GroupState& g, const GroupMessage& gm);
  GroupState* FindOrCreate(GroupId group, const Message& first);
  absl::StatusOr<std::unique_ptr<GroupState>> OpenGroup(
      GroupId group, const PersistedGroup& persisted);
  void PublishInfo();
  // Group `group` (null if this node has none) for work from the inbox,
  // which may give it a Ready: it joins attention_. Work finds its group
  // through here (or FindOrCreate), never in groups_ directly.
  GroupState* Touch(GroupId group);
  // Adds `g` to attention_ unless it is there.
  void Attend(GroupState& g);
  // Drops from attention_ the groups that are quiet, published quiet and
  // found idle.
  void Settle();
  void Tick();
  // Wakes a quiet group (it ticks again).
  void Wake(GroupState& g);
  bool CanQuiesce(const GroupState& g) const;
  // Leader: sends again the snapshots no follower has fetched in time.
  void CheckSnapshotTimeouts(GroupState& g);
  void Quiesce(GroupState& g);
  void MaybeCompact(GroupState& g, Index durable);
  // Once a window: whether this node's disk is the slow part of
  // replication; while it is, hands off the groups it leads.
  void CheckDisk(Clock::TimePoint now);
  void HandOffLeadership();

  // On a fetch thread: fetches the snapshot `gm` announces, then has the
  // apply thread install it.
  void FetchSnapshot(const GroupMessage& gm, StateMachine* sm);

  void ApplyLoop();
  // Takes the tasks of the next apply pass off the queue.
  std::vector<ApplyTask> TakeApplyPass()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(apply_mu_);
  // Applies `tasks` in order: those whose state machines Join one
  // ApplyPass into it, committed once, then answered.
  void RunApply(std::vector<ApplyTask>& tasks);
  // Once what `task` applied is visible: answers its proposals, wakes the
  // reads waiting for it, and snapshots now and then.
  void AfterApply(ApplyTask& task, std::vector<std::string>& results);
  void EnqueueApply(std::vector<ApplyTask> tasks);
  void WaitApplied(GroupId group, Index index, ReadCallback done);
  void FireWaiters(GroupId group, Index applied);

  const HostOptions options_;
  const Clock* const clock_;
  LogStore* const log_;
  Transport* const transport_;
  const StateMachineFactory factory_;

  // Owned by the raft loop thread.
  std::map<GroupId, std::unique_ptr<GroupState>> groups_;
  // The same groups in a vector, for the rare walks over all of them
  // (walking the map's nodes costs more). Groups are added, never removed.
  std::vector<GroupState*> group_list_;
  // The groups the passes visit: each group that is awake, went quiet
  // since its status was last published, was touched by work (Touch), or
  // had a Ready since it was last found idle (Attend adds them; Settle
  // drops the others). With thousands of quiet groups, walking them all
  // each pass was most of an idle node's CPU.
  std::vector<GroupState*> attention_;
  // Groups with proposals that arrived during this pass, in arrival order.
  std::vector<GroupId> proposing_;
  // What a round of the pass hands to the apply thread, queued at once at
  // its end (one wake-up of that thread, not one per group).
  std::vector<ApplyTask> to_apply_;
  uint64_t next_read_context_ = 1;
  Clock::TimePoint next_tick_;
  std::unique_ptr<SlowDiskDetector> slow_disk_;
  // Where the raft loop sleeps between ticks; Post wakes it.
  util::Waker raft_waker_;

  mutable absl::Mutex mu_;
  std::vector<std::function<void()>> inbox_ ABSL_GUARDED_BY(mu_);
  size_t queued_proposals_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::TimePoint last_shed_log_ ABSL_GUARDED_BY(mu_);
  uint64_t shed_since_log_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<GroupId, GroupInfo> info_ ABSL_GUARDED_BY(mu_);
  // The groups whose status in info_ has entries committed but not applied
  // (GroupAndFurthestBehind: health asks four times a second, and walking
  // thousands of statuses for it showed in an idle node's profile).
  std::set<GroupId> lagging_ ABSL_GUARDED_BY(mu_);
  // State machines by group, for ExportSnapshot from transport threads.
  std::map<GroupId, StateMachine*> machines_ ABSL_GUARDED_BY(mu_);
  // Snapshots being exported, by group and receiving node.
  std::map<std::pair<GroupId, NodeId>, int> exports_ ABSL_GUARDED_BY(mu_);

  absl::Mutex apply_mu_;
  std::deque<ApplyTask> apply_queue_ ABSL_GUARDED_BY(apply_mu_);
  // Entries in apply_queue_.
  std::atomic<size_t> apply_backlog_{0};
  bool apply_stopping_ ABSL_GUARDED_BY(apply_mu_) = false;
  std::map<GroupId, std::multimap<Index, ReadCallback>> waiters_
      ABSL_GUARDED_BY(apply_mu_);

  // Owned by the apply thread: applied index at each group's last snapshot.
  std::map<GroupId, Index> applied_at_last_snapshot_;

  // Snapshot fetches: HostOptions::fetch_executor, or own_fetchers_.
  std::unique_ptr<Executor> own_fetchers_;
  Executor* fetchers_ = nullptr;

  HostCounters counters_;

  std::thread raft_thread_;
  std::thread apply_thread_;
};

}  // namespace tally::raft::host

#endif  // TALLY_RAFT_HOST_NODE_HOST_H_
