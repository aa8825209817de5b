#include "kv/lease/lease.h"

#include <algorithm>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "kv/storage/leveldb_util.h"
#include "rpc/reasons.h"

namespace tally::kv {

bool Leases::Handles(const kvpb::Command& cmd) const {
  return cmd.has_lease_grant() || cmd.has_lease_renew() ||
         cmd.has_lease_revoke() || cmd.has_lease_expire();
}

std::string Leases::ExpiryKey(int64_t expires_ms, uint64_t id) const {
  std::string k = keys_->Key(Space::kLeaseExpiry);
  storage::AppendBigEndian64(&k, static_cast<uint64_t>(expires_ms));
  storage::AppendBigEndian64(&k, id);
  return k;
}

std::optional<kvpb::LeaseRecord> Leases::Read(Batch& b, uint64_t id) {
  std::optional<std::string> raw = b.Read(keys_->IdKey(Space::kLease, id));
  if (!raw) return std::nullopt;
  kvpb::LeaseRecord rec;
  if (!rec.ParseFromString(*raw)) {
    b.Fail(absl::DataLossError(absl::StrCat("malformed lease ", id)));
    return std::nullopt;
  }
  return rec;
}

void Leases::Write(Batch& b, uint64_t id, const kvpb::LeaseRecord& rec) {
  b.Put(keys_->IdKey(Space::kLease, id), rec.SerializeAsString());
  b.Put(ExpiryKey(rec.expires_ms(), id), "");
  written_ = std::min(written_, rec.expires_ms());
}

void Leases::Committed() {
  if (written_ == INT64_MAX) return;
  absl::MutexLock l(&due_mu_);
  next_due_ = std::min(next_due_.load(), written_);
  changed_ = true;
  written_ = INT64_MAX;
}

void Leases::Reloaded() {
  absl::MutexLock l(&due_mu_);
  next_due_ = INT64_MIN;
  changed_ = true;
  written_ = INT64_MAX;
}

void Leases::End(ApplyContext& ctx, uint64_t id, const kvpb::LeaseRecord& rec) {
  if (ended_) ended_(ctx, id);
  ctx.batch.Delete(keys_->IdKey(Space::kLease, id));
  ctx.batch.Delete(ExpiryKey(rec.expires_ms(), id));
}

std::optional<kvpb::LeaseRecord> Leases::Live(ApplyContext& ctx, uint64_t id) {
  std::optional<kvpb::LeaseRecord> rec = Read(ctx.batch, id);
  if (!rec) return std::nullopt;
  if (rec->expires_ms() <= ctx.state.log_time_ms()) {
    End(ctx, id, *rec);
    return std::nullopt;
  }
  return rec;
}

bool Leases::IsLive(ApplyContext& ctx, uint64_t id) {
  std::optional<kvpb::LeaseRecord> rec = Read(ctx.batch, id);
  return rec && rec->expires_ms() > ctx.state.log_time_ms();
}

kvpb::CommandResult Leases::Apply(ApplyContext& ctx, const kvpb::Command& cmd) {
  const int64_t now = ctx.state.log_time_ms();
  kvpb::CommandResult r;
  if (cmd.has_lease_grant()) {
    // The entry's index names the lease: unique, never reused.
    kvpb::LeaseRecord rec;
    rec.set_ttl_ms(cmd.lease_grant().ttl_ms());
    rec.set_granted_ms(now);
    rec.set_expires_ms(now + rec.ttl_ms());
    Write(ctx.batch, ctx.index, rec);
    kvpb::LeaseResult* out = r.mutable_lease();
    out->set_id(ctx.index);
    out->set_ttl_ms(rec.ttl_ms());
    out->set_remaining_ms(rec.ttl_ms());
    ctx.Header(out->mutable_header());
  } else if (cmd.has_lease_renew()) {
    kvpb::LeaseRenewResult* out = r.mutable_lease_renew();
    for (uint64_t id : cmd.lease_renew().ids()) {
      std::optional<kvpb::LeaseRecord> rec = Live(ctx, id);
      if (!rec) {
        (*out->mutable_remaining_ms())[id] = 0;
        continue;
      }
      ctx.batch.Delete(ExpiryKey(rec->expires_ms(), id));
      rec->set_expires_ms(now + rec->ttl_ms());
      Write(ctx.batch, id, *rec);
      (*out->mutable_remaining_ms())[id] = rec->ttl_ms();
    }
    ctx.Header(out->mutable_header());
  } else if (cmd.has_lease_revoke()) {
    const uint64_t id = cmd.lease_revoke().id();
    std::optional<kvpb::LeaseRecord> rec = Live(ctx, id);
    if (!rec) {
      return Refusal(
          absl::StatusCode::kNotFound,
          absl::StrCat("lease ", id, " not found (ended or never granted)"),
          rpc::kReasonLeaseNotFound);
    }
    End(ctx, id, *rec);
    kvpb::LeaseResult* out = r.mutable_lease();
    out->set_id(id);
    out->set_ttl_ms(rec->ttl_ms());
    ctx.Header(out->mutable_header());
  } else {
    kvpb::LeaseRenewResult* out = r.mutable_lease_renew();
    for (uint64_t id : cmd.lease_expire().ids()) {
      std::optional<kvpb::LeaseRecord> rec = Read(ctx.batch, id);
      if (rec && rec->expires_ms() <= now) {
        End(ctx, id, *rec);
        (*out->mutable_remaining_ms())[id] = 0;
      }
    }
    ctx.Header(out->mutable_header());
  }
  return r;
}

absl::StatusOr<std::optional<kvpb::LeaseRecord>> Leases::Get(
    uint64_t id) const {
  absl::StatusOr<std::optional<std::string>> raw =
      engine_->Get(keys_->IdKey(Space::kLease, id));
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<kvpb::LeaseRecord>();
  kvpb::LeaseRecord rec;
  if (!rec.ParseFromString(**raw)) {
    return absl::DataLossError(absl::StrCat("malformed lease ", id));
  }
  return std::optional<kvpb::LeaseRecord>(rec);
}

absl::StatusOr<std::vector<std::pair<uint64_t, kvpb::LeaseRecord>>>
Leases::List(size_t limit) const {
  std::vector<std::pair<uint64_t, kvpb::LeaseRecord>> out;
  const std::string prefix = keys_->Key(Space::kLease);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix);
       it->Valid() && it->key().starts_with(prefix) && out.size() < limit;
       it->Next()) {
    kvpb::LeaseRecord rec;
    if (!rec.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed lease record");
    }
    out.emplace_back(storage::ReadBigEndian64(it->key().substr(prefix.size())),
                     rec);
  }
  if (!it->status().ok()) return it->status();
  return out;
}

