#include "util/crc32c.h"

#include <string>

#include "gtest/gtest.h"

namespace tally::util {
namespace {

// Check values from RFC 3720, appendix B.4 (iSCSI uses CRC-32C).
TEST(Crc32cTest, MatchesTheRfc3720CheckValues) {
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(Crc32c(std::string(32, '\xff')), 0x62a8ab43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46dd794eu);
  EXPECT_EQ(Crc32c("123456789"), 0xe3069283u);
}

TEST(Crc32cTest, ExtendingEqualsChecksummingTheWhole) {
  const std::string a = "the raft log record header";
  const std::string b = " and its payload, of an odd length";
  EXPECT_EQ(Crc32cExtend(Crc32c(a), b), Crc32c(a + b));
  EXPECT_NE(Crc32c(a + b), Crc32c(b + a));
}

}  // namespace
}  // namespace tally::util
