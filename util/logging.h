#ifndef TALLY_UTIL_LOGGING_H_
#define TALLY_UTIL_LOGGING_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "spdlog/common.h"

namespace tally::util {

// The log levels a user may name, most verbose first.
inline constexpr std::string_view kLogLevels[] = {"trace", "debug", "info",
                                                  "warn",  "error", "off"};

// Makes the process's default logger write to `sink` (stderr when null) at
// `level`, as text lines or as JSON lines ({"time","level","msg"}; every
// message escaped, invalid UTF-8 replaced, so each line parses). An unknown
// format or level is INVALID_ARGUMENT, and nothing changes.
absl::Status ConfigureLogging(const std::string& format,
                              const std::string& level,
                              spdlog::sink_ptr sink = nullptr);

// `text` as a JSON string body (no quotes around it).
std::string JsonEscape(std::string_view text);

}  // namespace tally::util

#endif  // TALLY_UTIL_LOGGING_H_
