#include "tests/sim/simulation.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "util/check.h"

namespace tally::sim {
namespace {

using raft::Entry;
using raft::Index;
using raft::Message;
using raft::NodeId;
using raft::Ready;
using raft::Role;
using raft::Term;

constexpr int kElectionTick = 10;
constexpr int kHeartbeatTick = 2;
constexpr int kClients = 3;
constexpr int kKeys = 3;
// A client gives up on an operation after this many ticks (outcome unknown).
constexpr uint64_t kOpTimeout = 150;
// Once faults stop, a leader must commit a new write within this many ticks.
constexpr uint64_t kLivenessBound = uint64_t{40} * kElectionTick;

struct PendingOp {
  Op op;
  int client;
  Index index;
  Term term;
};

struct Node {
  NodeId id;
  bool up = true;
  SimDisk disk;
  std::unique_ptr<raft::MemoryStorage> storage;
  std::unique_ptr<util::SeededRandom> random;
  std::unique_ptr<raft::RawNode> raw;
  std::map<int, uint64_t> registers;
  // Ops proposed through this incarnation, by log index.
  std::map<Index, PendingOp> proposed;
  uint64_t restart_at = 0;

  Node(NodeId node_id, bool faulty) : id(node_id), disk(faulty) {}
};

struct Client {
  bool busy = false;
  uint64_t op_id = 0;  // the op in progress, when busy
  uint64_t invoked_at = 0;
  NodeId target = 1;
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& options);
  SimResult Run();

 private:
  void Boot(Node& n);
  void Crash(Node& n);
  void MaybeInjectFaults();
  void StartPartition();
  void ClientsAct();
  void Invoke(int client, const Op& op);
  void TickNodes();
  void DeliverMessages();
  void HandleReady(Node& n);
  void Apply(Node& n, const Entry& e);
  void Release(const PendingOp& p);
  void Step();
  void CheckLiveness();
  void Trace(const std::string& line);
  Node& node(NodeId id) { return *nodes_[id - 1]; }

  SimOptions options_;
  util::SeededRandom random_;
  FaultPlan plan_;
  std::unique_ptr<SimNetwork> network_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Client> clients_;
  Checker checker_;
  uint64_t now_ = 0;
  uint64_t next_op_id_ = 1;
  uint64_t next_value_ = 1;
  uint64_t heal_at_ = 0;
  bool faults_on_ = true;
  // Liveness phase: the first op invoked after faults stopped, and whether
  // one such op has been acknowledged.
  uint64_t first_liveness_op_ = UINT64_MAX;
  bool liveness_op_acked_ = false;
  SimResult result_;
};

FaultPlan DrawPlan(util::SeededRandom& r, int nodes) {
  FaultPlan p;
  p.nodes = nodes != 0 ? nodes : (r.Chance(0.5) ? 3 : 5);
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
  return p;
}

}  // namespace

std::string FaultPlan::Describe() const {
  return absl::StrCat("nodes=", nodes, " drop=", network.drop,
                      " dup=", network.duplicate, " delay<=", network.max_delay,
                      " crash=", crash, " partition=", partition,
                      " flush=", flush, " client=", client);
}

