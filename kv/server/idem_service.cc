// The idempotency service: a record lives in the shard holding the KV key
// scope + key, and is written and read there like a key.

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/idempotency/idempotency.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/calls.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/idem.grpc.pb.h"

namespace tally::kv::server {

namespace {

constexpr size_t kMaxFingerprintBytes = 64;
constexpr int64_t kDefaultClaimTtlMs = 30'000;
constexpr int64_t kMaxClaimTtlMs = 24LL * 3600 * 1000;
constexpr int64_t kDefaultRetentionMs = 24LL * 3600 * 1000;
constexpr uint32_t kMaxListLimit = 1000;

grpc::Status CheckName(const std::string& scope, const std::string& key) {
  absl::Status s = Idempotency::CheckName(scope, key);
  return s.ok() ? grpc::Status::OK : Calls::Invalid(std::string(s.message()));
}

grpc::Status CheckToken(uint64_t token) {
  return token == 0 ? Calls::Invalid("token must be set: the one Begin gave")
                    : grpc::Status::OK;
}

// The record as a client sees it: times as durations from `now` (log time).
rpc::IdemRecord RecordToApi(const kvpb::IdemRecord& r, int64_t now) {
  rpc::IdemRecord out;
  switch (r.state()) {
    case kvpb::IdemRecord::COMPLETED:
      out.set_state(rpc::IDEM_COMPLETED);
      break;
    case kvpb::IdemRecord::FAILED:
      out.set_state(rpc::IDEM_FAILED);
      break;
    default:
      out.set_state(rpc::IDEM_IN_PROGRESS);
      out.set_claim_remaining_ms(std::max<int64_t>(0, r.claim_ends_ms() - now));
  }
  out.set_fingerprint(r.fingerprint());
  out.set_token(r.token());
  out.set_attempts(r.attempts());
  out.set_age_ms(std::max<int64_t>(0, now - r.created_ms()));
  out.set_retention_ms(r.retention_ms());
  out.set_expires_in_ms(std::max<int64_t>(0, r.reap_at_ms() - now));
  out.set_response(r.response());
  return out;
}

class IdemService final : public rpc::Idempotency::CallbackService {
 public:
  explicit IdemService(Node* node) : node_(node) {}

  grpc::ServerUnaryReactor* Begin(grpc::CallbackServerContext* ctx,
                                  const rpc::IdemBeginRequest* req,
                                  rpc::IdemBeginResponse* resp) override {
    auto* reply =
        new Reply<rpc::IdemBeginResponse>(ctx, resp, &node_->rpcs, "IdemBegin");
    grpc::Status st = CheckName(req->scope(), req->key());
    const int64_t ttl = ClaimTtl(req->claim_ttl_ms());
    const int64_t retention =
        req->retention_ms() == 0 ? kDefaultRetentionMs : req->retention_ms();
    if (st.ok() && req->fingerprint().size() > kMaxFingerprintBytes) {
      st = Calls::Invalid(absl::StrCat(
          "fingerprint of ", req->fingerprint().size(), " bytes exceeds the ",
          kMaxFingerprintBytes, "-byte limit"));
    }
    if (st.ok()) st = CheckClaimTtl(ttl);
    if (st.ok() && (retention < 0 || retention > kMaxIdemRetentionMs)) {
      st = Calls::Invalid(absl::StrCat("retention of ", retention,
                                       " ms is outside 0 to ",
                                       kMaxIdemRetentionMs, " ms (30 days)"));
    }
    if (st.ok()) st = Allowed(*ctx, req->scope(), req->key(), /*write=*/true);
    if (!st.ok()) return Calls::Finish(reply, st);
    kvpb::Command cmd;
    kvpb::IdemBegin* b = cmd.mutable_idem_begin();
    b->set_scope(req->scope());
    b->set_key(req->key());
    b->set_fingerprint(req->fingerprint());
    b->set_ttl_ms(ttl);
    b->set_retention_ms(retention);
    b->set_attempt_id(req->attempt_id());
    calls_.Write(reply, Group(req->scope(), req->key()), std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::IdemBeginResponse* out) {
                   const kvpb::IdemResult& res = r.idem();
                   ToApi(res.header(), out->mutable_header());
                   switch (res.outcome()) {
                     case kvpb::IdemResult::STARTED:
                       out->set_outcome(rpc::IdemBeginResponse::STARTED);
                       out->set_token(res.record().token());
                       break;
                     case kvpb::IdemResult::IN_PROGRESS:
                       out->set_outcome(rpc::IdemBeginResponse::IN_PROGRESS);
                       out->set_retry_after_ms(res.retry_after_ms());
                       break;
                     case kvpb::IdemResult::FINISHED:
                       out->set_outcome(rpc::IdemBeginResponse::FINISHED);
                       break;
                     default:
                       out->set_outcome(rpc::IdemBeginResponse::MISMATCH);
                   }
                   *out->mutable_record() =
                       RecordToApi(res.record(), res.log_time_ms());
                   // Only the owner learns the token.
                   if (out->outcome() != rpc::IdemBeginResponse::STARTED) {
                     out->mutable_record()->clear_token();
                   }
                 });
    return reply;
  }

