#include "kv/idempotency/idempotency.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rpc/reasons.h"

namespace tally::kv {
namespace {

using Record = kvpb::IdemRecord;
using Result = kvpb::IdemResult;

std::string Describe(std::string_view scope, std::string_view key) {
  return absl::StrCat(
      "idempotency key \"",
      absl::CHexEscape(absl::string_view(key.data(), key.size())),
      "\" of scope \"",
      absl::CHexEscape(absl::string_view(scope.data(), scope.size())), "\"");
}

const char* StateName(Record::State s) {
  switch (s) {
    case Record::IN_PROGRESS:
      return "in progress";
    case Record::COMPLETED:
      return "completed";
    case Record::FAILED:
      return "failed";
    default:
      return "unknown";
  }
}

// When a record goes: retention after it finished, or after its claim ran
// out.
int64_t ReapAt(const Record& rec) {
  const int64_t from = rec.state() == Record::IN_PROGRESS ? rec.claim_ends_ms()
                                                          : rec.finished_ms();
  return AddMs(from, rec.retention_ms());
}

}  // namespace

absl::Status Idempotency::CheckName(std::string_view scope,
                                    std::string_view key) {
  if (scope.empty() || scope.size() > kMaxIdemScopeBytes ||
      scope.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("an idempotency scope must be 1 to ", kMaxIdemScopeBytes,
                     " bytes with no NUL byte (got ", scope.size(), " bytes)"));
  }
  if (key.empty() || key.size() > kMaxIdemKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("an idempotency key must be 1 to ", kMaxIdemKeyBytes,
                     " bytes (got ", key.size(), ")"));
  }
  return absl::OkStatus();
}

std::string Idempotency::RecordKey(std::string_view scope,
                                   std::string_view key) const {
  std::string k = keys_->Key(Space::kIdem, scope);
  k.push_back('\0');
  k.append(key);
  return k;
}

std::string Idempotency::ReapKey(int64_t at_ms, std::string_view scope,
                                 std::string_view key) const {
  std::string name(scope);
  name.push_back('\0');
  name.append(key);
  return reaps_.Key(at_ms, name);
}

bool Idempotency::Handles(const kvpb::Command& cmd) const {
  return cmd.has_idem_begin() || cmd.has_idem_finish() ||
         cmd.has_idem_renew() || cmd.has_idem_reap();
}

std::optional<Record> Idempotency::Read(Batch& b, const std::string& key) {
  std::optional<std::string> raw = b.Read(key);
  if (!raw) return std::nullopt;
  Record rec;
  if (!rec.ParseFromString(*raw)) {
    b.Fail(absl::DataLossError("malformed idempotency record"));
    return std::nullopt;
  }
  return rec;
}

void Idempotency::Write(ApplyContext& ctx, std::string_view scope,
                        std::string_view key, Record& rec,
                        const std::optional<int64_t>& old_reap) {
  rec.set_reap_at_ms(ReapAt(rec));
  if (old_reap && *old_reap != rec.reap_at_ms()) {
    ctx.batch.Delete(ReapKey(*old_reap, scope, key));
  }
  ctx.batch.Put(ReapKey(rec.reap_at_ms(), scope, key), "");
  ctx.batch.Put(RecordKey(scope, key), rec.SerializeAsString());
  reaps_.Wrote(rec.reap_at_ms());
}

void Idempotency::Remove(ApplyContext& ctx, std::string_view scope,
                         std::string_view key, const Record& rec) {
  ctx.batch.Delete(ReapKey(rec.reap_at_ms(), scope, key));
  ctx.batch.Delete(RecordKey(scope, key));
}

kvpb::CommandResult Idempotency::Apply(ApplyContext& ctx,
                                       const kvpb::Command& cmd) {
  if (cmd.has_idem_begin()) return Begin(ctx, cmd.idem_begin());
  if (cmd.has_idem_finish()) return Finish(ctx, cmd.idem_finish());
  if (cmd.has_idem_renew()) return Renew(ctx, cmd.idem_renew());
  return Reap(ctx, cmd.idem_reap());
}

