#include "tests/hostsim/host_simulation.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kv/state_machine.h"
#include "kv/storage/log_store.h"
#include "kv/storage/memory_engine.h"
#include "raft/conf_change.h"
#include "raft/host/node_host.h"
#include "rpc/storage.pb.h"
#include "tests/sim/conf_changes.h"
#include "util/linearizability.h"
#include "util/random.h"

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
  unchecked_keys += o.unchecked_keys;
  return *this;
}

std::optional<Defect> ParseDefect(std::string_view name) {
  for (Defect d : {Defect::kNone, Defect::kDiskForgetsSynced,
                   Defect::kLeaderSkipsSync, Defect::kReadBeforeApplied}) {
    if (DefectName(d) == name) return d;
  }
  return std::nullopt;
}

namespace {

using raft::Index;
using raft::NodeId;
using raft::host::GroupId;
using raft::host::GroupMessage;

constexpr int kTickMs = 10;
// Each tick is cut into steps: messages and work interleave within a tick.
constexpr int kStepsPerTick = 5;
constexpr int64_t kStepUs = kTickMs * 1000 / kStepsPerTick;
constexpr int kElectionTick = 10;
// Two groups: one pass of a host persists and sends for both at once.
constexpr GroupId kGroups[] = {1, 2};
constexpr int kKeys = 4;
constexpr int kClients = 4;
// A client gives up on an operation after this many ticks (outcome unknown).
constexpr uint64_t kOpTimeoutTicks = 60;
// Once faults stop, every group must have applied a new write everywhere
// within this many ticks.
constexpr uint64_t kLivenessTicks = 600;
// Replicas that agree for this many ticks have caught up.
constexpr uint64_t kStableTicks = 3 * kElectionTick;
// More messages in flight than this is a storm (messages begetting more
// messages faster than they are delivered): reported, not simulated on.
constexpr size_t kMaxInFlight = 200'000;
// The bound on the linearizability search per key.
constexpr size_t kMaxSearchStates = 2'000'000;

GroupId GroupOf(int key) { return kGroups[key % 2]; }
std::string KeyName(int key) { return absl::StrCat("k", key); }

// Fault rates of one run, drawn from its seed (swarm testing).
struct Plan {
  int nodes = 3;
  double drop = 0;
  double duplicate = 0;
  int max_delay_steps = 1;
  double crash = 0;      // per tick, that a live node crashes
  double partition = 0;  // per tick, that a partition starts
  double pause = 0;      // per tick, that a live node stops running
  double client = 0.3;   // per tick and idle client, that it starts an op
  int apply_rate = 4;    // apply tasks a node runs per step, at most
  double drift = 0;      // clock rates in [1 - drift, 1 + drift]
  // Nodes 1..voters start as the voters of every group; the others start
  // empty, for membership changes to add.
  int voters = 3;
  double conf_change = 0;  // per tick, that a group's leader changes members
  double transfer = 0;     // per tick, that a group's leader hands over

  std::string Describe() const {
    return absl::StrCat("nodes=", nodes, " voters=", voters, " drop=", drop,
                        " dup=", duplicate, " delay<=", max_delay_steps,
                        "steps crash=", crash, " partition=", partition,
                        " pause=", pause, " client=", client,
                        " apply<=", apply_rate, " drift=", drift,
                        " confchange=", conf_change, " transfer=", transfer);
  }
};

Plan DrawPlan(util::SeededRandom& r, int nodes) {
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
  return p;
}

// A node's steady clock: the world's time at the node's rate.
class SimClock final : public raft::host::Clock {
 public:
  SimClock(const int64_t* world_us, double rate)
      : world_us_(world_us), rate_(rate) {}
  TimePoint Now() const override {
    return TimePoint(std::chrono::microseconds(
        static_cast<int64_t>(static_cast<double>(*world_us_) * rate_)));
  }
  int64_t NowMs() const {
    return static_cast<int64_t>(static_cast<double>(*world_us_) * rate_) / 1000;
  }

 private:
  const int64_t* const world_us_;
  const double rate_;
};

// The snapshot fetches a host posts, run by the simulation one at a time.
class FetchQueue final : public raft::host::Executor {
 public:
  bool Post(std::function<void()> fn) override {
    queue.push_back(std::move(fn));
    return true;
  }
  std::deque<std::function<void()>> queue;
};

class World;

class SimTransport final : public raft::host::Transport {
 public:
  SimTransport(World* world, NodeId self) : world_(world), self_(self) {}
  void Send(NodeId to, std::vector<GroupMessage> msgs) override;
  absl::Status FetchSnapshot(NodeId from, GroupId group, Index min_index,
                             const raft::host::ChunkSink& sink) override;
  void CancelFetches() override {}

