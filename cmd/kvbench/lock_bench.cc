#include "cmd/kvbench/lock_bench.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/etcd_kv.grpc.pb.h"
#include "bench/etcd_lock.grpc.pb.h"
#include "client/client.h"
#include "cmd/kvbench/targets.h"
#include "grpcpp/grpcpp.h"
#include "rpc/idem.grpc.pb.h"
#include "rpc/lock.grpc.pb.h"

namespace tally::kvbench {
namespace {

using Clock = std::chrono::steady_clock;

// One client's lock calls against one store.
class Locker {
 public:
  virtual ~Locker() = default;
  virtual absl::Status Grant(int64_t ttl_s) = 0;
  // Acquires, then releases, `name`.
  virtual absl::Status Cycle(const std::string& name) = 0;
};

class TallyLocker : public Locker {
 public:
  explicit TallyLocker(client::Client* c) : c_(c) {}
  absl::Status Grant(int64_t ttl_s) override {
    auto r = c_->GrantLease(std::chrono::seconds(ttl_s));
    if (!r.ok()) return r.status();
    lease_ = r->id();
    return absl::OkStatus();
  }
  absl::Status Cycle(const std::string& name) override {
    auto r = c_->Acquire(name, lease_, std::chrono::seconds(30));
    if (!r.ok()) return r.status();
    if (!r->acquired()) return absl::InternalError("not acquired");
    return c_->Release(name, r->holder().token());
  }

 private:
  client::Client* const c_;
  uint64_t lease_ = 0;
};

class EtcdLocker : public Locker {
 public:
  explicit EtcdLocker(std::shared_ptr<grpc::Channel> ch)
      : lease_stub_(etcdserverpb::Lease::NewStub(ch)),
        lock_stub_(v3lockpb::Lock::NewStub(ch)) {}
  absl::Status Grant(int64_t ttl_s) override {
    etcdserverpb::LeaseGrantRequest req;
    req.set_ttl(ttl_s);
    etcdserverpb::LeaseGrantResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    grpc::Status st = lease_stub_->LeaseGrant(&ctx, req, &resp);
    if (!st.ok()) return absl::UnavailableError(st.error_message());
    lease_ = resp.id();
    return absl::OkStatus();
  }
  absl::Status Cycle(const std::string& name) override {
    v3lockpb::LockRequest req;
    req.set_name(name);
    req.set_lease(lease_);
    v3lockpb::LockResponse resp;
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
      grpc::Status st = lock_stub_->Lock(&ctx, req, &resp);
      if (!st.ok()) return absl::UnavailableError(st.error_message());
    }
    v3lockpb::UnlockRequest un;
    un.set_key(resp.key());
    v3lockpb::UnlockResponse done;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    grpc::Status st = lock_stub_->Unlock(&ctx, un, &done);
    if (!st.ok()) return absl::UnavailableError(st.error_message());
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<etcdserverpb::Lease::Stub> lease_stub_;
  std::unique_ptr<v3lockpb::Lock::Stub> lock_stub_;
  int64_t lease_ = 0;
};

// The measured phase, from the warmup's end for the duration: calls o.mark
// as it begins and ends, and keeps what completed within it.
class Phase {
 public:
  explicit Phase(const LockBenchOptions& o)
      : o_(o),
        begin_(Clock::now() + std::chrono::milliseconds(
                                  static_cast<int64_t>(o.warmup_s * 1000))),
        end_(begin_ + std::chrono::milliseconds(
                          static_cast<int64_t>(o.duration_s * 1000))),
        marker_([this] {
          std::this_thread::sleep_until(begin_);
          if (o_.mark) o_.mark(true);
          std::this_thread::sleep_until(end_);
          if (o_.mark) o_.mark(false);
        }) {}

  bool over() const { return Clock::now() >= end_; }

  // One client's record.
  struct Log {
    std::vector<uint32_t> latencies_us;
    uint64_t errors = 0;
  };
  // Records `n` operations begun at `start` and done now, if they lie
  // within the phase.
  void Done(Clock::time_point start, bool ok, Log* log, size_t n = 1) const {
    const Clock::time_point now = Clock::now();
    if (start < begin_ || now > end_) return;
    if (!ok) {
      log->errors += n;
      return;
    }
    log->latencies_us.insert(
        log->latencies_us.end(), n,
        static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(now - start)
                .count()));
  }
  void Add(const Log& log) {
    absl::MutexLock l(&mu_);
    all_.latencies_us.insert(all_.latencies_us.end(), log.latencies_us.begin(),
                             log.latencies_us.end());
    all_.errors += log.errors;
  }
  // After every client has added its log.
  Summary Finish() {
    marker_.join();
    absl::MutexLock l(&mu_);
    return Summary::Of(&all_.latencies_us, all_.errors, o_.duration_s);
  }

