#ifndef TALLY_KV_SERVER_INTERNAL_HTTP_H_
#define TALLY_KV_SERVER_INTERNAL_HTTP_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/server/internal/rpc_stats.h"
#include "raft/host/node_host.h"

namespace httplib {
class Server;
}

namespace tally::kv::server {

// What a node's HTTP endpoint serves (kvd --listen-http), for probes and
// Prometheus:
//   GET /health, /ready  200 "SERVING", or 503 "NOT_SERVING: <why>" (health.h)
//   GET /live            200 while the process serves
//   GET /metrics         the Prometheus text format (RenderMetrics, then
//                        the client calls: RpcStats)
class HttpEndpoint {
 public:
  // Listens on `address` (host:port) and serves `host`'s state and the
  // client calls counted in `rpcs`. Both must outlive the endpoint.
  static absl::StatusOr<std::unique_ptr<HttpEndpoint>> Start(
      const std::string& address, raft::host::NodeHost* host,
      const RpcStats* rpcs);
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
// latency, and the process's CPU, memory and open files.
std::string RenderMetrics(const std::vector<raft::host::GroupInfo>& groups,
                          bool serving, const raft::host::HostStats& stats);

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_HTTP_H_
