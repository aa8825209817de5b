#include "kv/server/internal/api.h"

#include <utility>

namespace tally::kv::server {

// Helpers are static overloads in this namespace, not in an anonymous one:
// there they would hide the header's overloads they call.

// The comparison's enums are the API's, value for value.
static_assert(static_cast<int>(kvpb::Compare::VERSION) ==
                  static_cast<int>(rpc::Compare::VERSION) &&
              static_cast<int>(kvpb::Compare::VALUE) ==
                  static_cast<int>(rpc::Compare::VALUE) &&
              static_cast<int>(kvpb::Compare::MOD_REVISION) ==
                  static_cast<int>(rpc::Compare::MOD_REVISION));
static_assert(static_cast<int>(kvpb::Compare::EQUAL) ==
                  static_cast<int>(rpc::Compare::EQUAL) &&
              static_cast<int>(kvpb::Compare::NOT_EQUAL) ==
                  static_cast<int>(rpc::Compare::NOT_EQUAL) &&
              static_cast<int>(kvpb::Compare::LESS) ==
                  static_cast<int>(rpc::Compare::LESS) &&
              static_cast<int>(kvpb::Compare::GREATER) ==
                  static_cast<int>(rpc::Compare::GREATER));

static kvpb::Compare ToKv(const rpc::Compare& c) {
  kvpb::Compare out;
  out.set_key(c.key());
  out.set_target(static_cast<kvpb::Compare::Target>(c.target()));
  out.set_op(static_cast<kvpb::Compare::Op>(c.op()));
  out.set_version(c.version());
  out.set_value(c.value());
  out.set_mod_revision(c.mod_revision());
  return out;
}

static kvpb::TxnOp ToKv(const rpc::TxnOp& op) {
  kvpb::TxnOp out;
  if (op.has_get()) {
    out.mutable_get()->set_key(op.get().key());
  } else if (op.has_put()) {
    *out.mutable_put() = ToKv(op.put());
  } else if (op.has_delete_()) {
    *out.mutable_delete_() = ToKv(op.delete_());
  }
  return out;
}

void ToApi(const kvpb::Applied& h, rpc::ResponseHeader* out) {
  out->set_revision(h.revision());
  out->set_group(h.group());
  out->set_raft_index(h.raft_index());
  out->set_replayed(h.replayed());
}

static void ToApi(kvpb::GetResult&& r, rpc::GetResponse* out) {
  ToApi(r.header(), out->mutable_header());
  out->set_found(r.found());
  if (r.has_kv()) *out->mutable_kv() = ToApi(std::move(*r.mutable_kv()));
}

kvpb::Session ToKv(const rpc::Session& s) {
  kvpb::Session out;
  out.set_client_id(s.client_id());
  out.set_sequence(s.sequence());
  out.set_first_incomplete(s.first_incomplete());
  out.set_group(s.group());
  return out;
}

kvpb::Put ToKv(const rpc::PutRequest& req) {
  kvpb::Put out;
  out.set_key(req.key());
  out.set_value(req.value());
  out.set_lease(req.lease());
  return out;
}

kvpb::Delete ToKv(const rpc::DeleteRequest& req) {
  kvpb::Delete out;
  out.set_key(req.key());
  out.set_range_end(req.range_end());
  return out;
}

kvpb::Txn ToKv(const rpc::TxnRequest& req) {
  kvpb::Txn out;
  for (const rpc::Compare& c : req.compare()) *out.add_compare() = ToKv(c);
  for (const rpc::TxnOp& op : req.success()) *out.add_success() = ToKv(op);
  for (const rpc::TxnOp& op : req.failure()) *out.add_failure() = ToKv(op);
  return out;
}

kvpb::Member ToKv(const rpc::Member& m) {
  kvpb::Member out;
  out.set_id(m.id());
  out.set_name(m.name());
  out.set_peer_address(m.peer_address());
  out.set_client_address(m.client_address());
  return out;
}

kvpb::RangeDescriptor ToKv(const rpc::RangeDescriptor& r) {
  kvpb::RangeDescriptor out;
  out.set_group(r.group());
  out.set_start(r.start());
  out.set_end(r.end());
  return out;
}

rpc::Member ToApi(const kvpb::Member& m) {
  rpc::Member out;
  out.set_id(m.id());
  out.set_name(m.name());
  out.set_peer_address(m.peer_address());
  out.set_client_address(m.client_address());
  return out;
}

rpc::RangeDescriptor ToApi(const kvpb::RangeDescriptor& r) {
  rpc::RangeDescriptor out;
  out.set_group(r.group());
  out.set_start(r.start());
  out.set_end(r.end());
  return out;
}

rpc::KeyValue ToApi(kvpb::KeyValue&& kv) {
  rpc::KeyValue out;
  out.set_key(std::move(*kv.mutable_key()));
  out.set_value(std::move(*kv.mutable_value()));
  out.set_create_revision(kv.create_revision());
  out.set_mod_revision(kv.mod_revision());
  out.set_version(kv.version());
  out.set_lease(kv.lease());
  return out;
}

void ToApi(kvpb::PutResult&& r, rpc::PutResponse* out) {
  ToApi(r.header(), out->mutable_header());
  out->set_had_prev(r.had_prev());
  if (r.has_prev()) *out->mutable_prev() = ToApi(std::move(*r.mutable_prev()));
}

void ToApi(kvpb::DeleteResult&& r, rpc::DeleteResponse* out) {
  ToApi(r.header(), out->mutable_header());
  out->set_deleted(r.deleted());
  out->set_count(r.count());
}

void ToApi(kvpb::TxnResult&& r, rpc::TxnResponse* out) {
  ToApi(r.header(), out->mutable_header());
  out->set_succeeded(r.succeeded());
  for (kvpb::TxnOpResult& op : *r.mutable_results()) {
    rpc::TxnOpResult* o = out->add_results();
    if (op.has_get()) {
      ToApi(std::move(*op.mutable_get()), o->mutable_get());
    } else if (op.has_put()) {
      ToApi(std::move(*op.mutable_put()), o->mutable_put());
    } else if (op.has_delete_()) {
      ToApi(std::move(*op.mutable_delete_()), o->mutable_delete_());
    }
  }
}

void ToApi(kvpb::OpenSessionResult&& r, rpc::OpenSessionResponse* out) {
  ToApi(r.header(), out->mutable_header());
  out->set_client_id(r.client_id());
  out->set_ttl_ms(r.ttl_ms());
}

}  // namespace tally::kv::server
