// The lock service: locks live in the metadata group; a fence binding goes
// to every shard its prefix covers.

#include <memory>
#include <optional>
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
constexpr size_t kMaxLockName = 256;
constexpr size_t kMaxLockValue = 64 * 1024;
// A wait ends this long before the call's deadline, so that its answer (the
// lock, or DEADLINE_EXCEEDED once the wait is withdrawn) reaches the client.
constexpr auto kWaitMargin = std::chrono::milliseconds(300);

grpc::Status CheckLockName(const std::string& name) {
  if (name.empty()) return Calls::Invalid("lock name must not be empty");
  if (name.size() > kMaxLockName) {
    return Calls::Invalid(absl::StrCat("lock name of ", name.size(),
                                       " bytes exceeds the ", kMaxLockName,
                                       "-byte limit"));
  }
  return grpc::Status::OK;
}

grpc::Status CheckLockValue(const std::string& value) {
  if (value.size() > kMaxLockValue) {
    return Calls::Invalid(absl::StrCat("value of ", value.size(),
                                       " bytes exceeds the ", kMaxLockValue,
                                       "-byte limit"));
  }
  return grpc::Status::OK;
}

rpc::LockHolder Holder(const kvpb::LockGrant& g, int64_t now_ms) {
  rpc::LockHolder h;
  h.set_lease(g.lease());
  h.set_token(g.token());
  h.set_generation(g.generation());
  h.set_held_ms(std::max<int64_t>(0, now_ms - g.granted_ms()));
  h.set_value(g.value());
  return h;
}

// One Observe stream: the lock's holder as this node has applied it, sent
// at the start and again whenever the holder or its value changes. One
// write in flight; changes during it are folded into the next.
class Observer final : public grpc::ServerWriteReactor<rpc::ObserveResponse> {
 public:
  Observer(Node* node, std::string name) : node_(node), name_(std::move(name)) {
    node_->lock_observers.Add(this, name_, [this] { Send(); });
    Send();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    if (!ok) return Stop(grpc::Status::CANCELLED);
    if (stop_) return Stop(*stop_);
    if (std::exchange(again_, false)) SendLocked();
  }
  void OnCancel() override {
    absl::MutexLock l(&mu_);
    Stop(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    node_->lock_observers.Remove(this, name_);
    delete this;
  }

 private:
  void Send() {
    absl::MutexLock l(&mu_);
    SendLocked();
  }
  void SendLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_ || stop_) return;
    if (writing_) {
      again_ = true;
      return;
    }
    const StateMachine* sm = node_->Machine(kMetaGroup);
    if (sm == nullptr) {
      return Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                               "this node holds no metadata group yet"));
    }
    // The record with the index it is from: the client orders what it sees
    // by that index across nodes.
    auto at = sm->LockAt(name_);
    if (!at.ok()) return Stop(rpc::ToGrpc(at.status()));
    const auto& [index, rec] = *at;
    std::optional<kvpb::LockGrant> holder;
    if (rec && rec->has_holder()) holder = rec->holder();
    if (sent_once_ && Same(holder, last_)) return;
    sent_once_ = true;
    last_ = holder;
    resp_.Clear();
    if (holder) *resp_.mutable_holder() = Holder(*holder, sm->ProposalTimeMs());
    rpc::ResponseHeader* h = resp_.mutable_header();
    h->set_group(kMetaGroup);
    h->set_raft_index(index);
    h->set_node(node_->id);
    h->set_read_mode(rpc::SERIALIZABLE);
    h->set_revision(sm->revision());
    writing_ = true;
    StartWrite(&resp_);
  }
  static bool Same(const std::optional<kvpb::LockGrant>& a,
                   const std::optional<kvpb::LockGrant>& b) {
    if (!a || !b) return !a && !b;
    return a->token() == b->token() && a->value() == b->value();
  }
  // Finishes the stream, once its write in flight (if any) is done.
  void Stop(grpc::Status st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (writing_) {
      if (!stop_) stop_ = std::move(st);
      return;
    }
    finished_ = true;
    Finish(std::move(st));
  }

  Node* const node_;
  const std::string name_;
  absl::Mutex mu_;
  rpc::ObserveResponse resp_ ABSL_GUARDED_BY(mu_);
  std::optional<kvpb::LockGrant> last_ ABSL_GUARDED_BY(mu_);
  bool sent_once_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool again_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<grpc::Status> stop_ ABSL_GUARDED_BY(mu_);
};

