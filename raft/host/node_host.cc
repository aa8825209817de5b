#include "raft/host/node_host.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "raft/config.h"
#include "raft/host/internal/group_state.h"
#include "raft/host/internal/slow_disk.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "spdlog/spdlog.h"
#include "util/check.h"
#include "util/random.h"
#include "util/thread_name.h"

namespace tally::raft::host {

namespace {

// Snapshot fetches waiting for a fetch thread; beyond it, a snapshot
// message is ignored (its leader sends it again).
constexpr size_t kMaxQueuedFetches = 100000;

absl::Status NoGroup(GroupId group) {
  return absl::NotFoundError(absl::StrCat("no raft group ", group, " here"));
}

class SteadyClockImpl final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::steady_clock::now(); }
};

class PoolExecutor final : public Executor {
 public:
  PoolExecutor(int threads, size_t max_queued)
      : pool_("snapshot-fetch", threads, max_queued) {}
  bool Post(std::function<void()> fn) override {
    return pool_.Post(std::move(fn));
  }

 private:
  util::ThreadPool pool_;
};

}  // namespace

const Clock* SteadyClock() {
  static const SteadyClockImpl* const clock = new SteadyClockImpl;
  return clock;
}

absl::Status BootstrapGroups(LogStore* log, const std::vector<GroupId>& groups,
                             const std::vector<NodeId>& voters) {
  Snapshot snap;
  snap.metadata.index = kBootstrapIndex;
  snap.metadata.term = 1;
  snap.metadata.conf_state.voters = voters;
  std::vector<GroupWrite> writes;
  for (GroupId g : groups) {
    GroupWrite& w = writes.emplace_back();
    w.group = g;
    w.hard_state = HardState{1, kNoNode, kBootstrapIndex};
    w.snapshot = snap;
  }
  return log->Write(writes, /*sync=*/true);
}

NodeHost::NodeHost(const HostOptions& options, LogStore* log,
                   Transport* transport, StateMachineFactory factory)
    : options_(options),
      clock_(options.clock != nullptr ? options.clock : SteadyClock()),
      log_(log),
      transport_(transport),
      factory_(std::move(factory)),
      slow_disk_(std::make_unique<SlowDiskDetector>(
          SlowDiskDetector::Options{.factor = options.slow_disk_factor})) {}

NodeHost::~NodeHost() { Stop(); }

absl::StatusOr<std::unique_ptr<NodeHost::GroupState>> NodeHost::OpenGroup(
    GroupId group, const PersistedGroup& persisted) {
  auto g = std::make_unique<GroupState>();
  g->id = group;
  absl::StatusOr<StateMachine*> sm = factory_(group);
  if (!sm.ok()) return sm.status();
  g->sm = *sm;
  g->storage = std::make_unique<MemoryStorage>();
  if (!persisted.snapshot.IsEmpty()) {
    g->storage->ApplySnapshot(persisted.snapshot);
  }
  std::vector<Entry> entries;
  for (const Entry& e : persisted.entries) {
    if (e.index > persisted.snapshot.metadata.index) entries.push_back(e);
  }
  g->storage->Append(entries);
  HardState hs = persisted.hard_state;
  hs.commit = std::max(hs.commit, persisted.snapshot.metadata.index);
  g->storage->SetHardState(hs);
  g->conf_history.emplace_back(persisted.snapshot.metadata.index,
                               persisted.snapshot.metadata.conf_state);
  g->random = std::make_unique<util::SeededRandom>(options_.seed * 1000003 +
                                                   group * 7919 + options_.id);
  Config c;
  c.id = options_.id;
  c.election_tick = options_.election_tick;
  c.heartbeat_tick = options_.heartbeat_tick;
  c.read_only = options_.lease_reads ? ReadOnlyOption::kLeaseBased
                                     : ReadOnlyOption::kSafe;
  c.lease_drift_margin = options_.lease_drift_margin;
  // Committed entries after the snapshot are handed out again: membership
  // changes must be re-applied to the core, and the state machine skips
  // what it already has.
  c.applied = persisted.snapshot.metadata.index;
  c.storage = g->storage.get();
  c.random = g->random.get();
  absl::StatusOr<std::unique_ptr<RawNode>> raw = RawNode::Create(c);
  if (!raw.ok()) return raw.status();
  g->raw = std::move(*raw);
  return g;
}

