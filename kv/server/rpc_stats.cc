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

void WriteStats::Proposed() {
  absl::MutexLock l(&mu_);
  ++pending_;
}

void WriteStats::Done(bool applied, double seconds) {
  size_t b = 0;
  while (b < kRpcBucketsMs.size() && seconds * 1000 > kRpcBucketsMs[b]) ++b;
  absl::MutexLock l(&mu_);
  --pending_;
  if (!applied) {
    ++failed_;
    return;
  }
  ++buckets_[b];
  seconds_ += seconds;
  ++applied_;
}

std::string WriteStats::Render() const {
  absl::MutexLock l(&mu_);
  std::string out = absl::StrCat(
      "# HELP tally_proposals_pending Writes proposed here that wait for "
      "their entry to apply.\n# TYPE tally_proposals_pending gauge\n"
      "tally_proposals_pending ",
      pending_,
      "\n# HELP tally_proposals_failed_total Writes proposed here that ended "
      "without their entry applied (overload, lost leadership, outcome "
      "unknown).\n# TYPE tally_proposals_failed_total counter\n"
      "tally_proposals_failed_total ",
      failed_,
      "\n# HELP tally_commit_seconds Writes proposed here: from proposal to "
      "applied (committed by a quorum and applied here).\n"
      "# TYPE tally_commit_seconds histogram\n");
  AppendHistogram(&out, "tally_commit_seconds", "", kRpcBucketsMs, buckets_,
                  seconds_, applied_);
  return out;
}

}  // namespace tally::kv::server
