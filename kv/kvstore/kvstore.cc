#include "kv/kvstore/kvstore.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/storage/leveldb_util.h"
#include "rpc/reasons.h"

namespace tally::kv {

namespace {

kvpb::KeyValue ToKeyValue(const std::string& key, const kvpb::StoredValue& v) {
  kvpb::KeyValue kv;
  kv.set_key(key);
  kv.set_value(v.value());
  kv.set_create_revision(v.create_revision());
  kv.set_mod_revision(v.mod_revision());
  kv.set_version(v.version());
  kv.set_lease(v.lease());
  return kv;
}

bool Holds(const kvpb::Compare& c, const std::optional<kvpb::StoredValue>& v) {
  int cmp = 0;
  switch (c.target()) {
    case kvpb::Compare::VERSION: {
      const int64_t have = v ? v->version() : 0;
      cmp = have < c.version() ? -1 : have > c.version();
      break;
    }
    case kvpb::Compare::MOD_REVISION: {
      const int64_t have = v ? v->mod_revision() : 0;
      cmp = have < c.mod_revision() ? -1 : have > c.mod_revision();
      break;
    }
    case kvpb::Compare::VALUE:
      if (!v) return c.op() == kvpb::Compare::NOT_EQUAL;
      cmp = v->value().compare(c.value());
      cmp = cmp < 0 ? -1 : cmp > 0;
      break;
    default:
      return false;
  }
  switch (c.op()) {
    case kvpb::Compare::EQUAL:
      return cmp == 0;
    case kvpb::Compare::NOT_EQUAL:
      return cmp != 0;
    case kvpb::Compare::LESS:
      return cmp < 0;
    case kvpb::Compare::GREATER:
      return cmp > 0;
    default:
      return false;
  }
}

}  // namespace

bool KvStore::Handles(const kvpb::Command& cmd) const {
  return cmd.has_put() || cmd.has_delete_() || cmd.has_txn() ||
         cmd.has_fence_bind() || cmd.has_lease_keys_end();
}

std::string KvStore::LeaseKey(uint64_t lease, const std::string& key) const {
  std::string k = keys_->IdKey(Space::kKeyOfLease, lease);
  k.append(key);
  return k;
}

kvpb::CommandResult KvStore::Apply(ApplyContext& ctx,
                                   const kvpb::Command& cmd) {
  if (cmd.has_fence_bind()) return Bind(ctx, cmd.fence_bind());
  if (cmd.has_lease_keys_end()) {
    return EndLeaseKeys(ctx, cmd.lease_keys_end());
  }
  // The keys the command writes, for their fences; a transaction's
  // compares decide which branch that is.
  std::vector<const std::string*> writes;
  bool txn_ok = true;
  // A range delete's keys, and where it stopped (if at its limit).
  std::vector<std::string> range;
  std::string resume;
  if (cmd.has_put()) {
    writes.push_back(&cmd.put().key());
  } else if (cmd.has_delete_() && !cmd.delete_().range_end().empty()) {
    range = KeysIn(ctx.batch, cmd.delete_(), &resume);
    for (const std::string& k : range) writes.push_back(&k);
  } else if (cmd.has_delete_()) {
    writes.push_back(&cmd.delete_().key());
  } else {
    for (const kvpb::Compare& c : cmd.txn().compare()) {
      txn_ok = txn_ok && Holds(c, Read(ctx.batch, c.key()));
    }
    for (const kvpb::TxnOp& op :
         txn_ok ? cmd.txn().success() : cmd.txn().failure()) {
      if (op.has_put()) writes.push_back(&op.put().key());
      if (op.has_delete_()) writes.push_back(&op.delete_().key());
    }
  }
  if (std::optional<kvpb::CommandResult> refused =
          CheckFences(ctx.batch, writes, cmd.fence_token())) {
    return *std::move(refused);
  }
  kvpb::CommandResult r;
  kvpb::AppliedState& st = ctx.state;
  const int64_t rev = st.revision() + 1;
  kvpb::Applied* header = nullptr;
  if (cmd.has_put()) {
    Put(ctx, cmd.put(), rev, r.mutable_put());
    st.set_revision(rev);
    header = r.mutable_put()->mutable_header();
  } else if (cmd.has_delete_()) {
    kvpb::DeleteResult* out = r.mutable_delete_();
    if (cmd.delete_().range_end().empty()) {
      Delete(ctx, cmd.delete_().key(), rev, out);
    } else {
      for (const std::string& k : range) Delete(ctx, k, rev, out);
      out->set_resume_key(resume);
    }
    if (out->deleted()) st.set_revision(rev);
    header = r.mutable_delete_()->mutable_header();
  } else {
    bool wrote = false;
    Txn(ctx, cmd.txn(), txn_ok, rev, r.mutable_txn(), &wrote);
    if (wrote) st.set_revision(rev);
    header = r.mutable_txn()->mutable_header();
  }
  ctx.Header(header);
  return r;
}

std::optional<kvpb::StoredValue> KvStore::Read(Batch& b,
                                               const std::string& key) {
  std::optional<std::string> raw = b.Read(keys_->Key(Space::kData, key));
  if (!raw) return std::nullopt;
  kvpb::StoredValue v;
  if (!v.ParseFromString(*raw)) {
    b.Fail(absl::DataLossError("malformed stored value"));
    return std::nullopt;
  }
  return v;
}

void KvStore::Put(ApplyContext& ctx, const kvpb::Put& req, int64_t revision,
                  kvpb::PutResult* resp) {
  Batch& b = ctx.batch;
  std::optional<kvpb::StoredValue> prev = Read(b, req.key());
  kvpb::StoredValue v;
  v.set_value(req.value());
  v.set_create_revision(prev ? prev->create_revision() : revision);
  v.set_mod_revision(revision);
  v.set_version(prev ? prev->version() + 1 : 1);
  v.set_lease(req.lease());
  if (prev) {
    resp->set_had_prev(true);
    *resp->mutable_prev() = ToKeyValue(req.key(), *prev);
    if (prev->lease() != 0 && prev->lease() != req.lease()) {
      b.Delete(LeaseKey(prev->lease(), req.key()));
    }
  }
  if (req.lease() != 0) {
    b.Put(LeaseKey(req.lease(), req.key()), "");
    attached_in_pass_ = true;
  }
  if (history_ != nullptr) history_->Record(ctx, revision, req.key(), &v, prev);
  b.Put(keys_->Key(Space::kData, req.key()), v.SerializeAsString());
}

void KvStore::Delete(ApplyContext& ctx, const std::string& key,
                     int64_t revision, kvpb::DeleteResult* resp) {
  Batch& b = ctx.batch;
  std::optional<kvpb::StoredValue> prev = Read(b, key);
  if (!prev) return;
  resp->set_deleted(true);
  resp->set_count(resp->count() + 1);
  b.Delete(keys_->Key(Space::kData, key));
  if (prev->lease() != 0) b.Delete(LeaseKey(prev->lease(), key));
  if (history_ != nullptr) history_->Record(ctx, revision, key, nullptr, prev);
}

std::vector<std::string> KvStore::KeysIn(Batch& b, const kvpb::Delete& req,
                                         std::string* resume) {
  const std::string space = keys_->Key(Space::kData);
  const bool unbounded = req.range_end() == std::string(1, '\0');
  std::vector<std::string> out;
  b.Scan(space, space + req.key(),
         [&](const std::string& k, const std::string&) {
           std::string key = k.substr(space.size());
           if (!unbounded && key >= req.range_end()) return false;
           if (out.size() == req.limit()) {
             *resume = std::move(key);
             return false;
           }
           out.push_back(std::move(key));
           return true;
         });
  return out;
}

kvpb::CommandResult KvStore::EndLeaseKeys(ApplyContext& ctx,
                                          const kvpb::LeaseKeysEnd& req) {
  kvpb::CommandResult r;
  kvpb::DeleteResult* out = r.mutable_delete_();
  const int64_t revision = ctx.state.revision() + 1;
  for (uint64_t lease : req.leases()) {
    const std::string prefix = keys_->IdKey(Space::kKeyOfLease, lease);
    ctx.batch.ForEach(prefix, [&](const std::string& k, const std::string&) {
      ctx.batch.Delete(k);
      const std::string key = k.substr(prefix.size());
      std::optional<kvpb::StoredValue> v = Read(ctx.batch, key);
      // Put again since without this lease: no longer the lease's to end.
      if (!v || v->lease() != lease) return;
      ctx.batch.Delete(keys_->Key(Space::kData, key));
      if (history_ != nullptr) history_->Record(ctx, revision, key, nullptr, v);
      out->set_deleted(true);
    });
  }
  if (out->deleted()) ctx.state.set_revision(revision);
  ctx.Header(out->mutable_header());
  return r;
}

void KvStore::Committed() {
  if (!std::exchange(attached_in_pass_, false)) return;
  absl::MutexLock l(&attach_mu_);
  ++attach_passes_;
  attached_ = Attached::kSome;
}

void KvStore::Reloaded() {
  fences_ = Fences::kUnknown;
  absl::MutexLock l(&attach_mu_);
  ++attach_passes_;
  attached_ = Attached::kUnknown;
}

std::vector<kvpb::Command> KvStore::Due(int64_t now) const {
  (void)now;
  if (attached_ == Attached::kNone) return {};
  constexpr size_t kMaxLeasesPerCommand = 100;
  uint64_t passes = 0;
  {
    absl::MutexLock l(&attach_mu_);
    passes = attach_passes_;
  }
  const std::string space = keys_->Key(Space::kKeyOfLease);
  kvpb::Command cmd;
  bool any = false;
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  // One step per lease: its keys are skipped with a seek.
  for (it->Seek(space); it->Valid() && it->key().starts_with(space);) {
    any = true;
    std::string_view rest = it->key().substr(space.size());
    if (rest.size() < 8) return {};  // malformed: left to the apply to see
    const uint64_t lease = storage::ReadBigEndian64(rest.substr(0, 8));
    if (lease_ended_ && lease_ended_(lease)) {
      cmd.mutable_lease_keys_end()->add_leases(lease);
      if (cmd.lease_keys_end().leases_size() ==
          static_cast<int>(kMaxLeasesPerCommand)) {
        break;
      }
    }
    if (lease == UINT64_MAX) break;
    it->Seek(keys_->IdKey(Space::kKeyOfLease, lease + 1));
  }
  if (!it->status().ok()) return {};
  if (!any) {
    // None attached, unless a pass written since the look began did.
    absl::MutexLock l(&attach_mu_);
    if (attach_passes_ == passes) attached_ = Attached::kNone;
  }
  if (!cmd.has_lease_keys_end()) return {};
  return {std::move(cmd)};
}

void KvStore::Txn(ApplyContext& ctx, const kvpb::Txn& txn, bool ok,
                  int64_t revision, kvpb::TxnResult* resp, bool* wrote) {
  Batch& b = ctx.batch;
  resp->set_succeeded(ok);
  for (const kvpb::TxnOp& op : ok ? txn.success() : txn.failure()) {
    kvpb::TxnOpResult* out = resp->add_results();
    if (op.has_put()) {
      Put(ctx, op.put(), revision, out->mutable_put());
      *wrote = true;
    } else if (op.has_delete_()) {
      Delete(ctx, op.delete_().key(), revision, out->mutable_delete_());
      *wrote = *wrote || out->delete_().deleted();
    } else if (op.has_get()) {
      kvpb::GetResult* g = out->mutable_get();
      if (std::optional<kvpb::StoredValue> v = Read(b, op.get().key())) {
        g->set_found(true);
        *g->mutable_kv() = ToKeyValue(op.get().key(), *v);
      }
    }
  }
}

std::optional<kvpb::CommandResult> KvStore::CheckFences(
    Batch& b, const std::vector<const std::string*>& writes, uint64_t token) {
  if (writes.empty() || fences_ == Fences::kNone) return std::nullopt;
  const std::string space = keys_->Key(Space::kFence);
  struct Hit {
    std::string prefix;
    const std::string* key;
    kvpb::FenceRecord rec;
  };
  std::vector<Hit> hits;
  bool any = false;
  b.ForEach(space, [&](const std::string& k, const std::string& v) {
    any = true;
    std::string prefix = k.substr(space.size());
    for (const std::string* key : writes) {
      if (!key->starts_with(prefix)) continue;
      Hit h{std::move(prefix), key, {}};
      if (!h.rec.ParseFromString(v)) {
        b.Fail(absl::DataLossError("malformed fence record"));
      }
      hits.push_back(std::move(h));
      return;
    }
  });
  // An apply pass that fails stops the node, so what this pass's batch
  // holds is what the store will hold.
  fences_ = any ? Fences::kSome : Fences::kNone;
  for (const Hit& h : hits) {
    if (token == 0) {
      return Refusal(
          absl::StatusCode::kFailedPrecondition,
          absl::StrCat("key \"", *h.key, "\" is fenced by lock \"",
                       h.rec.lock(), "\" (prefix \"", h.prefix,
                       "\"): a write to it must carry the lock's fence token"),
          rpc::kReasonFenceMissing);
    }
    if (token < h.rec.floor()) {
      return Refusal(
          absl::StatusCode::kFailedPrecondition,
          absl::StrCat("fence token ", token, " is stale for prefix \"",
                       h.prefix, "\" (lock \"", h.rec.lock(), "\"): token ",
                       h.rec.floor(), " was accepted; nothing was written"),
          rpc::kReasonFenceStale);
    }
  }
  for (Hit& h : hits) {
    if (token > h.rec.floor()) {
      h.rec.set_floor(token);
      b.Put(space + h.prefix, h.rec.SerializeAsString());
    }
  }
  return std::nullopt;
}

kvpb::CommandResult KvStore::Bind(ApplyContext& ctx,
                                  const kvpb::FenceBind& req) {
  const std::string key = keys_->Key(Space::kFence, req.prefix());
  kvpb::FenceRecord rec;
  if (std::optional<std::string> raw = ctx.batch.Read(key)) {
    if (!rec.ParseFromString(*raw)) {
      ctx.batch.Fail(absl::DataLossError("malformed fence record"));
    }
  }
  kvpb::CommandResult r;
  kvpb::FenceResult* out = r.mutable_fence();
  out->set_previous_lock(rec.lock());
  if (req.lock().empty()) {
    ctx.batch.Delete(key);
    if (fences_ == Fences::kSome) fences_ = Fences::kUnknown;
  } else {
    fences_ = Fences::kSome;
    // The floor stays: tokens only grow, whichever lock issues them.
    rec.set_lock(req.lock());
    ctx.batch.Put(key, rec.SerializeAsString());
  }
  ctx.Header(out->mutable_header());
  return r;
}

absl::StatusOr<std::optional<kvpb::FenceRecord>> KvStore::Fence(
    const std::string& prefix) const {
  absl::StatusOr<std::optional<std::string>> raw =
      engine_->Get(keys_->Key(Space::kFence, prefix));
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<kvpb::FenceRecord>();
  kvpb::FenceRecord rec;
  if (!rec.ParseFromString(**raw)) {
    return absl::DataLossError("malformed fence record");
  }
  return std::optional<kvpb::FenceRecord>(rec);
}

absl::StatusOr<std::optional<kvpb::KeyValue>> KvStore::Get(
    const std::string& key) const {
  absl::StatusOr<std::optional<std::string>> raw =
      engine_->Get(keys_->Key(Space::kData, key));
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<kvpb::KeyValue>();
  kvpb::StoredValue v;
  if (!v.ParseFromString(**raw)) return absl::DataLossError("malformed value");
  return std::optional<kvpb::KeyValue>(ToKeyValue(key, v));
}

absl::StatusOr<std::vector<kvpb::KeyValue>> KvStore::Range(
    const std::string& start, const std::string& end, size_t limit, bool* more,
    const storage::Snapshot* snap) const {
  std::vector<kvpb::KeyValue> out;
  *more = false;
  const std::string prefix = keys_->Key(Space::kData);
  std::unique_ptr<storage::Iterator> it =
      snap != nullptr ? snap->NewIterator() : engine_->NewIterator();
  for (it->Seek(prefix + start); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    std::string key(it->key().substr(prefix.size()));
    if (!end.empty() && key >= end) break;
    if (out.size() == limit) {
      *more = true;
      break;
    }
    kvpb::StoredValue v;
    if (!v.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed value");
    }
    out.push_back(ToKeyValue(key, v));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

}  // namespace tally::kv
