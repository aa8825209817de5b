#include "cmd/kvbench/overload_bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "client/lease_keeper.h"

namespace tally::kvbench {

namespace {

using Clock = std::chrono::steady_clock;

absl::StatusOr<std::unique_ptr<client::Client>> Connect(
    const OverloadOptions& o, std::chrono::milliseconds timeout) {
  client::ClientOptions co;
  co.endpoints = o.endpoints;
  co.tls = o.tls;
  co.timeout = timeout;
  if (o.throttle > 0) co.throttle = o.throttle;
  co.limit_in_flight = o.in_flight_limit;
  if (!o.protection) {
    co.retry_budget = -1;
    co.throttle = 0;
    co.breaker_failures = 0;
    co.limit_in_flight = false;
  }
  return client::Client::Connect(co);
}

// The leases, granted and handed to a keeper; counts those lost.
class Leases {
 public:
  absl::Status Start(const OverloadOptions& o) {
    // Their own client, as a service's lease holder would have.
    absl::StatusOr<std::unique_ptr<client::Client>> c =
        Connect(o, std::chrono::seconds(5));
    if (!c.ok()) return c.status();
    client_ = std::move(*c);
    keeper_ = std::make_unique<client::LeaseKeeper>(client_.get());
    const auto ttl = std::chrono::seconds(o.lease_ttl_s);
    for (int i = 0; i < o.leases; ++i) {
      auto sent = Clock::now();
      absl::StatusOr<rpc::LeaseGrantResponse> g = client_->GrantLease(ttl);
      // A cluster still busy with the previous run (its leases ending):
      // a grant whose outcome is unknown leaves at most a lease that ends
      // by itself.
      const auto give_up = sent + std::chrono::seconds(30);
      while (!g.ok() && Clock::now() < give_up &&
             (absl::IsDeadlineExceeded(g.status()) ||
              absl::IsUnavailable(g.status()) ||
              absl::IsResourceExhausted(g.status()))) {
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        sent = Clock::now();
        g = client_->GrantLease(ttl);
      }
      if (!g.ok()) {
        return absl::Status(
            g.status().code(),
            absl::StrCat("granting lease ", i + 1, ": ", g.status().message()));
      }
      ids_.push_back(g->id());
      {
        absl::MutexLock l(&mu_);
        valid_until_[g->id()] = sent + ttl;
      }
      keeper_->Add(
          g->id(), ttl, sent, sent + ttl,
          {.renewed =
               [this, id = g->id()](Clock::time_point sent, int64_t ttl_ms) {
                 const double ms = std::chrono::duration<double, std::milli>(
                                       Clock::now() - sent)
                                       .count();
                 const auto until = sent + std::chrono::milliseconds(ttl_ms);
                 absl::MutexLock l(&mu_);
                 renewal_max_ms_ = std::max(renewal_max_ms_, ms);
                 valid_until_[id] = std::max(valid_until_[id], until);
                 return until;
               },
           .lost =
               [this, id = g->id()] {
                 absl::MutexLock l(&mu_);
                 lost_.insert(id);
                 // No renewal confirmed in time, rather than
                 // the cluster saying it ended.
                 if (Clock::now() >= valid_until_[id]) ++unrenewed_;
               }});
    }
    return absl::OkStatus();
  }

