#include "cmd/kvbench/watch_bench.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "bench/etcd_kv.grpc.pb.h"
#include "client/client.h"
#include "cmd/kvbench/targets.h"
#include "grpcpp/grpcpp.h"
#include "rpc/kv.grpc.pb.h"

namespace tally::kvbench {
namespace {

using Clock = std::chrono::steady_clock;

int64_t Nanos(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             t.time_since_epoch())
      .count();
}

// What every watcher and writer shares: the schedule, and how many streams
// are created and done.
struct Run {
  // The measured phase, in Nanos: set as the puts begin, read by the
  // streams' callbacks.
  std::atomic<int64_t> begin_ns{0}, end_ns{0};
  size_t capacity = 0;  // puts at most (their numbers: 0..capacity)
  std::atomic<uint64_t> measured_deliveries{0};

  absl::Mutex mu;
  int created ABSL_GUARDED_BY(mu) = 0;  // watchers whose stream is created
  int done ABSL_GUARDED_BY(mu) = 0;     // streams ended
  int refused ABSL_GUARDED_BY(mu) = 0;  // watchers whose stream ended first
  std::string first_error ABSL_GUARDED_BY(mu);
};

// One watcher's record. Only its stream's callbacks write it, one at a
// time; it is read once the stream is done.
class Watcher {
 public:
  explicit Watcher(Run* run) : run_(run), seen_(run->capacity, false) {}

  // A put's value: "<number> <nanoseconds at sending> " and padding.
  void Deliver(const std::string& value) {
    char* rest = nullptr;
    const uint64_t n = std::strtoull(value.c_str(), &rest, 10);
    const int64_t sent = std::strtoll(rest, nullptr, 10);
    if (n >= seen_.size()) return;
    if (seen_[n]) {
      ++duplicates_;
      return;
    }
    seen_[n] = true;
    if (sent < run_->begin_ns || sent >= run_->end_ns) return;
    latencies_us_.push_back(
        static_cast<uint32_t>((Nanos(Clock::now()) - sent) / 1000));
    ++run_->measured_deliveries;
  }
  void Created() {
    absl::MutexLock l(&run_->mu);
    if (std::exchange(created_, true)) return;
    ++run_->created;
  }
  void Done(const grpc::Status& st) {
    absl::MutexLock l(&run_->mu);
    ++run_->done;
    if (!created_) {
      refused_ = true;
      ++run_->refused;
    }
    if (!st.ok() && st.error_code() != grpc::StatusCode::CANCELLED &&
        run_->first_error.empty()) {
      run_->first_error = st.error_message();
    }
  }

  // True (once) if the stream ended before it was created: open another.
  bool TakeRefusal() ABSL_EXCLUSIVE_LOCKS_REQUIRED(run_->mu) {
    if (!std::exchange(refused_, false)) return false;
    --run_->refused;
    return true;
  }

  const std::vector<bool>& seen() const { return seen_; }
  std::vector<uint32_t>& latencies_us() { return latencies_us_; }
  uint64_t duplicates() const { return duplicates_; }

 private:
  Run* const run_;
  bool created_ ABSL_GUARDED_BY(run_->mu) = false;
  bool refused_ ABSL_GUARDED_BY(run_->mu) = false;
  std::vector<bool> seen_;
  std::vector<uint32_t> latencies_us_;
  uint64_t duplicates_ = 0;
};

// A watch stream: started on construction, ended by Cancel.
class Stream {
 public:
  virtual ~Stream() = default;
  virtual void Cancel() = 0;
};

class TallyStream : public Stream,
                    public grpc::ClientReadReactor<rpc::WatchResponse> {
 public:
  TallyStream(rpc::Watch::Stub* stub, const std::string& key,
              const std::string& end, Watcher* w)
      : w_(w) {
    req_.set_key(key);
    req_.set_range_end(end);
    stub->async()->Watch(&ctx_, &req_, this);
    StartRead(&resp_);
    StartCall();
  }
  void Cancel() override { ctx_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows
    if (resp_.created()) w_->Created();
    for (const rpc::WatchEvent& e : resp_.events()) w_->Deliver(e.kv().value());
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& st) override { w_->Done(st); }

 private:
  Watcher* const w_;
  grpc::ClientContext ctx_;
  rpc::WatchRequest req_;
  rpc::WatchResponse resp_;
};

class EtcdStream : public Stream,
                   public grpc::ClientBidiReactor<etcdserverpb::WatchRequest,
                                                  etcdserverpb::WatchResponse> {
 public:
  EtcdStream(etcdserverpb::Watch::Stub* stub, const std::string& key,
             const std::string& end, Watcher* w)
      : w_(w) {
    req_.mutable_create_request()->set_key(key);
    req_.mutable_create_request()->set_range_end(end);
    stub->async()->Watch(&ctx_, this);
    StartWrite(&req_);
    StartRead(&resp_);
    StartCall();
  }
  void Cancel() override { ctx_.TryCancel(); }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    if (resp_.created()) w_->Created();
    for (const etcdserverpb::Event& e : resp_.events()) {
      w_->Deliver(e.kv().value());
    }
    StartRead(&resp_);
  }
  void OnDone(const grpc::Status& st) override { w_->Done(st); }

