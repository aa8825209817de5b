// The client-facing KV service: validates input, routes to the key's
// range, proposes writes and serves reads in the requested mode.

#include "absl/strings/str_cat.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/calls.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/kv.grpc.pb.h"

namespace tally::kv::server {

namespace {

constexpr uint32_t kMaxRangeLimit = 10000;
constexpr auto kKey = kvpb::AuthPermission::KEY;

class KvService final : public rpc::KV::CallbackService {
 public:
  explicit KvService(Node* node) : node_(node) {}

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx,
                                const rpc::GetRequest* req,
                                rpc::GetResponse* resp) override {
    auto* reply = new Reply<rpc::GetResponse>(ctx, resp, &node_->rpcs, "Get");
    if (grpc::Status st = CheckKey(req->key()); !st.ok()) {
      return Finish(reply, st);
    }
    if (grpc::Status st = node_->auth.Check(*ctx, ToRead(kKey, req->key()));
        !st.ok()) {
      return Finish(reply, st);
    }
    const uint64_t group = node_->RangeFor(req->key()).group();
    const std::string key = req->key();
    const rpc::ReadMode mode = req->read_mode();
    Read(reply, group, mode, /*scan=*/false,
         [this, key, group, mode](raft::Index index, rpc::GetResponse* out) {
           absl::StatusOr<std::optional<kvpb::KeyValue>> kv =
               node_->Machine(group)->kv().Get(key);
           if (!kv.ok()) return rpc::ToGrpc(kv.status());
           out->set_found(kv->has_value());
           if (*kv) *out->mutable_kv() = ToApi(std::move(**kv));
           calls_.Header(group, index, mode, out->mutable_header());
           return grpc::Status::OK;
         });
    return reply;
  }

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx,
                                  const rpc::RangeRequest* req,
                                  rpc::RangeResponse* resp) override {
    auto* reply =
        new Reply<rpc::RangeResponse>(ctx, resp, &node_->rpcs, "Range");
    if (!req->end().empty() && req->end() <= req->start()) {
      return Finish(
          reply, Invalid("range end must be empty (no bound) or after start"));
    }
    // One shard per call: the one holding `start`, up to its end. The
    // client continues into the next shard when `more` is set.
    const rpc::RangeDescriptor& shard = node_->RangeFor(req->start());
    std::string end = req->end();
    bool clamped = false;
    if (!shard.end().empty() && (end.empty() || end > shard.end())) {
      end = shard.end();
      clamped = true;
    }
    if (grpc::Status st = node_->auth.Check(
            *ctx,
            ToRead(kKey, req->start(), end.empty() ? AuthNoBound() : end));
        !st.ok()) {
      return Finish(reply, st);
    }
    const uint32_t limit = req->limit() == 0 || req->limit() > kMaxRangeLimit
                               ? kMaxRangeLimit
                               : req->limit();
    const uint64_t group = shard.group();
    const rpc::ReadMode mode = req->read_mode();
    Read(reply, group, mode, /*scan=*/limit > kMaxPointRange,
         [this, start = req->start(), end, clamped, limit, group, mode](
             raft::Index index, rpc::RangeResponse* out) {
           bool more = false;
           absl::StatusOr<std::vector<kvpb::KeyValue>> kvs =
               node_->Machine(group)->kv().Range(start, end, limit, &more);
           if (!kvs.ok()) return rpc::ToGrpc(kvs.status());
           out->mutable_kvs()->Reserve(static_cast<int>(kvs->size()));
           for (auto& kv : *kvs) *out->add_kvs() = ToApi(std::move(kv));
           // A full page goes on after its last key; a shard's keys read to
           // its end go on in the next shard (even when they filled the
           // page exactly).
           if (more) {
             out->set_more(true);
             out->set_next(out->kvs(out->kvs_size() - 1).key() + '\0');
           } else if (clamped) {
             out->set_more(true);
             out->set_next(end);
           }
           calls_.Header(group, index, mode, out->mutable_header());
           return grpc::Status::OK;
         });
    return reply;
  }

  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx,
                                const rpc::PutRequest* req,
                                rpc::PutResponse* resp) override {
    auto* reply = new Reply<rpc::PutResponse>(ctx, resp, &node_->rpcs, "Put");
    grpc::Status st = CheckKey(req->key());
    if (st.ok()) st = CheckValue(req->value());
    if (st.ok()) st = node_->auth.Check(*ctx, ToWrite(kKey, req->key()));
    if (st.ok()) st = CheckLease(req->lease());
    if (!st.ok()) return Finish(reply, st);
    kvpb::Command cmd;
    *cmd.mutable_put() = ToKv(*req);
    cmd.set_request_fingerprint(Fingerprint(cmd.put()));
    cmd.set_fence_token(req->fence_token());
    *cmd.mutable_session() = ToKv(req->session());
    Write(reply, req->key(), std::move(cmd),
          [](kvpb::CommandResult& r, rpc::PutResponse* out) {
            ToApi(std::move(*r.mutable_put()), out);
          });
    return reply;
  }

  grpc::ServerUnaryReactor* Delete(grpc::CallbackServerContext* ctx,
                                   const rpc::DeleteRequest* req,
                                   rpc::DeleteResponse* resp) override {
    auto* reply =
        new Reply<rpc::DeleteResponse>(ctx, resp, &node_->rpcs, "Delete");
    const std::string& end = req->range_end();
    const bool unbounded = end == std::string(1, '\0');
    if (end.empty()) {
      if (grpc::Status st = CheckKey(req->key()); !st.ok()) {
        return Finish(reply, st);
      }
    } else if (!unbounded && end <= req->key()) {
      return Finish(reply, Invalid("range end must be empty (the key alone), "
                                   "\"\\0\" (no bound) or after the key"));
    }
    if (grpc::Status st =
            node_->auth.Check(*ctx, ToWrite(kKey, req->key(), end));
        !st.ok()) {
      return Finish(reply, st);
    }
    kvpb::Command cmd;
    *cmd.mutable_delete_() = ToKv(*req);
    // A range: the part in the shard holding the key, a bounded number of
    // keys; the client goes on from `next`.
    const rpc::RangeDescriptor& shard = node_->RangeFor(req->key());
    const bool clamped = !end.empty() && !shard.end().empty() &&
                         (unbounded || end > shard.end());
    if (!end.empty()) {
      cmd.mutable_delete_()->set_range_end(clamped ? shard.end() : end);
      cmd.mutable_delete_()->set_limit(kMaxRangeLimit);
    }
    cmd.set_request_fingerprint(Fingerprint(cmd.delete_()));
    cmd.set_fence_token(req->fence_token());
    *cmd.mutable_session() = ToKv(req->session());
    const std::string shard_end = shard.end();
    Write(
        reply, req->key(), std::move(cmd),
        [clamped, shard_end](kvpb::CommandResult& r, rpc::DeleteResponse* out) {
          std::string resume = r.delete_().resume_key();
          ToApi(std::move(*r.mutable_delete_()), out);
          if (!resume.empty() || clamped) {
            out->set_more(true);
            out->set_next(resume.empty() ? shard_end : resume);
          }
        });
    return reply;
  }

  grpc::ServerUnaryReactor* OpenSession(
      grpc::CallbackServerContext* ctx, const rpc::OpenSessionRequest* req,
      rpc::OpenSessionResponse* resp) override {
    auto* reply = new Reply<rpc::OpenSessionResponse>(ctx, resp, &node_->rpcs,
                                                      "OpenSession");
    bool data_group = false;
    for (const auto& r : node_->layout.ranges()) {
      data_group = data_group || r.group() == req->group();
    }
    if (!data_group) {
      return Finish(reply, Invalid(absl::StrCat(
                               "no shard has group ", req->group(),
                               "; the Ranges call names the shards' groups")));
    }
    if (grpc::Status st = node_->auth.Known(*ctx); !st.ok()) {
      return Finish(reply, st);
    }
    kvpb::Command cmd;
    cmd.mutable_open_session()->set_ttl_ms(node_->options.session_ttl_ms);
    calls_.Write(reply, req->group(), std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::OpenSessionResponse* out) {
                   ToApi(std::move(*r.mutable_open_session()), out);
                 });
    return reply;
  }

  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* ctx,
                                const rpc::TxnRequest* req,
                                rpc::TxnResponse* resp) override {
    auto* reply = new Reply<rpc::TxnResponse>(ctx, resp, &node_->rpcs, "Txn");
    if (grpc::Status st = calls_.CheckTxnSize(*req); !st.ok()) {
      return Finish(reply, st);
    }
    std::vector<const std::string*> keys;
    std::vector<AuthNeed> needs;
    for (const auto& c : req->compare()) {
      keys.push_back(&c.key());
      needs.push_back(ToRead(kKey, c.key()));
    }
    for (const auto* ops : {&req->success(), &req->failure()}) {
      for (const rpc::TxnOp& op : *ops) {
        if (op.has_put()) {
          keys.push_back(&op.put().key());
          needs.push_back(ToWrite(kKey, op.put().key()));
          grpc::Status st = CheckValue(op.put().value());
          if (st.ok()) st = CheckLease(op.put().lease());
          if (!st.ok()) return Finish(reply, st);
        } else if (op.has_delete_()) {
          if (!op.delete_().range_end().empty()) {
            return Finish(reply, Invalid("a transaction deletes single keys "
                                         "(range_end must be empty)"));
          }
          keys.push_back(&op.delete_().key());
          needs.push_back(ToWrite(kKey, op.delete_().key()));
        } else if (op.has_get()) {
          keys.push_back(&op.get().key());
          needs.push_back(ToRead(kKey, op.get().key()));
        } else {
          return Finish(
              reply,
              Invalid("a transaction operation must be get, put or delete"));
        }
      }
    }
    if (keys.empty()) return Finish(reply, Invalid("empty transaction"));
    if (grpc::Status st = node_->auth.Check(*ctx, needs); !st.ok()) {
      return Finish(reply, st);
    }
    const uint64_t group = node_->RangeFor(*keys[0]).group();
    for (const std::string* k : keys) {
      if (grpc::Status st = CheckKey(*k); !st.ok()) return Finish(reply, st);
      if (node_->RangeFor(*k).group() != group) {
        return Finish(reply,
                      Invalid(absl::StrCat("transaction spans shards: keys \"",
                                           *keys[0], "\" and \"", *k,
                                           "\" are in different ranges")));
      }
    }
    kvpb::Command cmd;
    *cmd.mutable_txn() = ToKv(*req);
    cmd.set_request_fingerprint(Fingerprint(cmd.txn()));
    cmd.set_fence_token(req->fence_token());
    *cmd.mutable_session() = ToKv(req->session());
    Write(reply, *keys[0], std::move(cmd),
          [](kvpb::CommandResult& r, rpc::TxnResponse* out) {
            ToApi(std::move(*r.mutable_txn()), out);
          });
    return reply;
  }

 private:
  static grpc::Status Invalid(const std::string& msg) {
    return Calls::Invalid(msg);
  }

  // A key is attached only to a lease that lives. One that ends right after
  // this check is fine: its keys are deleted with the others.
  grpc::Status CheckLease(uint64_t lease) const {
    if (lease == 0) return grpc::Status::OK;
    const LeaseKnown known = LeaseState(*node_, lease);
    if (known == LeaseKnown::kLive) return grpc::Status::OK;
    auto not_found = [&](const std::string& why) {
      return grpc::Status(
          grpc::StatusCode::NOT_FOUND,
          absl::StrCat("lease ", lease, " not found (", why, ")"));
    };
    if (known == LeaseKnown::kEnded) return not_found("ended or never granted");
    // Not applied here yet. A lease's id is the index of its grant: if this
    // replica's log holds that index, the answer is moments away; if not,
    // the lease was never granted, unless this replica lags (then the
    // client may retry; nothing was written).
    absl::StatusOr<raft::host::GroupInfo> meta = node_->host->Group(kMetaGroup);
    if (meta.ok() && lease > meta->last_index) {
      return not_found(absl::StrCat(
          "not granted as far as this node knows: its log of the metadata "
          "group ends at index ",
          meta->last_index));
    }
    return grpc::Status(
        grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("lease ", lease,
                     " is not applied on this node yet; retry"));
  }
  template <typename Resp>
  static grpc::ServerUnaryReactor* Finish(Reply<Resp>* reply, grpc::Status st) {
    return Calls::Finish(reply, std::move(st));
  }
  grpc::Status CheckKey(const std::string& key) const {
    if (key.empty()) return Invalid("key must not be empty");
    if (key.size() > node_->options.max_key_bytes) {
      return Invalid(absl::StrCat("key of ", key.size(), " bytes exceeds the ",
                                  node_->options.max_key_bytes, "-byte limit"));
    }
    return grpc::Status::OK;
  }
  grpc::Status CheckValue(const std::string& value) const {
    if (value.size() > node_->options.max_value_bytes) {
      return Invalid(
          absl::StrCat("value of ", value.size(), " bytes exceeds the ",
                       node_->options.max_value_bytes, "-byte limit"));
    }
    return grpc::Status::OK;
  }
  // Proposes `cmd` to the range of `key`.
  template <typename Resp, typename Fill>
  void Write(Reply<Resp>* reply, const std::string& key, kvpb::Command cmd,
             Fill fill) {
    calls_.Write(reply, node_->RangeFor(key).group(), std::move(cmd),
                 std::move(fill));
  }
  template <typename Resp, typename Serve>
  void Read(Reply<Resp>* reply, uint64_t group, rpc::ReadMode mode, bool scan,
            Serve serve) {
    calls_.Read(reply, group, mode, scan, std::move(serve));
  }

  Node* const node_;
  Calls calls_{node_};
};

}  // namespace

std::unique_ptr<grpc::Service> NewKvService(Node* node) {
  return std::make_unique<KvService>(node);
}

}  // namespace tally::kv::server