  // Stops keeping them alive and counts those lost (the keeper saw them
  // end, or the cluster no longer holds them) and those the cluster did not
  // say it holds within 30 s: a node still busy with the run's backlog
  // fails a call, which says nothing of the lease.
  void Count(OverloadSummary* out) {
    keeper_.reset();
    absl::MutexLock l(&mu_);
    out->leases_lost = static_cast<int>(lost_.size());
    out->lease_renewal_max_ms = renewal_max_ms_;
    out->leases_unrenewed = unrenewed_;
    const auto give_up = Clock::now() + std::chrono::seconds(30);
    for (uint64_t id : ids_) {
      if (lost_.contains(id)) continue;
      for (;;) {
        absl::StatusOr<rpc::LeaseTimeToLiveResponse> t =
            client_->LeaseTimeToLive(id);
        if (t.ok()) {
          if (t->ttl_ms() <= 0) ++out->leases_lost;
          break;
        }
        if (Clock::now() >= give_up) {
          ++out->leases_unknown;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }

 private:
  std::unique_ptr<client::Client> client_;
  std::unique_ptr<client::LeaseKeeper> keeper_;
  std::vector<uint64_t> ids_;
  absl::Mutex mu_;
  absl::flat_hash_set<uint64_t> lost_ ABSL_GUARDED_BY(mu_);
  double renewal_max_ms_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<uint64_t, Clock::time_point> valid_until_
      ABSL_GUARDED_BY(mu_);
  int unrenewed_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<OverloadSummary> RunOverloadBench(const OverloadOptions& o) {
  absl::StatusOr<std::unique_ptr<client::Client>> connected =
      Connect(o, std::chrono::milliseconds(o.timeout_ms));
  if (!connected.ok()) return connected.status();
  client::Client* c = connected->get();
  Leases leases;
  if (absl::Status st = leases.Start(o); !st.ok()) return st;

  const auto begin = Clock::now() + std::chrono::milliseconds(
                                        static_cast<int64_t>(o.warmup_s * 1e3));
  const auto end = begin + std::chrono::milliseconds(
                               static_cast<int64_t>(o.duration_s * 1e3));
  // Each thread's puts are `interval` apart, the threads staggered.
  const auto interval =
      std::chrono::nanoseconds(static_cast<int64_t>(o.threads * 1e9 / o.rate));
  const std::string value(o.workload.value_size, 'v');
  absl::Mutex mu;
  OverloadSummary out;
  std::vector<uint32_t> latencies;
  client::CallStats at_begin;
  std::thread marker([&] {
    std::this_thread::sleep_until(begin);
    at_begin = c->call_stats();
    if (o.mark) o.mark(true);
    std::this_thread::sleep_until(end);
    if (o.mark) o.mark(false);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; ++t) {
    threads.emplace_back([&, t] {
      KeyChooser keys(o.workload.keys, o.workload.zipfian, 7000 + t);
      std::vector<uint32_t> lat;
      std::map<std::string, uint64_t> errors;
      uint64_t calls = 0, ok = 0;
      auto next = Clock::now() + interval * t / o.threads;
      // A thread that falls behind its schedule sends at once, until the
      // phase ends.
      while (next < end && Clock::now() < end) {
        std::this_thread::sleep_until(next);
        next += interval;
        const auto start = Clock::now();
        absl::StatusOr<rpc::PutResponse> r =
            c->Put(KeyName(keys.Next(), o.workload.key_size), value);
        if (start < begin || start >= end) continue;
        ++calls;
        if (r.ok()) {
          ++ok;
          lat.push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(
                  Clock::now() - start)
                  .count()));
        } else {
          ++errors[absl::StatusCodeToString(r.status().code())];
        }
      }
      absl::MutexLock l(&mu);
      out.calls += calls;
      out.ok += ok;
      for (const auto& [code, n] : errors) out.errors[code] += n;
      latencies.insert(latencies.end(), lat.begin(), lat.end());
    });
  }
  for (auto& t : threads) t.join();
  marker.join();
  // Attempts from the measured phase's start to the last answer: a call
  // begun in the phase may retry after it.
  const client::CallStats at_end = c->call_stats();
  out.attempts = at_end.attempts - at_begin.attempts;
  out.retries_refused = at_end.retries_refused - at_begin.retries_refused;
  out.breaker_refusals = at_end.breaker_refusals - at_begin.breaker_refusals;
  out.throttled = at_end.throttled - at_begin.throttled;
  out.held = at_end.held - at_begin.held;
  out.seconds = o.duration_s;
  out.latency = Summary::Of(&latencies, out.calls - out.ok, o.duration_s);
  out.leases = o.leases;
  leases.Count(&out);
  return out;
}

}  // namespace tally::kvbench
