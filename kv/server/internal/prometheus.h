#ifndef TALLY_KV_SERVER_INTERNAL_PROMETHEUS_H_
#define TALLY_KV_SERVER_INTERNAL_PROMETHEUS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/types/span.h"

namespace tally::kv::server {

// Appends one histogram's samples in the Prometheus text format: a
// cumulative `_bucket` line per bound (`bounds_ms`, in milliseconds,
// printed in seconds) and +Inf, then `_sum` and `_count`. `counts` holds
// one count per bucket, not cumulative, the last for what is above every
// bound. `labels` is empty or `name="value",...` without braces.
inline void AppendHistogram(std::string* out, const std::string& name,
                            const std::string& labels,
                            absl::Span<const double> bounds_ms,
                            absl::Span<const uint64_t> counts,
                            double sum_seconds, uint64_t count) {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    cumulative += counts[i];
    const std::string le =
        i < bounds_ms.size() ? absl::StrCat(bounds_ms[i] / 1000) : "+Inf";
    absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"", le, "\"} ",
                    cumulative, "\n");
  }
  const std::string braces =
      labels.empty() ? "" : absl::StrCat("{", labels, "}");
  absl::StrAppend(out, name, "_sum", braces, " ", sum_seconds, "\n", name,
                  "_count", braces, " ", count, "\n");
}

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_PROMETHEUS_H_
