// The lease service: leases live in the metadata group; keep-alives of
// every stream are renewed in batches.

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/calls.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/lock.grpc.pb.h"

namespace tally::kv::server {

namespace {

using Clock = std::chrono::system_clock;
constexpr int64_t kMaxLeaseTtlMs = int64_t{30} * 24 * 3600 * 1000;
constexpr size_t kMaxListed = 10000;

grpc::Status LeaseNotFound(uint64_t id) {
  return grpc::Status(
      grpc::StatusCode::NOT_FOUND,
      absl::StrCat("lease ", id, " not found (ended or never granted)"));
}

// Keep-alives of every stream of this node, renewed in batches: a batch
// collects for kCollect (a keep-alive is due every third of a TTL of at
// least a second: the wait costs nothing), one LeaseRenew in flight at a
// time. 10,000 leases renewed every 10 s take about 20 entries a second
// instead of 1,000 (docs/performance.md: a follower's CPU for them went from
// 7% of a core with 10 ms batches to 2% with 50 ms).
class Renewals {
 public:
  using Done = std::function<void(const absl::StatusOr<kvpb::CommandResult>&)>;
  Renewals(Node* node, Calls* calls) : node_(node), calls_(calls) {}

  // Renews `ids` (at most kMaxBatch) in the next batch.
  void Renew(std::vector<uint64_t> ids, Done done) {
    absl::MutexLock l(&mu_);
    pending_.emplace_back(std::move(ids), std::move(done));
    Schedule();
  }

  static constexpr size_t kMaxBatch = kMaxExpiredPerCommand;

 private:
  static constexpr auto kCollect = std::chrono::milliseconds(50);
  using Request = std::pair<std::vector<uint64_t>, Done>;

  // Flushes pending keep-alives after kCollect, unless one is set or a
  // batch is in flight (its completion schedules the next).
  void Schedule() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (scheduled_ || in_flight_ || pending_.empty()) return;
    scheduled_ = true;
    calls_->At(Clock::now() + kCollect, [this] {
      absl::MutexLock l(&mu_);
      scheduled_ = false;
      if (!in_flight_ && !pending_.empty()) Flush();
    });
  }

  void Flush() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    // Whole requests, up to kMaxBatch leases.
    size_t n = 0, leases = 0;
    while (n < pending_.size() &&
           (n == 0 || leases + pending_[n].first.size() <= kMaxBatch)) {
      leases += pending_[n++].first.size();
    }
    auto batch = std::make_shared<std::vector<Request>>(
        std::make_move_iterator(pending_.begin()),
        std::make_move_iterator(pending_.begin() + n));
    pending_.erase(pending_.begin(), pending_.begin() + n);
    in_flight_ = true;
    kvpb::Command cmd;
    for (const auto& [ids, done] : *batch) {
      cmd.mutable_lease_renew()->mutable_ids()->Add(ids.begin(), ids.end());
    }
    // Proposed outside the lock: a refusal may answer on this thread.
    mu_.Unlock();
    node_->WriteAsync(kMetaGroup, std::move(cmd),
                      [this, batch](absl::StatusOr<kvpb::CommandResult> r) {
                        for (auto& [ids, done] : *batch) done(r);
                        absl::MutexLock l(&mu_);
                        in_flight_ = false;
                        Schedule();
                      });
    mu_.Lock();
  }

  Node* const node_;
  Calls* const calls_;
  absl::Mutex mu_;
  std::vector<Request> pending_ ABSL_GUARDED_BY(mu_);
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool scheduled_ ABSL_GUARDED_BY(mu_) = false;
};