  grpc::ServerUnaryReactor* Complete(grpc::CallbackServerContext* ctx,
                                     const rpc::IdemCompleteRequest* req,
                                     rpc::IdemFinishResponse* resp) override {
    auto* reply = new Reply<rpc::IdemFinishResponse>(ctx, resp, &node_->rpcs,
                                                     "IdemComplete");
    kvpb::IdemFinish effects;
    grpc::Status st = Effects(*req, &effects);
    if (st.ok()) {
      std::vector<AuthNeed> needs;
      for (const rpc::TxnOp& op : req->effects()) {
        needs.push_back(
            ToWrite(kvpb::AuthPermission::KEY,
                    op.has_put() ? op.put().key() : op.delete_().key()));
      }
      st = node_->auth.Check(*ctx, needs);
    }
    if (!st.ok()) return Calls::Finish(reply, st);
    return Finish(reply, req->scope(), req->key(), req->token(),
                  kvpb::IdemFinish::COMPLETED, req->response(),
                  std::move(effects));
  }

  grpc::ServerUnaryReactor* Fail(grpc::CallbackServerContext* ctx,
                                 const rpc::IdemFailRequest* req,
                                 rpc::IdemFinishResponse* resp) override {
    auto* reply =
        new Reply<rpc::IdemFinishResponse>(ctx, resp, &node_->rpcs, "IdemFail");
    return Finish(reply, req->scope(), req->key(), req->token(),
                  req->retryable() ? kvpb::IdemFinish::FAILED_RETRYABLE
                                   : kvpb::IdemFinish::FAILED_TERMINAL,
                  req->response());
  }

