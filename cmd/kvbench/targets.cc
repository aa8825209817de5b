#include "cmd/kvbench/targets.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/etcd_kv.grpc.pb.h"
#include "client/client.h"
#include "client/internal/bearer_token.h"
#include "grpcpp/alarm.h"
#include "rpc/crdt.grpc.pb.h"
#include "rpc/kv.grpc.pb.h"
#include "rpc/status.h"

namespace tally::kvbench {
namespace {

template <typename Resp>
struct TypedCall : Call {
  Resp resp;
  std::unique_ptr<grpc::ClientAsyncResponseReader<Resp>> reader;
};

// A call made through the client library: its completion is posted to the
// queue by an alarm that is already due.
struct LibraryCall : Call {
  grpc::Alarm alarm;
};

// Starts an asynchronous unary call: `prepare` is a stub's PrepareAsyncX.
template <typename Resp, typename Prepare>
Call* Launch(Prepare prepare, int timeout_ms, grpc::CompletionQueue* cq,
             uint64_t group = 0) {
  auto* c = new TypedCall<Resp>;
  c->group = group;
  c->ctx.set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(timeout_ms));
  c->reader = prepare(&c->ctx, cq);
  c->reader->StartCall();
  c->reader->Finish(&c->resp, &c->status, c);
  return c;
}

}  // namespace

std::shared_ptr<grpc::Channel> NewChannel(
    const std::string& address, int i,
    std::shared_ptr<grpc::ChannelCredentials> credentials,
    const std::string& token) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt("tally.kvbench.connection", i);  // distinct channel args
  return client::internal::DialWithToken(address, credentials, args, token);
}

namespace {

// `n` channels to `address` that do not share a TCP connection.
std::vector<std::shared_ptr<grpc::Channel>> Channels(
    const std::string& address, int n,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const std::string& token = "") {
  std::vector<std::shared_ptr<grpc::Channel>> out;
  for (int i = 0; i < std::max(n, 1); ++i)
    out.push_back(NewChannel(address, i, credentials, token));
  return out;
}

class TallyTarget : public Target {
 public:
  explicit TallyTarget(TargetOptions o)
      : o_(std::move(o)), credentials_(rpc::ChannelCredentials(o_.tls)) {}

