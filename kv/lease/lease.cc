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
  std::string name;
  storage::AppendBigEndian64(&name, id);
  return ends_.Key(expires_ms, name);
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
  ends_.Wrote(rec.expires_ms());
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
    rec.set_expires_ms(AddMs(now, rec.ttl_ms()));
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
      rec->set_expires_ms(AddMs(now, rec->ttl_ms()));
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

namespace {

// Lease ids from the names of their index entries.
absl::StatusOr<std::vector<uint64_t>> Ids(
    const std::vector<std::string>& names) {
  std::vector<uint64_t> ids;
  for (const std::string& n : names) {
    if (n.size() != 8) return absl::DataLossError("malformed lease expiry");
    ids.push_back(storage::ReadBigEndian64(n));
  }
  return ids;
}

}  // namespace

std::vector<kvpb::Command> Leases::Due(int64_t now) const {
  absl::StatusOr<std::vector<uint64_t>> ids =
      Ids(ends_.Due(now, kMaxExpiredPerCommand));
  if (!ids.ok() || ids->empty()) return {};
  kvpb::Command cmd;
  cmd.mutable_lease_expire()->mutable_ids()->Add(ids->begin(), ids->end());
  return {std::move(cmd)};
}

absl::StatusOr<std::vector<uint64_t>> Leases::Ending(int64_t now,
                                                     size_t limit) const {
  std::vector<std::string> names;
  int64_t next = 0;
  if (absl::Status s = ends_.Scan(now, limit, &names, &next); !s.ok()) return s;
  return Ids(names);
}

}  // namespace tally::kv