  grpc::ServerUnaryReactor* Renew(grpc::CallbackServerContext* ctx,
                                  const rpc::IdemRenewRequest* req,
                                  rpc::IdemRenewResponse* resp) override {
    auto* reply =
        new Reply<rpc::IdemRenewResponse>(ctx, resp, &node_->rpcs, "IdemRenew");
    grpc::Status st = CheckName(req->scope(), req->key());
    if (st.ok()) st = CheckToken(req->token());
    const int64_t ttl = ClaimTtl(req->claim_ttl_ms());
    if (st.ok()) st = CheckClaimTtl(ttl);
    if (st.ok()) st = Allowed(*ctx, req->scope(), req->key(), /*write=*/true);
    if (!st.ok()) return Calls::Finish(reply, st);
    kvpb::Command cmd;
    kvpb::IdemRenew* r = cmd.mutable_idem_renew();
    r->set_scope(req->scope());
    r->set_key(req->key());
    r->set_token(req->token());
    r->set_ttl_ms(ttl);
    calls_.Write(reply, Group(req->scope(), req->key()), std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::IdemRenewResponse* out) {
                   ToApi(r.idem().header(), out->mutable_header());
                   *out->mutable_record() =
                       RecordToApi(r.idem().record(), r.idem().log_time_ms());
                 });
    return reply;
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx,
                                const rpc::IdemGetRequest* req,
                                rpc::IdemGetResponse* resp) override {
    auto* reply =
        new Reply<rpc::IdemGetResponse>(ctx, resp, &node_->rpcs, "IdemGet");
    grpc::Status st = CheckName(req->scope(), req->key());
    if (st.ok()) st = Allowed(*ctx, req->scope(), req->key(), /*write=*/false);
    if (!st.ok()) return Calls::Finish(reply, st);
    const uint64_t group = Group(req->scope(), req->key());
    const rpc::ReadMode mode = req->read_mode();
    calls_.Read(reply, group, mode, /*scan=*/false,
                [this, group, mode, scope = req->scope(), key = req->key()](
                    raft::Index index, rpc::IdemGetResponse* out) {
                  const StateMachine* sm = node_->Machine(group);
                  absl::StatusOr<std::optional<kvpb::IdemRecord>> rec =
                      sm->idempotency().Get(scope, key);
                  if (!rec.ok()) return rpc::ToGrpc(rec.status());
                  out->set_found(rec->has_value());
                  if (*rec) {
                    *out->mutable_record() =
                        RecordToApi(**rec, sm->ProposalTimeMs());
                    out->mutable_record()->clear_token();
                  }
                  calls_.Header(group, index, mode, out->mutable_header());
                  return grpc::Status::OK;
                });
    return reply;
  }

  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const rpc::IdemListRequest* req,
                                 rpc::IdemListResponse* resp) override {
    auto* reply =
        new Reply<rpc::IdemListResponse>(ctx, resp, &node_->rpcs, "IdemList");
    grpc::Status st = CheckName(req->scope(), "-");
    bool data_group = false;
    for (const auto& r : node_->layout.ranges()) {
      data_group = data_group || r.group() == req->group();
    }
    if (st.ok() && !data_group) {
      st = Calls::Invalid(
          absl::StrCat("no shard has group ", req->group(),
                       "; the Ranges call names the shards' groups"));
    }
    if (st.ok()) {
      st = Allowed(*ctx, req->scope(), req->key_prefix(), /*write=*/false);
    }
    if (!st.ok()) return Calls::Finish(reply, st);
    const uint32_t limit = req->limit() == 0 || req->limit() > kMaxListLimit
                               ? kMaxListLimit
                               : req->limit();
    const uint64_t group = req->group();
    const rpc::ReadMode mode = req->read_mode();
    calls_.Read(reply, group, mode, /*scan=*/true,
                [this, group, mode, limit, scope = req->scope(),
                 prefix = req->key_prefix(), after = req->after()](
                    raft::Index index, rpc::IdemListResponse* out) {
                  const StateMachine* sm = node_->Machine(group);
                  // One more than asked: whether more follow.
                  auto recs =
                      sm->idempotency().List(scope, prefix, after, limit + 1);
                  if (!recs.ok()) return rpc::ToGrpc(recs.status());
                  const int64_t now = sm->ProposalTimeMs();
                  for (size_t i = 0; i < recs->size() && i < limit; ++i) {
                    rpc::IdemListEntry* e = out->add_records();
                    e->set_key((*recs)[i].first);
                    *e->mutable_record() = RecordToApi((*recs)[i].second, now);
                    e->mutable_record()->clear_token();
                  }
                  out->set_more(recs->size() > limit);
                  calls_.Header(group, index, mode, out->mutable_header());
                  return grpc::Status::OK;
                });
    return reply;
  }

  grpc::ServerUnaryReactor* Purge(grpc::CallbackServerContext* ctx,
                                  const rpc::IdemPurgeRequest* req,
                                  rpc::IdemPurgeResponse* resp) override {
    auto* reply =
        new Reply<rpc::IdemPurgeResponse>(ctx, resp, &node_->rpcs, "IdemPurge");
    grpc::Status st = CheckName(req->scope(), req->key());
    if (st.ok()) st = Allowed(*ctx, req->scope(), req->key(), /*write=*/true);
    if (!st.ok()) return Calls::Finish(reply, st);
    kvpb::Command cmd;
    kvpb::IdemRef* ref = cmd.mutable_idem_reap()->add_refs();
    ref->set_scope(req->scope());
    ref->set_key(req->key());
    cmd.mutable_idem_reap()->set_purge(true);
    calls_.Write(reply, Group(req->scope(), req->key()), std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::IdemPurgeResponse* out) {
                   ToApi(r.idem().header(), out->mutable_header());
                   out->set_found(r.idem().removed() > 0);
                 });
    return reply;
  }

 private:
  // The claim TTL asked for, or the default.
  static int64_t ClaimTtl(int64_t asked) {
    return asked == 0 ? kDefaultClaimTtlMs : asked;
  }
  grpc::Status CheckClaimTtl(int64_t ttl) const {
    const int64_t min = MinTtlMs(node_->options);
    if (ttl >= min && ttl <= kMaxClaimTtlMs) return grpc::Status::OK;
    return Calls::Invalid(absl::StrCat("claim TTL of ", ttl, " ms is outside ",
                                       min,
                                       " ms (twice the election timeout) to ",
                                       kMaxClaimTtlMs, " ms (one day)"));
  }

  // Records are named "scope/key" for permissions.
  grpc::Status Allowed(const grpc::ServerContextBase& ctx,
                       const std::string& scope, const std::string& key,
                       bool write) const {
    return node_->auth.Check(
        ctx, AuthNeed{kvpb::AuthPermission::IDEMPOTENCY,
                      absl::StrCat(scope, "/", key), "", write});
  }

  uint64_t Group(const std::string& scope, const std::string& key) const {
    return node_->RangeFor(scope + key).group();
  }

  // A completion's effects, checked (writes only, within the record's
  // shard, no leases, sizes), into `out`.
  grpc::Status Effects(const rpc::IdemCompleteRequest& req,
                       kvpb::IdemFinish* out) const {
    if (req.effects().empty()) return grpc::Status::OK;
    const uint64_t group = Group(req.scope(), req.key());
    rpc::TxnRequest txn;
    for (const rpc::TxnOp& op : req.effects()) {
      const std::string* key = nullptr;
      if (op.has_put()) {
        key = &op.put().key();
        if (op.put().lease() != 0) {
          return Calls::Invalid("a completion's effects attach no leases");
        }
        if (op.put().value().size() > node_->options.max_value_bytes) {
          return Calls::Invalid(absl::StrCat(
              "value of ", op.put().value().size(), " bytes exceeds the ",
              node_->options.max_value_bytes, "-byte limit"));
        }
      } else if (op.has_delete_()) {
        key = &op.delete_().key();
      } else {
        return Calls::Invalid("a completion's effects are puts and deletes");
      }
      if (key->empty() || key->size() > node_->options.max_key_bytes) {
        return Calls::Invalid(absl::StrCat("an effect's key must be 1 to ",
                                           node_->options.max_key_bytes,
                                           " bytes"));
      }
      if (node_->RangeFor(*key).group() != group) {
        return Calls::Invalid(absl::StrCat(
            "effect key \"", *key, "\" is in another shard than the record ",
            "(the one holding \"", req.scope(), req.key(), "\")"));
      }
      *txn.add_success() = op;
    }
    if (grpc::Status st = calls_.CheckTxnSize(txn); !st.ok()) return st;
    *out->mutable_effects() = ToKv(txn);
    out->set_fence_token(req.fence_token());
    return grpc::Status::OK;
  }

  grpc::ServerUnaryReactor* Finish(Reply<rpc::IdemFinishResponse>* reply,
                                   const std::string& scope,
                                   const std::string& key, uint64_t token,
                                   kvpb::IdemFinish::Outcome outcome,
                                   const std::string& response,
                                   kvpb::IdemFinish effects = {}) {
    grpc::Status st = CheckName(scope, key);
    if (st.ok()) st = CheckToken(token);
    if (st.ok() && response.size() > kMaxIdemResponseBytes) {
      st = Calls::Invalid(absl::StrCat("response of ", response.size(),
                                       " bytes exceeds the ",
                                       kMaxIdemResponseBytes, "-byte limit"));
    }
    if (st.ok()) {
      st = Allowed(*reply->shared()->ctx, scope, key, /*write=*/true);
    }
    if (!st.ok()) return Calls::Finish(reply, st);
    kvpb::Command cmd;
    kvpb::IdemFinish* f = cmd.mutable_idem_finish();
    *f = std::move(effects);
    f->set_scope(scope);
    f->set_key(key);
    f->set_token(token);
    f->set_outcome(outcome);
    f->set_response(response);
    calls_.Write(reply, Group(scope, key), std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::IdemFinishResponse* out) {
                   ToApi(r.idem().header(), out->mutable_header());
                   *out->mutable_record() =
                       RecordToApi(r.idem().record(), r.idem().log_time_ms());
                 });
    return reply;
  }

  Node* const node_;
  Calls calls_{node_};
};

}  // namespace

std::unique_ptr<grpc::Service> NewIdemService(Node* node) {
  return std::make_unique<IdemService>(node);
}

}  // namespace tally::kv::server