absl::StatusOr<size_t> Leases::Count() const {
  size_t n = 0;
  const std::string prefix = keys_->Key(Space::kLease);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    ++n;
  }
  if (!it->status().ok()) return it->status();
  return n;
}

std::vector<kvpb::Command> Leases::Due(int64_t now) const {
  {
    absl::MutexLock l(&due_mu_);
    if (now < next_due_) return {};
    changed_ = false;
  }
  std::vector<uint64_t> ids;
  int64_t next = INT64_MIN;
  absl::Status s = Scan(now, kMaxExpiredPerCommand, &ids, &next);
  {
    // Until the expiry proposed here is applied, the leases it names are
    // still due: look again next time (next_due_ stays at most `now`).
    absl::MutexLock l(&due_mu_);
    if (s.ok() && ids.empty() && !changed_) next_due_ = next;
  }
  if (!s.ok() || ids.empty()) return {};
  kvpb::Command cmd;
  cmd.mutable_lease_expire()->mutable_ids()->Add(ids.begin(), ids.end());
  return {std::move(cmd)};
}

absl::StatusOr<std::vector<uint64_t>> Leases::Ending(int64_t now,
                                                     size_t limit) const {
  std::vector<uint64_t> out;
  int64_t next = 0;
  if (absl::Status s = Scan(now, limit, &out, &next); !s.ok()) return s;
  return out;
}

absl::Status Leases::Scan(int64_t now, size_t limit, std::vector<uint64_t>* ids,
                          int64_t* next) const {
  *next = INT64_MAX;
  const std::string prefix = keys_->Key(Space::kLeaseExpiry);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    std::string_view rest = it->key().substr(prefix.size());
    if (rest.size() != 16) return absl::DataLossError("malformed lease expiry");
    const auto ends =
        static_cast<int64_t>(storage::ReadBigEndian64(rest.substr(0, 8)));
    if (ends > now || ids->size() == limit) {
      *next = ends;
      break;
    }
    ids->push_back(storage::ReadBigEndian64(rest.substr(8)));
  }
  return it->status();
}

}  // namespace tally::kv