 private:
  World* const world_;
  const NodeId self_;
};

// With --trace: prints every entry a state machine applies.
class TracingMachine final : public raft::host::StateMachine {
 public:
  TracingMachine(raft::host::StateMachine* m, NodeId node, GroupId group)
      : m_(m), node_(node), group_(group) {}
  Index applied() const override { return m_->applied(); }
  absl::StatusOr<std::vector<std::string>> Apply(
      const std::vector<raft::Entry>& entries) override {
    const Index before = m_->applied();
    for (const raft::Entry& e : entries) {
      std::printf(
          "         n%llu g%llu entry %llu term %llu %s%s\n",
          static_cast<unsigned long long>(node_),
          static_cast<unsigned long long>(group_),
          static_cast<unsigned long long>(e.index),
          static_cast<unsigned long long>(e.term),
          e.data.empty() ? "empty" : absl::StrCat(e.data.size(), "B").c_str(),
          e.index <= before ? " (skipped)" : "");
    }
    return m_->Apply(entries);
  }
  absl::StatusOr<Index> Sync() override { return m_->Sync(); }
  absl::Status Export(Index min_index,
                      const raft::host::ChunkSink& sink) override {
    return m_->Export(min_index, sink);
  }
  absl::Status Import(const raft::host::ChunkSource& source) override {
    return m_->Import(source);
  }

 private:
  raft::host::StateMachine* const m_;
  const NodeId node_;
  const GroupId group_;
};

struct Node {
  NodeId id = 0;
  bool up = false;
  uint64_t restart_at = 0;    // step, when down
  uint64_t paused_until = 0;  // step
  // What survives a crash.
  kv::storage::MemoryEngine log_engine;
  kv::storage::MemoryEngine data_engine;
  std::unique_ptr<SimClock> clock;
  std::unique_ptr<SimTransport> transport;
  // One incarnation's.
  std::unique_ptr<kv::storage::LogStore> log;
  std::map<GroupId, std::unique_ptr<kv::StateMachine>> machines;
  // With --trace, the host sees the machines through these.
  std::map<GroupId, std::unique_ptr<raft::host::StateMachine>> tracers;
  FetchQueue fetches;
  std::unique_ptr<raft::host::NodeHost> host;
  // Each state machine's applied index, as last seen in this incarnation.
  std::map<GroupId, Index> last_applied;
  // Messages that arrived while paused, delivered on waking.
  std::vector<std::vector<GroupMessage>> held;
};

struct OpRecord {
  int client = 0;
  int key = 0;
  bool write = false;
  // A write the node said was not applied, or a read that failed: not part
  // of the history.
  bool failed = false;
  bool done = false;
  uint64_t deadline_step = 0;
  RegisterOp reg;
};

struct Client {
  bool busy = false;
  uint64_t op = 0;
  NodeId target = 1;
};

struct Packet {
  NodeId from = 0;
  NodeId to = 0;
  std::vector<GroupMessage> msgs;
};

class World {
 public:
  explicit World(const HostSimOptions& o)
      : options_(o), random_(o.seed), plan_(DrawPlan(random_, o.nodes)) {}

  HostSimResult Run();

  void Send(NodeId from, NodeId to, std::vector<GroupMessage> msgs);
  absl::Status Fetch(NodeId self, NodeId from, GroupId group, Index min_index,
                     const raft::host::ChunkSink& sink);

 private:
  Node& node(NodeId id) { return *nodes_[id - 1]; }
  bool Linked(NodeId a, NodeId b) const { return !cut_.count({a, b}); }
  bool Running(const Node& n) const { return n.up && step_ >= n.paused_until; }
  void Trace(const std::string& line);
  void Fail(std::string what);

