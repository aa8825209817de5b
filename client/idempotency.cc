// Client calls of rpc/idem.proto: idempotency records, in the shard holding
// scope + key.

#include <algorithm>
#include <random>

#include "client/client.h"
#include "client/internal/call.h"

namespace tally::client {

absl::StatusOr<rpc::IdemBeginResponse> Client::IdemBegin(
    rpc::IdemBeginRequest req) {
  absl::StatusOr<uint64_t> group = GroupFor(req.scope() + req.key());
  if (!group.ok()) return group.status();
  while (req.attempt_id() == 0) {
    static thread_local std::mt19937_64 rng(std::random_device{}());
    req.set_attempt_id(rng());
  }
  rpc::IdemBeginResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Idempotency::NewStub(ch)->Begin(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::IdemFinishResponse> Client::IdemComplete(
    const std::string& scope, const std::string& key, uint64_t token,
    const std::string& response, const std::vector<rpc::TxnOp>& effects,
    uint64_t fence_token) {
  absl::StatusOr<uint64_t> group = GroupFor(scope + key);
  if (!group.ok()) return group.status();
  rpc::IdemCompleteRequest req;
  req.set_scope(scope);
  req.set_key(key);
  req.set_token(token);
  req.set_response(response);
  req.mutable_effects()->Add(effects.begin(), effects.end());
  req.set_fence_token(fence_token);
  rpc::IdemFinishResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Idempotency::NewStub(ch)->Complete(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::IdemFinishResponse> Client::IdemFail(
    const std::string& scope, const std::string& key, uint64_t token,
    bool retryable, const std::string& response) {
  absl::StatusOr<uint64_t> group = GroupFor(scope + key);
  if (!group.ok()) return group.status();
  rpc::IdemFailRequest req;
  req.set_scope(scope);
  req.set_key(key);
  req.set_token(token);
  req.set_retryable(retryable);
  req.set_response(response);
  rpc::IdemFinishResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Idempotency::NewStub(ch)->Fail(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::IdemRenewResponse> Client::IdemRenew(
    const std::string& scope, const std::string& key, uint64_t token,
    std::chrono::milliseconds claim_ttl) {
  absl::StatusOr<uint64_t> group = GroupFor(scope + key);
  if (!group.ok()) return group.status();
  rpc::IdemRenewRequest req;
  req.set_scope(scope);
  req.set_key(key);
  req.set_token(token);
  req.set_claim_ttl_ms(claim_ttl.count());
  rpc::IdemRenewResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Idempotency::NewStub(ch)->Renew(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::IdemGetResponse> Client::IdemGet(const std::string& scope,
                                                     const std::string& key,
                                                     rpc::ReadMode mode) {
  absl::StatusOr<uint64_t> group = ReadTarget(scope + key, mode);
  if (!group.ok()) return group.status();
  rpc::IdemGetRequest req;
  req.set_scope(scope);
  req.set_key(key);
  req.set_read_mode(mode);
  rpc::IdemGetResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Idempotency::NewStub(ch)->Get(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<std::vector<rpc::IdemListEntry>> Client::IdemList(
    const std::string& scope, const std::string& key_prefix, size_t limit,
    rpc::ReadMode mode, std::vector<rpc::ResponseHeader>* headers) {
  absl::StatusOr<std::vector<uint64_t>> groups = AllGroups();
  if (!groups.ok()) return groups.status();
  std::vector<rpc::IdemListEntry> out;
  // The data groups (the first is the metadata group's).
  for (size_t i = 1; i < groups->size(); ++i) {
    rpc::IdemListRequest req;
    req.set_scope(scope);
    req.set_key_prefix(key_prefix);
    req.set_group((*groups)[i]);
    req.set_read_mode(mode);
    // Each shard's first `limit` keys hold the first `limit` of all.
    size_t from_group = 0;
    for (bool more = true; more && (limit == 0 || from_group < limit);) {
      rpc::IdemListResponse resp;
      absl::Status st =
          Call(mode == rpc::SERIALIZABLE ? kAnyNode : (*groups)[i], true,
               [&](auto ch, auto& ctx) {
                 return rpc::Idempotency::NewStub(ch)->List(&ctx, req, &resp);
               });
      if (!st.ok()) return st;
      if (headers != nullptr) headers->push_back(resp.header());
      for (rpc::IdemListEntry& e : *resp.mutable_records()) {
        out.push_back(std::move(e));
        ++from_group;
      }
      more = resp.more() && !resp.records().empty();
      if (more) req.set_after(resp.records().rbegin()->key());
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.key() < b.key(); });
  if (limit != 0 && out.size() > limit) out.resize(limit);
  return out;
}

absl::StatusOr<bool> Client::IdemPurge(const std::string& scope,
                                       const std::string& key) {
  absl::StatusOr<uint64_t> group = GroupFor(scope + key);
  if (!group.ok()) return group.status();
  rpc::IdemPurgeRequest req;
  req.set_scope(scope);
  req.set_key(key);
  rpc::IdemPurgeResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Idempotency::NewStub(ch)->Purge(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp.found();
}

}  // namespace tally::client
