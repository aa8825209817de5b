// kvd: one Tally node. Flags, or a TOML config file (--config); flags win.

#include <csignal>
#include <iostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "kv/server/server.h"
#include "spdlog/spdlog.h"
#include "util/logging.h"

namespace {
volatile std::sig_atomic_t g_signal = 0;
void OnSignal(int sig) { g_signal = sig; }
}  // namespace

int main(int argc, char** argv) {
  // Debian's abseil is built without NDEBUG, so every Mutex lock updates a
  // global lock-order graph to detect deadlocks: a measurable share of a
  // busy node's CPU (docs/performance.md). Tests keep the detection on.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  CLI::App app{"kvd: a Tally key-value node"};
  app.set_version_flag("--version", "kvd " TALLY_VERSION);
  app.option_defaults()->always_capture_default();
  tally::kv::server::ServerOptions o;
  std::string initial_cluster, initial_ranges, log_format = "text",
                                               log_level = "info";
  app.set_config("--config", "", "TOML config file (flags override it)");
  app.add_option("--name", o.name, "this node's name, n<number>")->required();
  app.add_option("--data-dir", o.data_dir, "where the node keeps its data")
      ->required();
  app.add_option("--listen-client", o.client_address, "host:port for clients")
      ->required();
  app.add_option("--listen-peer", o.peer_address, "host:port for other nodes")
      ->required();
  app.add_option("--listen-http", o.http_address,
                 "host:port for HTTP: /health, /ready, /live and /metrics "
                 "(Prometheus); none if unset");
  app.add_option("--advertise-client", o.advertise_client_address,
                 "the client address to name in redirects, if clients reach "
                 "this node elsewhere than --listen-client");
  app.add_option("--initial-cluster", initial_cluster,
                 "n1=host:port,n2=host:port,... (peer addresses) to "
                 "bootstrap a new cluster");
  app.add_option("--initial-ranges", initial_ranges,
                 "split points of the initial shards, e.g. m,t");
  app.add_option("--initial-cluster-token", o.initial_cluster_token,
                 "mixed into the new cluster's id, so that clusters started "
                 "from the same --initial-cluster get different ids (the same "
                 "on every node of one cluster)");
  app.add_option("--join", o.join,
                 "client address of a member, to join its cluster (add this "
                 "node as a learner first: kvctl member add)");
  app.add_option("--tick-ms", o.tick_ms, "raft tick length");
  app.add_option("--election-ticks", o.election_tick,
                 "election timeout in ticks");
  app.add_option("--max-value-bytes", o.max_value_bytes,
                 "largest value accepted");
  app.add_option("--max-txn-ops", o.max_txn_ops,
                 "most compares, and most operations in each branch, of a "
                 "transaction");
  app.add_option("--max-txn-bytes", o.max_txn_bytes,
                 "most bytes of keys and values in a transaction's puts");
  app.add_option("--max-inflight-writes", o.max_inflight_writes,
                 "writes admitted and not yet answered; more are refused at "
                 "once (RESOURCE_EXHAUSTED); lock and lease releases get as "
                 "many places of their own")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--max-inflight-reads", o.max_inflight_reads,
                 "reads admitted and not yet answered; more are refused at "
                 "once (RESOURCE_EXHAUSTED)")
      ->check(CLI::Range(size_t{1}, size_t{1} << 20));
  app.add_option("--max-concurrent-scans", o.max_concurrent_scans,
                 "scans (ranges of more than 64 keys) whose answers are in "
                 "flight at once; the others wait, so that sending bulk "
                 "answers leaves the CPU to writes")
      ->check(CLI::Range(1, 1024));
  app.add_option("--admission-target-ms", o.admission_target_ms,
                 "mean latency of client calls that admission keeps to when "
                 "overloaded, by admitting fewer at once (scans: 5x)")
      ->check(CLI::Range(int64_t{1}, int64_t{60000}));
  app.add_option("--snapshot-every", o.snapshot_every,
                 "entries between log compactions");
  app.add_option("--quiesce-ticks", o.quiesce_ticks,
                 "idle ticks before a raft group stops ticking (0: never)");
  app.add_option("--slow-disk-factor", o.slow_disk_factor,
                 "a leader whose raft log syncs take this many times as long "
                 "as a follower's round trip for an append (for 3 s, and "
                 "over 20 ms) hands its groups to followers until its disk is "
                 "fast again (0: never)")
      ->check(CLI::Range(0.0, 1000.0));
  app.add_option("--crdt-sync-ms", o.crdt_sync_ms,
                 "milliseconds between two CRDT anti-entropy rounds (each "
                 "peer's digests compared with ours)")
      ->check(CLI::Range(50, 3600 * 1000));
  app.add_option("--crdt-cache-mb", o.crdt_cache_mb,
                 "MiB of memory for the values of CRDT rows used lately (an "
                 "update or a merge of such a row reads nothing from disk; "
                 "0: none)")
      ->check(CLI::Range(0, 1 << 20));
  app.add_option("--watch-history", o.watch_history,
                 "revisions of watch history each shard keeps; older ones are "
                 "compacted (0: keep until `kvctl compact`)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
  double session_ttl_s = o.session_ttl_ms / 1000.0;
  app.add_option("--session-ttl", session_ttl_s,
                 "seconds without a write before a client's exactly-once "
                 "session ends (sessions opened through this node)")
      ->check(CLI::Range(1.0, 7 * 24 * 3600.0));
  app.add_option("--tls-ca", o.tls.ca,
                 "PEM CA certificate of the cluster: peers (and clients that "
                 "present a certificate) must have one it issued; with "
                 "--tls-cert and --tls-key, every port speaks TLS")
      ->envname("KVD_TLS_CA");
  app.add_option("--tls-cert", o.tls.cert,
                 "PEM certificate (chain) of this node, for its ports and "
                 "when it dials other nodes; re-read when it changes")
      ->envname("KVD_TLS_CERT");
  app.add_option("--tls-key", o.tls.key, "PEM private key of --tls-cert")
      ->envname("KVD_TLS_KEY");
  app.add_flag("--tls-client-auth", o.tls_client_auth,
               "require clients to present a certificate issued by --tls-ca")
      ->envname("KVD_TLS_CLIENT_AUTH");
  app.add_option("--log-format", log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--log-level", log_level,
                 "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember(
          std::vector<std::string>(std::begin(tally::util::kLogLevels),
                                   std::end(tally::util::kLogLevels))));
  CLI11_PARSE(app, argc, argv);
  o.session_ttl_ms = static_cast<int64_t>(session_ttl_s * 1000);

  if (absl::Status st = tally::util::ConfigureLogging(log_format, log_level);
      !st.ok()) {
    std::cerr << "kvd: " << st.message() << "\n";
    return 2;
  }
  if (!initial_cluster.empty()) {
    auto parsed = tally::kv::server::ParseInitialCluster(initial_cluster);
    if (!parsed.ok()) {
      std::cerr << "kvd: " << parsed.status().message() << "\n";
      return 2;
    }
    o.initial_cluster = *parsed;
  }
  if (o.join.empty() && o.initial_cluster.empty()) {
    // A single-node cluster by default.
    auto id = tally::kv::server::ParseMemberName(o.name);
    if (id.ok()) o.initial_cluster[*id] = o.peer_address;
  }
  o.initial_ranges = absl::StrSplit(initial_ranges, ',', absl::SkipEmpty());

  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  auto server = tally::kv::server::Server::Start(o);
  if (!server.ok()) {
    std::cerr << "kvd: " << server.status().message() << "\n";
    return 1;
  }
  while (g_signal == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  spdlog::info("signal {}: shutting down", static_cast<int>(g_signal));
  (*server)->Shutdown();
  return 0;
}
