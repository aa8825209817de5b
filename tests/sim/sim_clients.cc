// Client operations of the simulation: writes and reads through the log,
// reads through ReadIndex (at any node; a lease answers at once on a leader
// with lease reads on), and the history the linearizability check reads.

#include "absl/strings/str_cat.h"
#include "tests/sim/internal/simulation_impl.h"

namespace tally::sim::internal {

void Simulation::ClientsAct() {
  for (int c = 0; c < static_cast<int>(clients_.size()); ++c) {
    Client& cl = clients_[c];
    if (cl.busy && now_ - cl.invoked_at > kOpTimeout) {
      cl.busy = false;
      cl.target = 1 + random_.Uniform(plan_.nodes);
    }
    if (cl.busy || !random_.Chance(plan_.client)) continue;
    // Clients are spread over the nodes: one sometimes talks to a node other
    // than the leader it last heard of.
    if (plan_.voters > 0 && random_.Chance(0.2)) {
      cl.target = 1 + random_.Uniform(plan_.nodes);
    }
    Op op;
    op.key = random_.Uniform(kKeys);
    OpPath path = OpPath::kLog;
    if (random_.Chance(0.5)) {
      op.kind = Op::Kind::kWrite;
      op.value = next_value_++;
    } else {
      op.kind = Op::Kind::kRead;
      if (plan_.voters > 0 && random_.Chance(0.7)) path = OpPath::kReadIndex;
    }
    Invoke(c, op, path);
  }
}

void Simulation::Invoke(int client, Op op, OpPath path) {
  Client& cl = clients_[client];
  Node& n = node(cl.target);
  auto retarget = [&] {
    // Follow the redirect the node would give, or try another node.
    const raft::NodeId hint = n.up ? n.raw->raft().lead() : raft::kNoNode;
    cl.target = hint != raft::kNoNode ? hint : 1 + random_.Uniform(plan_.nodes);
  };
  if (!n.up ||
      (path == OpPath::kLog && n.raw->raft().role() != raft::Role::kLeader)) {
    retarget();
    return;
  }
  op.id = next_op_id_;
  op.must_follow = checker_.max_acked_index();
  PendingOp p{op, client, 0, 0};
  if (path == OpPath::kLog) {
    absl::StatusOr<raft::Index> index = n.raw->Propose(EncodeOp(op));
    if (!index.ok()) {
      retarget();
      return;
    }
    p.index = *index;
    p.term = n.raw->raft().term();
    n.proposed[*index] = p;
  } else {
    if (!n.raw->ReadIndex(op.id).ok()) {
      retarget();
      return;
    }
    n.reads_asked[op.id] = p;
  }
  ++next_op_id_;
  cl.busy = true;
  cl.op_id = op.id;
  cl.invoked_at = now_;
  std::vector<RegisterOp>& h = history_[op.key];
  history_slot_[op.id] = h.size();
  h.push_back(RegisterOp{op.kind == Op::Kind::kWrite ? RegisterOp::Kind::kWrite
                                                     : RegisterOp::Kind::kRead,
                         op.value, ++event_clock_, std::nullopt, op.id});
  Trace(absl::StrCat(
      "client ", client, " op ", op.id,
      op.kind == Op::Kind::kWrite ? " write k" : " read k", op.key,
      op.kind == Op::Kind::kWrite ? absl::StrCat("=", op.value) : std::string(),
      path == OpPath::kLog ? absl::StrCat(" -> node ", n.id, " index ", p.index)
                           : absl::StrCat(" -> node ", n.id, " read-index")));
  HandleReady(n);
}

void Simulation::Complete(const PendingOp& p, uint64_t read_value) {
  RegisterOp& h = history_[p.op.key][history_slot_.at(p.op.id)];
  if (h.completed) return;
  if (h.kind == RegisterOp::Kind::kRead) h.value = read_value;
  h.completed = ++event_clock_;
  if (p.op.id >= first_liveness_op_) liveness_op_done_ = true;
  Trace(absl::StrCat("client ", p.client, " op ", p.op.id, " done",
                     p.op.kind == Op::Kind::kRead
                         ? absl::StrCat(" read=", read_value)
                         : std::string()));
}

void Simulation::Release(const PendingOp& p) {
  Client& cl = clients_[p.client];
  if (cl.busy && cl.op_id == p.op.id) cl.busy = false;
}

void Simulation::OnReadStates(Node& n,
                              const std::vector<raft::ReadState>& states) {
  for (const raft::ReadState& rs : states) {
    auto it = n.reads_asked.find(rs.context);
    if (it == n.reads_asked.end()) continue;
    PendingOp p = it->second;
    p.index = rs.index;
    n.reads_asked.erase(it);
    n.reads_ready.push_back(p);
  }
}

void Simulation::ServeReadyReads(Node& n) {
  if (!n.up) return;
  std::vector<PendingOp> still_waiting;
  for (const PendingOp& p : n.reads_ready) {
    if (p.index > n.applied()) {
      still_waiting.push_back(p);
      continue;
    }
    // Linearizable now: the state machine has applied the read index.
    Trace(absl::StrCat("node ", n.id, " (",
                       raft::RoleName(n.raw->raft().role()), " t",
                       n.raw->raft().term(), ") serves read op ", p.op.id,
                       " at index ", p.index));
    Release(p);
    ++result_.index_reads;
    Complete(p, n.Read(p.op.key));
  }
  n.reads_ready = std::move(still_waiting);
}

void Simulation::CheckHistories() {
  for (const auto& [key, ops] : history_) {
    if (std::optional<std::string> bad = CheckRegisterHistory(ops)) {
      checker_.Fail(absl::StrCat("linearizability: key ", key, ": ", *bad));
      return;
    }
  }
}

}  // namespace tally::sim::internal
