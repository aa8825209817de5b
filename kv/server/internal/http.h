#ifndef TALLY_KV_SERVER_INTERNAL_HTTP_H_
#define TALLY_KV_SERVER_INTERNAL_HTTP_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/host/node_host.h"
#include "rpc/grpc_transport.h"

namespace httplib {
class Server;
}

namespace tally::kv::server {

// What a node's HTTP endpoint serves (kvd --listen-http), for probes and
// Prometheus:
//   GET /health, /ready  200 "SERVING", or 503 "NOT_SERVING: <why>" (health.h)
//   GET /live            200 while the process serves
//   GET /metrics         the Prometheus text format (RenderMetrics, the
//                        peers: RenderPeerMetrics, then the client calls:
//                        RpcStats)
// What the metadata group holds, as this node's replica has applied it.
struct ModuleStats {
  size_t leases = 0;
  size_t locks_held = 0;
  size_t lock_waiters = 0;
};

class HttpEndpoint {
 public:
  // Listens on `address` (host:port) and serves `host`'s state, what
  // `modules` reports (nullopt: no replica of the metadata group here yet),
  // the raft transport's per-peer state (`peers`) and the node's own
  // metrics, rendered by `node` (client calls, writes, storage, watches).
  // `host` must outlive the endpoint.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(
      const std::string& address, raft::host::NodeHost* host,
      std::function<std::optional<ModuleStats>()> modules,
      std::function<std::vector<rpc::PeerStats>()> peers,
      std::function<std::string()> node);
  // Stops serving and joins.
  ~HttpEndpoint();
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

 private:
  HttpEndpoint();
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
};

// The metrics, in the Prometheus text format: health, each group's raft
// state as this node sees it, the host's counters and raft log write
// latency, leases and locks (if `modules`), and the process's CPU, memory
// and open files.
std::string RenderMetrics(
    const std::vector<raft::host::GroupInfo>& groups, bool serving,
    const raft::host::HostStats& stats,
    const std::optional<ModuleStats>& modules = std::nullopt);

// The bytes in `data_dir` (raft log, state machine, everything), and the
// watch streams open.
std::string RenderNodeMetrics(const std::string& data_dir, size_t watchers);

// Per peer node: the raft messages queued, sent and dropped, the streams
// opened, and the last ping's round trip.
std::string RenderPeerMetrics(const std::vector<rpc::PeerStats>& peers);

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_HTTP_H_
