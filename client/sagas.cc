// Client calls of rpc/saga.proto: saga records, in the shard holding the
// saga's id.

#include <algorithm>
#include <set>

#include "client/client.h"
#include "client/internal/call.h"

namespace tally::client {

absl::StatusOr<rpc::SagaCreateResponse> Client::SagaCreate(
    rpc::SagaCreateRequest req) {
  const std::string id = req.id();
  return Write<rpc::SagaCreateResponse, rpc::Sagas>(
      id, req, [](auto& stub, auto* ctx, const auto& r, auto* resp) {
        return stub.Create(ctx, r, resp);
      });
}

absl::StatusOr<rpc::SagaTransitionResponse> Client::SagaTransition(
    rpc::SagaTransitionRequest req) {
  const std::string id = req.id();
  return Write<rpc::SagaTransitionResponse, rpc::Sagas>(
      id, req, [](auto& stub, auto* ctx, const auto& r, auto* resp) {
        return stub.Transition(ctx, r, resp);
      });
}

absl::StatusOr<rpc::SagaRecord> Client::SagaGet(const std::string& id,
                                                rpc::ReadMode mode) {
  absl::StatusOr<uint64_t> group = ReadTarget(id, mode);
  if (!group.ok()) return group.status();
  rpc::SagaGetRequest req;
  req.set_id(id);
  req.set_read_mode(mode);
  rpc::SagaGetResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Sagas::NewStub(ch)->Get(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  if (!resp.found()) {
    return absl::NotFoundError(
        absl::StrCat("no saga \"", id,
                     "\" (never created, or removed after its retention)"));
  }
  return std::move(*resp.mutable_record());
}

absl::StatusOr<std::vector<rpc::SagaRecord>> Client::SagaList(
    const std::vector<rpc::SagaState>& states, std::chrono::milliseconds idle,
    size_t limit, rpc::ReadMode mode,
    std::vector<rpc::ResponseHeader>* headers) {
  absl::StatusOr<std::vector<uint64_t>> groups = AllGroups();
  if (!groups.ok()) return groups.status();
  std::vector<rpc::SagaRecord> out;
  // The data groups (the first is the metadata group's).
  for (size_t i = 1; i < groups->size(); ++i) {
    rpc::SagaListRequest req;
    req.set_group((*groups)[i]);
    for (rpc::SagaState s : states) req.add_states(s);
    req.set_idle_ms(idle.count());
    req.set_read_mode(mode);
    // Each shard's first `limit` sagas hold the first `limit` of all.
    size_t from_group = 0;
    for (bool more = true; more && (limit == 0 || from_group < limit);) {
      rpc::SagaListResponse resp;
      absl::Status st =
          Call(mode == rpc::SERIALIZABLE ? kAnyNode : (*groups)[i], true,
               [&](auto ch, auto& ctx) {
                 return rpc::Sagas::NewStub(ch)->List(&ctx, req, &resp);
               });
      if (!st.ok()) return st;
      if (headers != nullptr) headers->push_back(resp.header());
      const bool got = !resp.sagas().empty();
      for (rpc::SagaRecord& r : *resp.mutable_sagas()) {
        out.push_back(std::move(r));
        ++from_group;
      }
      more = resp.more() && got;
      if (more) req.set_after(out.back().id());
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.id() < b.id(); });
  if (limit != 0 && out.size() > limit) out.resize(limit);
  return out;
}

}  // namespace tally::client