absl::Status NodeHost::Start() {
  absl::StatusOr<std::map<GroupId, PersistedGroup>> loaded = log_->Load();
  if (!loaded.ok()) return loaded.status();
  for (auto& [id, persisted] : *loaded) {
    absl::StatusOr<std::unique_ptr<GroupState>> g = OpenGroup(id, persisted);
    if (!g.ok()) return g.status();
    {
      absl::MutexLock l(&mu_);
      machines_[id] = (*g)->sm;
    }
    group_list_.push_back(g->get());
    Attend(**g);
    groups_[id] = std::move(*g);
  }
  PublishInfo();
  next_tick_ = clock_->Now() + std::chrono::milliseconds(options_.tick_ms);
  if (options_.driven) {
    TALLY_CHECK(options_.fetch_executor != nullptr,
                "a driven host needs a fetch executor");
    fetchers_ = options_.fetch_executor;
    return absl::OkStatus();
  }
  apply_thread_ = std::thread([this] {
    util::NameThisThread("raft-apply");
    ApplyLoop();
  });
  own_fetchers_ = std::make_unique<PoolExecutor>(
      std::max(1, options_.snapshot_fetchers), kMaxQueuedFetches);
  fetchers_ = own_fetchers_.get();
  raft_thread_ = std::thread([this] {
    util::NameThisThread("raft-loop");
    RaftLoop();
  });
  return absl::OkStatus();
}

void NodeHost::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  raft_waker_.Stop();
  if (raft_thread_.joinable()) raft_thread_.join();
  // Fetches in progress end, and those queued fail at once.
  transport_->CancelFetches();
  own_fetchers_.reset();
  {
    absl::MutexLock l(&apply_mu_);
    apply_stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
  const absl::Status down = absl::UnavailableError("node is shutting down");
  std::vector<std::function<void()>> left;
  {
    absl::MutexLock l(&mu_);
    left.swap(inbox_);
  }
  // A proposal in the log may still commit through the other nodes: its
  // outcome is unknown, unlike a read's or a transfer's.
  const absl::Status unknown = absl::DeadlineExceededError(
      "node shut down before the entry committed; the outcome is unknown "
      "(retry with the same session to find out)");
  for (auto& [id, g] : groups_) {
    for (auto& [index, p] : g->pending) p.done(unknown);
    for (auto& [ctx, r] : g->reads) r(down);
    for (auto& t : g->transfers) t.done(down);
  }
  absl::MutexLock l(&apply_mu_);
  for (auto& [group, waiters] : waiters_) {
    for (auto& [index, w] : waiters) w(down);
  }
  waiters_.clear();
}

void NodeHost::StorageFailed(const char* what, const absl::Status& st) {
  spdlog::critical(
      "[n={}] {} failed: {}; stopping, as going on could acknowledge what "
      "this node does not hold (restart it once the cause is fixed; it "
      "catches up from the others)",
      options_.id, what, st.ToString());
  spdlog::default_logger()->flush();
  std::abort();
}

void NodeHost::LogShedding(const char* why) {
  counters_.Shed();
  // At most once a second, with the count since.
  ++shed_since_log_;
  const Clock::TimePoint now = clock_->Now();
  if (now - last_shed_log_ < std::chrono::seconds(1)) return;
  spdlog::warn("[n={}] shedding load: {}; {} proposals refused", options_.id,
               why, shed_since_log_);
  last_shed_log_ = now;
  shed_since_log_ = 0;
}

void NodeHost::Post(std::function<void()> fn) {
  bool was_empty;
  {
    absl::MutexLock l(&mu_);
    was_empty = inbox_.empty();
    inbox_.push_back(std::move(fn));
  }
  // The raft loop sleeps only once it found the inbox empty.
  if (was_empty) raft_waker_.Wake();
}

