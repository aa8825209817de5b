#include "kv/server/internal/rpc_stats.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kv/server/internal/prometheus.h"

namespace tally::kv::server {

void RpcStats::Record(const std::string& method, int code, double seconds) {
  size_t b = 0;
  while (b < kRpcBucketsMs.size() && seconds * 1000 > kRpcBucketsMs[b]) ++b;
  absl::MutexLock l(&mu_);
  Method& m = methods_[method];
  ++m.by_code[code];
  ++m.buckets[b];
  m.seconds += seconds;
  ++m.count;
}

std::string RpcStats::Render() const {
  std::string out =
      "# HELP tally_rpc_total Client calls answered, by method and code.\n"
      "# TYPE tally_rpc_total counter\n";
  absl::MutexLock l(&mu_);
  for (const auto& [name, m] : methods_) {
    for (const auto& [code, n] : m.by_code) {
      // gRPC's codes are absl's, value for value.
      absl::StrAppend(
          &out, "tally_rpc_total{method=\"", name, "\",code=\"",
          absl::StatusCodeToString(static_cast<absl::StatusCode>(code)), "\"} ",
          n, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP tally_rpc_seconds Client call latency, from arrival "
                  "to answer.\n# TYPE tally_rpc_seconds histogram\n");
  for (const auto& [name, m] : methods_) {
    AppendHistogram(&out, "tally_rpc_seconds",
                    absl::StrCat("method=\"", name, "\""), kRpcBucketsMs,
                    m.buckets, m.seconds, m.count);
  }
  return out;
}

}  // namespace tally::kv::server
