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

// The writes this node proposed (Node::WriteAsync): how many wait for
// their entry to be applied, how many ended without it (overload, a lost
// leadership, an outcome unknown), and the time from proposal to applied.
//
// Thread safety: thread-safe.
class WriteStats {
 public:
  void Proposed();
  // `applied`: the entry was committed and applied (whatever its result).
  void Done(bool applied, double seconds);
  // Prometheus text: tally_proposals_pending, tally_proposals_failed_total
  // and the histogram tally_commit_seconds.
  std::string Render() const;

 private:
  mutable absl::Mutex mu_;
  uint64_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::array<uint64_t, kRpcBucketsMs.size() + 1> buckets_
      ABSL_GUARDED_BY(mu_){};
  double seconds_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_RPC_STATS_H_