void NodeHost::Propose(GroupId group, std::string data, ProposeCallback done) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) {
      done(absl::UnavailableError("node is shutting down"));
      return;
    }
    if (queued_proposals_ >= options_.max_queued_proposals) {
      LogShedding("too many proposals waiting for the raft loop");
      done(absl::ResourceExhaustedError(
          "too many proposals waiting for the raft loop; back off and retry"));
      return;
    }
    if (apply_backlog_.load() >= options_.max_apply_backlog) {
      LogShedding("applying committed entries is behind");
      done(absl::ResourceExhaustedError(
          "applying committed entries is behind; back off and retry"));
      return;
    }
    ++queued_proposals_;
  }
  Post([this, group, data = std::move(data), done = std::move(done)]() mutable {
    GroupState* found = Touch(group);
    if (found == nullptr) return done(NoGroup(group));
    GroupState& g = *found;
    if (g.arrived.empty()) proposing_.push_back(group);
    g.arrived.emplace_back(std::move(data), std::move(done));
  });
}

void NodeHost::ProposeArrived() {
  for (GroupId group : proposing_) {
    auto it = groups_.find(group);
    if (it == groups_.end()) continue;
    GroupState& g = *it->second;
    std::vector<std::pair<std::string, ProposeCallback>> arrived =
        std::exchange(g.arrived, {});
    Wake(g);
    std::vector<std::string> data;
    data.reserve(arrived.size());
    for (auto& [d, done] : arrived) data.push_back(std::move(d));
    absl::StatusOr<Raft::Proposed> proposed =
        g.raw->ProposeAll(std::move(data));
    for (size_t i = 0; i < arrived.size(); ++i) {
      ProposeCallback& done = arrived[i].second;
      if (!proposed.ok()) {
        done(proposed.status());
      } else if (i >= proposed->count) {
        done(proposed->rest);
      } else {
        counters_.Proposed();
        AddPending(g, proposed->first + i, std::move(done));
      }
    }
  }
  proposing_.clear();
}

void NodeHost::ProposeConfChange(GroupId group, ConfChange cc,
                                 ProposeCallback done) {
  Post([this, group, cc = std::move(cc), done = std::move(done)]() mutable {
    GroupState* found = Touch(group);
    if (found == nullptr) return done(NoGroup(group));
    GroupState& g = *found;
    Wake(g);
    if (g.raw->raft().role() == Role::kLeader &&
        InEffect(g.raw->raft().conf_state(), cc)) {
      return done(Applied{});  // index 0: nothing to propose
    }
    if (absl::Status ready = LearnersCaughtUp(g, cc); !ready.ok()) {
      return done(ready);
    }
    absl::StatusOr<Index> index = g.raw->ProposeConfChange(cc);
    if (!index.ok()) return done(index.status());
    AddPending(g, *index, std::move(done));
  });
}

bool NodeHost::InEffect(const ConfState& conf, const ConfChange& cc) {
  if (conf.IsJoint() || cc.changes.empty()) return false;
  for (const ConfChangeSingle& c : cc.changes) {
    const bool voter =
        std::count(conf.voters.begin(), conf.voters.end(), c.node) > 0;
    const bool learner = conf.IsLearner(c.node);
    switch (c.type) {
      case ConfChangeSingle::Type::kAddVoter:
        if (!voter) return false;
        break;
      case ConfChangeSingle::Type::kAddLearner:
        if (!learner) return false;
        break;
      case ConfChangeSingle::Type::kRemoveNode:
        if (voter || learner) return false;
        break;
    }
  }
  return true;
}

absl::Status NodeHost::LearnersCaughtUp(const GroupState& g,
                                        const ConfChange& cc) const {
  const Raft& r = g.raw->raft();
  if (r.role() != Role::kLeader) return absl::OkStatus();  // Propose refuses
  for (const ConfChangeSingle& c : cc.changes) {
    if (c.type != ConfChangeSingle::Type::kAddVoter ||
        !r.conf_state().IsLearner(c.node)) {
      continue;
    }
    // As etcd does: within a tenth of the log, so that the new voter does
    // not hold up commits (or lose the quorum) while it catches up.
    const Progress* pr = r.progress(c.node);
    const Index committed = r.log().committed();
    const Index match = pr == nullptr ? 0 : pr->match();
    if (match < committed - committed / 10) {
      return absl::FailedPreconditionError(
          absl::StrCat("learner n", c.node, " of group ", g.id,
                       " has not caught up yet (it has the log up to ", match,
                       " of ", committed, "); wait and promote it again"));
    }
  }
  return absl::OkStatus();
}