  absl::Status Init() {
    client::ClientOptions co;
    co.endpoints = o_.endpoints;
    co.tls = o_.tls;
    co.token = o_.token;
    auto c = client::Client::Connect(co);
    if (!c.ok()) return c.status();
    absl::StatusOr<rpc::RangesResponse> r = (*c)->Ranges();
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat("cannot read the cluster's ranges: ",
                                       r.status().message()));
    }
    std::map<uint64_t, std::string> address;  // node -> client address
    for (const rpc::Member& m : r->members()) {
      address[m.id()] = m.client_address();
    }
    for (const rpc::RangeDescriptor& d : r->ranges()) ranges_.push_back(d);
    std::sort(ranges_.begin(), ranges_.end(), [](const auto& a, const auto& b) {
      return a.start() < b.start();
    });
    for (const auto& [group, node] : r->leaders()) {
      if (address.count(node) && !address[node].empty()) {
        leader_[group] = address[node];
      }
    }
    for (const std::string& e : o_.endpoints) Stubs(e);
    for (const auto& [id, a] : address) {
      if (!a.empty()) Stubs(a);
    }
    return absl::OkStatus();
  }

  // The table crdt-incr writes to (a row per key, a g_counter), created if
  // missing and waited for until every endpoint knows it.
  absl::Status CreateCrdtTable() {
    client::ClientOptions co;
    co.endpoints = o_.endpoints;
    co.tls = o_.tls;
    co.token = o_.token;
    auto c = client::Client::Connect(co);
    if (!c.ok()) return c.status();
    rpc::CrdtColumn col;
    col.set_name("n");
    col.set_type(rpc::CRDT_G_COUNTER);
    auto t = (*c)->CrdtCreateTable(kCrdtTable, {col});
    if (!t.ok() && !absl::IsAlreadyExists(t.status())) return t.status();
    for (const std::string& e : o_.endpoints) {
      for (int i = 0;; ++i) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(2));
        rpc::CrdtGetRequest req;
        req.set_table(kCrdtTable);
        req.set_row("probe");
        rpc::CrdtGetResponse resp;
        grpc::Status st =
            rpc::Crdt::NewStub(Channels(e, 1, credentials_, o_.token)[0])
                ->Get(&ctx, req, &resp);
        if (st.ok()) break;
        if (i == 50) {
          return absl::UnavailableError(absl::StrCat(e, " does not know table ",
                                                     kCrdtTable, ": ",
                                                     st.error_message()));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      client::ClientOptions eo;
      eo.endpoints = {e};
      eo.tls = o_.tls;
      eo.timeout = std::chrono::milliseconds(o_.timeout_ms);
      auto ec = client::Client::Connect(eo);
      if (!ec.ok()) return ec.status();
      crdt_clients_[e] = std::move(*ec);
    }
    return absl::OkStatus();
  }

  Call* Start(Op op, const std::string& key, const std::string& value,
              size_t slot, grpc::CompletionQueue* cq) override {
    if (op == Op::kCrdtIncr) {
      // Any node takes a CRDT write: the endpoints in turn, through the
      // client library (which coalesces concurrent updates into calls).
      client::Client* c =
          crdt_clients_.at(o_.endpoints[slot % o_.endpoints.size()]).get();
      rpc::CrdtUpdateRequest req;
      req.set_table(kCrdtTable);
      req.set_row(key);
      rpc::CrdtOp* inc = req.add_ops();
      inc->set_kind(rpc::CrdtOp::INCREMENT);
      inc->set_column("n");
      inc->set_amount(1);
      auto* call = new LibraryCall;
      c->CrdtUpdateAsync(std::move(req),
                         [call, cq](absl::StatusOr<rpc::CrdtUpdateResponse> r) {
                           call->status = rpc::ToGrpc(r.status());
                           call->alarm.Set(cq, gpr_now(GPR_CLOCK_MONOTONIC),
                                           call);
                         });
      return call;
    }
    const uint64_t group = GroupFor(key);
    const bool local_read = (op == Op::kGet || op == Op::kScan) &&
                            o_.read_mode == ReadMode::kSerializable;
    rpc::KV::Stub* stub =
        Stub(local_read ? o_.endpoints[slot % o_.endpoints.size()]
                        : Leader(group, slot),
             slot);
    switch (op) {
      case Op::kPut: {
        rpc::PutRequest req;
        req.set_key(key);
        req.set_value(value);
        return Launch<rpc::PutResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncPut(ctx, req, q);
            },
            o_.timeout_ms, cq, group);
      }
      case Op::kGet: {
        rpc::GetRequest req;
        req.set_key(key);
        req.set_read_mode(o_.read_mode == ReadMode::kLease ? rpc::LEASE
                          : local_read                     ? rpc::SERIALIZABLE
                                                           : rpc::LINEARIZABLE);
        return Launch<rpc::GetResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncGet(ctx, req, q);
            },
            o_.timeout_ms, cq, group);
      }
      case Op::kScan: {
        rpc::RangeRequest req;
        req.set_start(key);
        req.set_limit(o_.scan_size);
        req.set_read_mode(o_.read_mode == ReadMode::kLease ? rpc::LEASE
                          : local_read                     ? rpc::SERIALIZABLE
                                                           : rpc::LINEARIZABLE);
        return Launch<rpc::RangeResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncRange(ctx, req, q);
            },
            o_.timeout_ms, cq, group);
      }
      case Op::kCrdtIncr:
        break;
      case Op::kCas: {
        rpc::TxnRequest req;
        rpc::Compare* cmp = req.add_compare();
        cmp->set_key(key);
        cmp->set_target(rpc::Compare::VERSION);
        cmp->set_op(rpc::Compare::GREATER);
        cmp->set_version(-1);
        rpc::PutRequest* put = req.add_success()->mutable_put();
        put->set_key(key);
        put->set_value(value);
        return Launch<rpc::TxnResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncTxn(ctx, req, q);
            },
            o_.timeout_ms, cq, group);
      }
    }
    return nullptr;
  }

  Result Finish(Call* call) override {
    if (call->status.ok()) return Result::kOk;
    if (call->status.error_code() != grpc::StatusCode::UNAVAILABLE) {
      return Result::kError;
    }
    const auto& md = call->ctx.GetServerTrailingMetadata();
    auto hint = md.find(rpc::kLeaderKey);
    absl::MutexLock l(&mu_);
    if (hint != md.end()) {
      leader_[call->group] =
          std::string(hint->second.data(), hint->second.size());
    } else {
      leader_.erase(call->group);
    }
    return Result::kRetry;
  }

 private:
  uint64_t GroupFor(const std::string& key) const {
    uint64_t g = ranges_.empty() ? 0 : ranges_.front().group();
    for (const auto& r : ranges_) {
      if (key >= r.start()) g = r.group();
    }
    return g;
  }
  std::string Leader(uint64_t group, size_t slot) {
    absl::ReaderMutexLock l(&mu_);
    auto it = leader_.find(group);
    return it != leader_.end() ? it->second
                               : o_.endpoints[slot % o_.endpoints.size()];
  }
  std::vector<std::unique_ptr<rpc::KV::Stub>>& Stubs(const std::string& a) {
    absl::MutexLock l(&stubs_mu_);
    auto& v = stubs_[a];
    if (v.empty()) {
      for (auto& ch : Channels(a, o_.connections, credentials_, o_.token)) {
        v.push_back(rpc::KV::NewStub(ch));
      }
    }
    return v;
  }
  rpc::KV::Stub* Stub(const std::string& address, size_t slot) {
    auto& v = Stubs(address);
    return v[slot % v.size()].get();
  }

  static constexpr char kCrdtTable[] = "kvbench";

  const TargetOptions o_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  // By endpoint (crdt-incr).
  std::map<std::string, std::unique_ptr<client::Client>> crdt_clients_;
  std::vector<rpc::RangeDescriptor> ranges_;
  absl::Mutex mu_;
  std::map<uint64_t, std::string> leader_ ABSL_GUARDED_BY(mu_);
  absl::Mutex stubs_mu_;
  std::map<std::string, std::vector<std::unique_ptr<rpc::KV::Stub>>> stubs_
      ABSL_GUARDED_BY(stubs_mu_);
};

