#ifndef TALLY_CMD_KVCTL_DURATION_H_
#define TALLY_CMD_KVCTL_DURATION_H_

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tally::kvctl {

// "500ms", "10s", "2m", "1h"; a bare number is seconds.
inline absl::StatusOr<std::chrono::milliseconds> ParseDuration(
    const std::string& s) {
  static const std::pair<const char*, int64_t> kUnits[] = {
      {"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}};
  for (const auto& [unit, ms] : kUnits) {
    if (s.size() > strlen(unit) && s.ends_with(unit)) {
      int64_t n = 0;
      if (absl::SimpleAtoi(s.substr(0, s.size() - strlen(unit)), &n) &&
          n >= 0) {
        return std::chrono::milliseconds(n * ms);
      }
    }
  }
  int64_t n = 0;
  if (absl::SimpleAtoi(s, &n) && n >= 0) {
    return std::chrono::milliseconds(n * 1000);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "\"", s,
      "\" is not a duration (e.g. 500ms, 10s, 2m; a bare number is "
      "seconds)"));
}

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_DURATION_H_