void NodeHost::AddPending(GroupState& g, Index index, ProposeCallback done) {
  // A proposal still waiting at this index lost it to another leader's
  // entry, which this node then overwrote with its own.
  auto old = g.pending.find(index);
  if (old != g.pending.end()) {
    old->second.done(absl::UnavailableError(
        "the entry was replaced by a new leader before it committed; it "
        "was not applied"));
  }
  g.pending[index] = {g.raw->raft().term(), std::move(done)};
}

void NodeHost::ReadIndex(GroupId group, bool allow_lease, ReadCallback done) {
  Post([this, group, allow_lease, done = std::move(done)]() mutable {
    GroupState* found = Touch(group);
    if (found == nullptr) return done(NoGroup(group));
    GroupState& g = *found;
    Wake(g);
    if (g.raw->raft().role() != Role::kLeader) {
      return done(absl::UnavailableError(
          absl::StrCat("node ", options_.id, " does not lead group ", group)));
    }
    const uint64_t ctx = next_read_context_++;
    absl::Status st = g.raw->ReadIndex(ctx, allow_lease);
    if (!st.ok()) return done(st);
    g.reads[ctx] = std::move(done);
  });
}

void NodeHost::TransferLeadership(GroupId group, NodeId target,
                                  std::function<void(absl::Status)> done) {
  Post([this, group, target, done = std::move(done)]() mutable {
    GroupState* found = Touch(group);
    if (found == nullptr) return done(NoGroup(group));
    GroupState& g = *found;
    Wake(g);
    if (g.raw->raft().lead() == target) return done(absl::OkStatus());
    absl::Status st = g.raw->TransferLeadership(target);
    if (!st.ok()) return done(st);
    g.transfers.push_back(
        {target, 2 * options_.election_tick, std::move(done)});
  });
}

void NodeHost::Deliver(std::vector<GroupMessage> msgs) {
  // When the answers arrived, not when the raft loop gets to them: a loop
  // held up by its own slow disk must not count against the followers.
  const Clock::TimePoint arrived = clock_->Now();
  Post([this, msgs = std::move(msgs), arrived]() {
    for (const GroupMessage& gm : msgs) {
      if (gm.msg.type == MessageType::kAppendResponse && !gm.msg.reject) {
        slow_disk_->AppendAcked(gm.group, gm.msg.from, gm.msg.index, arrived);
      }
      // Leadership handed to a node whose disk holds everything up: it
      // stays with the leader, whose transfer times out.
      if (gm.msg.type == MessageType::kTimeoutNow && slow_disk_->slow()) {
        continue;
      }
      GroupState* g = FindOrCreate(gm.group, gm.msg);
      if (g == nullptr) continue;
      if (gm.quiesce) {
        const Raft& r = g->raw->raft();
        if (gm.msg.from == r.lead() && gm.msg.term == r.term()) {
          g->quiet = true;
          g->quiet_since = clock_->Now();
          Attend(*g);  // its quiet status is to be published
        }
        continue;
      }
      // A follower wakes on any message. A leader hears answers to its
      // heartbeats: they keep it idle unless they bring work.
      const bool leader = g->raw->raft().role() == Role::kLeader;
      if (!leader) Wake(*g);
      if (gm.msg.type == MessageType::kSnapshot &&
          gm.msg.snapshot.metadata.index > g->raw->raft().log().committed()) {
        HandleSnapshotMessage(*g, gm);
        continue;
      }
      // A message for another node id (a stale address book) is dropped.
      g->raw->Step(gm.msg).IgnoreError();
      if (leader && !CanQuiesce(*g)) Wake(*g);
    }
  });
}

