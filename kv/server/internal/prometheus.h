#ifndef TALLY_KV_SERVER_INTERNAL_PROMETHEUS_H_
#define TALLY_KV_SERVER_INTERNAL_PROMETHEUS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace tally::kv::server {

// Appends one histogram's samples in the Prometheus text format: a
// cumulative `_bucket` line per bound (`le`, as printed) and +Inf, then
// `_sum` and `_count`. `counts` holds one count per bucket, not
// cumulative, the last for what is above every bound. `labels` is empty or
// `name="value",...` without braces.
inline void AppendBuckets(std::string* out, const std::string& name,
                          const std::string& labels,
                          absl::Span<const std::string> le,
                          absl::Span<const uint64_t> counts, double sum,
                          uint64_t count) {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"",
                    i < le.size() ? le[i] : "+Inf", "\"} ", cumulative, "\n");
  }
  const std::string braces =
      labels.empty() ? "" : absl::StrCat("{", labels, "}");
  absl::StrAppend(out, name, "_sum", braces, " ", sum, "\n", name, "_count",
                  braces, " ", count, "\n");
}

// A latency histogram: bounds in milliseconds, printed in seconds.
inline void AppendHistogram(std::string* out, const std::string& name,
                            const std::string& labels,
                            absl::Span<const double> bounds_ms,
                            absl::Span<const uint64_t> counts,
                            double sum_seconds, uint64_t count) {
  std::vector<std::string> le;
  for (double b : bounds_ms) le.push_back(absl::StrCat(b / 1000));
  AppendBuckets(out, name, labels, le, counts, sum_seconds, count);
}

// A histogram of sizes (entries, bytes): bounds printed as they are.
inline void AppendSizeHistogram(std::string* out, const std::string& name,
                                absl::Span<const uint64_t> bounds,
                                absl::Span<const uint64_t> counts,
                                uint64_t sum) {
  std::vector<std::string> le;
  uint64_t count = 0;
  for (uint64_t b : bounds) le.push_back(absl::StrCat(b));
  for (uint64_t c : counts) count += c;
  AppendBuckets(out, name, "", le, counts, static_cast<double>(sum), count);
}

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_PROMETHEUS_H_
