#include "util/logging.h"

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace tally::util {

namespace {

// The length of the valid UTF-8 sequence at the start of `s`, 0 if none.
size_t Utf8Length(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char c = b(0);
  size_t n = c < 0x80           ? 1
             : (c >> 5) == 0x6  ? 2
             : (c >> 4) == 0xe  ? 3
             : (c >> 3) == 0x1e ? 4
                                : 0;
  if (n == 0 || n > s.size()) return 0;
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) >> 6) != 0x2) return 0;
  }
  return n;
}

// %* in a pattern: the message, escaped for a JSON string.
class JsonMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const std::string escaped =
        JsonEscape(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonMessage>();
  }
};

}  // namespace

std::string JsonEscape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  while (!text.empty()) {
    const unsigned char c = static_cast<unsigned char>(text[0]);
    const size_t n = Utf8Length(text);
    if (n == 0) {
      out += "\\ufffd";  // not UTF-8: the replacement character
      text.remove_prefix(1);
      continue;
    }
    if (n > 1) {
      out.append(text.substr(0, n));
    } else if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppend(&out, "\\u00", absl::Hex(c, absl::kZeroPad2));
    } else {
      out += static_cast<char>(c);
    }
    text.remove_prefix(n);
  }
  return out;
}

absl::Status ConfigureLogging(const std::string& format,
                              const std::string& level, spdlog::sink_ptr sink) {
  if (std::find(std::begin(kLogLevels), std::end(kLogLevels), level) ==
      std::end(kLogLevels)) {
    std::string known;
    for (std::string_view l : kLogLevels) {
      absl::StrAppend(&known, known.empty() ? "" : ", ", std::string(l));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log level \"", level, "\"; use one of: ", known));
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  if (format == "json") {
    formatter->add_flag<JsonMessage>('*').set_pattern(
        R"({"time":"%Y-%m-%dT%H:%M:%S.%e%z","level":"%l","msg":"%*"})");
  } else if (format == "text") {
    formatter->set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v");
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown log format \"", format, "\"; use text or json"));
  }
  if (!sink) sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  sink->set_formatter(std::move(formatter));
  auto logger = std::make_shared<spdlog::logger>("kvd", std::move(sink));
  logger->set_level(spdlog::level::from_str(level));
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace tally::util
