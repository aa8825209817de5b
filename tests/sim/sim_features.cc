// The simulation's use of snapshots and compaction, membership changes and
// leadership transfers, driven at random like the faults.

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "raft/conf_change.h"
#include "tests/sim/conf_changes.h"
#include "tests/sim/internal/simulation_impl.h"
#include "util/check.h"

namespace tally::sim::internal {

using raft::ConfChange;
using raft::NodeId;

void Simulation::FeaturesAct() {
  if (plan_.voters == 0) return;
  for (auto& n : nodes_) {
    if (n->up && random_.Chance(plan_.snapshot)) MaybeSnapshot(*n);
  }
  Node* leader = Leader();
  if (leader == nullptr) return;
  const raft::ConfState& conf = leader->raw->raft().conf_state();
  if (conf.IsJoint() && !conf.auto_leave) {
    // An explicit joint configuration is left by hand, faults or not.
    if (random_.Chance(0.05) &&
        leader->raw->ProposeConfChange(ConfChange{}).ok()) {
      Trace(absl::StrCat("node ", leader->id, " proposes leave-joint"));
      HandleReady(*leader);
    }
    return;
  }
  if (!faults_on_) return;
  if (random_.Chance(plan_.conf_change)) ChangeMembership(*leader);
  if (leader->up && random_.Chance(plan_.transfer)) MaybeTransfer(*leader);
}

void Simulation::MaybeSnapshot(Node& n) {
  raft::MemoryStorage& s = *n.storage;
  const raft::Index applied = n.applied();
  if (applied < s.GetSnapshot()->metadata.index + 5) return;
  const std::string ref = absl::StrCat("n", n.id, "@", applied, "#", now_);
  snapshots_[ref] = SnapshotData{n.registers};
  absl::Status st = s.CreateSnapshot(applied, n.raw->raft().conf_state(), ref);
  TALLY_CHECK(st.ok(), "simulated snapshot failed");
  // Keep a few entries behind the snapshot, as real stores do.
  const raft::Index keep = random_.Uniform(8);
  const raft::Index compact_to = applied > keep
                                     ? std::max(applied - keep, s.FirstIndex())
                                     : s.FirstIndex();
  if (compact_to <= applied && compact_to >= s.FirstIndex()) {
    st = s.Compact(compact_to);
    TALLY_CHECK(st.ok(), "simulated compaction failed");
  }
  n.disk.SaveSnapshot(*s.GetSnapshot(), compact_to);
  Trace(absl::StrCat("node ", n.id, " snapshots at ", applied,
                     ", log compacted to ", s.FirstIndex()));
}

void Simulation::InstallSnapshot(Node& n, const raft::Snapshot& snap) {
  const raft::Index index = snap.metadata.index;
  n.disk.InstallSnapshot(snap);
  n.storage->ApplySnapshot(snap);
  n.registers = snapshots_.at(snap.data_ref).registers;
  // Proposals the snapshot covers are not applied here: outcome unknown.
  for (auto it = n.proposed.begin(); it != n.proposed.end();) {
    if (it->first > index) break;
    Release(it->second);
    it = n.proposed.erase(it);
  }
  checker_.OnSnapshotInstalled(n.id, index);
  checker_.OnStateHash(n.id, index, StateHash(n));
  Trace(absl::StrCat("node ", n.id, " installs snapshot ", snap.data_ref,
                     " at ", index));
}

void Simulation::ChangeMembership(Node& leader) {
  std::optional<ConfChange> change =
      RandomConfChange(leader.raw->raft().conf_state(), plan_.nodes,
                       /*explicit_joint=*/true, random_);
  if (!change) return;
  const ConfChange& cc = *change;
  absl::StatusOr<raft::Index> index = leader.raw->ProposeConfChange(cc);
  Trace(absl::StrCat(
      "node ", leader.id, " proposes ", raft::Describe(cc), ": ",
      index.ok() ? absl::StrCat("index ", *index) : index.status().ToString()));
  if (!index.ok()) return;
  ++result_.conf_changes;
  HandleReady(leader);
}

void Simulation::MaybeTransfer(Node& leader) {
  const raft::ConfState& conf = leader.raw->raft().conf_state();
  std::vector<NodeId> others;
  for (NodeId v : conf.voters) {
    if (v != leader.id) others.push_back(v);
  }
  if (others.empty()) return;
  const NodeId target = others[random_.Uniform(others.size())];
  if (!leader.raw->TransferLeadership(target).ok()) return;
  ++result_.transfers;
  Trace(absl::StrCat("node ", leader.id, " transfers leadership to ", target));
  HandleReady(leader);
}

uint64_t Simulation::StateHash(const Node& n) const {
  uint64_t h = 1469598103934665603ULL;
  for (const auto& [key, value] : n.registers) {
    h = (h ^ static_cast<uint64_t>(key)) * 1099511628211ULL;
    h = (h ^ value) * 1099511628211ULL;
  }
  return h;
}

}  // namespace tally::sim::internal
