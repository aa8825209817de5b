#include "raft/host/node_host.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "raft/config.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "util/check.h"
#include "util/random.h"

namespace tally::raft::host {

namespace {

absl::Status NoGroup(GroupId group) {
  return absl::NotFoundError(absl::StrCat("no raft group ", group, " here"));
}

}  // namespace

struct NodeHost::GroupState {
  GroupId id = 0;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<util::SeededRandom> random;
  std::unique_ptr<RawNode> raw;
  StateMachine* sm = nullptr;
  struct Pending {
    Term term;
    ProposeCallback done;
  };
  // Proposals by the index they were appended at, until applied.
  std::map<Index, Pending> pending;
  // Reads by context, until the leader answers.
  std::map<uint64_t, ReadCallback> reads;
  // The configuration after each applied change (and at the snapshot), to
  // name the configuration a compaction snapshot covers.
  std::vector<std::pair<Index, ConfState>> conf_history;
  bool fetching_snapshot = false;
  struct Transfer {
    NodeId target;
    int ticks_left;
    std::function<void(absl::Status)> done;
  };
  std::vector<Transfer> transfers;
  bool quiet = false;
  // Leader: ticks in a row with nothing to do.
  int idle_ticks = 0;
};

struct NodeHost::ApplyTask {
  GroupId group = 0;
  StateMachine* sm = nullptr;
  std::vector<Entry> entries;
  std::vector<ProposeCallback> callbacks;  // one per entry, may be empty
  // Instead of entries: work to run in apply order (snapshot install).
  std::function<void()> run;
};

NodeHost::NodeHost(const HostOptions& options, LogStore* log,
                   Transport* transport, StateMachineFactory factory)
    : options_(options),
      log_(log),
      transport_(transport),
      factory_(std::move(factory)) {}

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
    groups_[id] = std::move(*g);
  }
  PublishInfo();
  apply_thread_ = std::thread([this] { ApplyLoop(); });
  raft_thread_ = std::thread([this] { RaftLoop(); });
  return absl::OkStatus();
}

void NodeHost::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (raft_thread_.joinable()) raft_thread_.join();
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
  for (auto& [id, g] : groups_) {
    for (auto& [index, p] : g->pending) p.done(down);
    for (auto& [ctx, r] : g->reads) r(down);
    for (auto& t : g->transfers) t.done(down);
  }
  absl::MutexLock l(&apply_mu_);
  for (auto& [group, waiters] : waiters_) {
    for (auto& [index, w] : waiters) w(down);
  }
  waiters_.clear();
}

void NodeHost::Post(std::function<void()> fn) {
  absl::MutexLock l(&mu_);
  inbox_.push_back(std::move(fn));
}

void NodeHost::Propose(GroupId group, std::string data, ProposeCallback done) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) {
      done(absl::UnavailableError("node is shutting down"));
      return;
    }
    if (queued_proposals_ >= options_.max_queued_proposals) {
      done(absl::ResourceExhaustedError(
          "too many proposals waiting for the raft loop; back off and retry"));
      return;
    }
    if (apply_backlog_.load() >= options_.max_apply_backlog) {
      done(absl::ResourceExhaustedError(
          "applying committed entries is behind; back off and retry"));
      return;
    }
    ++queued_proposals_;
  }
  Post([this, group, data = std::move(data), done = std::move(done)]() mutable {
    auto it = groups_.find(group);
    if (it == groups_.end()) return done(NoGroup(group));
    GroupState& g = *it->second;
    Wake(g);
    absl::StatusOr<Index> index = g.raw->Propose(std::move(data));
    if (!index.ok()) return done(index.status());
    auto old = g.pending.find(*index);
    if (old != g.pending.end()) {
      old->second.done(absl::UnavailableError(
          "the entry was replaced by a new leader before it committed; it "
          "was not applied"));
    }
    g.pending[*index] = {g.raw->raft().term(), std::move(done)};
  });
}

void NodeHost::ProposeConfChange(GroupId group, ConfChange cc,
                                 ProposeCallback done) {
  Post([this, group, cc = std::move(cc), done = std::move(done)]() mutable {
    auto it = groups_.find(group);
    if (it == groups_.end()) return done(NoGroup(group));
    GroupState& g = *it->second;
    Wake(g);
    absl::StatusOr<Index> index = g.raw->ProposeConfChange(cc);
    if (!index.ok()) return done(index.status());
    g.pending[*index] = {g.raw->raft().term(), std::move(done)};
  });
}

