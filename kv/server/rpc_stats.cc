#include "kv/server/internal/rpc_stats.h"

#include "absl/strings/str_cat.h"
#include "grpcpp/support/status.h"

namespace tally::kv::server {

namespace {

const char* CodeName(int code) {
  switch (static_cast<grpc::StatusCode>(code)) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    default:
      return "OTHER";
  }
}

}  // namespace

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
    // Codes folded into OTHER are summed under it.
    std::map<std::string, uint64_t> codes;
    for (const auto& [code, n] : m.by_code) codes[CodeName(code)] += n;
    for (const auto& [code, n] : codes) {
      absl::StrAppend(&out, "tally_rpc_total{method=\"", name, "\",code=\"",
                      code, "\"} ", n, "\n");
    }
  }
  absl::StrAppend(&out,
                  "# HELP tally_rpc_seconds Client call latency, from arrival "
                  "to answer.\n# TYPE tally_rpc_seconds histogram\n");
  for (const auto& [name, m] : methods_) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < m.buckets.size(); ++i) {
      cumulative += m.buckets[i];
      const std::string le = i < kRpcBucketsMs.size()
                                 ? absl::StrCat(kRpcBucketsMs[i] / 1000)
                                 : "+Inf";
      absl::StrAppend(&out, "tally_rpc_seconds_bucket{method=\"", name,
                      "\",le=\"", le, "\"} ", cumulative, "\n");
    }
    absl::StrAppend(&out, "tally_rpc_seconds_sum{method=\"", name, "\"} ",
                    m.seconds, "\ntally_rpc_seconds_count{method=\"", name,
                    "\"} ", m.count, "\n");
  }
  return out;
}

}  // namespace tally::kv::server
