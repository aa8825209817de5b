#include "util/random.h"

#include <set>

#include "gtest/gtest.h"

namespace tally::util {
namespace {

TEST(SeededRandomTest, SameSeedSameSequence) {
  SeededRandom a(42), b(42), c(43);
  bool differs = false;
  for (int i = 0; i < 100; ++i) {
    uint64_t x = a.Next();
    EXPECT_EQ(x, b.Next());
    differs |= x != c.Next();
  }
  EXPECT_TRUE(differs);
}

TEST(SeededRandomTest, UniformStaysInRangeAndCoversIt) {
  SeededRandom r(7);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    uint64_t x = r.Uniform(10);
    ASSERT_LT(x, 10u);
    seen.insert(x);
  }
  EXPECT_EQ(seen.size(), 10u);
}

TEST(SeededRandomTest, ChanceMatchesProbabilityRoughly) {
  SeededRandom r(1);
  int hits = 0;
  for (int i = 0; i < 10000; ++i) hits += r.Chance(0.25);
  EXPECT_GT(hits, 2200);
  EXPECT_LT(hits, 2800);
}

}  // namespace
}  // namespace tally::util
