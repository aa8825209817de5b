#include "raft/storage.h"

#include "gtest/gtest.h"
#include "raft/test_util.h"

namespace tally::raft {
namespace {

using testing::EntriesWithTerms;

TEST(MemoryStorageTest, EmptyLogHasPlaceholderAtZero) {
  MemoryStorage s;
  EXPECT_EQ(s.FirstIndex(), 1u);
  EXPECT_EQ(s.LastIndex(), 0u);
  EXPECT_EQ(*s.TermAt(0), 0u);
}

TEST(MemoryStorageTest, AppendReplacesSuffix) {
  MemoryStorage s;
  s.Append(EntriesWithTerms({1, 1, 2}));
  s.Append({Entry{3, 2, EntryType::kNormal, "x"}});
  EXPECT_EQ(s.LastIndex(), 2u);
  EXPECT_EQ(*s.TermAt(2), 3u);
  absl::StatusOr<std::vector<Entry>> e = s.Entries(1, 3, UINT64_MAX);
  ASSERT_TRUE(e.ok());
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[1].data, "x");
}

TEST(MemoryStorageTest, EntriesRespectsMaxBytesButReturnsOne) {
  MemoryStorage s;
  s.Append(EntriesWithTerms({1, 1, 1}));
  EXPECT_EQ(s.Entries(1, 4, 0)->size(), 1u);
  EXPECT_EQ(s.Entries(1, 4, 2 * EntrySize(Entry{}))->size(), 2u);
}

TEST(MemoryStorageTest, OutOfBoundsRequestsFail) {
  MemoryStorage s;
  s.Append(EntriesWithTerms({1}));
  EXPECT_TRUE(absl::IsInvalidArgument(s.TermAt(2).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(s.Entries(1, 3, 10).status()));
  EXPECT_TRUE(absl::IsOutOfRange(s.Entries(0, 1, 10).status()));
}

TEST(MemoryStorageTest, AppendLeavingGapIsFatal) {
  MemoryStorage s;
  EXPECT_DEATH(s.Append({Entry{1, 3, EntryType::kNormal, {}}}), "gap");
}

}  // namespace
}  // namespace tally::raft
