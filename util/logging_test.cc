#include "util/logging.h"

#include <memory>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"

namespace tally::util {
namespace {

// Issue: --log-format json wrote the message into the line as it was, so a
// message with a quote or a newline made a line that was not JSON.
TEST(LoggingTest, EveryJsonLineParses) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  ASSERT_TRUE(ConfigureLogging("json", "info", sink).ok());
  const std::string messages[] = {
      "plain",
      R"(a "quoted" word and a \ backslash)",
      "two\nlines\r\tand a tab",
      std::string("control \x01 and delete \x7f"),
      "utf-8: gr\xc3\xbc\xc3\x9f dich, \xe2\x82\xac",
      "not utf-8: \xff\xfe and a cut sequence \xe2\x82",
  };
  for (const std::string& m : messages) spdlog::info("{}", m);
  spdlog::default_logger()->flush();
  std::istringstream lines(out.str());
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << line;
    EXPECT_EQ(j.at("level"), "info");
    if (n < 5) {
      EXPECT_EQ(j.at("msg").get<std::string>(), messages[n]) << line;
    }
    ++n;
  }
  EXPECT_EQ(n, 6) << "a message was split over lines";
}

// Issue: an unknown --log-level turned logging off without a word.
TEST(LoggingTest, UnknownLevelOrFormatIsRefused) {
  absl::Status st = ConfigureLogging("text", "verbose");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("verbose"), std::string::npos) << st;
  EXPECT_EQ(ConfigureLogging("yaml", "info").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ConfigureLogging("text", "warn").ok());
  EXPECT_EQ(spdlog::default_logger()->level(), spdlog::level::warn);
}

}  // namespace
}  // namespace tally::util
