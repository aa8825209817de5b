#include "kv/crdt_table/entry_cache.h"

#include <optional>
#include <string>

#include "gtest/gtest.h"

namespace tally::kv {
namespace {

std::optional<std::optional<std::string>> Lookup(EntryCache& cache,
                                                 const std::string& key) {
  std::optional<std::string> value;
  if (!cache.Find(key, &value)) return std::nullopt;
  return value;
}

TEST(EntryCacheTest, GivesBackWhatWasPutAbsentKeysIncluded) {
  EntryCache cache(1 << 20);
  EXPECT_EQ(Lookup(cache, "a"), std::nullopt);
  cache.Put("a", "1");
  cache.Put("gone", std::nullopt);
  EXPECT_EQ(Lookup(cache, "a"), std::optional<std::string>("1"));
  // Cached as absent: found, with no value.
  std::optional<std::optional<std::string>> gone = Lookup(cache, "gone");
  ASSERT_TRUE(gone.has_value());
  EXPECT_FALSE(gone->has_value());
  cache.Put("a", "2");
  EXPECT_EQ(Lookup(cache, "a"), std::optional<std::string>("2"));
  EXPECT_EQ(cache.entries(), 2u);
  cache.Clear();
  EXPECT_EQ(Lookup(cache, "gone"), std::nullopt);
  EXPECT_EQ(cache.bytes(), 0u);
  EntryCache none(0);
  none.Put("a", "1");
  EXPECT_EQ(Lookup(none, "a"), std::nullopt);
}

TEST(EntryCacheTest, KeepsWithinItsBudgetWhatWasUsedLately) {
  constexpr size_t kBudget = 64 << 10;
  EntryCache cache(kBudget);
  const std::string value(100, 'v');
  cache.Put("kept", value);
  for (int i = 0; i < 10'000; ++i) {
    cache.Put("k" + std::to_string(i), value);
    // Used all along: never dropped.
    ASSERT_EQ(Lookup(cache, "kept"), std::optional<std::string>(value)) << i;
    ASSERT_LE(cache.bytes(), kBudget);
  }
  // The newest are there, the oldest were dropped.
  EXPECT_EQ(Lookup(cache, "k9999"), std::optional<std::string>(value));
  EXPECT_EQ(Lookup(cache, "k0"), std::nullopt);
  EXPECT_GT(cache.entries(), 100u);
}

TEST(EntryCacheTest, AKeyPutAgainIsNeverFoundWithItsOlderValue) {
  EntryCache cache(4 << 10);
  const std::string filler(50, 'f');
  for (int round = 0; round < 50; ++round) {
    cache.Put("a", "old");
    // From none to about three generations of others: by the round, the
    // older "a" is young, old or dropped when the newer comes.
    for (int i = 0; i < round; ++i) cache.Put("f" + std::to_string(i), filler);
    cache.Put("a", "new");
    for (int i = 0; i < 100; ++i) {
      ASSERT_EQ(Lookup(cache, "a"), std::optional<std::string>("new"))
          << round << " " << i;
      cache.Put("g" + std::to_string(i), filler);
    }
  }
}

}  // namespace
}  // namespace tally::kv
