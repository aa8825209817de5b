#include "kv/storage/log_store.h"

#include <filesystem>

#include "gtest/gtest.h"

namespace tally::kv::storage {
namespace {

using raft::Entry;
using raft::host::GroupWrite;

std::string TempDir(const char* name) {
  auto p = std::filesystem::temp_directory_path() /
           (std::string(name) + "-" + std::to_string(getpid()));
  std::filesystem::remove_all(p);
  return p.string();
}

std::vector<Entry> Entries(raft::Index from, raft::Index to, raft::Term t) {
  std::vector<Entry> out;
  for (raft::Index i = from; i <= to; ++i) {
    out.push_back({t, i, raft::EntryType::kNormal, "e" + std::to_string(i)});
  }
  return out;
}

TEST(LogStoreTest, ReloadsWhatWasWrittenPerGroup) {
  const std::string dir = TempDir("tally-log");
  {
    auto s = LogStore::Open(dir);
    ASSERT_TRUE(s.ok()) << s.status();
    ASSERT_TRUE(
        (*s)->Write({{1, raft::HardState{2, 1, 3}, {}, Entries(1, 5, 1)},
                     {2, raft::HardState{1, 0, 0}, {}, Entries(1, 2, 1)}},
                    true)
            .ok());
    // A new leader overwrites 4..5 with 4 only: 5 must go.
    ASSERT_TRUE((*s)->Write({{1, {}, {}, Entries(4, 4, 2)}}, true).ok());
  }
  auto s = LogStore::Open(dir);
  ASSERT_TRUE(s.ok());
  auto loaded = (*s)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const auto& g1 = loaded->at(1);
  EXPECT_EQ(g1.hard_state, (raft::HardState{2, 1, 3}));
  ASSERT_EQ(g1.entries.size(), 4u);
  EXPECT_EQ(g1.entries.back().term, 2u);
  EXPECT_EQ(loaded->at(2).entries.size(), 2u);
  std::filesystem::remove_all(dir);
}

TEST(LogStoreTest, SnapshotAndCompactionDropCoveredEntries) {
  const std::string dir = TempDir("tally-log-snap");
  auto s = LogStore::Open(dir);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE((*s)->Write({{1, {}, {}, Entries(1, 10, 1)}}, true).ok());
  raft::Snapshot snap;
  snap.metadata = {.index = 8, .term = 1};
  snap.metadata.conf_state.voters = {1, 2, 3};
  GroupWrite w{1};
  w.compact = snap;
  w.compact_to = 5;
  ASSERT_TRUE((*s)->Write({w}, true).ok());
  auto loaded = (*s)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->at(1).snapshot, snap);
  ASSERT_EQ(loaded->at(1).entries.size(), 2u);  // 9 and 10
  EXPECT_EQ(loaded->at(1).entries.front().index, 9u);
  // A snapshot from a leader replaces the whole log.
  GroupWrite install{1};
  snap.metadata.index = 20;
  install.snapshot = snap;
  ASSERT_TRUE((*s)->Write({install}, true).ok());
  ASSERT_TRUE((*s)->Write({{1, {}, {}, Entries(21, 21, 1)}}, true).ok());
  loaded = (*s)->Load();
  ASSERT_EQ(loaded->at(1).entries.size(), 1u);
  EXPECT_EQ(loaded->at(1).entries[0].index, 21u);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tally::kv::storage
