#include "tests/hostsim/host_simulation.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/conf_change.h"
#include "tests/hostsim/internal/world.h"
#include "tests/sim/conf_changes.h"

namespace tally::hostsim {

std::string_view DefectName(Defect d) {
  switch (d) {
    case Defect::kNone:
      return "none";
    case Defect::kDiskForgetsSynced:
      return "disk-forgets-synced";
    case Defect::kLeaderSkipsSync:
      return "leader-skips-sync";
    case Defect::kReadBeforeApplied:
      return "read-before-applied";
    case Defect::kClockDriftBeyondBound:
      return "clock-drift-beyond-bound";
  }
  return "?";
}

HostSimCounts& HostSimCounts::operator+=(const HostSimCounts& o) {
  ticks += o.ticks;
  acked_writes += o.acked_writes;
  acked_reads += o.acked_reads;
  unknown += o.unknown;
  crashes += o.crashes;
  partitions += o.partitions;
  pauses += o.pauses;
  snapshots_fetched += o.snapshots_fetched;
  conf_changes += o.conf_changes;
  transfers += o.transfers;
  leaderships += o.leaderships;
  unchecked_keys += o.unchecked_keys;
  locks_held += o.locks_held;
  lock_pauses += o.lock_pauses;
  fenced_writes += o.fenced_writes;
  stale_writes_refused += o.stale_writes_refused;
  idem_completed += o.idem_completed;
  idem_replays += o.idem_replays;
  idem_stale_refused += o.idem_stale_refused;
  return *this;
}

std::optional<Defect> ParseDefect(std::string_view name) {
  for (Defect d :
       {Defect::kNone, Defect::kDiskForgetsSynced, Defect::kLeaderSkipsSync,
        Defect::kReadBeforeApplied, Defect::kClockDriftBeyondBound}) {
    if (DefectName(d) == name) return d;
  }
  return std::nullopt;
}

namespace internal {

Plan DrawPlan(util::SeededRandom& r, const HostSimOptions& o) {
  const int nodes = o.nodes;
  Plan p;
  p.nodes = nodes != 0 ? nodes : (r.Chance(0.5) ? 3 : 5);
  const double drops[] = {0, 0.01, 0.05, 0.2};
  const double dups[] = {0, 0.01, 0.05};
  const int delays[] = {1, 3, 10, 25};
  const double crashes[] = {0, 0.002, 0.01, 0.03};
  const double partitions[] = {0, 0.003, 0.01};
  const double pauses[] = {0, 0.003, 0.01};
  const double clients[] = {0.1, 0.5, 0.9};
  const int applies[] = {1, 4};
  const double drifts[] = {0, 0.005};
  p.drop = drops[r.Uniform(4)];
  p.duplicate = dups[r.Uniform(3)];
  p.max_delay_steps = delays[r.Uniform(4)];
  p.crash = crashes[r.Uniform(4)];
  p.partition = partitions[r.Uniform(3)];
  p.pause = pauses[r.Uniform(3)];
  p.client = clients[r.Uniform(3)];
  p.apply_rate = applies[r.Uniform(2)];
  const double changes[] = {0, 0.01, 0.03};
  const double transfers[] = {0, 0.01};
  p.conf_change = changes[r.Uniform(3)];
  p.transfer = transfers[r.Uniform(2)];
  p.voters = p.conf_change > 0 && p.nodes == 5 ? 3 : p.nodes;
  p.drift = drifts[r.Uniform(2)];
  if (o.lock_clients) {
    const double lock_pauses[] = {0, 0.01, 0.03};
    p.lock_pause = lock_pauses[r.Uniform(3)];
  }
  if (o.defect == Defect::kClockDriftBeyondBound) p.drift = 0.3;
  return p;
}

void SimTransport::Send(NodeId to, std::vector<GroupMessage> msgs) {
  world_->Send(self_, to, std::move(msgs));
}

absl::Status SimTransport::FetchSnapshot(NodeId from, GroupId group,
                                         Index min_index,
                                         const raft::host::ChunkSink& sink) {
  return world_->Fetch(self_, from, group, min_index, sink);
}

void World::Trace(const std::string& line) {
  if (options_.trace) {
    std::printf("[%6llu] %s\n", static_cast<unsigned long long>(step_),
                line.c_str());
  }
}

void World::Fail(std::string what) {
  if (result_.violation) return;
  Trace("VIOLATION: " + what);
  result_.violation = std::move(what);
}

void World::Send(NodeId from, NodeId to, std::vector<GroupMessage> msgs) {
  if (to == 0 || to > nodes_.size()) return;
  if (in_flight_msgs_ + msgs.size() > kMaxInFlight) {
    return Fail(absl::StrCat("message storm: ", in_flight_msgs_ + msgs.size(),
                             " messages in flight"));
  }
  if (faults_on_ && random_.Chance(plan_.drop)) return;
  const int copies = faults_on_ && random_.Chance(plan_.duplicate) ? 2 : 1;
  for (int i = 0; i < copies; ++i) {
    const uint64_t delay =
        1 + (faults_on_ ? random_.Uniform(plan_.max_delay_steps) : 0);
    in_flight_msgs_ += msgs.size();
    in_flight_.emplace(std::make_pair(step_ + delay, random_.Next()),
                       Packet{from, to, msgs});
  }
}

absl::Status World::Fetch(NodeId self, NodeId from, GroupId group,
                          Index min_index, const raft::host::ChunkSink& sink) {
  if (from == 0 || from > nodes_.size()) {
    return absl::UnavailableError("no such node");
  }
  Node& src = node(from);
  if (!Running(src) || !Linked(from, self) || !Linked(self, from)) {
    return absl::UnavailableError(absl::StrCat("n", from, " unreachable"));
  }
  absl::Status st = src.host->ExportSnapshot(group, self, min_index, sink);
  if (st.ok()) ++result_.counts.snapshots_fetched;
  Trace(absl::StrCat("n", self, " fetched g", group, " snapshot from n", from,
                     ": ", st.ToString()));
  return st;
}

absl::StatusOr<std::vector<std::string>> WatchedMachine::Apply(
    const std::vector<raft::Entry>& entries) {
  Tell(entries);
  return m_->Apply(entries);
}

absl::StatusOr<std::vector<std::string>> WatchedMachine::ApplyInto(
    raft::host::ApplyPass& pass, const std::vector<raft::Entry>& entries) {
  Tell(entries);
  return m_->ApplyInto(pass, entries);
}

void WatchedMachine::Tell(const std::vector<raft::Entry>& entries) {
  const Index before = m_->applied();
  for (const raft::Entry& e : entries) {
    world_->Applied(node_, group_, e, e.index <= before);
  }
}

void WatchedMachine::OnLeadership(raft::Term term, bool leading) {
  world_->Told(node_, group_, term, leading, m_->applied());
  m_->OnLeadership(term, leading);
}

void World::Applied(NodeId n, GroupId g, const raft::Entry& e, bool skipped) {
  Trace(
      absl::StrCat("n", n, " g", g, " entry ", e.index, " term ", e.term, " ",
                   e.data.empty() ? "empty" : absl::StrCat(e.data.size(), "B"),
                   skipped ? " (skipped)" : ""));
  if (skipped) return;
  Ledger& l = ledger_[g];
  Index& max = l.max_applied[e.term];
  max = std::max(max, e.index);
  for (auto it = l.leaders.upper_bound(e.term); it != l.leaders.end(); ++it) {
    CheckLeaderHas(g, it->first, it->second.first, it->second.second, e.term,
                   e.index);
  }
}

void World::Told(NodeId n, GroupId g, raft::Term term, bool leading,
                 Index applied) {
  Trace(absl::StrCat("n", n, " g", g, leading ? " leads" : " no longer leads",
                     " in term ", term, ", applied ", applied));
  if (!leading) return;
  ++result_.counts.leaderships;
  Ledger& l = ledger_[g];
  auto [it, fresh] = l.leaders.emplace(term, std::make_pair(n, applied));
  if (!fresh && it->second.first != n) {
    return Fail(absl::StrCat("n", it->second.first, " and n", n,
                             " were both told they lead g", g, " in term ",
                             term));
  }
  for (auto e = l.max_applied.begin();
       e != l.max_applied.end() && e->first < term; ++e) {
    CheckLeaderHas(g, term, n, applied, e->first, e->second);
  }
}

void World::CheckLeaderHas(GroupId g, raft::Term term, NodeId leader, Index at,
                           raft::Term earlier, Index index) {
  // An applied entry is committed, so every later leader holds it below its
  // own first entry, and must have applied it before it hears it leads.
  if (index <= at) return;
  Fail(absl::StrCat("n", leader, " was told it leads g", g, " in term ", term,
                    " at applied index ", at, ", but entry ", index,
                    " of term ", earlier, " is committed"));
}

absl::StatusOr<std::unique_ptr<kv::storage::SegmentLog>> World::OpenLog(
    Node& n) {
  return kv::storage::SegmentLog::Open(
      "/log",
      {.fs = &n.log_files, .segment_size = 16 << 10, .segments_kept = 2});
}

absl::Status World::Boot(Node& n) {
  absl::StatusOr<std::unique_ptr<kv::storage::SegmentLog>> log = OpenLog(n);
  if (!log.ok()) return log.status();
  n.log = std::move(*log);
  n.watched.clear();
  n.machines.clear();
  raft::host::HostOptions ho;
  ho.id = n.id;
  ho.tick_ms = kTickMs;
  ho.election_tick = kElectionTick;
  ho.snapshot_every = 40;
  ho.compaction_lag = 10;
  ho.seed = random_.Next();
  ho.clock = n.clock.get();
  ho.driven = true;
  ho.fetch_executor = &n.fetches;
  ho.defects.leader_skips_sync = options_.defect == Defect::kLeaderSkipsSync;
  ho.defects.read_before_applied =
      options_.defect == Defect::kReadBeforeApplied;
  Node* np = &n;
  n.host = std::make_unique<raft::host::NodeHost>(
      ho, n.log.get(), n.transport.get(),
      [this, np](GroupId g) -> absl::StatusOr<raft::host::StateMachine*> {
        absl::StatusOr<std::unique_ptr<kv::StateMachine>> sm =
            kv::StateMachine::Open(&np->data_engine, g,
                                   [np] { return np->clock->NowMs(); });
        if (!sm.ok()) return sm.status();
        kv::StateMachine* raw = (np->machines[g] = std::move(*sm)).get();
        auto w = std::make_unique<WatchedMachine>(this, raw, np->id, g);
        return (np->watched[g] = std::move(w)).get();
      });
  // As kvd's duties thread: the state machine's due commands, at its log
  // time.
  n.duties = std::make_unique<kv::LeaderDuties>(
      [this, np](GroupId g, kvpb::Command cmd, std::function<void()> done) {
        cmd.set_time_ms(np->machines.at(g)->ProposalTimeMs());
        Trace(absl::StrCat("n", np->id, " g", g,
                           " leader duty: ", cmd.ShortDebugString()));
        np->host->Propose(g, cmd.SerializeAsString(),
                          [done = std::move(done)](
                              absl::StatusOr<raft::host::Applied>) { done(); });
      });
  absl::Status st = n.host->Start();
  n.up = st.ok();
  return st;
}

void World::Crash(Node& n) {
  Trace(absl::StrCat("crash n", n.id));
  ++result_.counts.crashes;
  n.up = false;
  // As in a kill -9, queued work is lost; the callbacks the host still
  // holds tell their clients the outcome is unknown.
  n.host.reset();
  n.fetches.queue.clear();
  n.watched.clear();
  n.machines.clear();
  n.last_applied.clear();
  n.log.reset();
  n.held.clear();
  n.data_engine.Crash();
  if (options_.defect == Defect::kDiskForgetsSynced) {
    n.log_files.CrashLosingSynced(
        1 + random_.Uniform(kv::storage::MemoryFileSystem::kKeptSynced));
  } else {
    n.log_files.Crash(/*tear=*/&random_);  // torn tails too
  }
  n.restart_at = step_ + kStepsPerTick * (10 + random_.Uniform(200));
}

void World::StartPartition() {
  ++result_.counts.partitions;
  std::vector<NodeId> side;
  for (auto& n : nodes_) {
    if (random_.Chance(0.5)) side.push_back(n->id);
  }
  const bool one_way = random_.Chance(0.2);
  for (NodeId a : side) {
    for (auto& b : nodes_) {
      if (std::count(side.begin(), side.end(), b->id)) continue;
      cut_.insert({a, b->id});
      if (!one_way) cut_.insert({b->id, a});
    }
  }
  heal_at_ = step_ + kStepsPerTick * (20 + random_.Uniform(300));
  std::string names;
  for (NodeId a : side) absl::StrAppend(&names, " n", a);
  Trace(absl::StrCat("partition", one_way ? " (one way)" : "", ":", names,
                     " | the rest"));
}

void World::Heal() {
  if (!cut_.empty()) Trace("heal");
  cut_.clear();
}

void World::FaultsForTick() {
  for (auto& n : nodes_) {
    if (!n->up) continue;
    if (random_.Chance(plan_.crash)) {
      Crash(*n);
    } else if (random_.Chance(plan_.pause) && step_ >= n->paused_until) {
      ++result_.counts.pauses;
      n->paused_until = step_ + kStepsPerTick * (1 + random_.Uniform(40));
      Trace(absl::StrCat("pause n", n->id, " until step ", n->paused_until));
    }
  }
  if (cut_.empty() && random_.Chance(plan_.partition)) StartPartition();
  if (!cut_.empty() && step_ >= heal_at_) Heal();
  for (size_t slot = 0; slot < std::size(kGroups); ++slot) {
    raft::host::GroupInfo info;
    Node* leader = Leader(kGroups[slot], &info);
    if (leader == nullptr) continue;
    if (step_ >= changing_until_[slot] && random_.Chance(plan_.conf_change)) {
      ChangeMembership(*leader, info);
    } else if (random_.Chance(plan_.transfer)) {
      Transfer(*leader, info);
    }
  }
}

void World::DeliverDue() {
  auto end = in_flight_.upper_bound({step_, UINT64_MAX});
  std::vector<Packet> due;
  for (auto it = in_flight_.begin(); it != end; ++it) {
    in_flight_msgs_ -= it->second.msgs.size();
    due.push_back(std::move(it->second));
  }
  in_flight_.erase(in_flight_.begin(), end);
  for (Packet& p : due) {
    if (!Linked(p.from, p.to)) continue;
    Node& to = node(p.to);
    if (!to.up) {
      // The sender's stream to it breaks.
      Node& from = node(p.from);
      if (from.up) from.host->ReportUnreachable(p.to);
      continue;
    }
    if (!Running(to)) {
      to.held.push_back(std::move(p.msgs));
      continue;
    }
    to.host->Deliver(std::move(p.msgs));
  }
}

void World::RunNodes() {
  std::vector<Node*> order;
  for (auto& n : nodes_) order.push_back(n.get());
  for (size_t i = order.size(); i > 1; --i) {
    std::swap(order[i - 1], order[random_.Uniform(i)]);
  }
  for (Node* n : order) {
    if (!Running(*n)) continue;
    for (auto& msgs : n->held) n->host->Deliver(std::move(msgs));
    n->held.clear();
    if (!n->fetches.queue.empty() && random_.Chance(0.5)) {
      std::function<void()> fetch = std::move(n->fetches.queue.front());
      n->fetches.queue.pop_front();
      fetch();
    }
    n->host->RunRaftPass();
    // The apply thread runs at its own pace: sometimes behind the raft
    // loop, so reads must wait for it.
    const uint64_t applies = random_.Uniform(plan_.apply_rate + 1);
    for (uint64_t a = 0; a < applies && n->host->RunApplyPass(); ++a) {
      for (auto& [g, sm] : n->machines) {
        // Within one incarnation, a state machine never goes back.
        const Index now = sm->applied();
        Index& last = n->last_applied[g];
        if (now < last) {
          Fail(absl::StrCat("n", n->id, " g", g, ": applied index went back ",
                            "from ", last, " to ", now));
        }
        if (options_.trace && now != last) {
          Trace(absl::StrCat("n", n->id, " g", g, " applied ", now,
                             " revision ", sm->revision()));
        }
        last = now;
      }
    }
  }
}

Node* World::Leader(GroupId g, raft::host::GroupInfo* info) {
  Node* best = nullptr;
  for (auto& n : nodes_) {
    if (!Running(*n)) continue;
    absl::StatusOr<raft::host::GroupInfo> i = n->host->Group(g);
    if (!i.ok() || i->role != raft::Role::kLeader) continue;
    if (best == nullptr || i->term > info->term) {
      best = n.get();
      *info = *i;
    }
  }
  return best;
}

void World::ChangeMembership(Node& leader, const raft::host::GroupInfo& info) {
  if (info.conf.IsJoint()) return;
  // Joint changes are left automatically: a leader that dies before
  // leaving one explicitly would leave it to nobody here.
  std::optional<raft::ConfChange> change = sim::RandomConfChange(
      info.conf, plan_.nodes, /*explicit_joint=*/false, random_);
  if (!change) return;
  const raft::ConfChange& cc = *change;
  const size_t slot = info.group == kGroups[0] ? 0 : 1;
  changing_until_[slot] = step_ + kOpTimeoutTicks * kStepsPerTick;
  Trace(absl::StrCat("n", leader.id, " g", info.group, " proposes ",
                     raft::Describe(cc)));
  leader.host->ProposeConfChange(
      info.group, cc,
      [this, slot, g = info.group](absl::StatusOr<raft::host::Applied> r) {
        changing_until_[slot] = 0;
        if (r.ok()) ++result_.counts.conf_changes;
        Trace(absl::StrCat("g", g, " membership change: ",
                           r.ok() ? "done" : r.status().ToString()));
      });
}

void World::Transfer(Node& leader, const raft::host::GroupInfo& info) {
  std::vector<NodeId> others;
  for (NodeId v : info.conf.voters) {
    if (v != leader.id) others.push_back(v);
  }
  if (others.empty()) return;
  const NodeId target = others[random_.Uniform(others.size())];
  Trace(absl::StrCat("n", leader.id, " g", info.group, " hands leadership to n",
                     target));
  leader.host->TransferLeadership(
      info.group, target, [this, target, g = info.group](absl::Status st) {
        if (st.ok()) ++result_.counts.transfers;
        Trace(absl::StrCat("g", g, " transfer to n", target, ": ",
                           st.ToString()));
      });
}

HostSimResult World::Run() {
  result_.plan = plan_.Describe();
  Trace("plan: " + result_.plan);
  std::vector<NodeId> voters;
  for (int i = 1; i <= plan_.voters; ++i) voters.push_back(i);
  const std::vector<GroupId> groups(std::begin(kGroups), std::end(kGroups));
  for (int id = 1; id <= plan_.nodes; ++id) {
    auto& n = nodes_.emplace_back(std::make_unique<Node>());
    n->id = id;
    const double rate = 1 + plan_.drift * (2 * random_.NextDouble() - 1);
    n->clock = std::make_unique<SimClock>(&now_us_, rate);
    n->transport = std::make_unique<SimTransport>(this, id);
    absl::Status st;
    if (id <= plan_.voters) {
      // As kvd bootstraps a cluster: the raft log, then each state machine.
      absl::StatusOr<std::unique_ptr<kv::storage::SegmentLog>> log =
          OpenLog(*n);
      st = log.ok() ? raft::host::BootstrapGroups(log->get(), groups, voters)
                    : log.status();
      for (GroupId g : groups) {
        if (!st.ok()) break;
        absl::StatusOr<std::unique_ptr<kv::StateMachine>> sm =
            kv::StateMachine::Open(&n->data_engine, g);
        st = sm.ok() ? (*sm)->Bootstrap(raft::host::kBootstrapIndex, {}, {})
                     : sm.status();
      }
    }
    if (st.ok()) st = Boot(*n);
    if (!st.ok()) {
      Fail(absl::StrCat("n", id, " failed to start: ", st.ToString()));
      return result_;
    }
  }
  clients_.resize(kClients);
  for (int c = 0; c < kClients; ++c) {
    clients_[c].target = 1 + random_.Uniform(nodes_.size());
  }
  if (options_.lock_clients) {
    lock_clients_.resize(kLockClients);
    idem_clients_.resize(kIdemClients);
    for (IdemClient& ic : idem_clients_) {
      ic.target = 1 + random_.Uniform(nodes_.size());
    }
    for (LockClient& lc : lock_clients_) {
      lc.target = 1 + random_.Uniform(nodes_.size());
    }
  }

  const uint64_t fault_steps = options_.ticks * kStepsPerTick;
  for (step_ = 1; step_ <= fault_steps && !result_.violation; ++step_) {
    now_us_ += kStepUs;
    if (step_ % kStepsPerTick == 0) {
      FaultsForTick();
      ClientsAct();
      LockClientsAct();
      IdemClientsAct();
    }
    if (step_ % (kStepsPerTick * kDutiesEveryTicks) == 0) LeaderDuties();
    for (auto& n : nodes_) {
      if (!n->up && step_ >= n->restart_at) {
        Trace(absl::StrCat("restart n", n->id));
        if (absl::Status st = Boot(*n); !st.ok()) {
          Fail(absl::StrCat("n", n->id, " failed to restart: ", st.ToString()));
        }
      }
    }
    DeliverDue();
    RunNodes();
    TimeOutOps();
  }
  if (!result_.violation) Settle();
  result_.counts.ticks = step_ / kStepsPerTick;
  if (!result_.violation) CheckReplicasAgree();
  if (!result_.violation) CheckHolds();
  if (!result_.violation) CheckFencedWrites();
  if (!result_.violation && options_.lock_clients) CheckIdempotency();
  // Checked even after another violation: the history tells more.
  if (!result_.violation) CheckHistory();
  for (auto& n : nodes_) n->up = false;
  for (auto& n : nodes_) n->host.reset();
  return result_;
}

}  // namespace internal

HostSimResult RunHostSimulation(const HostSimOptions& options) {
  internal::World world(options);
  return world.Run();
}

}  // namespace tally::hostsim
