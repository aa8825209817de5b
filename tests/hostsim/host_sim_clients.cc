// The clients of the host simulation: their operations through the hosts,
// their history, and the checks once faults stop.

#include <algorithm>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "kv/kvpb/kvpb.pb.h"
#include "tests/hostsim/internal/world.h"

namespace tally::hostsim::internal {

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
    kvpb::Command cmd;
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
  const bool lease =
      options_.defect != Defect::kClockDriftBeyondBound && random_.Chance(0.5);
  Trace(absl::StrCat("c", c, " op", id, " read ", KeyName(op.key), " at n",
                     n->id, lease ? " (lease)" : ""));
  n->host->ReadIndex(
      group, lease, [this, id, n, group](absl::StatusOr<Index> r) {
        if (!r.ok()) return Finish(id, r.status(), 0);
        // Read what this replica has applied, as the KV service does.
        uint64_t value = 0;
        absl::StatusOr<std::optional<kvpb::KeyValue>> kv =
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
  bool leases_checked = false;
  while (step_ - start < kLivenessTicks * kStepsPerTick) {
    ++step_;
    now_us_ += kStepUs;
    DeliverDue();
    RunNodes();
    TimeOutOps();
    if (step_ % (kStepsPerTick * kDutiesEveryTicks) == 0) LeaderDuties();
    if (result_.violation) return;
    // The lock clients went quiet with the faults: their leases must end.
    const std::optional<std::vector<uint64_t>> leases = LiveLeases();
    if (!leases_checked && step_ - start >= kLeasesEndTicks * kStepsPerTick) {
      leases_checked = true;
      if (!leases) {
        return Fail(absl::StrCat("no leader of group ", kLockGroup, " ",
                                 kLeasesEndTicks,
                                 " ticks after faults stopped"));
      }
      if (!leases->empty()) {
        return Fail(absl::StrCat("lease ", leases->front(), " (of ",
                                 leases->size(), " live) outlived its ",
                                 kLeaseTtlMs, " ms TTL: its client went ",
                                 "quiet when faults stopped ", kLeasesEndTicks,
                                 " ticks ago and the leader never ended it"));
      }
    }
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
    same = same && leases && leases->empty();
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

std::optional<std::vector<uint64_t>> World::LiveLeases() {
  raft::host::GroupInfo info;
  Node* leader = Leader(kLockGroup, &info);
  if (leader == nullptr) return std::nullopt;
  auto m = leader->machines.find(kLockGroup);
  if (m == leader->machines.end()) return std::nullopt;
  absl::StatusOr<std::vector<std::pair<uint64_t, kvpb::LeaseRecord>>> all =
      m->second->leases().List(kLockClients * 100);
  if (!all.ok()) return std::nullopt;
  std::vector<uint64_t> out;
  for (const auto& [id, rec] : *all) out.push_back(id);
  return out;
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
    std::vector<kvpb::KeyValue> first;
    const std::vector<Node*> members = Members(g);
    for (Node* n : members) {
      bool more = false;
      absl::StatusOr<std::vector<kvpb::KeyValue>> kvs =
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
      auto describe = [&](const std::vector<kvpb::KeyValue>& v) {
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

}  // namespace tally::hostsim::internal
