#ifndef TALLY_KV_SERVER_SERVER_H_
#define TALLY_KV_SERVER_SERVER_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/types.h"
#include "rpc/tls.h"

namespace tally::kv::server {

struct ServerOptions {
  // "n<id>", e.g. n1.
  std::string name;
  std::string data_dir;
  // host:port for clients and for peers.
  std::string client_address;
  // The client address other nodes name in redirects, when clients reach
  // this node at another address than it listens on (a container's
  // published port). Empty: client_address.
  std::string advertise_client_address;
  std::string peer_address;
  // host:port for the HTTP endpoint (health, readiness, liveness, Prometheus
  // metrics; internal/http.h). Empty: none.
  std::string http_address;
  // Bootstrap: every member's name and peer address, the same on every
  // node of a new cluster. Ignored once the data dir is initialised, except
  // that it must describe the same cluster.
  std::map<raft::NodeId, std::string> initial_cluster;
  // Split points of the initial ranges: "m,t" makes [,m) [m,t) [t,).
  std::vector<std::string> initial_ranges;
  // Mixed into the cluster id (a hash of the initial cluster and ranges), so
  // that two clusters bootstrapped from the same manifest get different ids
  // and refuse each other's nodes. Empty: none.
  std::string initial_cluster_token;
  // Join an existing cluster through this member's client address instead
  // of bootstrapping (the member must have been added as a learner first).
  std::string join;
  int tick_ms = 50;
  int election_tick = 10;
  size_t max_key_bytes = 4096;
  size_t max_value_bytes = 1 << 20;
  // A transaction's compares, and each of its branches, hold at most this
  // many operations; the keys and values its puts carry (both branches) at
  // most this many bytes. One transaction is one raft entry, replicated and
  // applied whole: these keep any one of them small.
  size_t max_txn_ops = 1000;
  size_t max_txn_bytes = 4 << 20;
  // Client calls admitted and not yet answered, per class, at most
  // (admission.h): writes, and as many again for releases of locks and
  // leases; reads, and as many scans. Beyond it a call is refused at once
  // with RESOURCE_EXHAUSTED. The bounds shrink below these to keep the
  // calls' mean latency near admission_target_ms (scans: 5x).
  size_t max_inflight_writes = 1024;
  size_t max_inflight_reads = 4096;
  int64_t admission_target_ms = 200;
  // Scans whose answers are in flight at once (scan_gate.h); the others wait
  // on the scan threads, so that sending bulk answers does not take the CPU
  // from writes.
  int max_concurrent_scans = 1;
  uint64_t snapshot_every = 10000;
  // Idle ticks before a group goes quiet (0: never).
  int quiesce_ticks = 20;
  // A leader whose raft log syncs take this many times a follower's round
  // trip hands its groups off (raft::host::HostOptions; 0: never).
  double slow_disk_factor = 4;
  // Sessions opened through this node end after this long without a write
  // (log time; see rpc::OpenSessionResponse).
  int64_t session_ttl_ms = 10 * 60 * 1000;
  // CRDT anti-entropy: each peer's digests are compared this often.
  int crdt_sync_ms = 1000;
  // Memory for the CRDT replica's values of keys used lately, in MiB.
  int crdt_cache_mb = 32;
  // Revisions of watch history each shard keeps (0: until compacted by
  // request).
  int64_t watch_history = 100'000;
  // TLS on both ports and to other nodes (rpc/tls.h); empty: plaintext.
  rpc::TlsFiles tls;
  // Clients must present a certificate from tls.ca.
  bool tls_client_auth = false;
};

// "n3" -> 3. INVALID_ARGUMENT otherwise.
absl::StatusOr<raft::NodeId> ParseMemberName(const std::string& name);
// "n1=host:port,n2=host:port" -> {1: host:port, ...}.
absl::StatusOr<std::map<raft::NodeId, std::string>> ParseInitialCluster(
    const std::string& spec);

// A kvd node: storage, raft host, transport and gRPC services.
class Server {
 public:
  virtual ~Server() = default;
  // Opens or initialises the data dir and starts serving. Errors name what
  // is wrong (another cluster's data dir, a port in use, bad options).
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options);
  // Stops accepting requests, finishes those in flight, stops raft.
  virtual void Shutdown() = 0;
  virtual std::string cluster_id() const = 0;
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_SERVER_H_