NodeHost::GroupState* NodeHost::FindOrCreate(GroupId group,
                                             const Message& first) {
  if (GroupState* g = Touch(group)) return g;
  // A leader reaching out to a replica this node does not have yet (a new
  // member): start it empty; the leader sends it a snapshot. A candidate
  // asking for a vote starts it too: a new voter that could not vote would
  // leave a configuration that needs it (a joint one, say) with no quorum
  // once the leader that added it is gone. An empty replica's log is behind
  // every candidate's, so it may vote for any of them.
  const bool starts_replica = first.type == MessageType::kAppend ||
                              first.type == MessageType::kHeartbeat ||
                              first.type == MessageType::kSnapshot ||
                              first.type == MessageType::kVote ||
                              first.type == MessageType::kPreVote;
  if (!starts_replica) return nullptr;
  absl::StatusOr<std::unique_ptr<GroupState>> g =
      OpenGroup(group, PersistedGroup{});
  if (!g.ok()) return nullptr;
  {
    absl::MutexLock l(&mu_);
    machines_[group] = (*g)->sm;
  }
  group_list_.push_back(g->get());
  Attend(**g);
  return (groups_[group] = std::move(*g)).get();
}

void NodeHost::HandleSnapshotMessage(GroupState& g, const GroupMessage& gm) {
  // The snapshot's data comes first: a fetch thread streams it from the
  // sender, the apply thread installs it in apply order, and then the core
  // learns of it. Until then, further snapshot messages are ignored (the
  // leader sends again if this fetch fails).
  if (g.fetching_snapshot) return;
  g.fetching_snapshot =
      fetchers_->Post([this, gm, sm = g.sm] { FetchSnapshot(gm, sm); });
}

void NodeHost::FetchSnapshot(const GroupMessage& gm, StateMachine* sm) {
  const Message& m = gm.msg;
  // Held in memory until installed: the state machine installs a snapshot
  // in one atomic write, which holds it in memory anyway.
  auto chunks = std::make_shared<std::vector<SnapshotChunk>>();
  absl::Status st = transport_->FetchSnapshot(
      m.from, gm.group, m.snapshot.metadata.index, [&](SnapshotChunk c) {
        chunks->push_back(std::move(c));
        return absl::OkStatus();
      });
  if (!st.ok()) {
    spdlog::warn("[g={} n={}] snapshot fetch from n{} failed: {}", gm.group,
                 options_.id, m.from, st.ToString());
  }
  auto finish = [this, gm](bool installed) {
    Post([this, gm, installed]() {
      GroupState* g = Touch(gm.group);
      if (g == nullptr) return;
      g->fetching_snapshot = false;
      if (installed) g->raw->Step(gm.msg).IgnoreError();
    });
  };
  if (!st.ok()) return finish(false);
  ApplyTask task;
  task.group = gm.group;
  task.run = [this, sm, chunks, finish, gm, id = options_.id]() {
    // The state machine may have applied past the fetched state while it
    // was fetched (the log reached it first): installing it would take the
    // state back and lose what was applied since. It holds all the
    // snapshot holds, so the snapshot counts as installed.
    if (!chunks->empty() && chunks->front().applied_index <= sm->applied()) {
      spdlog::info(
          "[g={} n={}] snapshot from n{} at applied index {} not installed: "
          "already applied up to {}",
          gm.group, id, gm.msg.from, chunks->front().applied_index,
          sm->applied());
      chunks->clear();
      return finish(true);
    }
    size_t next = 0;
    absl::Status st = sm->Import([&]() -> absl::StatusOr<SnapshotChunk> {
      if (next == chunks->size()) {
        return absl::DataLossError("snapshot stream ended without its end");
      }
      return std::move((*chunks)[next++]);
    });
    chunks->clear();
    if (st.ok()) {
      counters_.SnapshotInstalled();
    } else {
      spdlog::error("[g={} n={}] installing the snapshot from n{} failed: {}",
                    gm.group, id, gm.msg.from, st.ToString());
    }
    finish(st.ok());
  };
  std::vector<ApplyTask> tasks;
  tasks.push_back(std::move(task));
  EnqueueApply(std::move(tasks));
}