kvpb::CommandResult Idempotency::Begin(ApplyContext& ctx,
                                       const kvpb::IdemBegin& req) {
  if (absl::Status s = CheckName(req.scope(), req.key()); !s.ok()) {
    return Refusal(s.code(), std::string(s.message()));
  }
  if (req.ttl_ms() <= 0 || req.retention_ms() <= 0 ||
      req.retention_ms() > kMaxIdemRetentionMs) {
    return Refusal(absl::StatusCode::kInvalidArgument,
                   "an idempotency claim needs a positive TTL and a "
                   "retention of at most 30 days");
  }
  const int64_t now = ctx.state.log_time_ms();
  kvpb::CommandResult r;
  Result* out = r.mutable_idem();
  out->set_log_time_ms(now);
  std::optional<Record> rec =
      Read(ctx.batch, RecordKey(req.scope(), req.key()));
  std::optional<int64_t> old_reap;
  if (rec) {
    old_reap = rec->reap_at_ms();
    if (rec->fingerprint() != req.fingerprint()) {
      out->set_outcome(Result::MISMATCH);
    } else if (rec->state() != Record::IN_PROGRESS) {
      out->set_outcome(Result::FINISHED);
    } else if (req.attempt_id() != 0 && rec->attempt_id() == req.attempt_id()) {
      out->set_outcome(Result::STARTED);  // a repeat: its answer was lost
      *out->mutable_record() = *std::move(rec);
      ctx.Header(out->mutable_header());
      return r;
    } else if (rec->claim_ends_ms() > now) {
      out->set_outcome(Result::IN_PROGRESS);
      out->set_retry_after_ms(rec->claim_ends_ms() - now);
    }
    // Still STARTED (the default): the owner's claim ran out, taken over
    // below.
    if (out->outcome() != Result::STARTED) {
      *out->mutable_record() = *std::move(rec);
      ctx.Header(out->mutable_header());
      return r;
    }
  }
  // Free, or its owner's claim ran out: a new owner under a higher token.
  Record started;
  started.set_fingerprint(req.fingerprint());
  started.set_token(ctx.index);
  started.set_created_ms(rec ? rec->created_ms() : now);
  started.set_claim_ends_ms(AddMs(now, req.ttl_ms()));
  started.set_retention_ms(rec ? rec->retention_ms() : req.retention_ms());
  started.set_attempts((rec ? rec->attempts() : 0) + 1);
  started.set_attempt_id(req.attempt_id());
  Write(ctx, req.scope(), req.key(), started, old_reap);
  out->set_outcome(Result::STARTED);
  *out->mutable_record() = std::move(started);
  ctx.Header(out->mutable_header());
  return r;
}

std::optional<Record> Idempotency::Owned(ApplyContext& ctx,
                                         std::string_view scope,
                                         std::string_view key, uint64_t token,
                                         bool finished_is_fine,
                                         kvpb::CommandResult* refusal) {
  std::optional<Record> rec = Read(ctx.batch, RecordKey(scope, key));
  if (!rec) {
    *refusal = Refusal(absl::StatusCode::kFailedPrecondition,
                       absl::StrCat(Describe(scope, key),
                                    " is not claimed (it failed retryably, "
                                    "was reaped, or never began)"),
                       rpc::kReasonNotClaimed);
    return std::nullopt;
  }
  if (rec->token() != token ||
      (rec->state() != Record::IN_PROGRESS && !finished_is_fine)) {
    *refusal = Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("token ", token, " no longer owns ", Describe(scope, key),
                     ": it is ", StateName(rec->state()), " under token ",
                     rec->token()),
        rpc::kReasonStaleToken);
    return std::nullopt;
  }
  return rec;
}

kvpb::CommandResult Idempotency::Finish(ApplyContext& ctx,
                                        const kvpb::IdemFinish& req) {
  kvpb::CommandResult r;
  std::optional<Record> rec = Owned(ctx, req.scope(), req.key(), req.token(),
                                    /*finished_is_fine=*/true, &r);
  if (!rec) return r;
  Result* out = r.mutable_idem();
  out->set_outcome(Result::OK);
  out->set_log_time_ms(ctx.state.log_time_ms());
  if (rec->state() != Record::IN_PROGRESS) {
    // Finished under this very token: a repeat whose answer was lost gets
    // the record as stored.
  } else if (req.outcome() == kvpb::IdemFinish::COMPLETED &&
             req.effects().success_size() > 0) {
    if (req.effects().compare_size() > 0 || req.effects().failure_size() > 0) {
      return Refusal(absl::StatusCode::kInvalidArgument,
                     "a completion's effects are writes only, no compares");
    }
    // The effects first: refused (a stale fence token), nothing is written.
    kvpb::Command effects;
    *effects.mutable_txn() = req.effects();
    effects.set_fence_token(req.fence_token());
    kvpb::CommandResult applied = kv_->Apply(ctx, effects);
    if (applied.error_code() != 0) return applied;
    const int64_t old_reap = rec->reap_at_ms();
    rec->set_state(Record::COMPLETED);
    rec->set_finished_ms(ctx.state.log_time_ms());
    rec->set_response(req.response());
    Write(ctx, req.scope(), req.key(), *rec, old_reap);
  } else if (req.outcome() == kvpb::IdemFinish::FAILED_RETRYABLE) {
    Remove(ctx, req.scope(), req.key(), *rec);
  } else {
    const int64_t old_reap = rec->reap_at_ms();
    rec->set_state(req.outcome() == kvpb::IdemFinish::COMPLETED
                       ? Record::COMPLETED
                       : Record::FAILED);
    rec->set_finished_ms(ctx.state.log_time_ms());
    rec->set_response(req.response());
    Write(ctx, req.scope(), req.key(), *rec, old_reap);
  }
  *out->mutable_record() = *std::move(rec);
  ctx.Header(out->mutable_header());
  return r;
}

