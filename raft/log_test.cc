#include "raft/log.h"

#include "gtest/gtest.h"
#include "raft/test_util.h"

namespace tally::raft {
namespace {

using testing::EntriesWithTerms;

Entry E(Index index, Term term) {
  return Entry{term, index, EntryType::kNormal, {}};
}

std::vector<Term> Terms(const RaftLog& log) {
  std::vector<Term> out;
  for (Index i = log.FirstIndex(); i <= log.LastIndex(); ++i) {
    out.push_back(*log.TermAt(i));
  }
  return out;
}

class RaftLogTest : public ::testing::Test {
 protected:
  RaftLogTest() { storage_.Append(EntriesWithTerms({1, 2, 3})); }
  MemoryStorage storage_;
};

TEST_F(RaftLogTest, StartsAfterStorage) {
  RaftLog log(&storage_);
  EXPECT_EQ(log.FirstIndex(), 1u);
  EXPECT_EQ(log.LastIndex(), 3u);
  EXPECT_EQ(log.LastTerm(), 3u);
  EXPECT_EQ(log.committed(), 0u);
  EXPECT_EQ(log.TermAt(0), 0u);
  EXPECT_EQ(log.TermAt(4), std::nullopt);
}

TEST_F(RaftLogTest, FindConflict) {
  RaftLog log(&storage_);
  EXPECT_EQ(log.FindConflict({}), 0u);
  EXPECT_EQ(log.FindConflict({E(1, 1), E(2, 2), E(3, 3)}), 0u);
  EXPECT_EQ(log.FindConflict({E(2, 2), E(3, 3), E(4, 4)}), 4u);
  EXPECT_EQ(log.FindConflict({E(2, 2), E(3, 4)}), 3u);
  EXPECT_EQ(log.FindConflict({E(1, 4)}), 1u);
}

TEST_F(RaftLogTest, FindConflictByTerm) {
  storage_.Append({E(4, 3), E(5, 5), E(6, 5)});
  RaftLog log(&storage_);  // terms 1 2 3 3 5 5
  EXPECT_EQ(log.FindConflictByTerm(6, 4), 4u);
  EXPECT_EQ(log.FindConflictByTerm(6, 5), 6u);
  EXPECT_EQ(log.FindConflictByTerm(6, 1), 1u);
  EXPECT_EQ(log.FindConflictByTerm(6, 0), 0u);
  EXPECT_EQ(log.FindConflictByTerm(100, 2), 2u);  // clamps to last index
}

TEST_F(RaftLogTest, MaybeAppendTruncatesConflictsOnly) {
  RaftLog log(&storage_);
  // Mismatching previous entry: nothing happens.
  EXPECT_EQ(log.MaybeAppend(3, 2, 3, {E(4, 4)}), std::nullopt);
  EXPECT_EQ(log.committed(), 0u);
  // Entries already present are not truncated (a stale, shorter append).
  EXPECT_EQ(log.MaybeAppend(1, 1, 1, {E(2, 2)}), 2u);
  EXPECT_EQ(Terms(log), (std::vector<Term>{1, 2, 3}));
  EXPECT_EQ(log.committed(), 1u);
  // A conflict replaces the suffix; commit is capped by the last new index.
  EXPECT_EQ(log.MaybeAppend(1, 1, 10, {E(2, 4)}), 2u);
  EXPECT_EQ(Terms(log), (std::vector<Term>{1, 4}));
  EXPECT_EQ(log.committed(), 2u);
}

TEST_F(RaftLogTest, UnstableEntriesBecomeStable) {
  RaftLog log(&storage_);
  log.Append({E(4, 4), E(5, 4)});
  ASSERT_EQ(log.UnstableEntries().size(), 2u);
  // An acknowledgement for an entry that was since replaced is ignored.
  log.StableTo(4, 3);
  EXPECT_EQ(log.UnstableEntries().size(), 2u);
  storage_.Append({E(4, 4)});
  log.StableTo(4, 4);
  ASSERT_EQ(log.UnstableEntries().size(), 1u);
  EXPECT_EQ(log.UnstableEntries()[0].index, 5u);
  EXPECT_EQ(log.LastIndex(), 5u);
}

TEST_F(RaftLogTest, AppendReplacingStableEntriesGoesToUnstable) {
  RaftLog log(&storage_);
  log.Append({E(2, 5)});
  EXPECT_EQ(Terms(log), (std::vector<Term>{1, 5}));
  EXPECT_EQ(log.UnstableEntries().front().index, 2u);
}

TEST_F(RaftLogTest, SliceSpansStableAndUnstableWithinMaxBytes) {
  RaftLog log(&storage_);
  log.Append({E(4, 4), E(5, 4)});
  EXPECT_EQ(log.Slice(2, 6, UINT64_MAX).size(), 4u);
  EXPECT_EQ(log.Slice(2, 6, 0).size(), 1u);  // at least one
  EXPECT_EQ(log.Slice(2, 6, 2 * EntrySize(E(0, 0))).size(), 2u);
  EXPECT_EQ(log.Slice(4, 4, UINT64_MAX).size(), 0u);
}

TEST_F(RaftLogTest, IsUpToDate) {
  RaftLog log(&storage_);  // last 3/3
  EXPECT_TRUE(log.IsUpToDate(3, 3));
  EXPECT_TRUE(log.IsUpToDate(4, 3));
  EXPECT_TRUE(log.IsUpToDate(1, 4));
  EXPECT_FALSE(log.IsUpToDate(2, 3));
  EXPECT_FALSE(log.IsUpToDate(9, 2));
}

TEST_F(RaftLogTest, CommittedEntriesAreHandedOutOnce) {
  RaftLog log(&storage_);
  log.CommitTo(2);
  std::vector<Entry> next = log.NextCommittedEntries(UINT64_MAX);
  ASSERT_EQ(next.size(), 2u);
  log.AppliedTo(2);
  EXPECT_FALSE(log.HasNextCommittedEntries());
  log.CommitTo(1);  // commit never goes back
  EXPECT_EQ(log.committed(), 2u);
}

TEST_F(RaftLogTest, CommitPastTheEndIsFatal) {
  RaftLog log(&storage_);
  EXPECT_DEATH(log.CommitTo(4), "commit index past the end");
}

TEST_F(RaftLogTest, OverwritingCommittedEntryIsFatal) {
  RaftLog log(&storage_);
  log.CommitTo(2);
  EXPECT_DEATH(log.Append({E(2, 9)}), "overwrite a committed entry");
}

}  // namespace
}  // namespace tally::raft