void NodeHost::ReportUnreachable(NodeId node) {
  Post([this, node]() {
    for (GroupState* g : group_list_) {
      Attend(*g);
      g->raw->ReportUnreachable(node);
      // A quiet group wakes when it loses touch with a member: the
      // followers of a lost leader elect another, and a leader cut off from
      // its followers finds out by check-quorum that it no longer leads
      // (asleep, it would go on believing it does).
      const Raft& r = g->raw->raft();
      if (r.lead() == node ||
          (r.role() == Role::kLeader && r.progress(node) != nullptr)) {
        Wake(*g);
      }
    }
  });
}

void NodeHost::ReportSnapshot(GroupId group, NodeId node, bool success) {
  Post([this, group, node, success]() {
    if (GroupState* g = Touch(group)) g->raw->ReportSnapshot(node, success);
  });
}

absl::Status NodeHost::ExportSnapshot(GroupId group, NodeId to, Index min_index,
                                      const ChunkSink& sink) {
  StateMachine* sm = nullptr;
  {
    absl::MutexLock l(&mu_);
    auto it = machines_.find(group);
    if (it == machines_.end()) return NoGroup(group);
    sm = it->second;
    ++exports_[{group, to}];
  }
  absl::Status st = sm->Export(min_index, sink);
  {
    absl::MutexLock l(&mu_);
    if (--exports_[{group, to}] == 0) exports_.erase({group, to});
  }
  ReportSnapshot(group, to, st.ok());
  return st;
}

std::vector<GroupInfo> NodeHost::Groups() const {
  absl::MutexLock l(&mu_);
  std::vector<GroupInfo> out;
  for (const auto& [id, info] : info_) out.push_back(info);
  return out;
}

std::vector<GroupInfo> NodeHost::GroupAndFurthestBehind(GroupId group) const {
  absl::MutexLock l(&mu_);
  std::vector<GroupInfo> out;
  if (auto it = info_.find(group); it != info_.end()) out.push_back(it->second);
  const GroupInfo* behind = nullptr;
  for (GroupId id : lagging_) {
    const GroupInfo& info = info_.at(id);
    if (id != group &&
        (behind == nullptr ||
         info.commit - info.applied > behind->commit - behind->applied)) {
      behind = &info;
    }
  }
  if (behind != nullptr) out.push_back(*behind);
  return out;
}

absl::StatusOr<GroupInfo> NodeHost::Group(GroupId group) const {
  absl::MutexLock l(&mu_);
  auto it = info_.find(group);
  if (it == info_.end()) return NoGroup(group);
  return it->second;
}

void NodeHost::PublishInfo() {
  // Only groups that are awake, or went quiet since the last time: with
  // thousands of idle groups, rebuilding every status each tick cost more
  // than everything else the idle node does.
  std::vector<GroupInfo> changed;
  for (GroupState* g : attention_) {
    if (g->quiet && g->published_quiet) continue;
    g->published_quiet = g->quiet;
    const Raft& r = g->raw->raft();
    GroupInfo& i = changed.emplace_back();
    i.group = g->id;
    i.leader = r.lead();
    i.term = r.term();
    i.role = r.role();
    i.commit = r.log().committed();
    i.applied = g->sm->applied();
    i.first_index = g->storage->FirstIndex();
    i.last_index = r.log().LastIndex();
    i.conf = r.conf_state();
    i.quiet = g->quiet;
  }
  absl::MutexLock l(&mu_);
  for (GroupInfo& i : changed) {
    if (i.commit > i.applied) {
      lagging_.insert(i.group);
    } else {
      lagging_.erase(i.group);
    }
    info_[i.group] = std::move(i);
  }
  if (info_.size() != groups_.size()) {  // a group was removed
    for (auto it = info_.begin(); it != info_.end();) {
      if (groups_.count(it->first)) {
        ++it;
      } else {
        lagging_.erase(it->first);
        it = info_.erase(it);
      }
    }
  }
}