// One keep-alive stream: each request renews its lease (or leases) through
// the log (batched with other streams' by Renewals) and is answered with
// the TTL restarted (0: the lease has ended). The stream ends with the first
// error (UNAVAILABLE naming the leader, when this node does not lead the
// metadata group; INVALID_ARGUMENT for a malformed request).
class KeepAlive final
    : public grpc::ServerBidiReactor<rpc::LeaseKeepAliveRequest,
                                     rpc::LeaseKeepAliveResponse> {
 public:
  KeepAlive(grpc::CallbackServerContext* ctx, Node* node, Renewals* renewals)
      : ctx_(ctx), node_(node), renewals_(renewals) {
    StartRead(&req_);
  }

  void OnReadDone(bool ok) override {
    {
      absl::MutexLock l(&mu_);
      if (!ok || finished_ || !error_.ok()) {
        reads_done_ = true;
        Step(l);
        return;
      }
      if (absl::Status bad = Check(req_); !bad.ok()) {
        error_ = std::move(bad);
        reads_done_ = true;
        Step(l);
        return;
      }
      ++renewing_;
    }
    const bool many = req_.ids_size() > 0;
    std::vector<uint64_t> ids(req_.ids().begin(), req_.ids().end());
    if (!many) ids.push_back(req_.id());
    const auto arrived = std::chrono::steady_clock::now();
    renewals_->Renew(ids, [this, ids, many, arrived](
                              const absl::StatusOr<kvpb::CommandResult>& r) {
      node_->rpcs.Record("LeaseKeepAlive", static_cast<int>(r.status().code()),
                         std::chrono::duration<double>(
                             std::chrono::steady_clock::now() - arrived)
                             .count());
      absl::MutexLock l(&mu_);
      --renewing_;
      if (!r.ok()) {
        if (error_.ok()) error_ = r.status();
      } else {
        rpc::LeaseKeepAliveResponse& out = queue_.emplace_back();
        ToApi(r->lease_renew().header(), out.mutable_header());
        out.mutable_header()->set_node(node_->id);
        const auto& remaining = r->lease_renew().remaining_ms();
        for (uint64_t id : ids) {
          auto it = remaining.find(id);
          const int64_t ttl = it == remaining.end() ? 0 : it->second;
          if (many) {
            out.add_ttls_ms(ttl);
          } else {
            out.set_id(id);
            out.set_ttl_ms(ttl);
          }
        }
      }
      Step(l);
    });
    StartRead(&req_);
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    queue_.pop_front();
    writing_ = false;
    if (!ok) {
      // The client is gone: nothing more can be sent.
      queue_.clear();
      reads_done_ = true;
    }
    Step(l);
  }

  void OnDone() override { delete this; }

 private:
  static absl::Status Check(const rpc::LeaseKeepAliveRequest& req) {
    if (req.ids_size() > 0 && req.id() != 0) {
      return absl::InvalidArgumentError(
          "a keep-alive names one lease in id or several in ids, not both");
    }
    if (static_cast<size_t>(req.ids_size()) > Renewals::kMaxBatch) {
      return absl::InvalidArgumentError(
          absl::StrCat("a keep-alive names at most ", Renewals::kMaxBatch,
                       " leases, not ", req.ids_size()));
    }
    return absl::OkStatus();
  }

  // Starts the next write, or finishes once nothing is in flight.
  // REQUIRES: mu_ held (as `l`); the gRPC calls are made after unlocking.
  void Step(absl::MutexLock& l) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    (void)l;
    if (finished_ || writing_) return;
    if (!queue_.empty()) {
      writing_ = true;
      const rpc::LeaseKeepAliveResponse* next = &queue_.front();
      mu_.Unlock();
      StartWrite(next);
      mu_.Lock();
      return;
    }
    if (renewing_ > 0) return;
    if (!error_.ok() || reads_done_) {
      finished_ = true;
      grpc::Status st = error_.ok() ? grpc::Status::OK
                                    : node_->Refuse(ctx_, kMetaGroup, error_);
      mu_.Unlock();
      Finish(st);
      mu_.Lock();
    }
  }

  grpc::CallbackServerContext* const ctx_;
  Node* const node_;
  Renewals* const renewals_;
  rpc::LeaseKeepAliveRequest req_;
  absl::Mutex mu_;
  // Responses to send, the first one being written when `writing_`.
  std::deque<rpc::LeaseKeepAliveResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  int renewing_ ABSL_GUARDED_BY(mu_) = 0;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
};

class LeaseService final : public rpc::Leases::CallbackService {
 public:
  explicit LeaseService(Node* node) : node_(node) {}

  grpc::ServerUnaryReactor* Grant(grpc::CallbackServerContext* ctx,
                                  const rpc::LeaseGrantRequest* req,
                                  rpc::LeaseGrantResponse* resp) override {
    auto* reply = new Reply<rpc::LeaseGrantResponse>(ctx, resp, &node_->rpcs,
                                                     "LeaseGrant");
    if (grpc::Status st = Allowed(*ctx, /*write=*/true); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    const int64_t min = MinTtlMs(node_->options);
    if (req->ttl_ms() < min) {
      return Calls::Finish(
          reply, Calls::Invalid(absl::StrCat(
                     "lease TTL of ", req->ttl_ms(),
                     " ms is below the minimum of ", min,
                     " ms (twice the election timeout: a shorter lease "
                     "could end during a leader election)")));
    }
    if (req->ttl_ms() > kMaxLeaseTtlMs) {
      return Calls::Finish(
          reply, Calls::Invalid(absl::StrCat("lease TTL of ", req->ttl_ms(),
                                             " ms exceeds the maximum of ",
                                             kMaxLeaseTtlMs, " ms (30 days)")));
    }
    kvpb::Command cmd;
    cmd.mutable_lease_grant()->set_ttl_ms(req->ttl_ms());
    calls_.Write(reply, kMetaGroup, std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::LeaseGrantResponse* out) {
                   ToApi(r.lease().header(), out->mutable_header());
                   out->set_id(r.lease().id());
                   out->set_ttl_ms(r.lease().ttl_ms());
                 });
    return reply;
  }

