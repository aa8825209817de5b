// kvbench: drives Tally or etcd with many requests in flight and reports
// throughput and latency.
//
//   kvbench --target tally --endpoints 127.0.0.1:7001,... --op put
//           --clients 256 --duration 10
//
// A progress line goes to stderr every second; one JSON line with the
// summary goes to stdout at the end. CPU time is counted over the measured
// phase only: kvbench's own (client_cpu_s), and with --server-pids that of
// the server processes together (server_cpu_s, from /proc).
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "cmd/kvbench/lock_bench.h"
#include "cmd/kvbench/overload_bench.h"
#include "cmd/kvbench/targets.h"
#include "cmd/kvbench/watch_bench.h"
#include "cmd/kvbench/workload.h"

namespace tally::kvbench {
namespace {

using Clock = std::chrono::steady_clock;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// User and system CPU of the processes, together, from /proc/<pid>/stat;
// -1 if one cannot be read.
double ProcessesCpuSeconds(const std::vector<int>& pids) {
  static const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  double total = 0;
  for (int pid : pids) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    // The command name, in parentheses, may hold spaces: fields are
    // counted from the last ')'. utime and stime are fields 14 and 15.
    const size_t close = stat.rfind(')');
    if (close == std::string::npos) return -1;
    std::istringstream fields(stat.substr(close + 2));
    std::string f;
    double utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> f; ++i) {
      if (i == 14) utime = std::stod(f);
      if (i == 15) stime = std::stod(f);
    }
    total += (utime + stime) / ticks;
  }
  return total;
}

// kvbench --op lock|lock-hot|keep-alive|idem: acquire and release, lease
// keep-alives, or idempotency claims and completions; one client per thread.
int RunLocks(LockBenchOptions o, const std::string& op,
             const std::vector<int>& pids, int leases) {
  o.hot = op == "lock-hot";
  // CPU over the measured phase: sampled when it begins and ends.
  double cpu[2] = {0, 0}, server[2] = {0, 0};
  o.mark = [&](bool begin) {
    cpu[begin ? 0 : 1] = CpuSeconds();
    server[begin ? 0 : 1] = ProcessesCpuSeconds(pids);
  };
  absl::StatusOr<Summary> s = op == "keep-alive" ? RunKeepAliveBench(o, leases)
                              : op == "idem"     ? RunIdemBench(o)
                                                 : RunLockBench(o);
  if (!s.ok()) {
    std::cerr << "kvbench: " << s.status().message() << "\n";
    return 2;
  }
  std::printf(
      "{\"target\":\"%s\",\"op\":\"%s\",\"read_mode\":\"-\",\"clients\":%d,"
      "\"connections\":1,\"ops\":%llu,\"seconds\":%.2f,\"ops_per_sec\":%.0f,"
      "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
      "\"max_ms\":%.3f,\"errors\":%llu,\"retries\":0,"
      "\"client_cpu_s\":%.3f,\"server_cpu_s\":%.3f}\n",
      o.target.c_str(), op.c_str(), o.clients,
      static_cast<unsigned long long>(s->ops), s->seconds,
      s->seconds > 0 ? s->ops / s->seconds : 0.0, s->p50, s->p90, s->p99,
      s->p999, s->max, static_cast<unsigned long long>(s->errors),
      cpu[1] - cpu[0], pids.empty() ? 0.0 : server[1] - server[0]);
  return s->ops > 0 ? 0 : 1;
}