 private:
  const LockBenchOptions& o_;
  const Clock::time_point begin_, end_;
  std::thread marker_;
  absl::Mutex mu_;
  Log all_ ABSL_GUARDED_BY(mu_);
};

// A client of Tally's, or nullptr when the target is etcd.
absl::StatusOr<std::unique_ptr<client::Client>> ConnectTally(
    const LockBenchOptions& o) {
  if (o.target != "tally") return nullptr;
  client::ClientOptions co;
  co.endpoints = o.endpoints;
  co.timeout = std::chrono::seconds(30);
  return client::Client::Connect(co);
}

}  // namespace

absl::StatusOr<Summary> RunLockBench(const LockBenchOptions& o) {
  absl::StatusOr<std::unique_ptr<client::Client>> connected = ConnectTally(o);
  if (!connected.ok()) return connected.status();
  std::unique_ptr<client::Client> tally = std::move(*connected);
  std::vector<std::unique_ptr<Locker>> lockers;
  for (int i = 0; i < o.clients; ++i) {
    if (tally) {
      lockers.push_back(std::make_unique<TallyLocker>(tally.get()));
    } else {
      // The first endpoint: the script passes etcd's leader.
      lockers.push_back(
          std::make_unique<EtcdLocker>(NewChannel(o.endpoints[0], i % 4)));
    }
    if (absl::Status st = lockers.back()->Grant(o.lease_ttl_s); !st.ok()) {
      return absl::Status(st.code(),
                          absl::StrCat("granting a lease: ", st.message()));
    }
  }
  Phase phase(o);
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i) {
    threads.emplace_back([&, i] {
      const std::string name = o.hot ? "bench-hot" : absl::StrCat("bench-", i);
      Phase::Log log;
      while (!phase.over()) {
        const Clock::time_point start = Clock::now();
        phase.Done(start, lockers[i]->Cycle(name).ok(), &log);
      }
      phase.Add(log);
    });
  }
  for (auto& t : threads) t.join();
  return phase.Finish();
}