  grpc::ServerBidiReactor<rpc::LeaseKeepAliveRequest,
                          rpc::LeaseKeepAliveResponse>*
  KeepAlive(grpc::CallbackServerContext* ctx) override {
    if (grpc::Status st = Allowed(*ctx, /*write=*/true); !st.ok()) {
      return RefusedBidiStream<rpc::LeaseKeepAliveRequest,
                               rpc::LeaseKeepAliveResponse>(st);
    }
    return new class KeepAlive(ctx, node_, &renewals_);
  }

  grpc::ServerUnaryReactor* Revoke(grpc::CallbackServerContext* ctx,
                                   const rpc::LeaseRevokeRequest* req,
                                   rpc::LeaseRevokeResponse* resp) override {
    auto* reply = new Reply<rpc::LeaseRevokeResponse>(ctx, resp, &node_->rpcs,
                                                      "LeaseRevoke");
    if (req->id() == 0) {
      return Calls::Finish(reply, Calls::Invalid("lease id must be set"));
    }
    if (grpc::Status st = Allowed(*ctx, /*write=*/true); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    kvpb::Command cmd;
    cmd.mutable_lease_revoke()->set_id(req->id());
    calls_.Write(reply, kMetaGroup, std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::LeaseRevokeResponse* out) {
                   ToApi(r.lease().header(), out->mutable_header());
                 });
    return reply;
  }

  grpc::ServerUnaryReactor* TimeToLive(
      grpc::CallbackServerContext* ctx, const rpc::LeaseTimeToLiveRequest* req,
      rpc::LeaseTimeToLiveResponse* resp) override {
    auto* reply = new Reply<rpc::LeaseTimeToLiveResponse>(
        ctx, resp, &node_->rpcs, "LeaseTimeToLive");
    if (req->id() == 0) {
      return Calls::Finish(reply, Calls::Invalid("lease id must be set"));
    }
    if (grpc::Status st = Allowed(*ctx, /*write=*/false); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    calls_.Read(reply, kMetaGroup, rpc::LINEARIZABLE, /*scan=*/false,
                [this, id = req->id()](raft::Index index,
                                       rpc::LeaseTimeToLiveResponse* out) {
                  const StateMachine* sm = node_->Machine(kMetaGroup);
                  auto rec = sm->leases().Get(id);
                  if (!rec.ok()) return rpc::ToGrpc(rec.status());
                  const int64_t now = sm->ProposalTimeMs();
                  if (!*rec || (*rec)->expires_ms() <= now) {
                    return LeaseNotFound(id);
                  }
                  Fill(id, **rec, now, out);
                  calls_.Header(kMetaGroup, index, rpc::LINEARIZABLE,
                                out->mutable_header());
                  return grpc::Status::OK;
                });
    return reply;
  }

  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const rpc::LeaseListRequest*,
                                 rpc::LeaseListResponse* resp) override {
    auto* reply =
        new Reply<rpc::LeaseListResponse>(ctx, resp, &node_->rpcs, "LeaseList");
    if (grpc::Status st = Allowed(*ctx, /*write=*/false); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    calls_.Read(reply, kMetaGroup, rpc::LINEARIZABLE, /*scan=*/true,
                [this](raft::Index index, rpc::LeaseListResponse* out) {
                  const StateMachine* sm = node_->Machine(kMetaGroup);
                  auto leases = sm->leases().List(kMaxListed);
                  if (!leases.ok()) return rpc::ToGrpc(leases.status());
                  const int64_t now = sm->ProposalTimeMs();
                  for (const auto& [id, rec] : *leases) {
                    if (rec.expires_ms() > now) {
                      Fill(id, rec, now, out->add_leases());
                    }
                  }
                  calls_.Header(kMetaGroup, index, rpc::LINEARIZABLE,
                                out->mutable_header());
                  return grpc::Status::OK;
                });
    return reply;
  }

 private:
  // Leases have no names: one permission covers them all.
  grpc::Status Allowed(const grpc::ServerContextBase& ctx, bool write) const {
    AuthNeed need{kvpb::AuthPermission::LEASE, "", "", write};
    return node_->auth.Check(ctx, need);
  }
  static void Fill(uint64_t id, const kvpb::LeaseRecord& rec, int64_t now,
                   rpc::LeaseTimeToLiveResponse* out) {
    out->set_id(id);
    out->set_ttl_ms(rec.ttl_ms());
    out->set_remaining_ms(rec.expires_ms() - now);
  }

  Node* const node_;
  Calls calls_{node_};
  Renewals renewals_{node_, &calls_};
};

}  // namespace

std::unique_ptr<grpc::Service> NewLeaseService(Node* node) {
  return std::make_unique<LeaseService>(node);
}

}  // namespace tally::kv::server