constexpr auto kLock = kvpb::AuthPermission::LOCK;

class LockService final : public rpc::Locks::CallbackService {
 public:
  explicit LockService(Node* node) : node_(node) {}

  grpc::ServerUnaryReactor* Acquire(grpc::CallbackServerContext* ctx,
                                    const rpc::AcquireRequest* req,
                                    rpc::AcquireResponse* resp) override {
    auto* reply =
        new Reply<rpc::AcquireResponse>(ctx, resp, &node_->rpcs, "LockAcquire");
    grpc::Status st = CheckLockName(req->name());
    if (st.ok() && req->lease() == 0) {
      st = Calls::Invalid("lease must be set: a lock is held by a lease");
    }
    if (st.ok() && req->request_id() == 0) {
      st = Calls::Invalid(
          "request_id must be set (random, the same for every retry)");
    }
    if (st.ok() && req->wait_ms() < 0) {
      st = Calls::Invalid("wait_ms must not be negative");
    }
    if (st.ok()) st = CheckLockValue(req->value());
    if (st.ok()) st = node_->auth.Check(*ctx, ToWrite(kLock, req->name()));
    if (!st.ok()) return Calls::Finish(reply, st);
    auto s = reply->shared();
    kvpb::Command cmd;
    kvpb::LockAcquire* a = cmd.mutable_lock_acquire();
    a->set_name(req->name());
    a->set_lease(req->lease());
    a->set_request_id(req->request_id());
    a->set_value(req->value());
    if (req->wait_ms() == 0) {
      calls_.Write(reply, kMetaGroup, std::move(cmd),
                   [this](kvpb::CommandResult& r, rpc::AcquireResponse* out) {
                     Fill(r.lock(), out);
                   });
      return reply;
    }
    // A wait: it ends before the call's deadline, so that its answer does.
    const auto start = Clock::now();
    const auto until =
        std::min(start + std::chrono::milliseconds(req->wait_ms()),
                 ctx->deadline() - kWaitMargin);
    if (until <= start) {
      return Calls::Finish(
          reply, grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                              "the call's deadline leaves no time to wait"));
    }
    a->set_wait_ms(
        std::chrono::duration_cast<std::chrono::milliseconds>(until - start)
            .count());
    const uint64_t id = req->request_id();
    // Registered first: a grant applied right after the queueing finds it.
    node_->lock_waits.Add(id, [this, s](const kvpb::LockGrant& g) {
      Reply<rpc::AcquireResponse>::Answer(
          s, [&](auto*, rpc::AcquireResponse* out) {
            out->set_acquired(true);
            *out->mutable_holder() = Holder(g, Now());
            out->mutable_header()->set_node(node_->id);
            return grpc::Status::OK;
          });
    });
    kvpb::Command cancel = cmd;
    cancel.mutable_lock_acquire()->set_cancel(true);
    cancel.mutable_lock_acquire()->set_wait_ms(0);
    node_->WriteAsync(
        kMetaGroup, std::move(cmd),
        [this, s, id, until, cancel = std::move(cancel),
         wait_ms = req->wait_ms()](absl::StatusOr<kvpb::CommandResult> r) {
          if (!r.ok() || r->lock().acquired()) {
            node_->lock_waits.Remove(id);
            Answer(s, r);
            return;
          }
          // Queued: at `until`, withdraw the wait unless granted by then.
          calls_.At(until, [this, s, id, cancel, wait_ms] {
            if (!node_->lock_waits.Remove(id)) return;  // granted
            node_->WriteAsync(
                kMetaGroup, cancel,
                [this, s, wait_ms, name = cancel.lock_acquire().name()](
                    absl::StatusOr<kvpb::CommandResult> r) {
                  if (r.ok() && !r->lock().acquired()) {
                    Reply<rpc::AcquireResponse>::Answer(
                        s, [&](auto* ctx, auto*) {
                          return rpc::ToGrpc(
                              rpc::WithReason(
                                  absl::DeadlineExceededError(absl::StrCat(
                                      "lock \"", name,
                                      "\" not acquired within ", wait_ms,
                                      " ms (or the call's deadline); the wait "
                                      "is withdrawn")),
                                  rpc::kReasonLockWaitEnded),
                              ctx);
                        });
                    return;
                  }
                  Answer(s, r);
                });
          });
        });
    return reply;
  }

  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx,
                                    const rpc::ReleaseRequest* req,
                                    rpc::ReleaseResponse* resp) override {
    auto* reply =
        new Reply<rpc::ReleaseResponse>(ctx, resp, &node_->rpcs, "LockRelease");
    grpc::Status st = CheckLockName(req->name());
    if (st.ok() && req->token() == 0) {
      st = Calls::Invalid("token must be set: the token of the grant");
    }
    if (st.ok()) st = node_->auth.Check(*ctx, ToWrite(kLock, req->name()));
    if (!st.ok()) return Calls::Finish(reply, st);
    kvpb::Command cmd;
    cmd.mutable_lock_release()->set_name(req->name());
    cmd.mutable_lock_release()->set_token(req->token());
    calls_.Write(reply, kMetaGroup, std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::ReleaseResponse* out) {
                   ToApi(r.lock().header(), out->mutable_header());
                 });
    return reply;
  }

  grpc::ServerUnaryReactor* Proclaim(grpc::CallbackServerContext* ctx,
                                     const rpc::ProclaimRequest* req,
                                     rpc::ProclaimResponse* resp) override {
    auto* reply = new Reply<rpc::ProclaimResponse>(ctx, resp, &node_->rpcs,
                                                   "LockProclaim");
    grpc::Status st = CheckLockName(req->name());
    if (st.ok() && req->token() == 0) {
      st = Calls::Invalid("token must be set: the token of the grant");
    }
    if (st.ok()) st = CheckLockValue(req->value());
    if (st.ok()) st = node_->auth.Check(*ctx, ToWrite(kLock, req->name()));
    if (!st.ok()) return Calls::Finish(reply, st);
    kvpb::Command cmd;
    kvpb::LockProclaim* p = cmd.mutable_lock_proclaim();
    p->set_name(req->name());
    p->set_token(req->token());
    p->set_value(req->value());
    calls_.Write(reply, kMetaGroup, std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::ProclaimResponse* out) {
                   ToApi(r.lock().header(), out->mutable_header());
                 });
    return reply;
  }

  grpc::ServerWriteReactor<rpc::ObserveResponse>* Observe(
      grpc::CallbackServerContext* ctx,
      const rpc::ObserveRequest* req) override {
    grpc::Status st = CheckLockName(req->name());
    if (st.ok()) st = node_->auth.Check(*ctx, ToRead(kLock, req->name()));
    if (!st.ok()) return RefusedStream<rpc::ObserveResponse>(st);
    return new Observer(node_, req->name());
  }

  grpc::ServerUnaryReactor* Inspect(grpc::CallbackServerContext* ctx,
                                    const rpc::InspectRequest* req,
                                    rpc::InspectResponse* resp) override {
    auto* reply =
        new Reply<rpc::InspectResponse>(ctx, resp, &node_->rpcs, "LockInspect");
    grpc::Status st = CheckLockName(req->name());
    if (st.ok()) st = node_->auth.Check(*ctx, ToRead(kLock, req->name()));
    if (!st.ok()) return Calls::Finish(reply, st);
    calls_.Read(reply, kMetaGroup, rpc::LINEARIZABLE, /*scan=*/false,
                [this, name = req->name()](raft::Index index,
                                           rpc::InspectResponse* out) {
                  const StateMachine* sm = node_->Machine(kMetaGroup);
                  auto rec = sm->locks().Get(name);
                  if (!rec.ok()) return rpc::ToGrpc(rec.status());
                  const int64_t now = sm->ProposalTimeMs();
                  if (*rec) {
                    out->set_generation((*rec)->generation());
                    if ((*rec)->has_holder()) {
                      const kvpb::LockGrant& g = (*rec)->holder();
                      *out->mutable_holder() = Holder(g, now);
                      auto lease = sm->leases().Get(g.lease());
                      if (!lease.ok()) return rpc::ToGrpc(lease.status());
                      if (*lease) {
                        out->set_lease_remaining_ms(
                            std::max<int64_t>(0, (*lease)->expires_ms() - now));
                      }
                    }
                    for (const kvpb::LockWaiter& w : (*rec)->waiters()) {
                      if (w.give_up_ms() >= now) out->add_waiters(w.lease());
                    }
                  }
                  calls_.Header(kMetaGroup, index, rpc::LINEARIZABLE,
                                out->mutable_header());
                  return grpc::Status::OK;
                });
    return reply;
  }

  grpc::ServerUnaryReactor* BindFence(grpc::CallbackServerContext* ctx,
                                      const rpc::BindFenceRequest* req,
                                      rpc::BindFenceResponse* resp) override {
    auto* reply =
        new Reply<rpc::BindFenceResponse>(ctx, resp, &node_->rpcs, "BindFence");
    grpc::Status st = grpc::Status::OK;
    if (req->prefix().empty()) st = Calls::Invalid("prefix must not be empty");
    if (st.ok() && !req->lock().empty()) st = CheckLockName(req->lock());
    if (st.ok()) {
      // Every key under the prefix (a name that starts with it), and the
      // lock that will fence them.
      std::vector<AuthNeed> needs = {
          ToWrite(kvpb::AuthPermission::KEY, req->prefix())};
      if (!req->lock().empty()) needs.push_back(ToWrite(kLock, req->lock()));
      st = node_->auth.Check(*ctx, needs);
    }
    if (!st.ok()) return Calls::Finish(reply, st);
    // Every shard whose range meets [prefix, end of prefix) (and is the one
    // asked for).
    const std::string& prefix = req->prefix();
    std::vector<uint64_t> groups;
    for (const auto& r : node_->layout.ranges()) {
      const bool after_start = r.end().empty() || r.end() > prefix;
      const bool before_end =
          r.start() <= prefix || r.start().starts_with(prefix);
      if (after_start && before_end &&
          (req->group() == 0 || req->group() == r.group())) {
        groups.push_back(r.group());
      }
    }
    struct Pending {
      absl::Mutex mu;
      size_t left ABSL_GUARDED_BY(mu);
      std::string previous ABSL_GUARDED_BY(mu);
    };
    if (groups.empty()) {
      return Calls::Finish(
          reply, Calls::Invalid(absl::StrCat("group ", req->group(),
                                             " holds no key of the prefix")));
    }
    auto pending = std::make_shared<Pending>();
    pending->left = groups.size();
    auto s = reply->shared();
    calls_.Expire(reply, "fence binding");
    for (uint64_t group : groups) {
      kvpb::Command cmd;
      cmd.mutable_fence_bind()->set_prefix(prefix);
      cmd.mutable_fence_bind()->set_lock(req->lock());
      node_->WriteAsync(
          group, std::move(cmd),
          [this, s, pending, group](absl::StatusOr<kvpb::CommandResult> r) {
            if (!r.ok()) {
              Reply<rpc::BindFenceResponse>::Answer(s, [&](auto* ctx, auto*) {
                return node_->Refuse(ctx, group, r.status());
              });
              return;
            }
            std::string previous;
            {
              absl::MutexLock l(&pending->mu);
              if (!r->fence().previous_lock().empty()) {
                pending->previous = r->fence().previous_lock();
              }
              if (--pending->left > 0) return;
              previous = pending->previous;
            }
            Reply<rpc::BindFenceResponse>::Answer(
                s, [&](auto*, rpc::BindFenceResponse* out) {
                  ToApi(r->fence().header(), out->mutable_header());
                  out->mutable_header()->set_node(node_->id);
                  out->set_previous_lock(previous);
                  return grpc::Status::OK;
                });
          });
    }
    return reply;
  }

 private:
  int64_t Now() const { return node_->Machine(kMetaGroup)->ProposalTimeMs(); }
  void Fill(const kvpb::LockResult& r, rpc::AcquireResponse* out) const {
    ToApi(r.header(), out->mutable_header());
    out->set_acquired(r.acquired());
    if (r.has_holder()) *out->mutable_holder() = Holder(r.holder(), Now());
  }
  // Answers with an acquisition's result.
  void Answer(std::shared_ptr<Reply<rpc::AcquireResponse>::State> s,
              const absl::StatusOr<kvpb::CommandResult>& r) {
    Reply<rpc::AcquireResponse>::Answer(
        s, [&](auto* ctx, rpc::AcquireResponse* out) {
          if (!r.ok()) return node_->Refuse(ctx, kMetaGroup, r.status());
          Fill(r->lock(), out);
          out->mutable_header()->set_node(node_->id);
          return grpc::Status::OK;
        });
  }

  Node* const node_;
  Calls calls_{node_};
};

}  // namespace

std::unique_ptr<grpc::Service> NewLockService(Node* node) {
  return std::make_unique<LockService>(node);
}

}  // namespace tally::kv::server