// kvbench --op overload: puts offered at --rate through the client
// library, leases kept alive alongside. ops_per_sec is the goodput;
// amplification the attempts sent per put made.
int RunOverload(OverloadOptions o, const std::vector<int>& pids) {
  double cpu[2] = {0, 0}, server[2] = {0, 0};
  o.mark = [&](bool begin) {
    cpu[begin ? 0 : 1] = CpuSeconds();
    server[begin ? 0 : 1] = ProcessesCpuSeconds(pids);
  };
  absl::StatusOr<OverloadSummary> r = RunOverloadBench(o);
  if (!r.ok()) {
    std::cerr << "kvbench: " << r.status().message() << "\n";
    return 2;
  }
  std::string errors;
  for (const auto& [code, n] : r->errors) {
    absl::StrAppend(&errors, errors.empty() ? "" : ",", "\"", code, "\":", n);
  }
  const Summary& s = r->latency;
  std::printf(
      "{\"target\":\"tally\",\"op\":\"overload\",\"protection\":%s,"
      "\"in_flight_limit\":%s,"
      "\"clients\":%d,\"rate\":%.0f,\"offered_per_sec\":%.0f,"
      "\"ops\":%llu,\"seconds\":%.2f,\"ops_per_sec\":%.0f,"
      "\"attempts\":%llu,\"amplification\":%.3f,\"retries_refused\":%llu,"
      "\"breaker_refusals\":%llu,\"throttled\":%llu,\"held\":%llu,"
      "\"errors\":{%s},\"p50_ms\":"
      "%.3f,"
      "\"p99_ms\":%.3f,\"leases\":%d,\"leases_lost\":%d,"
      "\"leases_unknown\":%d,\"leases_unrenewed\":%d,"
      "\"lease_renewal_max_ms\":%.0f,"
      "\"client_cpu_s\":%.3f,\"server_cpu_s\":%.3f}\n",
      o.protection ? "true" : "false",
      o.protection && o.in_flight_limit ? "true" : "false", o.threads, o.rate,
      r->calls / r->seconds, static_cast<unsigned long long>(r->ok), r->seconds,
      r->ok / r->seconds, static_cast<unsigned long long>(r->attempts),
      r->calls > 0 ? static_cast<double>(r->attempts) / r->calls : 0.0,
      static_cast<unsigned long long>(r->retries_refused),
      static_cast<unsigned long long>(r->breaker_refusals),
      static_cast<unsigned long long>(r->throttled),
      static_cast<unsigned long long>(r->held), errors.c_str(), s.p50, s.p99,
      r->leases, r->leases_lost, r->leases_unknown, r->leases_unrenewed,
      r->lease_renewal_max_ms, cpu[1] - cpu[0],
      pids.empty() ? 0.0 : server[1] - server[0]);
  return r->ok > 0 ? 0 : 1;
}

// kvbench --op watch: watchers of one prefix and paced puts under it; one
// operation is one change delivered to one watcher.
int RunWatch(WatchBenchOptions o, const std::vector<int>& pids) {
  double cpu[2] = {0, 0}, server[2] = {0, 0};
  o.mark = [&](bool begin) {
    cpu[begin ? 0 : 1] = CpuSeconds();
    server[begin ? 0 : 1] = ProcessesCpuSeconds(pids);
  };
  absl::StatusOr<WatchSummary> w = RunWatchBench(o);
  if (!w.ok()) {
    std::cerr << "kvbench: " << w.status().message() << "\n";
    return 2;
  }
  const Summary& s = w->delivery;
  std::printf(
      "{\"target\":\"%s\",\"op\":\"watch\",\"read_mode\":\"-\","
      "\"clients\":%d,\"connections\":1,\"watchers\":%d,\"writes\":%llu,"
      "\"writes_per_sec\":%.0f,\"missing\":%llu,\"duplicates\":%llu,"
      "\"ops\":%llu,\"seconds\":%.2f,\"ops_per_sec\":%.0f,"
      "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
      "\"max_ms\":%.3f,\"errors\":%llu,\"retries\":0,"
      "\"client_cpu_s\":%.3f,\"server_cpu_s\":%.3f}\n",
      o.target.c_str(), o.writers, o.watchers,
      static_cast<unsigned long long>(w->writes),
      s.seconds > 0 ? w->writes / s.seconds : 0.0,
      static_cast<unsigned long long>(w->missing),
      static_cast<unsigned long long>(w->duplicates),
      static_cast<unsigned long long>(s.ops), s.seconds,
      s.seconds > 0 ? s.ops / s.seconds : 0.0, s.p50, s.p90, s.p99, s.p999,
      s.max, static_cast<unsigned long long>(s.errors), cpu[1] - cpu[0],
      pids.empty() ? 0.0 : server[1] - server[0]);
  return s.ops > 0 ? 0 : 1;
}