 private:
  Watcher* const w_;
  grpc::ClientContext ctx_;
  etcdserverpb::WatchRequest req_;
  etcdserverpb::WatchResponse resp_;
};

}  // namespace

absl::StatusOr<WatchSummary> RunWatchBench(const WatchBenchOptions& o) {
  if (o.endpoints.empty() || o.watch_endpoints.empty()) {
    return absl::InvalidArgumentError("no endpoints");
  }
  const bool tally = o.target == "tally";
  // A prefix of this run's own: nothing written before is under it.
  const std::string prefix = absl::StrCat("watch-bench/", getpid(), "-",
                                          Nanos(Clock::now()) / 1000000, "/");
  std::string end = prefix;
  end.back() = static_cast<char>(end.back() + 1);

  Run run;
  run.capacity =
      static_cast<size_t>(o.writes_per_sec * (o.warmup_s + o.duration_s)) + 1;

  // The writers.
  std::unique_ptr<client::Client> tally_client;
  std::vector<std::unique_ptr<etcdserverpb::KV::Stub>> kv;
  if (tally) {
    client::ClientOptions co;
    co.endpoints = o.endpoints;
    co.timeout = std::chrono::seconds(5);
    auto c = client::Client::Connect(co);
    if (!c.ok()) {
      return c.status();
    }
    tally_client = std::move(*c);
  } else {
    for (int t = 0; t < o.writers; ++t) {
      kv.push_back(
          etcdserverpb::KV::NewStub(NewChannel(o.endpoints[0], t % 4)));
    }
  }
  // Tally keeps no watch history for a shard until its first watch, which
  // turns it on through the shard's leader; a follower refuses watches
  // until it has applied that. One watch through the client library (sent
  // to the leader) turns it on before the streams open.
  if (tally) {
    client::Client::WatchOptions first;
    first.key = prefix;
    first.range_end = end;
    absl::Status st = tally_client->Watch(
        first, [](const rpc::WatchResponse&) { return false; });
    if (!st.ok()) return st;
  }

  // The watchers, each a stream of its own, spread over the endpoints.
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<rpc::Watch::Stub>> tally_stubs;
  std::vector<std::unique_ptr<etcdserverpb::Watch::Stub>> etcd_stubs;
  for (size_t i = 0; i < o.watch_endpoints.size(); ++i) {
    channels.push_back(NewChannel(o.watch_endpoints[i], 100));
    tally_stubs.push_back(rpc::Watch::NewStub(channels.back()));
    etcd_stubs.push_back(etcdserverpb::Watch::NewStub(channels.back()));
  }
  std::vector<std::unique_ptr<Watcher>> watchers;
  // Every stream opened, ended ones too, until all have ended.
  std::vector<std::unique_ptr<Stream>> streams;
  auto open = [&](int i) {
    const size_t e = i % channels.size();
    Watcher* w = watchers[i].get();
    if (tally) {
      streams.push_back(
          std::make_unique<TallyStream>(tally_stubs[e].get(), prefix, end, w));
    } else {
      streams.push_back(
          std::make_unique<EtcdStream>(etcd_stubs[e].get(), prefix, end, w));
    }
  };
  for (int i = 0; i < o.watchers; ++i) {
    watchers.push_back(std::make_unique<Watcher>(&run));
    open(i);
  }
  // Stops the streams and waits for their ends, whatever happens below.
  auto stop_streams = [&] {
    for (auto& s : streams) s->Cancel();
    absl::MutexLock l(&run.mu);
    auto all_done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu) {
      return run.done == static_cast<int>(streams.size());
    };
    run.mu.Await(absl::Condition(&all_done));
  };
  // Every watch created within 60 s; a refused one (a Tally follower that
  // has not yet applied the history's turning on) is opened again.
  const absl::Time created_by = absl::Now() + absl::Seconds(60);
  std::string not_created;
  for (;;) {
    std::vector<int> again;
    {
      absl::MutexLock l(&run.mu);
      auto settled = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(run.mu) {
        return run.created + run.refused >= o.watchers;
      };
      run.mu.AwaitWithDeadline(absl::Condition(&settled), created_by);
      if (run.created == o.watchers) break;
      if (absl::Now() >= created_by) {
        not_created = absl::StrCat(
            run.created, " of ", o.watchers, " watches created in 60 s",
            run.first_error.empty() ? "" : ": ", run.first_error);
        break;
      }
      for (int i = 0; i < o.watchers; ++i) {
        if (watchers[i]->TakeRefusal()) again.push_back(i);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (int i : again) open(i);
  }
  if (!not_created.empty()) {
    stop_streams();
    return absl::UnavailableError(not_created);
  }

  // A put by writer `t`: true when acknowledged.
  auto put = [&](int t, const std::string& key, const std::string& value) {
    if (tally) return tally_client->Put(key, value).ok();
    etcdserverpb::PutRequest req;
    req.set_key(key);
    req.set_value(value);
    etcdserverpb::PutResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(5));
    return kv[t]->Put(&ctx, req, &resp).ok();
  };

  // Put number n is due at start + n / rate; each writer takes the next
  // number when its last put is answered.
  const auto start = Clock::now();
  const auto begin = start + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(o.warmup_s));
  const auto end_of_phase =
      begin + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(o.duration_s));
  run.begin_ns = Nanos(begin);
  run.end_ns = Nanos(end_of_phase);
  auto measured = [&](int64_t sent_ns) {
    return sent_ns >= run.begin_ns && sent_ns < run.end_ns;
  };
  std::vector<int64_t> sent(run.capacity, 0);
  std::vector<uint8_t> acked(run.capacity, 0);
  std::atomic<size_t> next{0};
  std::thread marker([&] {
    std::this_thread::sleep_until(begin);
    if (o.mark) o.mark(true);
    std::this_thread::sleep_until(end_of_phase);
    if (o.mark) o.mark(false);
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < o.writers; ++t) {
    writers.emplace_back([&, t] {
      char head[64];
      for (;;) {
        const size_t n = next++;
        if (n >= run.capacity) return;
        const auto due =
            start + std::chrono::duration_cast<Clock::duration>(
                        std::chrono::duration<double>(n / o.writes_per_sec));
        if (due >= end_of_phase) return;
        std::this_thread::sleep_until(due);
        sent[n] = Nanos(Clock::now());
        const int len = std::snprintf(head, sizeof(head), "%zu %lld ", n,
                                      static_cast<long long>(sent[n]));
        std::string value(head, len);
        if (value.size() < o.value_size) value.resize(o.value_size, 'v');
        char key[32];
        std::snprintf(key, sizeof(key), "%012zu", n);
        acked[n] = put(t, prefix + key, value) ? 1 : 0;
      }
    });
  }
  for (auto& w : writers) w.join();
  marker.join();

  // The measured puts acknowledged; then at most 10 s for every watcher to
  // see them.
  WatchSummary out;
  uint64_t failed_puts = 0;
  for (size_t n = 0; n < run.capacity; ++n) {
    if (!measured(sent[n])) continue;
    if (acked[n]) {
      ++out.writes;
    } else {
      ++failed_puts;
    }
  }
  const uint64_t expected = out.writes * static_cast<uint64_t>(o.watchers);
  const auto drain_until = Clock::now() + std::chrono::seconds(10);
  while (run.measured_deliveries.load() < expected &&
         Clock::now() < drain_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop_streams();

  std::vector<uint32_t> all;
  all.reserve(run.measured_deliveries.load());
  for (auto& w : watchers) {
    all.insert(all.end(), w->latencies_us().begin(), w->latencies_us().end());
    w->latencies_us().clear();
    w->latencies_us().shrink_to_fit();
    out.duplicates += w->duplicates();
    for (size_t n = 0; n < run.capacity; ++n) {
      if (acked[n] && measured(sent[n]) && !w->seen()[n]) {
        ++out.missing;
      }
    }
  }
  {
    absl::MutexLock l(&run.mu);
    if (!run.first_error.empty()) {
      std::cerr << "kvbench: a watch ended: " << run.first_error << "\n";
    }
  }
  out.delivery = Summary::Of(&all, out.missing + failed_puts, o.duration_s);
  return out;
}

}  // namespace tally::kvbench
