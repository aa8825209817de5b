// The client-facing KV service: validates input, routes to the key's
// range, proposes writes and serves reads in the requested mode.

#include "absl/strings/str_cat.h"
#include "kv/server/internal/node.h"
#include "rpc/kv.grpc.pb.h"

namespace tally::kv::server {

namespace {

using Clock = std::chrono::system_clock;
constexpr auto kDefaultTimeout = std::chrono::seconds(5);
constexpr uint32_t kMaxRangeLimit = 10000;

class KvService final : public rpc::KV::Service {
 public:
  explicit KvService(Node* node) : node_(node) {}

  grpc::Status Get(grpc::ServerContext* ctx, const rpc::GetRequest* req,
                   rpc::GetResponse* resp) override {
    if (grpc::Status st = CheckKey(req->key()); !st.ok()) return st;
    const uint64_t group = node_->RangeFor(req->key()).group();
    raft::Index index = 0;
    if (grpc::Status st = Read(ctx, group, req->read_mode(), &index);
        !st.ok()) {
      return st;
    }
    absl::StatusOr<std::optional<rpc::KeyValue>> kv =
        node_->Machine(group)->Get(req->key());
    if (!kv.ok()) return ToGrpc(kv.status());
    resp->set_found(kv->has_value());
    if (*kv) *resp->mutable_kv() = **kv;
    Header(group, index, req->read_mode(), resp->mutable_header());
    return grpc::Status::OK;
  }