struct Slot {
  size_t id = 0;
  Op op = Op::kPut;
  std::string key;
  Clock::time_point start;
  int retries = 0;
  // Preload: rounds of retries this key failed.
  int failures = 0;
};

// A preloaded key is written, or the preload fails: the workloads and the
// tests that read the keys back count on every one.
constexpr int kPreloadRounds = 5;

// Runs `clients` logical clients over `threads` completion queues until the
// measured phase ends; records the latency of every operation that
// completes in it.
class Driver {
 public:
  Driver(Target* target, const Workload& w, int clients, int threads,
         std::vector<int> server_pids)
      : target_(target),
        w_(w),
        clients_(clients),
        threads_(threads),
        server_pids_(std::move(server_pids)) {
    value_.assign(w.value_size, 'v');
  }

  // Writes every key of the key space once (for get workloads). Returns
  // the keys that could not be written, each tried kPreloadRounds times.
  uint64_t Preload() {
    preload_ = true;
    Run(Clock::now(), Clock::now() + std::chrono::hours(1), 0);
    preload_ = false;
    latencies_.clear();
    return errors_.exchange(0);
  }

  Summary Measure(double warmup_s, double duration_s, uint64_t total_ops) {
    const auto begin =
        Clock::now() + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double>(warmup_s));
    const auto end =
        begin +
        std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(total_ops > 0 ? 3600.0 : duration_s));
    Run(begin, end, total_ops);
    const double secs =
        std::chrono::duration<double>(finished_ - begin).count();
    std::vector<uint32_t> all;
    for (auto& v : latencies_) all.insert(all.end(), v.begin(), v.end());
    return Summary::Of(&all, errors_.load(), secs);
  }

  uint64_t retries() const { return retries_.load(); }
  // CPU over the measured phase: kvbench's, and the servers' (-1 without
  // server pids).
  double cpu_seconds() const { return cpu_end_ - cpu_begin_; }
  double server_cpu_seconds() const {
    return server_pids_.empty() || server_cpu_begin_ < 0 || server_cpu_end_ < 0
               ? -1
               : server_cpu_end_ - server_cpu_begin_;
  }

 private:
  void Run(Clock::time_point begin, Clock::time_point end, uint64_t total_ops) {
    begin_ = begin;
    end_ = end;
    total_ops_ = total_ops;
    done_ = false;
    next_key_ = 0;
    recorded_ = 0;
    latencies_.assign(threads_, {});
    std::atomic<bool> stop_progress{false};
    std::thread progress([&] { Progress(&stop_progress); });
    // CPU is read as the measured phase begins (after the warm-up).
    absl::Mutex meter_mu;
    bool meter_stop = false;
    std::thread meter([&] {
      absl::MutexLock l(&meter_mu);
      auto stopped = [&] { return meter_stop; };
      meter_mu.AwaitWithTimeout(absl::Condition(&stopped),
                                absl::FromChrono(begin - Clock::now()));
      if (meter_stop) return;
      cpu_begin_ = CpuSeconds();
      server_cpu_begin_ = ProcessesCpuSeconds(server_pids_);
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < threads_; ++t) {
      workers.emplace_back([this, t] { Worker(t); });
    }
    for (auto& w : workers) w.join();
    {
      absl::MutexLock l(&meter_mu);
      meter_stop = true;
    }
    meter.join();
    finished_ = std::min(Clock::now(), end_);
    if (total_ops_ > 0) finished_ = last_recorded_;
    cpu_end_ = CpuSeconds();
    server_cpu_end_ = ProcessesCpuSeconds(server_pids_);
    stop_progress = true;
    progress.join();
  }

  void Progress(std::atomic<bool>* stop) {
    const auto start = Clock::now();
    uint64_t last = 0;
    while (!stop->load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      const auto now = Clock::now();
      const double s = std::chrono::duration<double>(now - start).count();
      if (static_cast<int>(s * 10) % 10 != 0) continue;
      const uint64_t n = completed_.load();
      std::fprintf(stderr,
                   "kvbench: %s %4.0fs ops=%llu ops/s=%llu errors=%llu\n",
                   preload_       ? "preload"
                   : now < begin_ ? "warm-up"
                                  : "run",
                   s, static_cast<unsigned long long>(n),
                   static_cast<unsigned long long>(n - last),
                   static_cast<unsigned long long>(errors_.load()));
      last = n;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  bool Next(Slot* s, KeyChooser* keys, std::mt19937_64* rng) {
    if (preload_) {
      const uint64_t k = next_key_++;
      if (k >= w_.keys) return false;
      s->op = w_.op == "crdt-incr" ? Op::kCrdtIncr : Op::kPut;
      s->key = KeyName(k, w_.key_size);
      return true;
    }
    if (done_.load(std::memory_order_relaxed) || Clock::now() >= end_) {
      return false;
    }
    if (w_.op == "get") {
      s->op = Op::kGet;
    } else if (w_.op == "cas") {
      s->op = Op::kCas;
    } else if (w_.op == "scan") {
      s->op = Op::kScan;
    } else if (w_.op == "crdt-incr") {
      s->op = Op::kCrdtIncr;
    } else if (w_.op == "mixed") {
      s->op = std::uniform_real_distribution<double>(0, 1)(*rng) < w_.read_ratio
                  ? Op::kGet
                  : Op::kPut;
    } else {
      s->op = Op::kPut;
    }
    s->key = KeyName(keys->Next(), w_.key_size);
    return true;
  }

  void Send(Slot* s, grpc::CompletionQueue* cq) {
    std::string own;
    if (w_.values_name_keys) {
      own = s->key + "=";
      own.resize(std::max(own.size(), w_.value_size), 'v');
    } else if (w_.random_values) {
      static thread_local std::mt19937_64 rng(std::random_device{}());
      own.resize(w_.value_size);
      for (size_t i = 0; i < own.size(); i += sizeof(uint64_t)) {
        const uint64_t x = rng();
        std::memcpy(own.data() + i, &x, std::min(sizeof(x), own.size() - i));
      }
    }
    const bool has_own = w_.values_name_keys || w_.random_values;
    Call* c = target_->Start(s->op, s->key, has_own ? own : value_, s->id, cq);
    c->owner = s;
  }

  void Worker(int t) {
    grpc::CompletionQueue cq;
    KeyChooser keys(w_.keys, w_.zipfian, 1000 + t);
    std::mt19937_64 rng(t);
    std::vector<Slot> slots;
    for (int i = t; i < clients_; i += threads_) {
      slots.push_back(Slot{static_cast<size_t>(i)});
    }
    size_t in_flight = 0;
    for (Slot& s : slots) {
      if (!Next(&s, &keys, &rng)) break;
      s.start = Clock::now();
      s.retries = 0;
      Send(&s, &cq);
      ++in_flight;
    }
    std::vector<uint32_t>& lat = latencies_[t];
    void* tag;
    bool ok;
    while (in_flight > 0 && cq.Next(&tag, &ok)) {
      Call* c = static_cast<Call*>(tag);
      Slot* s = static_cast<Slot*>(c->owner);
      const Target::Result r = target_->Finish(c);
      delete c;
      if (r == Target::Result::kRetry && s->retries < 20) {
        ++s->retries;
        ++retries_;
        Send(s, &cq);
        continue;
      }
      if (preload_ && r != Target::Result::kOk &&
          ++s->failures < kPreloadRounds) {
        // The same key again, after a pause (this thread's other clients
        // wait too: the preload is not measured).
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        s->retries = 0;
        ++retries_;
        Send(s, &cq);
        continue;
      }
      const auto now = Clock::now();
      ++completed_;
      if (!preload_ && now >= begin_ && now < end_) {
        if (r == Target::Result::kOk) {
          lat.push_back(static_cast<uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(now -
                                                                    s->start)
                  .count()));
          if (total_ops_ > 0 && ++recorded_ >= total_ops_) {
            last_recorded_ = now;
            done_ = true;
          }
        } else {
          ++errors_;
        }
      } else if (r != Target::Result::kOk) {
        ++errors_;
      }
      if (Next(s, &keys, &rng)) {
        s->start = Clock::now();
        s->retries = 0;
        s->failures = 0;
        Send(s, &cq);
      } else {
        --in_flight;
      }
    }
  }

  Target* const target_;
  const Workload w_;
  const int clients_;
  const int threads_;
  std::string value_;
  bool preload_ = false;
  Clock::time_point begin_, end_, finished_, last_recorded_;
  uint64_t total_ops_ = 0;
  std::atomic<bool> done_{false};
  std::atomic<uint64_t> next_key_{0}, recorded_{0}, completed_{0};
  std::atomic<uint64_t> errors_{0}, retries_{0};
  const std::vector<int> server_pids_;
  double cpu_begin_ = 0, cpu_end_ = 0;
  double server_cpu_begin_ = -1, server_cpu_end_ = -1;
  std::vector<std::vector<uint32_t>> latencies_;
};

}  // namespace
}  // namespace tally::kvbench