namespace {

Simulation::Simulation(const SimOptions& options)
    : options_(options),
      random_(options.seed),
      plan_(DrawPlan(random_, options.nodes)),
      checker_(plan_.nodes) {
  network_ = std::make_unique<SimNetwork>(&random_, plan_.network);
  for (int i = 1; i <= plan_.nodes; ++i) {
    nodes_.push_back(std::make_unique<Node>(i, options.faulty_disk));
  }
  clients_.resize(kClients);
  Trace("faults: " + plan_.Describe());
  for (auto& n : nodes_) Boot(*n);
  result_.plan = plan_;
}

void Simulation::Trace(const std::string& line) {
  if (options_.trace)
    std::printf("[%6llu] %s\n", (unsigned long long)now_, line.c_str());
}

void Simulation::Boot(Node& n) {
  std::vector<NodeId> voters;
  for (int i = 1; i <= plan_.nodes; ++i) voters.push_back(i);
  n.storage =
      std::make_unique<raft::MemoryStorage>(raft::ConfState{.voters = voters});
  n.storage->Append(n.disk.entries());
  const raft::HardState& hs = n.disk.hard_state();
  n.storage->SetHardState(hs);
  n.random = std::make_unique<util::SeededRandom>(random_.Next());
  raft::Config c;
  c.id = n.id;
  c.election_tick = kElectionTick;
  c.heartbeat_tick = kHeartbeatTick;
  c.max_size_per_msg = 4096;
  c.max_inflight_msgs = 16;
  c.storage = n.storage.get();
  c.random = n.random.get();
  absl::StatusOr<std::unique_ptr<raft::RawNode>> raw = raft::RawNode::Create(c);
  TALLY_CHECK(raw.ok(), "simulated node failed to start");
  n.raw = std::move(*raw);
  n.registers.clear();
  n.proposed.clear();
  n.up = true;
  checker_.OnRestart(n.id, n.disk.entries());
  Trace(absl::StrCat("node ", n.id, " starts: term=", hs.term,
                     " vote=", hs.vote, " commit=", hs.commit,
                     " last=", n.storage->LastIndex()));
}

void Simulation::Crash(Node& n) {
  n.disk.Crash();
  n.raw.reset();
  n.storage.reset();
  n.up = false;
  n.restart_at = now_ + 1 + random_.Uniform(plan_.max_downtime);
  // Their outcome is unknown to the clients: they move on.
  for (auto& [index, p] : n.proposed) Release(p);
  n.proposed.clear();
  ++result_.crashes;
  Trace(absl::StrCat("node ", n.id, " crashes until ", n.restart_at));
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
  // Shuffle, then split by shape.
  for (int i = n - 1; i > 0; --i)
    std::swap(ids[i], ids[random_.Uniform(i + 1)]);
  std::string shape;
  auto cut_both = [&](NodeId a, NodeId b) {
    network_->Cut(a, b);
    network_->Cut(b, a);
  };
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
    case 2: {  // bridge: ids[0] sees both halves, the halves do not see each
               // other
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

void Simulation::ClientsAct() {
  for (int c = 0; c < kClients; ++c) {
    Client& cl = clients_[c];
    if (cl.busy && now_ - cl.invoked_at > kOpTimeout) cl.busy = false;
    if (cl.busy || !random_.Chance(plan_.client)) continue;
    Op op;
    op.key = random_.Uniform(kKeys);
    if (random_.Chance(0.5)) {
      op.kind = Op::Kind::kWrite;
      op.value = next_value_++;
    } else {
      op.kind = Op::Kind::kRead;
    }
    Invoke(c, op);
  }
}

void Simulation::Invoke(int client, const Op& op_in) {
  Client& cl = clients_[client];
  Node& n = node(cl.target);
  if (!n.up || n.raw->raft().role() != Role::kLeader) {
    // Follow the redirect the node would give, or try another node.
    const NodeId hint = n.up ? n.raw->raft().lead() : raft::kNoNode;
    cl.target = hint != raft::kNoNode ? hint : 1 + random_.Uniform(plan_.nodes);
    return;
  }
  Op op = op_in;
  op.id = next_op_id_;
  op.must_follow = checker_.max_acked_index();
  absl::StatusOr<Index> index = n.raw->Propose(EncodeOp(op));
  if (!index.ok()) return;
  ++next_op_id_;
  cl.busy = true;
  cl.op_id = op.id;
  cl.invoked_at = now_;
  n.proposed[*index] = PendingOp{op, client, *index, n.raw->raft().term()};
  Trace(absl::StrCat(
      "client ", client, " op ", op.id,
      op.kind == Op::Kind::kWrite ? " write k" : " read k", op.key,
      op.kind == Op::Kind::kWrite ? absl::StrCat("=", op.value) : std::string(),
      " -> node ", n.id, " index ", *index));
  HandleReady(n);
}

void Simulation::TickNodes() {
  for (auto& n : nodes_) {
    if (!n->up) continue;
    n->raw->Tick();
    HandleReady(*n);
  }
}

void Simulation::DeliverMessages() {
  for (const Message& m : network_->TakeDue(now_)) {
    Node& n = node(m.to);
    if (!n.up) continue;
    absl::Status s = n.raw->Step(m);
    TALLY_CHECK(s.ok(), "simulated network delivered a malformed message");
    HandleReady(n);
    if (checker_.violation()) return;
  }
}

// The Ready contract of raw_node.h: persist (sync when asked), send, apply,
// advance.
void Simulation::HandleReady(Node& n) {
  while (n.up && n.raw->HasReady()) {
    Ready rd = n.raw->GetReady();
    if (rd.hard_state) n.storage->SetHardState(*rd.hard_state);
    n.disk.Write(rd.hard_state, rd.entries);
    if (rd.must_sync) n.disk.Sync();
    n.storage->Append(rd.entries);
    checker_.OnPersist(n.id, rd.entries);
    const raft::Raft& r = n.raw->raft();
    if (rd.soft_state && rd.soft_state->role == Role::kLeader) {
      ++result_.elections;
      Trace(absl::StrCat("node ", n.id, " leads term ", r.term()));
      checker_.OnBecomeLeader(n.id, r.term(), r.log());
    }
    if (rd.hard_state) {
      checker_.OnCommit(n.id, r.term(), rd.hard_state->commit, r.log());
    }
    for (const Message& m : rd.messages) network_->Send(m, now_);
    for (const Entry& e : rd.committed_entries) Apply(n, e);
    n.raw->Advance(rd);
    if (checker_.violation()) return;
  }
}

void Simulation::Apply(Node& n, const Entry& e) {
  checker_.OnApply(n.id, e);
  uint64_t read_value = 0;
  if (std::optional<Op> op = DecodeOp(e.data)) {
    if (op->kind == Op::Kind::kWrite) {
      n.registers[op->key] = op->value;
    } else {
      read_value = n.registers[op->key];
    }
  }
  auto pending = n.proposed.find(e.index);
  if (pending == n.proposed.end()) return;
  const PendingOp p = pending->second;
  n.proposed.erase(pending);
  Release(p);
  if (e.term != p.term) return;  // another leader's entry won this index
  checker_.OnAck(p.op, p.index, p.term, read_value);
  if (p.op.id >= first_liveness_op_) liveness_op_acked_ = true;
  Trace(absl::StrCat(
      "client ", p.client, " op ", p.op.id, " acked at ", p.index,
      p.op.kind == Op::Kind::kRead ? absl::StrCat(" read=", read_value)
                                   : std::string()));
}

void Simulation::Release(const PendingOp& p) {
  Client& cl = clients_[p.client];
  if (cl.busy && cl.op_id == p.op.id) cl.busy = false;
}

void Simulation::Step() {
  MaybeInjectFaults();
  ClientsAct();
  TickNodes();
  DeliverMessages();
}

SimResult Simulation::Run() {
  for (now_ = 1; now_ <= options_.steps && !checker_.violation(); ++now_) {
    Step();
  }
  if (!checker_.violation()) CheckLiveness();
  result_.steps = now_ - 1;
  result_.acked_ops = checker_.acked();
  if (checker_.violation()) {
    result_.violation = checker_.violation();
    result_.violation_step = now_ - 1;
  }
  return result_;
}

// Faults stop: partitions heal, crashed nodes restart, the network turns
// reliable. A leader must then commit a new client operation in bounded time.
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
    if (liveness_op_acked_) {
      ++now_;
      return;
    }
  }
  if (checker_.violation()) return;
  std::string roles;
  for (auto& n : nodes_) {
    absl::StrAppend(&roles, " ", n->id, "=",
                    raft::RoleName(n->raw->raft().role()), "/t",
                    n->raw->raft().term());
  }
  checker_.Fail(absl::StrCat("liveness: no operation committed within ",
                             kLivenessBound, " ticks after faults stopped;",
                             roles));
}

}  // namespace

SimResult RunSimulation(const SimOptions& options) {
  Simulation sim(options);
  return sim.Run();
}

}  // namespace tally::sim
