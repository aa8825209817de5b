// Client calls of rpc/crdt.proto.

#include <algorithm>

#include "absl/synchronization/notification.h"
#include "client/client.h"
#include "client/internal/call.h"
#include "client/internal/crdt_batcher.h"

namespace tally::client {

absl::StatusOr<rpc::CrdtTable> Client::CrdtCreateTable(
    const std::string& name, const std::vector<rpc::CrdtColumn>& columns) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::CrdtCreateTableRequest req;
  req.set_name(name);
  for (const rpc::CrdtColumn& c : columns) *req.add_columns() = c;
  rpc::CrdtTableResponse resp;
  absl::Status st = Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Crdt::NewStub(ch)->CreateTable(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return std::move(*resp.mutable_table());
}

absl::StatusOr<rpc::CrdtTable> Client::CrdtAlterTable(
    const std::string& name, const std::vector<rpc::CrdtColumn>& add) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::CrdtAlterTableRequest req;
  req.set_name(name);
  for (const rpc::CrdtColumn& c : add) *req.add_add_columns() = c;
  rpc::CrdtTableResponse resp;
  absl::Status st = Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Crdt::NewStub(ch)->AlterTable(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return std::move(*resp.mutable_table());
}

absl::Status Client::CrdtDropTable(const std::string& name) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::CrdtDropTableRequest req;
  req.set_name(name);
  rpc::CrdtTableResponse resp;
  return Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Crdt::NewStub(ch)->DropTable(&ctx, req, &resp);
  });
}

absl::StatusOr<uint64_t> Client::CrdtRetire(uint64_t node) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::CrdtRetireRequest req;
  req.set_node(node);
  rpc::CrdtRetireResponse resp;
  absl::Status st = Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Crdt::NewStub(ch)->Retire(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp.replica();
}

absl::StatusOr<std::vector<rpc::CrdtTable>> Client::CrdtTables() {
  rpc::CrdtTablesResponse resp;
  absl::Status st = Call(kAnyNode, true, [&](auto ch, auto& ctx) {
    return rpc::Crdt::NewStub(ch)->Tables(&ctx, rpc::CrdtTablesRequest(),
                                          &resp);
  });
  if (!st.ok()) return st;
  return std::vector<rpc::CrdtTable>(resp.tables().begin(),
                                     resp.tables().end());
}

absl::StatusOr<rpc::CrdtUpdateResponse> Client::CrdtUpdate(
    const rpc::CrdtUpdateRequest& req) {
  absl::StatusOr<rpc::CrdtUpdateResponse> out;
  absl::Notification done;
  crdt_batcher_->Update(req, [&](absl::StatusOr<rpc::CrdtUpdateResponse> r) {
    out = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

void Client::CrdtUpdateAsync(
    rpc::CrdtUpdateRequest req,
    std::function<void(absl::StatusOr<rpc::CrdtUpdateResponse>)> done) {
  crdt_batcher_->Update(std::move(req), std::move(done));
}

absl::StatusOr<rpc::CrdtGetResponse> Client::CrdtGet(const std::string& table,
                                                     const std::string& row,
                                                     rpc::CrdtReadMode mode) {
  rpc::CrdtGetRequest req;
  req.set_table(table);
  req.set_row(row);
  req.set_mode(mode);
  rpc::CrdtGetResponse resp;
  absl::Status st = Call(kAnyNode, true, [&](auto ch, auto& ctx) {
    return rpc::Crdt::NewStub(ch)->Get(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  if (mode != rpc::CRDT_MAJORITY || !resp.has_cas_columns()) return resp;
  absl::StatusOr<rpc::CrdtCasGetResponse> cas = CrdtCasGet(table, row);
  if (!cas.ok()) return cas.status();
  // The answering node's cas_register values, replaced.
  google::protobuf::RepeatedPtrField<rpc::CrdtValue> values;
  for (rpc::CrdtValue& v : *resp.mutable_values()) {
    if (v.type() != rpc::CRDT_CAS_REGISTER) *values.Add() = std::move(v);
  }
  for (const rpc::CrdtCasValue& c : cas->values()) {
    rpc::CrdtValue* v = values.Add();
    v->set_column(c.column());
    v->set_type(rpc::CRDT_CAS_REGISTER);
    v->add_values(c.value());
  }
  std::sort(values.begin(), values.end(),
            [](const rpc::CrdtValue& a, const rpc::CrdtValue& b) {
              return a.column() < b.column();
            });
  *resp.mutable_values() = std::move(values);
  resp.set_cas_version(cas->version());
  return resp;
}

absl::StatusOr<rpc::CrdtCasGetResponse> Client::CrdtCasGet(
    const std::string& table, const std::string& row, rpc::ReadMode mode) {
  absl::StatusOr<uint64_t> group = ReadTarget(row, mode);
  if (!group.ok()) return group.status();
  rpc::CrdtCasGetRequest req;
  req.set_table(table);
  req.set_row(row);
  req.set_read_mode(mode);
  rpc::CrdtCasGetResponse resp;
  absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
    return rpc::Crdt::NewStub(ch)->CasGet(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::CrdtCasResponse> Client::CrdtCas(rpc::CrdtCasRequest req) {
  const std::string row = req.row();
  return Write<rpc::CrdtCasResponse, rpc::Crdt>(
      row, req, [](auto& stub, auto* ctx, const auto& r, auto* resp) {
        return stub.Cas(ctx, r, resp);
      });
}

absl::StatusOr<rpc::CrdtStatusResponse> Client::CrdtStatus(
    const std::string& endpoint) {
  grpc::ClientContext ctx;
  ctx.set_deadline(internal::Clock::now() + options_.timeout);
  rpc::CrdtStatusResponse resp;
  grpc::Status st = rpc::Crdt::NewStub(Channel(endpoint))
                        ->Status(&ctx, rpc::CrdtStatusRequest(), &resp);
  if (!st.ok()) return rpc::FromGrpc(st, &ctx);
  return resp;
}

}  // namespace tally::client