class EtcdTarget : public Target {
 public:
  explicit EtcdTarget(TargetOptions o) : o_(std::move(o)) {
    for (const std::string& e : o_.endpoints) {
      for (auto& ch :
           Channels(e, o_.connections, grpc::InsecureChannelCredentials())) {
        stubs_.push_back(etcdserverpb::KV::NewStub(ch));
      }
    }
  }

  Call* Start(Op op, const std::string& key, const std::string& value,
              size_t slot, grpc::CompletionQueue* cq) override {
    etcdserverpb::KV::Stub* stub = stubs_[slot % stubs_.size()].get();
    switch (op) {
      case Op::kPut: {
        etcdserverpb::PutRequest req;
        req.set_key(key);
        req.set_value(value);
        return Launch<etcdserverpb::PutResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncPut(ctx, req, q);
            },
            o_.timeout_ms, cq);
      }
      case Op::kGet: {
        etcdserverpb::RangeRequest req;
        req.set_key(key);
        req.set_serializable(o_.read_mode == ReadMode::kSerializable);
        return Launch<etcdserverpb::RangeResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncRange(ctx, req, q);
            },
            o_.timeout_ms, cq);
      }
      case Op::kScan: {
        etcdserverpb::RangeRequest req;
        req.set_key(key);
        req.set_range_end(std::string(1, '\0'));  // every key from `key` on
        req.set_limit(o_.scan_size);
        req.set_serializable(o_.read_mode == ReadMode::kSerializable);
        return Launch<etcdserverpb::RangeResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncRange(ctx, req, q);
            },
            o_.timeout_ms, cq);
      }
      case Op::kCrdtIncr:  // etcd has nothing like it (refused in main)
        break;
      case Op::kCas: {
        etcdserverpb::TxnRequest req;
        etcdserverpb::Compare* cmp = req.add_compare();
        cmp->set_key(key);
        cmp->set_target(etcdserverpb::Compare::VERSION);
        cmp->set_result(etcdserverpb::Compare::GREATER);
        cmp->set_version(-1);
        etcdserverpb::PutRequest* put =
            req.add_success()->mutable_request_put();
        put->set_key(key);
        put->set_value(value);
        return Launch<etcdserverpb::TxnResponse>(
            [&](auto* ctx, auto* q) {
              return stub->PrepareAsyncTxn(ctx, req, q);
            },
            o_.timeout_ms, cq);
      }
    }
    return nullptr;
  }

  Result Finish(Call* call) override {
    return call->status.ok() ? Result::kOk : Result::kError;
  }

 private:
  const TargetOptions o_;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> stubs_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Target>> NewTallyTarget(
    const TargetOptions& options) {
  auto t = std::make_unique<TallyTarget>(options);
  if (absl::Status s = t->Init(); !s.ok()) return s;
  if (options.crdt) {
    if (absl::Status s = t->CreateCrdtTable(); !s.ok()) return s;
  }
  return t;
}

absl::StatusOr<std::unique_ptr<Target>> NewEtcdTarget(
    const TargetOptions& options) {
  if (options.read_mode == ReadMode::kLease) {
    return absl::InvalidArgumentError(
        "etcd serves no lease reads through its API: use --read-mode "
        "linearizable or serializable");
  }
  return std::make_unique<EtcdTarget>(options);
}

}  // namespace tally::kvbench