kvpb::CommandResult Idempotency::Renew(ApplyContext& ctx,
                                       const kvpb::IdemRenew& req) {
  kvpb::CommandResult r;
  std::optional<Record> rec = Owned(ctx, req.scope(), req.key(), req.token(),
                                    /*finished_is_fine=*/false, &r);
  if (!rec) return r;
  // A claim that ran out with nobody taking over is still the owner's.
  const int64_t now = ctx.state.log_time_ms();
  const int64_t old_reap = rec->reap_at_ms();
  rec->set_claim_ends_ms(AddMs(now, std::max<int64_t>(req.ttl_ms(), 1)));
  Write(ctx, req.scope(), req.key(), *rec, old_reap);
  Result* out = r.mutable_idem();
  out->set_outcome(Result::OK);
  out->set_log_time_ms(now);
  *out->mutable_record() = *std::move(rec);
  ctx.Header(out->mutable_header());
  return r;
}

kvpb::CommandResult Idempotency::Reap(ApplyContext& ctx,
                                      const kvpb::IdemReap& req) {
  const int64_t now = ctx.state.log_time_ms();
  uint32_t removed = 0;
  for (const kvpb::IdemRef& ref : req.refs()) {
    std::optional<Record> rec =
        Read(ctx.batch, RecordKey(ref.scope(), ref.key()));
    if (rec && (req.purge() || rec->reap_at_ms() <= now)) {
      Remove(ctx, ref.scope(), ref.key(), *rec);
      ++removed;
    }
  }
  kvpb::CommandResult r;
  r.mutable_idem()->set_outcome(Result::OK);
  r.mutable_idem()->set_removed(removed);
  ctx.Header(r.mutable_idem()->mutable_header());
  return r;
}

std::vector<kvpb::Command> Idempotency::Due(int64_t now) const {
  kvpb::IdemReap reap;
  for (const std::string& name : reaps_.Due(now, kMaxReapedPerCommand)) {
    const size_t nul = name.find('\0');
    if (nul == std::string::npos) return {};  // malformed: left for a repair
    kvpb::IdemRef* ref = reap.add_refs();
    ref->set_scope(name.substr(0, nul));
    ref->set_key(name.substr(nul + 1));
  }
  if (reap.refs().empty()) return {};
  kvpb::Command cmd;
  *cmd.mutable_idem_reap() = std::move(reap);
  return {std::move(cmd)};
}

absl::StatusOr<std::optional<Record>> Idempotency::Get(
    std::string_view scope, std::string_view key) const {
  absl::StatusOr<std::optional<std::string>> raw =
      engine_->Get(RecordKey(scope, key));
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<Record>();
  Record rec;
  if (!rec.ParseFromString(**raw)) {
    return absl::DataLossError("malformed idempotency record");
  }
  return std::optional<Record>(std::move(rec));
}

absl::StatusOr<std::vector<std::pair<std::string, Record>>> Idempotency::List(
    std::string_view scope, std::string_view key_prefix, std::string_view after,
    size_t limit) const {
  std::vector<std::pair<std::string, Record>> out;
  const std::string base = RecordKey(scope, "");
  const std::string prefix = base + std::string(key_prefix);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  // From the prefix, or past `after` if that lies beyond it.
  it->Seek(std::max(prefix, base + std::string(after)));
  for (; it->Valid() && it->key().starts_with(prefix) && out.size() < limit;
       it->Next()) {
    std::string key(it->key().substr(base.size()));
    if (!after.empty() && key == after) continue;
    Record rec;
    if (!rec.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed idempotency record");
    }
    out.emplace_back(std::move(key), std::move(rec));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

}  // namespace tally::kv
