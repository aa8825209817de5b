#include "tests/sim/simulation.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/conf_change.h"
#include "tests/sim/internal/simulation_impl.h"
#include "util/check.h"

namespace tally::sim {

using raft::Entry;
using raft::Index;
using raft::Message;
using raft::NodeId;
using raft::Ready;
using raft::Role;

std::string FaultPlan::Describe() const {
  std::string out = absl::StrCat(
      "nodes=", nodes, " drop=", network.drop, " dup=", network.duplicate,
      " delay<=", network.max_delay, " crash=", crash, " partition=", partition,
      " flush=", flush, " client=", client);
  if (voters > 0) {
    absl::StrAppend(&out, " voters=", voters, " snapshot=", snapshot,
                    " confchange=", conf_change, " transfer=", transfer,
                    " lease=", lease_reads ? "on" : "off",
                    " drift=", clock_drift);
  }
  return out;
}

namespace internal {
namespace {

FaultPlan DrawPlan(util::SeededRandom& r, const SimOptions& o) {
  FaultPlan p;
  const bool features = o.all_features || o.lease_drift_beyond_bound;
  p.nodes = o.nodes != 0 ? o.nodes : features ? 5 : (r.Chance(0.5) ? 3 : 5);
  const double drops[] = {0, 0.01, 0.05, 0.2};
  const double dups[] = {0, 0.01, 0.05};
  const int delays[] = {1, 2, 4, 8};
  const double crashes[] = {0, 0.002, 0.01, 0.03};
  const double partitions[] = {0, 0.003, 0.01};
  const double flushes[] = {0.01, 0.1, 0.5};
  const double clients[] = {0.05, 0.3, 0.8};
  p.network.drop = drops[r.Uniform(4)];
  p.network.duplicate = dups[r.Uniform(3)];
  p.network.max_delay = delays[r.Uniform(4)];
  p.crash = crashes[r.Uniform(4)];
  p.max_downtime = 20 + r.Uniform(200);
  p.partition = partitions[r.Uniform(3)];
  p.max_partition = 20 + r.Uniform(300);
  p.flush = flushes[r.Uniform(3)];
  p.client = clients[r.Uniform(3)];
  if (!features) return p;
  p.voters = std::min(p.nodes, 3);
  const double snapshots[] = {0.002, 0.01, 0.05};
  const double changes[] = {0.002, 0.01, 0.03};
  const double transfers[] = {0, 0.002, 0.01};
  p.snapshot = snapshots[r.Uniform(3)];
  p.conf_change = changes[r.Uniform(3)];
  p.transfer = transfers[r.Uniform(3)];
  if (o.lease_drift_beyond_bound) {
    // Far beyond what the margin covers: each clock runs either at a tenth
    // of real time or at 1.9 times it, and partitions are common, so that
    // slow leaders are often cut off from fast followers.
    p.lease_reads = true;
    p.clock_drift = 0.9;
    p.partition = r.Chance(0.5) ? 0.01 : 0.02;
  } else {
    p.lease_reads = r.Chance(0.5);
    // Within the margin: (election - margin) / (1 - d) must stay below
    // election / (1 + d), less a tick of rounding.
    p.clock_drift = r.Chance(0.5) ? 0.0 : 0.04;
  }
  return p;
}

}  // namespace

Simulation::Simulation(const SimOptions& options)
    : options_(options),
      random_(options.seed),
      plan_(DrawPlan(random_, options)),
      checker_(plan_.nodes) {
  network_ = std::make_unique<SimNetwork>(&random_, plan_.network);
  for (int i = 1; i <= plan_.nodes; ++i) {
    auto n = std::make_unique<Node>(i, options.faulty_disk);
    const double spread = options.lease_drift_beyond_bound
                              ? (random_.Chance(0.5) ? -1.0 : 1.0)
                              : 2 * random_.NextDouble() - 1;
    n->clock_rate = 1.0 + plan_.clock_drift * spread;
    nodes_.push_back(std::move(n));
  }
  clients_.resize(plan_.voters > 0 ? kClientsWithFeatures : kClients);
  Trace("faults: " + plan_.Describe());
  for (auto& n : nodes_) Boot(*n);
  result_.plan = plan_;
}

void Simulation::Trace(const std::string& line) {
  if (options_.trace) std::printf("[%6" PRIu64 "] %s\n", now_, line.c_str());
}

void Simulation::Boot(Node& n) {
  // Every node, joiners included, starts from the same bootstrap
  // configuration; a snapshot on disk supersedes it.
  raft::ConfState bootstrap;
  const int voters = plan_.voters > 0 ? plan_.voters : plan_.nodes;
  for (int i = 1; i <= voters; ++i) bootstrap.voters.push_back(i);
  n.storage = std::make_unique<raft::MemoryStorage>(bootstrap);
  const raft::Snapshot& snap = n.disk.snapshot();
  n.registers.clear();
  if (!snap.IsEmpty()) {
    n.storage->ApplySnapshot(snap);
    n.registers = snapshots_.at(snap.data_ref).registers;
  }
  n.storage->Append(n.disk.EntriesAfterSnapshot());
  raft::HardState hs = n.disk.hard_state();
  hs.commit = std::max(hs.commit, snap.metadata.index);
  n.storage->SetHardState(hs);
  n.random = std::make_unique<util::SeededRandom>(random_.Next());
  raft::Config c;
  c.id = n.id;
  c.election_tick = kElectionTick;
  c.heartbeat_tick = kHeartbeatTick;
  c.max_size_per_msg = 4096;
  c.max_inflight_msgs = 16;
  c.read_only = plan_.lease_reads ? raft::ReadOnlyOption::kLeaseBased
                                  : raft::ReadOnlyOption::kSafe;
  c.lease_drift_margin = kLeaseDriftMargin;
  c.applied = snap.metadata.index;
  c.storage = n.storage.get();
  c.random = n.random.get();
  absl::StatusOr<std::unique_ptr<raft::RawNode>> raw = raft::RawNode::Create(c);
  TALLY_CHECK(raw.ok(), "simulated node failed to start");
  n.raw = std::move(*raw);
  n.proposed.clear();
  n.reads_asked.clear();
  n.reads_ready.clear();
  n.up = true;
  checker_.OnRestart(n.id, snap.metadata.index, n.disk.EntriesAfterSnapshot());
  Trace(absl::StrCat("node ", n.id, " starts: term=", hs.term,
                     " vote=", hs.vote, " commit=", hs.commit, " snapshot=",
                     snap.metadata.index, " last=", n.storage->LastIndex()));
}

void Simulation::Crash(Node& n) {
  n.disk.Crash();
  // Outcomes are unknown to the clients: they move on.
  for (auto& [index, p] : n.proposed) Release(p);
  for (auto& [ctx, p] : n.reads_asked) Release(p);
  for (const PendingOp& p : n.reads_ready) Release(p);
  n.raw.reset();
  n.storage.reset();
  n.up = false;
  n.restart_at = now_ + 1 + random_.Uniform(plan_.max_downtime);
  ++result_.crashes;
  Trace(absl::StrCat("node ", n.id, " crashes until ", n.restart_at));
}

Node* Simulation::Leader() {
  Node* best = nullptr;
  for (auto& n : nodes_) {
    if (!n->up || n->raw->raft().role() != Role::kLeader) continue;
    if (best == nullptr || n->raw->raft().term() > best->raw->raft().term()) {
      best = n.get();
    }
  }
  return best;
}

void Simulation::MaybeInjectFaults() {
  for (auto& n : nodes_) {
    if (!n->up && now_ >= n->restart_at) Boot(*n);
  }
  if (heal_at_ != 0 && now_ >= heal_at_) {
    network_->Heal();
    heal_at_ = 0;
    Trace("partition heals");
  }
  if (!faults_on_) return;
  if (random_.Chance(plan_.crash)) {
    Node& n = node(1 + random_.Uniform(plan_.nodes));
    if (n.up) Crash(n);
  }
  if (heal_at_ == 0 && random_.Chance(plan_.partition)) StartPartition();
  for (auto& n : nodes_) {
    if (n->up && random_.Chance(plan_.flush)) n->disk.Sync();
  }
}

void Simulation::StartPartition() {
  const int n = plan_.nodes;
  std::vector<NodeId> ids;
  for (int i = 1; i <= n; ++i) ids.push_back(i);
  for (int i = n - 1; i > 0; --i)
    std::swap(ids[i], ids[random_.Uniform(i + 1)]);
  std::string shape;
  auto cut_both = [&](NodeId a, NodeId b) {
    network_->Cut(a, b);
    network_->Cut(b, a);
  };
  if (options_.lease_drift_beyond_bound) {
    if (Node* leader = Leader()) {
      // The nemesis for lease reads: cut the leader off while its clock
      // runs slow, so that it trusts its lease long after the others could
      // have elected someone else.
      std::swap(*std::find(ids.begin(), ids.end(), leader->id), ids[0]);
      for (auto& other : nodes_) other->clock_rate = 1.0 + plan_.clock_drift;
      leader->clock_rate = 1.0 - plan_.clock_drift;
    }
    shape = absl::StrCat("isolate leader ", ids[0]);
    for (int i = 1; i < n; ++i) cut_both(ids[0], ids[i]);
    heal_at_ = now_ + 1 + random_.Uniform(plan_.max_partition);
    ++result_.partitions;
    Trace(absl::StrCat("partition: ", shape, " until ", heal_at_));
    return;
  }
  switch (random_.Uniform(4)) {
    case 0:  // one node isolated
      shape = absl::StrCat("isolate ", ids[0]);
      for (int i = 1; i < n; ++i) cut_both(ids[0], ids[i]);
      break;
    case 1: {  // majority / minority
      const int minority = (n - 1) / 2;
      shape = "split";
      for (int i = 0; i < minority; ++i) {
        for (int j = minority; j < n; ++j) cut_both(ids[i], ids[j]);
      }
      break;
    }
    case 2: {  // bridge: ids[0] sees both halves, which do not see each other
      shape = absl::StrCat("bridge via ", ids[0]);
      const int half = 1 + (n - 1) / 2;
      for (int i = 1; i < half; ++i) {
        for (int j = half; j < n; ++j) cut_both(ids[i], ids[j]);
      }
      break;
    }
    default:  // one-way: ids[0] can send but not receive
      shape = absl::StrCat("one-way from ", ids[0]);
      for (int i = 1; i < n; ++i) network_->Cut(ids[i], ids[0]);
      break;
  }
  heal_at_ = now_ + 1 + random_.Uniform(plan_.max_partition);
  ++result_.partitions;
  Trace(absl::StrCat("partition: ", shape, " until ", heal_at_));
}

void Simulation::TickNodes() {
  for (auto& n : nodes_) {
    if (!n->up) continue;
    if (options_.lease_drift_beyond_bound && random_.Chance(0.01)) {
      // Clocks change speed too (a paused VM, a slewing clock): a leader
      // elected while fast may turn slow.
      n->clock_rate = 2.0 - n->clock_rate;
      Trace(absl::StrCat("node ", n->id, " clock rate now ", n->clock_rate));
    }
    // A node's clock may run faster or slower than the others'.
    n->clock_carry += n->clock_rate;
    while (n->up && n->clock_carry >= 1.0) {
      n->clock_carry -= 1.0;
      n->raw->Tick();
      HandleReady(*n);
    }
  }
}

void Simulation::DeliverMessages() {
  for (const SimNetwork::Due& due : network_->TakeDue(now_)) {
    const Message& m = due.msg;
    Node& n = node(m.to);
    Node& from = node(m.from);
    const bool snapshot = m.type == raft::MessageType::kSnapshot;
    if (due.cut || !n.up) {
      // The sender's host notices a broken snapshot stream, and sometimes a
      // peer it cannot reach.
      if (from.up && snapshot) {
        from.raw->ReportSnapshot(m.to, /*success=*/false);
        HandleReady(from);
      } else if (from.up && random_.Chance(0.1)) {
        from.raw->ReportUnreachable(m.to);
        HandleReady(from);
      }
      continue;
    }
    absl::Status s = n.raw->Step(m);
    TALLY_CHECK(s.ok(), "simulated network delivered a malformed message");
    HandleReady(n);
    if (snapshot && from.up) {
      // The host streamed the snapshot's data: tell the sender.
      from.raw->ReportSnapshot(m.to, /*success=*/true);
      HandleReady(from);
    }
    if (checker_.violation()) return;
  }
}

void Simulation::SendAll(Node& from, const std::vector<Message>& msgs) {
  for (const Message& m : msgs) {
    const bool snapshot = m.type == raft::MessageType::kSnapshot;
    if (snapshot) {
      ++result_.snapshots_sent;
      if (random_.Chance(plan_.network.drop)) {
        // The stream broke: the host reports it and the leader retries.
        from.failed_snapshots.push_back(m.to);
        continue;
      }
    }
    network_->Send(m, now_, /*reliable=*/snapshot);
  }
}

// The Ready contract of raw_node.h: persist (sync when asked), send, apply,
// advance.
void Simulation::HandleReady(Node& n) {
  while (n.up && n.raw->HasReady()) {
    Ready rd = n.raw->GetReady();
    if (rd.snapshot) InstallSnapshot(n, *rd.snapshot);
    if (rd.hard_state) n.storage->SetHardState(*rd.hard_state);
    n.disk.Write(rd.hard_state, rd.entries);
    if (rd.must_sync) n.disk.Sync();
    n.storage->Append(rd.entries);
    checker_.OnPersist(n.id, rd.entries);
    const raft::Raft& r = n.raw->raft();
    if (rd.soft_state && rd.soft_state->role != Role::kLeader) {
      Trace(absl::StrCat("node ", n.id, " is ", raft::RoleName(r.role()),
                         " in term ", r.term()));
    }
    if (rd.soft_state && rd.soft_state->role == Role::kLeader) {
      ++result_.elections;
      Trace(absl::StrCat("node ", n.id, " leads term ", r.term(), " with ",
                         raft::Describe(r.conf_state())));
      checker_.OnBecomeLeader(n.id, r.term(), r.log(), r.conf_state());
    }
    if (rd.hard_state) {
      checker_.OnCommit(n.id, r.term(), rd.hard_state->commit, r.log());
      if (r.role() == Role::kLeader) {
        checker_.OnLeaderCommit(n.id, r.conf_state(), rd.hard_state->commit);
      }
    }
    SendAll(n, rd.messages);
    for (const Entry& e : rd.committed_entries) Apply(n, e);
    OnReadStates(n, rd.read_states);
    n.raw->Advance(rd);
    for (NodeId to : std::exchange(n.failed_snapshots, {})) {
      n.raw->ReportSnapshot(to, /*success=*/false);
    }
    ServeReadyReads(n);
    if (checker_.violation()) return;
  }
}

void Simulation::Apply(Node& n, const Entry& e) {
  checker_.OnApply(n.id, e);
  uint64_t read_value = 0;
  if (e.type == raft::EntryType::kConfChange) {
    absl::StatusOr<raft::ConfChange> cc = raft::DecodeConfChange(e.data);
    TALLY_CHECK(cc.ok(), "undecodable membership change in the log");
    absl::StatusOr<raft::ConfState> cs = n.raw->ApplyConfChange(*cc);
    Trace(absl::StrCat("node ", n.id, " applies ", raft::Describe(*cc), " at ",
                       e.index, ": ",
                       cs.ok() ? raft::Describe(*cs) : cs.status().ToString()));
  } else if (std::optional<Op> op = DecodeOp(e.data)) {
    if (op->kind == Op::Kind::kWrite) {
      n.registers[op->key] = op->value;
    } else {
      read_value = n.Read(op->key);
    }
  }
  checker_.OnStateHash(n.id, e.index, StateHash(n));
  auto pending = n.proposed.find(e.index);
  if (pending == n.proposed.end()) return;
  const PendingOp p = pending->second;
  n.proposed.erase(pending);
  Release(p);
  if (e.term != p.term) return;  // another leader's entry won this index
  checker_.OnAck(p.op, p.index, p.term, read_value);
  Complete(p, read_value);
}

void Simulation::Step() {
  MaybeInjectFaults();
  FeaturesAct();
  ClientsAct();
  TickNodes();
  DeliverMessages();
}

SimResult Simulation::Run() {
  for (now_ = 1; now_ <= options_.steps && !checker_.violation(); ++now_) {
    Step();
  }
  if (!checker_.violation()) CheckLiveness();
  if (!checker_.violation()) CheckHistories();
  result_.steps = now_ - 1;
  result_.acked_ops = checker_.acked();
  if (checker_.violation()) {
    result_.violation = checker_.violation();
    result_.violation_step = now_ - 1;
  }
  return result_;
}

// Faults stop: partitions heal, crashed nodes restart, the network turns
// reliable. A leader must then complete a new client operation in bounded
// time.
void Simulation::CheckLiveness() {
  faults_on_ = false;
  network_->SetReliable();
  heal_at_ = now_;
  for (auto& n : nodes_) {
    if (!n->up) n->restart_at = now_;
  }
  for (Client& cl : clients_) cl.busy = false;  // outcomes stay unknown
  plan_.client = 1.0;
  Trace("faults stop");
  first_liveness_op_ = next_op_id_;
  const uint64_t deadline = now_ + kLivenessBound;
  for (; now_ <= deadline && !checker_.violation(); ++now_) {
    Step();
    if (liveness_op_done_) {
      ++now_;
      return;
    }
  }
  if (checker_.violation()) return;
  std::string roles;
  for (auto& n : nodes_) {
    const raft::Raft& r = n->raw->raft();
    absl::StrAppend(&roles, " ", n->id, "=", raft::RoleName(r.role()), "/t",
                    r.term(), "(last=", r.log().LastIndex(), "/",
                    r.log().LastTerm(), " commit=", r.log().committed(),
                    " applied=", r.log().applied(), " ",
                    raft::Describe(r.conf_state()), ")");
  }
  if (Node* leader = Leader()) {
    const raft::Raft& r = leader->raw->raft();
    absl::StrAppend(
        &roles, "; leader ", leader->id, " commit=", r.log().committed(),
        " last=", r.log().LastIndex(), " ", raft::Describe(r.conf_state()));
    for (NodeId id : r.conf_state().Members()) {
      if (const raft::Progress* pr = r.progress(id)) {
        absl::StrAppend(&roles, " [", id, ": ", pr->DebugString(), "]");
      }
    }
  }
  checker_.Fail(absl::StrCat("liveness: no operation completed within ",
                             kLivenessBound, " ticks after faults stopped;",
                             roles));
}

}  // namespace internal

SimResult RunSimulation(const SimOptions& options) {
  internal::Simulation sim(options);
  return sim.Run();
}

}  // namespace tally::sim