  absl::Status Boot(Node& n);
  void Crash(Node& n);
  void FaultsForTick();
  void StartPartition();
  void Heal();
  void DeliverDue();
  void RunNodes();
  // The node that leads `g` in the highest term, and what it publishes.
  Node* Leader(GroupId g, raft::host::GroupInfo* info);
  void ChangeMembership(Node& leader, const raft::host::GroupInfo& info);
  void Transfer(Node& leader, const raft::host::GroupInfo& info);
  void ClientsAct();
  void Invoke(int c);
  void Finish(uint64_t id, absl::Status st, uint64_t read_value);
  void TimeOutOps();
  // Faults off: every node up, every group applies a new write everywhere.
  void Settle();
  void CheckHistory();
  // The leader of `g` and the other members of its configuration; empty
  // without a leader.
  std::vector<Node*> Members(GroupId g);
  void CheckReplicasAgree();

  const HostSimOptions options_;
  util::SeededRandom random_;
  const Plan plan_;
  HostSimResult result_;

  int64_t now_us_ = 0;
  uint64_t step_ = 0;
  bool faults_on_ = true;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::multimap<std::pair<uint64_t, uint64_t>, Packet> in_flight_;
  size_t in_flight_msgs_ = 0;
  std::set<std::pair<NodeId, NodeId>> cut_;
  uint64_t heal_at_ = 0;

