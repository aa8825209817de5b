#include "kv/crdt_table/members.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tally::kv {

CrdtVector FromCounts(
    const google::protobuf::RepeatedPtrField<kvpb::CrdtCount>& counts) {
  CrdtVector v;
  for (const kvpb::CrdtCount& c : counts) {
    if (c.replica() != 0 && c.counter() != 0) {
      v[c.replica()] = std::max(v[c.replica()], c.counter());
    }
  }
  return v;
}

void ToCounts(const CrdtVector& v,
              google::protobuf::RepeatedPtrField<kvpb::CrdtCount>* out) {
  out->Clear();
  for (const auto& [r, n] : v) {
    if (n == 0) continue;
    kvpb::CrdtCount* c = out->Add();
    c->set_replica(r);
    c->set_counter(n);
  }
}

bool CrdtMembers::Handles(const kvpb::Command& cmd) const {
  return cmd.has_crdt_reports() || cmd.has_crdt_retire();
}

void CrdtMembers::Committed() {
  if (std::exchange(changed_, false)) generation_.fetch_add(1);
}

absl::StatusOr<std::map<uint64_t, kvpb::CrdtReplicaRecord>>
CrdtMembers::ReadAll(ApplyContext& ctx) const {
  std::map<uint64_t, kvpb::CrdtReplicaRecord> all;
  bool bad = false;
  ctx.batch.ForEach(keys_->Key(Space::kCrdtReplica),
                    [&](const std::string&, const std::string& v) {
                      kvpb::CrdtReplicaRecord r;
                      if (!r.ParseFromString(v)) {
                        bad = true;
                        return;
                      }
                      all[r.replica()] = std::move(r);
                    });
  if (bad) return absl::DataLossError("malformed CRDT replica record");
  if (!ctx.batch.status().ok()) return ctx.batch.status();
  return all;
}

bool CrdtMembers::UpdateCut(
    ApplyContext& ctx, const std::map<uint64_t, kvpb::CrdtReplicaRecord>& all,
    bool members_changed, kvpb::CrdtCut* cut) {
  // Per origin, the lowest counter every active replica has seen; never
  // lower than the cut already committed (replicas collected below it).
  CrdtVector floor = FromCounts(cut->floor());
  std::vector<CrdtVector> seen;
  CrdtVector origins;
  for (const auto& [id, r] : all) {
    if (r.retired()) continue;
    seen.push_back(FromCounts(r.seen()));
    for (const auto& [o, n] : seen.back()) origins[o] = 1;
  }
  bool moved = false;
  if (!seen.empty()) {
    for (const auto& [o, unused] : origins) {
      uint64_t low = UINT64_MAX;
      for (const CrdtVector& s : seen) {
        auto it = s.find(o);
        low = std::min(low, it == s.end() ? 0 : it->second);
      }
      if (low > floor[o]) {
        floor[o] = low;
        moved = true;
      }
    }
  }
  if (!moved && !members_changed) return false;
  cut->set_epoch(cut->epoch() + 1);
  cut->set_index(ctx.index);
  ToCounts(floor, cut->mutable_floor());
  ctx.batch.Put(keys_->Key(Space::kCrdtCut), cut->SerializeAsString());
  changed_ = true;
  return true;
}

kvpb::CommandResult CrdtMembers::Apply(ApplyContext& ctx,
                                       const kvpb::Command& cmd) {
  absl::StatusOr<std::map<uint64_t, kvpb::CrdtReplicaRecord>> all =
      ReadAll(ctx);
  if (!all.ok()) {
    return Refusal(all.status().code(), std::string(all.status().message()));
  }
  kvpb::CrdtCut cut;
  if (std::optional<std::string> c =
          ctx.batch.Read(keys_->Key(Space::kCrdtCut));
      c && !cut.ParseFromString(*c)) {
    return Refusal(absl::StatusCode::kDataLoss, "malformed CRDT cut");
  }
  auto put = [&](const kvpb::CrdtReplicaRecord& r) {
    ctx.batch.Put(keys_->IdKey(Space::kCrdtReplica, r.replica()),
                  r.SerializeAsString());
    changed_ = true;
  };
  bool members_changed = false;
  kvpb::CommandResult result;
  kvpb::CrdtMembersResult* out = result.mutable_crdt_members();
  if (cmd.has_crdt_retire()) {
    const uint64_t node = cmd.crdt_retire();
    kvpb::CrdtReplicaRecord* active = nullptr;
    for (auto& [id, r] : *all) {
      if (r.node() == node && !r.retired()) active = &r;
    }
    if (active == nullptr) {
      return Refusal(absl::StatusCode::kNotFound,
                     absl::StrCat("n", node, " has no active CRDT replica"));
    }
    active->set_retired(true);
    put(*active);
    out->set_retired_replica(active->replica());
    members_changed = true;
  } else {
    for (const kvpb::CrdtReplicaReport& rep : cmd.crdt_reports().reports()) {
      if (rep.node() == 0 || rep.replica() == 0) continue;
      auto it = all->find(rep.replica());
      if (it == all->end()) {
        // New for its node: the node's previous replica (a wiped disk, or
        // one retired and resynced) is retired for good.
        for (auto& [id, r] : *all) {
          if (r.node() == rep.node() && !r.retired()) {
            r.set_retired(true);
            put(r);
          }
        }
        kvpb::CrdtReplicaRecord r;
        r.set_node(rep.node());
        r.set_replica(rep.replica());
        r.set_registered_index(ctx.index);
        it = all->emplace(rep.replica(), std::move(r)).first;
        members_changed = true;
      }
      kvpb::CrdtReplicaRecord& r = it->second;
      if (r.retired() || r.node() != rep.node()) continue;
      // Reports only grow: a stale one (an earlier leader's) lowers nothing.
      CrdtVector seen = FromCounts(r.seen());
      for (const auto& [o, n] : FromCounts(rep.seen())) {
        seen[o] = std::max(seen[o], n);
      }
      ToCounts(seen, r.mutable_seen());
      r.set_reported_index(ctx.index);
      put(r);
    }
  }
  UpdateCut(ctx, *all, members_changed, &cut);
  ctx.Header(out->mutable_header());
  *out->mutable_cut() = cut;
  return result;
}

absl::StatusOr<std::optional<kvpb::CrdtReplicaRecord>> CrdtMembers::Replica(
    uint64_t replica) const {
  absl::StatusOr<std::optional<std::string>> v =
      engine_->Get(keys_->IdKey(Space::kCrdtReplica, replica));
  if (!v.ok()) return v.status();
  if (!v->has_value()) return std::nullopt;
  kvpb::CrdtReplicaRecord r;
  if (!r.ParseFromString(**v)) {
    return absl::DataLossError("malformed CRDT replica record");
  }
  return r;
}

absl::StatusOr<std::vector<kvpb::CrdtReplicaRecord>> CrdtMembers::Replicas()
    const {
  std::vector<kvpb::CrdtReplicaRecord> out;
  const std::string prefix = keys_->Key(Space::kCrdtReplica);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    kvpb::CrdtReplicaRecord r;
    if (!r.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed CRDT replica record");
    }
    out.push_back(std::move(r));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

absl::StatusOr<kvpb::CrdtCut> CrdtMembers::Cut() const {
  absl::StatusOr<std::optional<std::string>> v =
      engine_->Get(keys_->Key(Space::kCrdtCut));
  if (!v.ok()) return v.status();
  kvpb::CrdtCut cut;
  if (v->has_value() && !cut.ParseFromString(**v)) {
    return absl::DataLossError("malformed CRDT cut");
  }
  return cut;
}

}  // namespace tally::kv