  grpc::Status Range(grpc::ServerContext* ctx, const rpc::RangeRequest* req,
                     rpc::RangeResponse* resp) override {
    if (!req->end().empty() && req->end() <= req->start()) {
      return Invalid("range end must be empty (no bound) or after start");
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
    raft::Index index = 0;
    if (grpc::Status st = Read(ctx, shard.group(), req->read_mode(), &index);
        !st.ok()) {
      return st;
    }
    const uint32_t limit = req->limit() == 0 || req->limit() > kMaxRangeLimit
                               ? kMaxRangeLimit
                               : req->limit();
    bool more = false;
    absl::StatusOr<std::vector<rpc::KeyValue>> kvs =
        node_->Machine(shard.group())->Range(req->start(), end, limit, &more);
    if (!kvs.ok()) return ToGrpc(kvs.status());
    for (auto& kv : *kvs) *resp->add_kvs() = std::move(kv);
    resp->set_more(more ||
                   (clamped && resp->kvs_size() < static_cast<int>(limit)));
    Header(shard.group(), index, req->read_mode(), resp->mutable_header());
    return grpc::Status::OK;
  }

  grpc::Status Put(grpc::ServerContext* ctx, const rpc::PutRequest* req,
                   rpc::PutResponse* resp) override {
    if (grpc::Status st = CheckKey(req->key()); !st.ok()) return st;
    if (grpc::Status st = CheckValue(req->value()); !st.ok()) return st;
    rpc::Command cmd;
    *cmd.mutable_put() = *req;
    cmd.mutable_put()->clear_session();
    *cmd.mutable_session() = req->session();
    rpc::CommandResult r;
    if (grpc::Status st = Write(ctx, req->key(), std::move(cmd), &r);
        !st.ok()) {
      return st;
    }
    *resp = r.put();
    return grpc::Status::OK;
  }

  grpc::Status Delete(grpc::ServerContext* ctx, const rpc::DeleteRequest* req,
                      rpc::DeleteResponse* resp) override {
    if (grpc::Status st = CheckKey(req->key()); !st.ok()) return st;
    rpc::Command cmd;
    *cmd.mutable_delete_() = *req;
    cmd.mutable_delete_()->clear_session();
    *cmd.mutable_session() = req->session();
    rpc::CommandResult r;
    if (grpc::Status st = Write(ctx, req->key(), std::move(cmd), &r);
        !st.ok()) {
      return st;
    }
    *resp = r.delete_();
    return grpc::Status::OK;
  }

  grpc::Status Txn(grpc::ServerContext* ctx, const rpc::TxnRequest* req,
                   rpc::TxnResponse* resp) override {
    std::vector<const std::string*> keys;
    for (const auto& c : req->compare()) keys.push_back(&c.key());
    for (const auto* ops : {&req->success(), &req->failure()}) {
      for (const rpc::TxnOp& op : *ops) {
        if (op.has_put()) {
          keys.push_back(&op.put().key());
          if (grpc::Status st = CheckValue(op.put().value()); !st.ok()) {
            return st;
          }
        } else if (op.has_delete_()) {
          keys.push_back(&op.delete_().key());
        } else if (op.has_get()) {
          keys.push_back(&op.get().key());
        } else {
          return Invalid("a transaction operation must be get, put or delete");
        }
      }
    }
    if (keys.empty()) return Invalid("empty transaction");
    const uint64_t group = node_->RangeFor(*keys[0]).group();
    for (const std::string* k : keys) {
      if (grpc::Status st = CheckKey(*k); !st.ok()) return st;
      if (node_->RangeFor(*k).group() != group) {
        return Invalid(absl::StrCat("transaction spans shards: keys \"",
                                    *keys[0], "\" and \"", *k,
                                    "\" are in different ranges"));
      }
    }
    rpc::Command cmd;
    *cmd.mutable_txn() = *req;
    cmd.mutable_txn()->clear_session();
    *cmd.mutable_session() = req->session();
    rpc::CommandResult r;
    if (grpc::Status st = Write(ctx, *keys[0], std::move(cmd), &r); !st.ok()) {
      return st;
    }
    *resp = r.txn();
    return grpc::Status::OK;
  }

 private:
  static grpc::Status Invalid(const std::string& msg) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
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
  static Clock::time_point Deadline(grpc::ServerContext* ctx) {
    const auto d = ctx->deadline();
    const auto fallback = Clock::now() + kDefaultTimeout;
    return d < fallback ? d : fallback;
  }
  void Header(uint64_t group, raft::Index index, rpc::ReadMode mode,
              rpc::ResponseHeader* h) const {
    h->set_group(group);
    h->set_raft_index(index);
    h->set_node(node_->id);
    h->set_read_mode(mode);
    h->set_revision(node_->Machine(group)->revision());
  }

  grpc::Status Read(grpc::ServerContext* ctx, uint64_t group,
                    rpc::ReadMode mode, raft::Index* index) {
    if (node_->Machine(group) == nullptr) {
      return node_->NotLeader(ctx, group,
                              absl::UnavailableError("no replica here yet"));
    }
    if (mode == rpc::SERIALIZABLE) {
      *index = node_->Machine(group)->applied();
      return grpc::Status::OK;
    }
    absl::StatusOr<raft::Index> i =
        node_->AwaitRead(group, mode == rpc::LEASE, Deadline(ctx));
    if (absl::IsUnavailable(i.status())) {
      return node_->NotLeader(ctx, group, i.status());
    }
    if (!i.ok()) return ToGrpc(i.status());
    *index = *i;
    return grpc::Status::OK;
  }

  grpc::Status Write(grpc::ServerContext* ctx, const std::string& key,
                     rpc::Command cmd, rpc::CommandResult* out) {
    const uint64_t group = node_->RangeFor(key).group();
    absl::StatusOr<rpc::CommandResult> r =
        node_->Write(group, std::move(cmd), Deadline(ctx));
    if (absl::IsUnavailable(r.status())) {
      return node_->NotLeader(ctx, group, r.status());
    }
    if (!r.ok()) return ToGrpc(r.status());
    *out = std::move(*r);
    return grpc::Status::OK;
  }

  Node* const node_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewKvService(Node* node) {
  return std::make_unique<KvService>(node);
}

}  // namespace tally::kv::server