absl::StatusOr<Summary> RunIdemBench(const LockBenchOptions& o) {
  absl::StatusOr<std::unique_ptr<client::Client>> connected = ConnectTally(o);
  if (!connected.ok()) return connected.status();
  std::unique_ptr<client::Client> tally = std::move(*connected);
  // Keys of this run only: a rerun against the same cluster claims afresh.
  const std::string run = absl::StrCat(
      std::chrono::system_clock::now().time_since_epoch().count(), "/");
  const std::string response(64, 'r');
  Phase phase(o);
  std::vector<std::thread> threads;
  for (int i = 0; i < o.clients; ++i) {
    threads.emplace_back([&, i] {
      std::unique_ptr<etcdserverpb::KV::Stub> etcd;
      if (!tally)
        etcd = etcdserverpb::KV::NewStub(NewChannel(o.endpoints[0], i % 4));
      Phase::Log log;
      for (uint64_t n = 0; !phase.over(); ++n) {
        const std::string key = absl::StrCat(run, i, "-", n);
        const Clock::time_point start = Clock::now();
        bool ok = false;
        if (tally) {
          rpc::IdemBeginRequest req;
          req.set_scope("bench/");
          req.set_key(key);
          req.set_fingerprint("f");
          req.set_retention_ms(600'000);
          auto b = tally->IdemBegin(req);
          ok = b.ok() && b->outcome() == rpc::IdemBeginResponse::STARTED &&
               tally->IdemComplete("bench/", key, b->token(), response).ok();
        } else {
          const std::string k = "idem/bench/" + key;
          etcdserverpb::TxnRequest txn;
          auto* cmp = txn.add_compare();
          cmp->set_key(k);
          cmp->set_target(etcdserverpb::Compare::CREATE);
          cmp->set_result(etcdserverpb::Compare::EQUAL);
          cmp->set_create_revision(0);
          auto* put = txn.add_success()->mutable_request_put();
          put->set_key(k);
          put->set_value("in-progress");
          etcdserverpb::TxnResponse tr;
          grpc::ClientContext c1;
          c1.set_deadline(std::chrono::system_clock::now() +
                          std::chrono::seconds(30));
          if (etcd->Txn(&c1, txn, &tr).ok() && tr.succeeded()) {
            etcdserverpb::PutRequest done;
            done.set_key(k);
            done.set_value(response);
            etcdserverpb::PutResponse pr;
            grpc::ClientContext c2;
            c2.set_deadline(std::chrono::system_clock::now() +
                            std::chrono::seconds(30));
            ok = etcd->Put(&c2, done, &pr).ok();
          }
        }
        phase.Done(start, ok, &log);
      }
      phase.Add(log);
    });
  }
  for (auto& t : threads) t.join();
  return phase.Finish();
}

absl::StatusOr<Summary> RunKeepAliveBench(const LockBenchOptions& o,
                                          int leases) {
  if (o.target != "tally" && o.keep_alive_batch != 1) {
    return absl::InvalidArgumentError(
        "--keep-alive-batch: etcd's keep-alive names one lease");
  }
  // Streams and leases: granted through the lockers, kept alive on one
  // stream per client thread.
  std::vector<int64_t> ids;
  absl::StatusOr<std::unique_ptr<client::Client>> connected = ConnectTally(o);
  if (!connected.ok()) return connected.status();
  std::unique_ptr<client::Client> tally = std::move(*connected);
  auto etcd = etcdserverpb::Lease::NewStub(NewChannel(o.endpoints[0], 0));
  for (int i = 0; i < leases; ++i) {
    if (tally) {
      auto r = tally->GrantLease(std::chrono::seconds(o.lease_ttl_s));
      if (!r.ok()) {
        return absl::Status(r.status().code(),
                            absl::StrCat("granting lease ", i + 1, " of ",
                                         leases, ": ", r.status().message()));
      }
      ids.push_back(static_cast<int64_t>(r->id()));
    } else {
      etcdserverpb::LeaseGrantRequest req;
      req.set_ttl(o.lease_ttl_s);
      etcdserverpb::LeaseGrantResponse resp;
      grpc::ClientContext ctx;
      grpc::Status st = etcd->LeaseGrant(&ctx, req, &resp);
      if (!st.ok()) {
        return absl::UnavailableError(absl::StrCat("granting lease ", i + 1,
                                                   " of ", leases, ": ",
                                                   st.error_message()));
      }
      ids.push_back(resp.id());
    }
  }
  // Tally's leader of the metadata group: the first endpoint that answers
  // a keep-alive without a redirect (the script passes every endpoint).
  std::string address = o.endpoints[0];
  if (tally) {
    auto status = tally->Ranges();
    if (!status.ok()) return status.status();
    auto leader = status->leaders().find(status->meta_group());
    for (const auto& m : status->members()) {
      if (leader != status->leaders().end() && m.id() == leader->second) {
        address = m.client_address();
      }
    }
  }
  const auto period = std::chrono::milliseconds(o.lease_ttl_s * 1000 / 3);
  Phase phase(o);
  std::vector<std::thread> threads;
  for (int t = 0; t < o.clients; ++t) {
    threads.emplace_back([&, t] {
      auto ch = NewChannel(address, t);
      Phase::Log log;
      // This thread's leases, each renewed once per period, spread evenly,
      // `batch` to a message.
      std::vector<int64_t> own;
      for (size_t i = t; i < ids.size(); i += o.clients) own.push_back(ids[i]);
      if (own.empty()) return;
      const size_t batch =
          std::min(own.size(), static_cast<size_t>(o.keep_alive_batch));
      const auto gap = period / ((own.size() + batch - 1) / batch);
      grpc::ClientContext ctx;
      auto tally_stub = rpc::Leases::NewStub(ch);
      auto etcd_stub = etcdserverpb::Lease::NewStub(ch);
      auto tally_stream = tally ? tally_stub->KeepAlive(&ctx) : nullptr;
      auto etcd_stream = tally ? nullptr : etcd_stub->LeaseKeepAlive(&ctx);
      // Clients start spread over one gap, as independent ones would.
      Clock::time_point next = Clock::now() + gap * t / o.clients;
      // Each message the next `batch` leases (fewer at the end of the list).
      for (size_t first = 0; !phase.over(); next += gap) {
        std::this_thread::sleep_until(next);
        const size_t end = std::min(first + batch, own.size());
        const size_t n = end - first;
        const Clock::time_point start = Clock::now();
        bool ok;
        if (tally) {
          rpc::LeaseKeepAliveRequest req;
          for (size_t k = first; k < end; ++k) {
            const auto id = static_cast<uint64_t>(own[k]);
            if (batch == 1) {
              req.set_id(id);
            } else {
              req.add_ids(id);
            }
          }
          rpc::LeaseKeepAliveResponse resp;
          ok = tally_stream->Write(req) && tally_stream->Read(&resp);
          if (batch == 1) {
            ok = ok && resp.ttl_ms() > 0;
          } else {
            for (int64_t ttl : resp.ttls_ms()) ok = ok && ttl > 0;
            ok = ok && resp.ttls_ms_size() == static_cast<int>(n);
          }
        } else {
          etcdserverpb::LeaseKeepAliveRequest req;
          req.set_id(own[first]);
          etcdserverpb::LeaseKeepAliveResponse resp;
          ok = etcd_stream->Write(req) && etcd_stream->Read(&resp) &&
               resp.ttl() > 0;
        }
        phase.Done(start, ok, &log, n);
        first = end == own.size() ? 0 : end;
      }
      ctx.TryCancel();
      phase.Add(log);
      // The leases go with the run: left to expire, they would end while
      // the next run (of either store, on the same cores) measures.
      for (int64_t id : own) {
        if (tally) {
          (void)tally->RevokeLease(static_cast<uint64_t>(id));
        } else {
          etcdserverpb::LeaseRevokeRequest req;
          req.set_id(id);
          etcdserverpb::LeaseRevokeResponse resp;
          grpc::ClientContext revoke_ctx;
          (void)etcd_stub->LeaseRevoke(&revoke_ctx, req, &resp);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return phase.Finish();
}

}  // namespace tally::kvbench