void NodeHost::ReadIndex(GroupId group, bool allow_lease, ReadCallback done) {
  Post([this, group, allow_lease, done = std::move(done)]() mutable {
    auto it = groups_.find(group);
    if (it == groups_.end()) return done(NoGroup(group));
    GroupState& g = *it->second;
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
    auto it = groups_.find(group);
    if (it == groups_.end()) return done(NoGroup(group));
    GroupState& g = *it->second;
    Wake(g);
    if (g.raw->raft().lead() == target) return done(absl::OkStatus());
    absl::Status st = g.raw->TransferLeadership(target);
    if (!st.ok()) return done(st);
    g.transfers.push_back(
        {target, 2 * options_.election_tick, std::move(done)});
  });
}

void NodeHost::Deliver(std::vector<GroupMessage> msgs) {
  Post([this, msgs = std::move(msgs)]() {
    for (const GroupMessage& gm : msgs) {
      GroupState* g = FindOrCreate(gm.group, gm.msg);
      if (g == nullptr) continue;
      if (gm.quiesce) {
        const Raft& r = g->raw->raft();
        if (gm.msg.from == r.lead() && gm.msg.term == r.term()) g->quiet = true;
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
  auto it = groups_.find(group);
  if (it != groups_.end()) return it->second.get();
  // A leader reaching out to a replica this node does not have yet (a new
  // member): start it empty; the leader sends it a snapshot.
  const bool from_leader = first.type == MessageType::kAppend ||
                           first.type == MessageType::kHeartbeat ||
                           first.type == MessageType::kSnapshot;
  if (!from_leader) return nullptr;
  absl::StatusOr<std::unique_ptr<GroupState>> g =
      OpenGroup(group, PersistedGroup{});
  if (!g.ok()) return nullptr;
  {
    absl::MutexLock l(&mu_);
    machines_[group] = (*g)->sm;
  }
  return (groups_[group] = std::move(*g)).get();
}

void NodeHost::HandleSnapshotMessage(GroupState& g, const GroupMessage& gm) {
  // The snapshot's data comes first, streamed from the sender into the
  // state machine in apply order; then the core learns of it.
  if (g.fetching_snapshot) return;
  g.fetching_snapshot = true;
  ApplyTask task;
  task.group = g.id;
  task.run = [this, gm, sm = g.sm]() {
    const Message& m = gm.msg;
    absl::Status st = transport_->FetchSnapshot(m.from, gm.group,
                                                m.snapshot.metadata.index, sm);
    Post([this, gm, ok = st.ok()]() {
      auto it = groups_.find(gm.group);
      if (it == groups_.end()) return;
      it->second->fetching_snapshot = false;
      if (ok) it->second->raw->Step(gm.msg).IgnoreError();
    });
  };
  EnqueueApply(std::move(task));
}

void NodeHost::ReportUnreachable(NodeId node) {
  Post([this, node]() {
    for (auto& [id, g] : groups_) {
      g->raw->ReportUnreachable(node);
      if (g->raw->raft().lead() == node) Wake(*g);
    }
  });
}

void NodeHost::ReportSnapshot(GroupId group, NodeId node, bool success) {
  Post([this, group, node, success]() {
    auto it = groups_.find(group);
    if (it != groups_.end()) it->second->raw->ReportSnapshot(node, success);
  });
}

absl::Status NodeHost::ExportSnapshot(GroupId group, Index min_index,
                                      const ChunkSink& sink) {
  StateMachine* sm = nullptr;
  {
    absl::MutexLock l(&mu_);
    auto it = machines_.find(group);
    if (it == machines_.end()) return NoGroup(group);
    sm = it->second;
  }
  return sm->Export(min_index, sink);
}

std::vector<GroupInfo> NodeHost::Groups() const {
  absl::MutexLock l(&mu_);
  std::vector<GroupInfo> out;
  for (const auto& [id, info] : info_) out.push_back(info);
  return out;
}

absl::StatusOr<GroupInfo> NodeHost::Group(GroupId group) const {
  absl::MutexLock l(&mu_);
  auto it = info_.find(group);
  if (it == info_.end()) return NoGroup(group);
  return it->second;
}

void NodeHost::PublishInfo() {
  std::map<GroupId, GroupInfo> info;
  for (const auto& [id, g] : groups_) {
    const Raft& r = g->raw->raft();
    GroupInfo& i = info[id];
    i.group = id;
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
  info_ = std::move(info);
}

void NodeHost::RaftLoop() {
  using Clock = std::chrono::steady_clock;
  const auto tick = std::chrono::milliseconds(options_.tick_ms);
  auto next_tick = Clock::now() + tick;
  while (true) {
    std::vector<std::function<void()>> work;
    {
      absl::MutexLock l(&mu_);
      const auto wait = next_tick - Clock::now();
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return !inbox_.empty() || stopping_;
      };
      if (wait.count() > 0) {
        mu_.AwaitWithTimeout(absl::Condition(&ready), absl::FromChrono(wait));
      }
      if (stopping_) return;
      work.swap(inbox_);
      queued_proposals_ = 0;
    }
    const bool ticked = Clock::now() >= next_tick;
    if (ticked) {
      next_tick = std::max(next_tick + tick, Clock::now());
      Tick();
    }
    for (auto& fn : work) fn();
    ProcessReadies();
    // Status is published once a tick: cheap with thousands of groups.
    if (ticked) PublishInfo();
  }
}

void NodeHost::Tick() {
  for (auto& [id, g] : groups_) {
    if (g->quiet) continue;
    // Quiesce instead of ticking: the tick's heartbeats would follow the
    // quiesce message and wake the followers again.
    if (options_.quiesce_after_ticks > 0 &&
        g->idle_ticks >= options_.quiesce_after_ticks && CanQuiesce(*g)) {
      Quiesce(*g);
      continue;
    }
    g->raw->Tick();
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

void NodeHost::Quiesce(GroupState& g) {
  const Raft& r = g.raw->raft();
  g.quiet = true;
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
  g.quiet = false;
  g.idle_ticks = 0;
}

void NodeHost::ProcessReadies() {
  for (int round = 0; round < 8; ++round) {
    std::vector<std::pair<GroupState*, Ready>> readies;
    for (auto& [id, g] : groups_) {
      if (g->raw->HasReady()) readies.emplace_back(g.get(), g->raw->GetReady());
    }
    if (readies.empty()) return;

    // 1. Persist every group's entries and hard state in one batch.
    std::vector<GroupWrite> writes;
    bool sync = false;
    for (auto& [g, rd] : readies) {
      if (!rd.hard_state && !rd.snapshot && rd.entries.empty()) continue;
      writes.push_back({g->id, rd.hard_state, rd.snapshot, rd.entries, {}, 0});
      sync = sync || rd.must_sync;
    }
    if (!writes.empty()) {
      absl::Status st = log_->Write(writes, sync);
      TALLY_CHECK(st.ok(), st.ToString().c_str());
    }
    std::map<NodeId, std::vector<GroupMessage>> out;
    for (auto& [g, rd] : readies) {
      if (rd.snapshot) {
        g->storage->ApplySnapshot(*rd.snapshot);
        g->conf_history.assign(
            1, {rd.snapshot->metadata.index, rd.snapshot->metadata.conf_state});
      }
      if (rd.hard_state) g->storage->SetHardState(*rd.hard_state);
      g->storage->Append(rd.entries);
      for (Message& m : rd.messages) {
        const NodeId to = m.to;
        out[to].push_back({g->id, std::move(m)});
      }
    }
    // 2. Send, batched per destination node.
    for (auto& [to, msgs] : out) transport_->Send(to, std::move(msgs));

    // 3. Apply (on the apply thread) and 4. advance.
    for (auto& [g, rd] : readies) {
      ApplyTask task;
      task.group = g->id;
      task.sm = g->sm;
      for (const Entry& e : rd.committed_entries) {
        ProposeCallback cb;
        auto p = g->pending.find(e.index);
        if (p != g->pending.end()) {
          if (p->second.term == e.term) {
            cb = std::move(p->second.done);
          } else {
            p->second.done(absl::UnavailableError(
                "leadership changed before the entry committed; it was not "
                "applied"));
          }
          g->pending.erase(p);
        }
        if (e.type == EntryType::kConfChange) {
          absl::StatusOr<ConfChange> cc = DecodeConfChange(e.data);
          TALLY_CHECK(cc.ok(), "undecodable membership change in the log");
          absl::StatusOr<ConfState> cs = g->raw->ApplyConfChange(*cc);
          if (cs.ok()) g->conf_history.emplace_back(e.index, *cs);
          if (!cs.ok() && cb) {
            cb(cs.status());
            cb = nullptr;
          }
        }
        task.entries.push_back(e);
        task.callbacks.push_back(std::move(cb));
      }
      for (const ReadState& rs : rd.read_states) {
        auto r = g->reads.find(rs.context);
        if (r == g->reads.end()) continue;
        WaitApplied(g->id, rs.index, std::move(r->second));
        g->reads.erase(r);
      }
      if (rd.soft_state && rd.soft_state->role != Role::kLeader) {
        // Reads in flight at a deposed leader are never answered.
        for (auto& [ctx, r] : g->reads) {
          r(absl::UnavailableError("leadership changed during the read"));
        }
        g->reads.clear();
      }
      g->raw->Advance(rd);
      if (!task.entries.empty()) EnqueueApply(std::move(task));
      for (auto it = g->transfers.begin(); it != g->transfers.end();) {
        if (g->raw->raft().lead() == it->target) {
          it->done(absl::OkStatus());
        } else if (it->ticks_left <= 0) {
          it->done(absl::DeadlineExceededError(
              absl::StrCat("leadership of group ", g->id,
                           " did not move to node ", it->target, " in time")));
        } else {
          ++it;
          continue;
        }
        it = g->transfers.erase(it);
      }
    }
  }
}

void NodeHost::MaybeCompact(GroupState& g, Index durable) {
  if (durable <= g.storage->GetSnapshot()->metadata.index ||
      durable > g.storage->LastIndex()) {
    return;
  }
  ConfState conf;
  for (const auto& [index, cs] : g.conf_history) {
    if (index <= durable) conf = cs;
  }
  absl::Status st = g.storage->CreateSnapshot(durable, conf, "");
  if (!st.ok()) return;
  const Snapshot snap = *g.storage->GetSnapshot();
  const Index compact_to =
      durable > options_.compaction_lag ? durable - options_.compaction_lag : 0;
  std::vector<GroupWrite> w(1);
  w[0].group = g.id;
  w[0].compact = snap;
  w[0].compact_to = compact_to;
  st = log_->Write(w, /*sync=*/false);
  TALLY_CHECK(st.ok(), st.ToString().c_str());
  if (compact_to >= g.storage->FirstIndex()) {
    g.storage->Compact(compact_to).IgnoreError();
  }
  // Keep the configuration in force at the snapshot and what follows.
  std::vector<std::pair<Index, ConfState>> kept = {{durable, conf}};
  for (auto& h : g.conf_history) {
    if (h.first > durable) kept.push_back(h);
  }
  g.conf_history = std::move(kept);
}

void NodeHost::EnqueueApply(ApplyTask task) {
  apply_backlog_ += task.entries.size();
  absl::MutexLock l(&apply_mu_);
  apply_queue_.push_back(std::move(task));
}

void NodeHost::ApplyLoop() {
  while (true) {
    ApplyTask task;
    {
      absl::MutexLock l(&apply_mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(apply_mu_) {
        return !apply_queue_.empty() || apply_stopping_;
      };
      apply_mu_.Await(absl::Condition(&ready));
      if (apply_queue_.empty()) return;
      task = std::move(apply_queue_.front());
      apply_queue_.pop_front();
    }
    if (task.run) {
      task.run();
      continue;
    }
    absl::StatusOr<std::vector<std::string>> results =
        task.sm->Apply(task.entries);
    TALLY_CHECK(results.ok(), results.status().ToString().c_str());
    apply_backlog_ -= task.entries.size();
    for (size_t i = 0; i < task.entries.size(); ++i) {
      if (task.callbacks[i]) {
        task.callbacks[i](Applied{task.entries[i].index, (*results)[i]});
      }
    }
    const Index applied = task.sm->applied();
    FireWaiters(task.group, applied);
    // Snapshot and compact now and then. The state machine syncs first so
    // that the log never drops entries the state does not durably hold.
    Index& last = applied_at_last_snapshot_[task.group];
    if (applied >= last + options_.snapshot_every) {
      last = applied;
      absl::StatusOr<Index> durable = task.sm->Sync();
      TALLY_CHECK(durable.ok(), durable.status().ToString().c_str());
      Post([this, group = task.group, d = *durable]() {
        auto it = groups_.find(group);
        if (it != groups_.end()) MaybeCompact(*it->second, d);
      });
    }
  }
}

void NodeHost::WaitApplied(GroupId group, Index index, ReadCallback done) {
  StateMachine* sm = nullptr;
  {
    absl::MutexLock l(&mu_);
    sm = machines_[group];
  }
  {
    absl::MutexLock l(&apply_mu_);
    if (sm == nullptr || sm->applied() < index) {
      waiters_[group].emplace(index, std::move(done));
      return;
    }
  }
  done(index);
}

void NodeHost::FireWaiters(GroupId group, Index applied) {
  std::vector<std::pair<Index, ReadCallback>> ready;
  {
    absl::MutexLock l(&apply_mu_);
    auto& w = waiters_[group];
    auto end = w.upper_bound(applied);
    for (auto it = w.begin(); it != end; ++it) {
      ready.emplace_back(it->first, std::move(it->second));
    }
    w.erase(w.begin(), end);
  }
  for (auto& [index, cb] : ready) cb(index);
}

}  // namespace tally::raft::host