void NodeHost::RaftLoop() {
  while (true) {
    bool idle;
    {
      absl::MutexLock l(&mu_);
      if (stopping_) return;
      idle = inbox_.empty();
    }
    // Until the next tick by the steady clock, not by absl::Mutex's timed
    // wait, which follows the wall clock: with the wall clock stepped back
    // (or faked ahead), ticks, and so heartbeats and elections, stopped
    // while nothing arrived.
    if (idle && raft_waker_.SleepUntil(next_tick_)) return;
    RunRaftPass();
  }
}

bool NodeHost::RunRaftPass() {
  std::vector<std::function<void()>> work;
  {
    absl::MutexLock l(&mu_);
    work.swap(inbox_);
    queued_proposals_ = 0;
  }
  const auto tick = std::chrono::milliseconds(options_.tick_ms);
  const Clock::TimePoint now = clock_->Now();
  const bool ticked = now >= next_tick_;
  if (ticked) {
    // Ticks missed while this thread stood still (the process was paused,
    // the machine starved it) are not replayed, but they count against
    // every lease, before any read waiting in `work` is answered.
    const uint64_t missed = static_cast<uint64_t>((now - next_tick_) / tick);
    if (missed > 0) {
      for (GroupState* g : attention_) {
        if (!g->quiet) g->raw->AdvanceClock(missed);  // Wake counts those
      }
    }
    next_tick_ = std::max(next_tick_ + tick, now);
    Tick();
    CheckDisk(now);
  }
  for (auto& fn : work) fn();
  ProposeArrived();
  ProcessReadies(/*after_work=*/!work.empty());
  // Status is published once a tick: cheap with thousands of groups.
  if (ticked) {
    PublishInfo();
    Settle();
  }
  return ticked || !work.empty();
}

void NodeHost::CheckDisk(Clock::TimePoint now) {
  switch (slow_disk_->Check(now)) {
    case SlowDiskDetector::Change::kSlow:
      counters_.SlowDisk(true);
      spdlog::warn(
          "[n={}] this node's disk is the slow part of replication: {}; "
          "handing the groups it leads to followers until it is fast again",
          options_.id, slow_disk_->Describe());
      break;
    case SlowDiskDetector::Change::kRecovered:
      counters_.SlowDisk(false);
      spdlog::info("[n={}] disk fast again: {}; taking leadership again",
                   options_.id, slow_disk_->Describe());
      return;
    case SlowDiskDetector::Change::kNone:
      break;
  }
  if (slow_disk_->slow()) HandOffLeadership();
}

// Each group led here, with no transfer under way, goes to the follower
// that answers appends fastest, or else to the most caught-up one. One log
// line per pass, however many groups: a node may lead thousands.
void NodeHost::HandOffLeadership() {
  std::map<NodeId, int> handed;  // groups, by the node they go to
  for (GroupState* g : group_list_) {
    const Raft& r = g->raw->raft();
    if (r.role() != Role::kLeader || !g->transfers.empty() ||
        r.lead_transferee() != kNoNode || r.conf_state().IsJoint()) {
      continue;
    }
    NodeId target = kNoNode;
    Index best = 0;
    for (NodeId id : r.conf_state().voters) {
      if (id == options_.id) continue;
      const Progress* pr = r.progress(id);
      if (pr == nullptr) continue;
      if (id == slow_disk_->fastest_peer()) {
        target = id;
        break;
      }
      if (target == kNoNode || pr->match() > best) {
        target = id;
        best = pr->match();
      }
    }
    if (target == kNoNode) continue;  // the only voter
    Wake(*g);
    if (!g->raw->TransferLeadership(target).ok()) continue;
    counters_.HandedOff();
    ++handed[target];
    g->transfers.push_back(
        {target, 2 * options_.election_tick, [](absl::Status) {}});
  }
  if (handed.empty()) return;
  std::string to;
  for (const auto& [node, groups] : handed) {
    absl::StrAppend(&to, to.empty() ? "" : ", ", groups, " to n", node);
  }
  spdlog::info("[n={}] handing leadership of groups away (slow disk): {}",
               options_.id, to);
}

