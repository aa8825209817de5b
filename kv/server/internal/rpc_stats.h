#ifndef TALLY_KV_SERVER_INTERNAL_RPC_STATS_H_
#define TALLY_KV_SERVER_INTERNAL_RPC_STATS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tally::kv::server {

// Upper bounds (ms) of the call latency buckets; one more counts the rest.
inline constexpr std::array<double, 11> kRpcBucketsMs = {
    0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000, 5000};

// The client-facing calls a node answered: by method and status code, with
// their latency from arrival to answer.
//
// Thread safety: thread-safe.
class RpcStats {
 public:
  // `code` is a gRPC status code.
  void Record(const std::string& method, int code, double seconds);
  // Prometheus text: tally_rpc_total{method,code} and the histogram
  // tally_rpc_seconds{method}.
  std::string Render() const;

 private:
  struct Method {
    std::map<int, uint64_t> by_code;
    std::array<uint64_t, kRpcBucketsMs.size() + 1> buckets{};
    double seconds = 0;
    uint64_t count = 0;
  };
  mutable absl::Mutex mu_;
  std::map<std::string, Method> methods_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_RPC_STATS_H_