  std::vector<Client> clients_;
  std::vector<OpRecord> ops_;
  uint64_t events_ = 0;  // logical time of invocations and answers
  // Per group: until this step, a membership change is in flight.
  uint64_t changing_until_[std::size(kGroups)] = {};
  uint64_t next_value_ = 0;
};

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

absl::Status World::Boot(Node& n) {
  n.log = kv::storage::LogStore::Over(&n.log_engine);
  n.tracers.clear();
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
  const bool trace = options_.trace;
  n.host = std::make_unique<raft::host::NodeHost>(
      ho, n.log.get(), n.transport.get(),
      [np, trace](GroupId g) -> absl::StatusOr<raft::host::StateMachine*> {
        absl::StatusOr<std::unique_ptr<kv::StateMachine>> sm =
            kv::StateMachine::Open(&np->data_engine, g,
                                   [np] { return np->clock->NowMs(); });
        if (!sm.ok()) return sm.status();
        kv::StateMachine* raw = (np->machines[g] = std::move(*sm)).get();
        if (!trace) return raw;
        auto t = std::make_unique<TracingMachine>(raw, np->id, g);
        return (np->tracers[g] = std::move(t)).get();
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
  n.tracers.clear();
  n.machines.clear();
  n.last_applied.clear();
  n.log.reset();
  n.held.clear();
  n.data_engine.Crash();
  if (options_.defect == Defect::kDiskForgetsSynced) {
    n.log_engine.CrashLosingSynced(
        1 + random_.Uniform(kv::storage::MemoryEngine::kKeptSynced));
  } else {
    n.log_engine.Crash();
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
    for (uint64_t a = 0; a < applies && n->host->RunApplyTask(); ++a) {
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

void World::ClientsAct() {
  for (int c = 0; c < kClients; ++c) {
    if (!clients_[c].busy && random_.Chance(plan_.client)) Invoke(c);
  }
}

void World::Invoke(int c) {
  Client& cl = clients_[c];
  Node* n = &node(cl.target);
  if (!Running(*n)) {
    cl.target = 1 + random_.Uniform(nodes_.size());
    return;  // could not connect; tries again later
  }
  const uint64_t id = ops_.size();
  OpRecord& op = ops_.emplace_back();
  op.client = c;
  op.key = static_cast<int>(random_.Uniform(kKeys));
  op.write = random_.Chance(0.5);
  op.deadline_step = step_ + kOpTimeoutTicks * kStepsPerTick;
  op.reg.id = id;
  op.reg.invoked = ++events_;
  cl.busy = true;
  cl.op = id;
  const GroupId group = GroupOf(op.key);
  if (op.write) {
    op.reg.kind = RegisterOp::Kind::kWrite;
    op.reg.value = ++next_value_;
    rpc::Command cmd;
    cmd.set_proposal_id(id);
    auto sm = n->machines.find(group);
    cmd.set_time_ms(sm == n->machines.end() ? 0 : sm->second->ProposalTimeMs());
    cmd.mutable_put()->set_key(KeyName(op.key));
    cmd.mutable_put()->set_value(absl::StrCat(op.reg.value));
    Trace(absl::StrCat("c", c, " op", id, " put ", KeyName(op.key), "=",
                       op.reg.value, " at n", n->id));
    n->host->Propose(group, cmd.SerializeAsString(),
                     [this, id](absl::StatusOr<raft::host::Applied> r) {
                       Finish(id, r.status(), 0);
                     });
    return;
  }
  op.reg.kind = RegisterOp::Kind::kRead;
  const bool lease = random_.Chance(0.5);
  Trace(absl::StrCat("c", c, " op", id, " read ", KeyName(op.key), " at n",
                     n->id, lease ? " (lease)" : ""));
  n->host->ReadIndex(
      group, lease, [this, id, n, group](absl::StatusOr<Index> r) {
        if (!r.ok()) return Finish(id, r.status(), 0);
        // Read what this replica has applied, as the KV service does.
        uint64_t value = 0;
        absl::StatusOr<std::optional<rpc::KeyValue>> kv =
            n->machines.at(group)->kv().Get(KeyName(ops_[id].key));
        if (!kv.ok()) return Finish(id, kv.status(), 0);
        if (kv->has_value() && !absl::SimpleAtoi((*kv)->value(), &value)) {
          return Fail(absl::StrCat("op", id, " read garbage"));
        }
        Finish(id, absl::OkStatus(), value);
      });
}

void World::Finish(uint64_t id, absl::Status st, uint64_t read_value) {
  OpRecord& op = ops_[id];
  if (op.done) return;  // the client gave up on it already
  op.done = true;
  Client& cl = clients_[op.client];
  cl.busy = false;
  if (st.ok()) {
    op.reg.completed = ++events_;
    if (!op.write) op.reg.value = read_value;
    ++(op.write ? result_.counts.acked_writes : result_.counts.acked_reads);
    Trace(absl::StrCat("op", id, " ok", op.write ? "" : " read ",
                       op.write ? "" : absl::StrCat(read_value)));
    return;
  }
  Trace(absl::StrCat("op", id, " ", st.ToString()));
  // The host's promise: only DEADLINE_EXCEEDED leaves the outcome unknown;
  // any other error means the write was not applied.
  if (op.write && absl::IsDeadlineExceeded(st)) {
    ++result_.counts.unknown;
  } else {
    op.failed = true;
  }
  // Ask the node that answered who leads, as a client follows a hint.
  Node& n = node(cl.target);
  if (n.up && n.host != nullptr) {
    absl::StatusOr<raft::host::GroupInfo> info = n.host->Group(GroupOf(op.key));
    if (info.ok() && info->leader != raft::kNoNode &&
        info->leader != cl.target) {
      cl.target = info->leader;
      return;
    }
  }
  cl.target = 1 + random_.Uniform(nodes_.size());
}

void World::TimeOutOps() {
  for (Client& cl : clients_) {
    if (!cl.busy || step_ < ops_[cl.op].deadline_step) continue;
    OpRecord& op = ops_[cl.op];
    op.done = true;
    if (op.write) {
      ++result_.counts.unknown;
    } else {
      op.failed = true;
    }
    Trace(absl::StrCat("op", cl.op, " timed out"));
    cl.busy = false;
    cl.target = 1 + random_.Uniform(nodes_.size());
  }
}

void World::Settle() {
  faults_on_ = false;
  Heal();
  for (auto& n : nodes_) {
    n->paused_until = 0;
    if (!n->up) {
      if (absl::Status st = Boot(*n); !st.ok()) {
        return Fail(
            absl::StrCat("n", n->id, " failed to restart: ", st.ToString()));
      }
    }
  }
  Trace("faults off");
  // A write to each group, acknowledged and then applied on every node.
  std::set<GroupId> written;
  const uint64_t start = step_;
  const uint64_t first_event = events_;
  uint64_t stable_steps = 0;
  while (step_ - start < kLivenessTicks * kStepsPerTick) {
    ++step_;
    now_us_ += kStepUs;
    DeliverDue();
    RunNodes();
    TimeOutOps();
    if (result_.violation) return;
    // Clients keep going until each group took a write, then stop, so
    // that the replicas can catch up with a log that stands still.
    for (int c = 0; c < kClients; ++c) {
      if (!clients_[c].busy && written.size() < std::size(kGroups)) Invoke(c);
    }
    for (const OpRecord& op : ops_) {
      if (op.write && op.reg.completed && op.reg.invoked > first_event) {
        written.insert(GroupOf(op.key));
      }
    }
    if (written.size() < std::size(kGroups)) continue;
    // Every replica applied the same index, and it stayed so for a while
    // with no client busy (the published GroupInfo lags by up to a tick,
    // so the live applied index is what counts).
    bool same = true;
    for (GroupId g : kGroups) {
      std::vector<Node*> members = Members(g);
      same = same && !members.empty();
      for (Node* n : members) {
        auto m = n->machines.find(g);
        same = same && m != n->machines.end() &&
               m->second->applied() == members[0]->machines.at(g)->applied();
      }
    }
    for (const Client& cl : clients_) same = same && !cl.busy;
    stable_steps = same ? stable_steps + 1 : 0;
    if (stable_steps >= kStableTicks * kStepsPerTick) return;
  }
  std::string state;
  for (GroupId g : kGroups) {
    absl::StrAppend(&state, " g", g, written.count(g) ? "(written)" : "", ":");
    for (auto& n : nodes_) {
      absl::StatusOr<raft::host::GroupInfo> i = n->host->Group(g);
      if (!i.ok()) continue;
      absl::StrAppend(&state, " n", n->id, " leader=n", i->leader,
                      " commit=", i->commit, " applied=", i->applied, ";");
    }
  }
  Fail(absl::StrCat("no progress: faults stopped ", kLivenessTicks,
                    " ticks ago and the groups have not all committed a "
                    "new write and applied it everywhere;",
                    state));
}

void World::CheckHistory() {
  std::vector<std::vector<RegisterOp>> per_key(kKeys);
  for (const OpRecord& op : ops_) {
    if (op.failed || (!op.write && !op.reg.completed)) continue;
    per_key[op.key].push_back(op.reg);
  }
  for (int k = 0; k < kKeys; ++k) {
    RegisterCheck check = CheckRegister(per_key[k], kMaxSearchStates);
    if (check.verdict == Linearizable::kUnknown) {
      ++result_.counts.unchecked_keys;
    } else if (check.verdict == Linearizable::kNo) {
      return Fail(absl::StrCat("linearizability: ", KeyName(k), ": ",
                               check.violation->message));
    }
  }
}

std::vector<Node*> World::Members(GroupId g) {
  raft::host::GroupInfo info;
  Node* leader = Leader(g, &info);
  if (leader == nullptr) return {};
  std::vector<Node*> out = {leader};
  for (NodeId id : info.conf.Members()) {
    if (id != leader->id) out.push_back(&node(id));
  }
  return out;
}

void World::CheckReplicasAgree() {
  for (GroupId g : kGroups) {
    std::vector<rpc::KeyValue> first;
    const std::vector<Node*> members = Members(g);
    for (Node* n : members) {
      bool more = false;
      absl::StatusOr<std::vector<rpc::KeyValue>> kvs =
          n->machines.at(g)->kv().Range("", "", 1000, &more);
      if (!kvs.ok()) return Fail(kvs.status().ToString());
      if (n == members.front()) {
        first = *kvs;
        continue;
      }
      const size_t common = std::min(kvs->size(), first.size());
      size_t i = 0;
      while (i < common &&
             (*kvs)[i].SerializeAsString() == first[i].SerializeAsString()) {
        ++i;
      }
      if (i == common && kvs->size() == first.size()) continue;
      auto describe = [&](const std::vector<rpc::KeyValue>& v) {
        if (i >= v.size()) return std::string("nothing");
        return absl::StrCat(v[i].key(), "=", v[i].value(), " (revision ",
                            v[i].mod_revision(), ")");
      };
      return Fail(absl::StrCat(
          "replicas differ: group ", g, " at applied index ",
          n->machines.at(g)->applied(), ": leader n", members.front()->id,
          " has ", describe(first), ", n", n->id, " has ", describe(*kvs)));
    }
  }
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
      std::unique_ptr<kv::storage::LogStore> log =
          kv::storage::LogStore::Over(&n->log_engine);
      st = raft::host::BootstrapGroups(log.get(), groups, voters);
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

  const uint64_t fault_steps = options_.ticks * kStepsPerTick;
  for (step_ = 1; step_ <= fault_steps && !result_.violation; ++step_) {
    now_us_ += kStepUs;
    if (step_ % kStepsPerTick == 0) {
      FaultsForTick();
      ClientsAct();
    }
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
  // Checked even after another violation: the history tells more.
  if (!result_.violation) CheckHistory();
  for (auto& n : nodes_) n->up = false;
  for (auto& n : nodes_) n->host.reset();
  return result_;
}

}  // namespace

HostSimResult RunHostSimulation(const HostSimOptions& options) {
  World world(options);
  return world.Run();
}

}  // namespace tally::hostsim