NodeHost::GroupState* NodeHost::Touch(GroupId group) {
  auto it = groups_.find(group);
  if (it == groups_.end()) return nullptr;
  Attend(*it->second);
  return it->second.get();
}

void NodeHost::Attend(GroupState& g) {
  if (g.attended) return;
  g.attended = true;
  attention_.push_back(&g);
}

void NodeHost::Settle() {
  std::erase_if(attention_, [](GroupState* g) {
    if (!g->quiet || !g->published_quiet || !g->idle_checked) return false;
    g->attended = false;
    return true;
  });
}

void NodeHost::Tick() {
  // By index: attention_ may grow meanwhile.
  for (size_t i = 0; i < attention_.size(); ++i) {
    GroupState* g = attention_[i];
    if (g->quiet) continue;
    // Quiesce instead of ticking: the tick's heartbeats would follow the
    // quiesce message and wake the followers again.
    if (options_.quiesce_after_ticks > 0 &&
        g->idle_ticks >= options_.quiesce_after_ticks && CanQuiesce(*g)) {
      Quiesce(*g);
      continue;
    }
    g->raw->Tick();
    CheckSnapshotTimeouts(*g);
    for (auto& t : g->transfers) --t.ticks_left;
    g->idle_ticks = CanQuiesce(*g) ? g->idle_ticks + 1 : 0;
  }
}

bool NodeHost::CanQuiesce(const GroupState& g) const {
  const Raft& r = g.raw->raft();
  if (r.role() != Role::kLeader || r.lead_transferee() != kNoNode ||
      r.conf_state().IsJoint() || !g.pending.empty() || !g.reads.empty() ||
      !g.transfers.empty() || g.fetching_snapshot) {
    return false;
  }
  const Index last = r.log().LastIndex();
  if (r.log().committed() != last || g.sm->applied() != last) return false;
  for (NodeId id : r.conf_state().Members()) {
    if (id == options_.id) continue;
    const Progress* pr = r.progress(id);
    if (pr == nullptr || pr->match() != last) return false;
  }
  return true;
}

void NodeHost::CheckSnapshotTimeouts(GroupState& g) {
  const Raft& r = g.raw->raft();
  if (r.role() != Role::kLeader || options_.snapshot_timeout_ticks <= 0) {
    g.snapshot_wait.clear();
    return;
  }
  for (NodeId id : r.conf_state().Members()) {
    const Progress* pr = r.progress(id);
    if (id == options_.id || pr == nullptr ||
        pr->state() != Progress::State::kSnapshot) {
      g.snapshot_wait.erase(id);
      continue;
    }
    int& waited = g.snapshot_wait[id];
    if (++waited < options_.snapshot_timeout_ticks) continue;
    waited = 0;
    {
      absl::MutexLock l(&mu_);
      if (exports_.count({g.id, id})) continue;  // being fetched
    }
    spdlog::warn(
        "[g={} n={} t={}] n{} has not fetched the snapshot offered "
        "{} ticks ago; offering again",
        g.id, options_.id, r.term(), id, options_.snapshot_timeout_ticks);
    g.raw->ReportSnapshot(id, false);
  }
}

void NodeHost::Quiesce(GroupState& g) {
  const Raft& r = g.raw->raft();
  g.quiet = true;
  g.quiet_since = clock_->Now();
  Attend(g);  // its quiet status is to be published
  for (NodeId id : r.conf_state().Members()) {
    if (id == options_.id) continue;
    GroupMessage gm;
    gm.group = g.id;
    gm.quiesce = true;
    gm.msg.type = MessageType::kHeartbeat;
    gm.msg.from = options_.id;
    gm.msg.to = id;
    gm.msg.term = r.term();
    gm.msg.commit = r.log().committed();
    transport_->Send(id, {gm});
  }
}

void NodeHost::Wake(GroupState& g) {
  if (g.quiet) {
    g.raw->AdvanceClock(
        static_cast<uint64_t>((clock_->Now() - g.quiet_since) /
                              std::chrono::milliseconds(options_.tick_ms)));
  }
  g.quiet = false;
  g.idle_ticks = 0;
  Attend(g);
}

}  // namespace tally::raft::host