int main(int argc, char** argv) {
  using namespace tally::kvbench;
  // As in kvd: no lock-order graph on every Mutex operation.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{"Benchmarks Tally or etcd through their gRPC APIs"};
  std::string target = "tally";
  std::string endpoints;
  std::string read_mode = "linearizable";
  std::string dist = "uniform";
  Workload w;
  int clients = 16, connections = 1, threads = 2, timeout_ms = 5000;
  double duration = 10, warmup = 2;
  uint64_t total_ops = 0;
  bool preload = false;
  app.add_option("--target", target, "tally or etcd")
      ->check(CLI::IsMember({"tally", "etcd"}));
  app.add_option("--endpoints", endpoints, "host:port,... (client addresses)")
      ->required();
  app.add_option("--op", w.op,
                 "put, get, mixed, cas, scan, lock / lock-hot (acquire and "
                 "release: each client its own lock / one lock for all), "
                 "keep-alive, idem (claim a key and store a response), or "
                 "crdt-incr (increment a CRDT counter on any node; Tally "
                 "only), or watch (--watchers of one prefix, puts under it at "
                 "--write-rate by --clients threads), or overload (puts "
                 "at --rate through the client library by --clients "
                 "threads, --leases kept alive alongside; Tally only)")
      ->check(CLI::IsMember({"put", "get", "mixed", "cas", "scan", "lock",
                             "lock-hot", "keep-alive", "idem", "crdt-incr",
                             "watch", "overload"}));
  app.add_option("--read-ratio", w.read_ratio, "mixed: the share of gets")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--read-mode", read_mode, "linearizable, lease, serializable")
      ->check(CLI::IsMember({"linearizable", "lease", "serializable"}));
  app.add_option("--clients", clients, "requests in flight")
      ->check(CLI::PositiveNumber);
  app.add_option("--connections", connections, "TCP connections per endpoint")
      ->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "completion-queue threads")
      ->check(CLI::PositiveNumber);
  app.add_option("--key-size", w.key_size, "bytes")->check(CLI::Range(2, 1024));
  app.add_option("--value-size", w.value_size, "bytes");
  app.add_flag("--values-name-keys", w.values_name_keys,
               "each value starts with its key and \"=\" (to check a copy "
               "of the data key by key)");
  app.add_flag("--random-values", w.random_values,
               "each put's value is fresh random bytes (incompressible)");
  app.add_option("--keys", w.keys, "key space")->check(CLI::PositiveNumber);
  app.add_option("--dist", dist, "uniform or zipfian")
      ->check(CLI::IsMember({"uniform", "zipfian"}));
  app.add_option("--duration", duration, "seconds measured");
  app.add_option("--ops", total_ops, "operations measured (instead of time)");
  app.add_option("--warmup", warmup, "seconds before measuring");
  app.add_option("--timeout-ms", timeout_ms, "per request");
  uint32_t scan_size = 1000;
  app.add_option("--scan-size", scan_size, "scan: keys read per request")
      ->check(CLI::Range(1, 10000));
  app.add_flag("--preload", preload, "write every key once before measuring");
  int leases = 10000;
  app.add_option("--leases", leases, "keep-alive, overload: leases kept alive")
      ->check(CLI::NonNegativeNumber);
  int64_t lease_ttl_s = 30;
  app.add_option("--lease-ttl", lease_ttl_s,
                 "lock, keep-alive: lease TTL in seconds (kept alive every "
                 "third of it)")
      ->check(CLI::PositiveNumber);
  int keep_alive_batch = 1;
  app.add_option("--keep-alive-batch", keep_alive_batch,
                 "keep-alive (Tally): leases per message, each client's due "
                 "together (Client::KeepAlive of several)")
      ->check(CLI::Range(1, 1000));
  int watchers = 1000;
  app.add_option("--watchers", watchers, "watch: streams watching the prefix")
      ->check(CLI::PositiveNumber);
  double write_rate = 1000;
  app.add_option("--write-rate", write_rate, "watch: puts per second")
      ->check(CLI::PositiveNumber);
  std::string watch_endpoints;
  app.add_option("--watch-endpoints", watch_endpoints,
                 "watch: host:port,... the watchers are spread over "
                 "(default: --endpoints)");
  double rate = 1000;
  app.add_option("--rate", rate, "overload: puts offered per second")
      ->check(CLI::PositiveNumber);
  bool unprotected = false;
  app.add_flag("--no-protection", unprotected,
               "overload: the client library's retry budget, throttling, "
               "in-flight limits and circuit breakers off (retries until "
               "the deadline)");
  bool no_in_flight_limit = false;
  app.add_flag("--no-in-flight-limit", no_in_flight_limit,
               "overload: the client library's in-flight limits off, the "
               "rest of its protection on");
  double throttle = 0;
  app.add_option("--throttle", throttle,
                 "overload: the library's throttling factor (sends at most "
                 "this many times what the cluster accepts; default: the "
                 "library's)")
      ->check(CLI::Range(1.0, 100.0));
  std::string server_pids_text;
  app.add_option("--server-pids", server_pids_text,
                 "pid,...: report these processes' CPU over the measured "
                 "phase (server_cpu_s)");
  std::string tls_ca;
  app.add_option("--tls-ca", tls_ca,
                 "tally: PEM CA of the nodes' certificates, to talk TLS "
                 "(put, get, mixed and scan workloads)")
      ->envname("KVCTL_TLS_CA");
  std::string token;
  app.add_option("--token", token,
                 "tally: a bearer token, for a cluster with auth enabled "
                 "(put, get, mixed and scan workloads)")
      ->envname("KVCTL_TOKEN");
  CLI11_PARSE(app, argc, argv);

  w.zipfian = dist == "zipfian";
  w.read_mode = read_mode == "lease"          ? ReadMode::kLease
                : read_mode == "serializable" ? ReadMode::kSerializable
                                              : ReadMode::kLinearizable;
  TargetOptions o;
  for (absl::string_view e :
       absl::StrSplit(endpoints, ',', absl::SkipEmpty())) {
    o.endpoints.emplace_back(e);
  }
  o.connections = connections;
  o.read_mode = w.read_mode;
  o.timeout_ms = timeout_ms;
  o.scan_size = scan_size;
  o.crdt = w.op == "crdt-incr";
  if (target == "tally") {
    o.tls.ca = tls_ca;
    o.token = token;
  }
  if (absl::Status s = tally::rpc::CheckTlsFiles(o.tls, /*identity=*/false);
      !s.ok()) {
    std::cerr << "kvbench: " << s.message() << "\n";
    return 2;
  }
  if (o.crdt && target != "tally") {
    std::cerr << "kvbench: --op crdt-incr: only Tally has CRDT tables\n";
    return 2;
  }
  std::vector<int> server_pids;
  for (absl::string_view p :
       absl::StrSplit(server_pids_text, ',', absl::SkipEmpty())) {
    int pid = 0;
    if (!absl::SimpleAtoi(p, &pid) || pid <= 0) {
      std::cerr << "kvbench: --server-pids: '" << p << "' is not a pid\n";
      return 2;
    }
    server_pids.push_back(pid);
  }
  if (ProcessesCpuSeconds(server_pids) < 0) {
    std::cerr << "kvbench: --server-pids: cannot read /proc of "
              << server_pids_text << "\n";
    return 2;
  }
  if (w.op == "watch") {
    WatchBenchOptions wo;
    wo.target = target;
    wo.endpoints = o.endpoints;
    for (absl::string_view e :
         absl::StrSplit(watch_endpoints.empty() ? endpoints : watch_endpoints,
                        ',', absl::SkipEmpty())) {
      wo.watch_endpoints.emplace_back(e);
    }
    wo.watchers = watchers;
    wo.writes_per_sec = write_rate;
    wo.writers = clients;
    wo.value_size = w.value_size;
    wo.warmup_s = warmup;
    wo.duration_s = duration;
    return RunWatch(std::move(wo), server_pids);
  }
  if (w.op.starts_with("lock") || w.op == "keep-alive" || w.op == "idem") {
    LockBenchOptions lo;
    lo.target = target;
    lo.endpoints = o.endpoints;
    lo.clients = clients;
    lo.warmup_s = warmup;
    lo.duration_s = duration;
    lo.lease_ttl_s = lease_ttl_s;
    lo.keep_alive_batch = keep_alive_batch;
    return RunLocks(std::move(lo), w.op, server_pids, leases);
  }
  if (w.op == "overload") {
    if (target != "tally") {
      std::cerr << "kvbench: --op overload drives Tally's client library\n";
      return 2;
    }
    OverloadOptions oo;
    oo.endpoints = o.endpoints;
    oo.tls = o.tls;
    oo.rate = rate;
    oo.threads = clients;
    oo.warmup_s = warmup;
    oo.duration_s = duration;
    oo.timeout_ms = timeout_ms;
    oo.protection = !unprotected;
    oo.in_flight_limit = !no_in_flight_limit;
    oo.throttle = throttle;
    oo.leases = leases;
    oo.lease_ttl_s = lease_ttl_s;
    oo.workload = w;
    return RunOverload(std::move(oo), server_pids);
  }
  auto t = target == "etcd" ? NewEtcdTarget(o) : NewTallyTarget(o);
  if (!t.ok()) {
    std::cerr << "kvbench: " << t.status().message() << "\n";
    return 2;
  }
  Driver driver(t->get(), w, clients, threads, std::move(server_pids));
  if (preload) {
    if (const uint64_t failed = driver.Preload(); failed > 0) {
      std::cerr << "kvbench: preload: " << failed << " of " << w.keys
                << " keys could not be written (each tried " << kPreloadRounds
                << " times); the nodes' logs may say why\n";
      return 1;
    }
  }
  Summary s = driver.Measure(warmup, duration, total_ops);
  std::printf(
      "{\"target\":\"%s\",\"op\":\"%s\",\"read_mode\":\"%s\",\"clients\":%d,"
      "\"connections\":%d,\"ops\":%llu,\"seconds\":%.2f,\"ops_per_sec\":%.0f,"
      "\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,"
      "\"max_ms\":%.3f,\"errors\":%llu,\"retries\":%llu,"
      "\"client_cpu_s\":%.3f,\"server_cpu_s\":%.3f}\n",
      target.c_str(), w.op.c_str(), read_mode.c_str(), clients, connections,
      static_cast<unsigned long long>(s.ops), s.seconds,
      s.seconds > 0 ? s.ops / s.seconds : 0.0, s.p50, s.p90, s.p99, s.p999,
      s.max, static_cast<unsigned long long>(s.errors),
      static_cast<unsigned long long>(driver.retries()), driver.cpu_seconds(),
      driver.server_cpu_seconds());
  return s.ops > 0 ? 0 : 1;
}
