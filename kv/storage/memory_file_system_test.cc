#include "kv/storage/memory_file_system.h"

#include "gtest/gtest.h"
#include "util/random.h"

namespace tally::kv::storage {
namespace {

std::unique_ptr<WritableFile> Create(MemoryFileSystem& fs,
                                     const std::string& path) {
  auto f = fs.OpenAt(path, 0, 0);
  EXPECT_TRUE(f.ok());
  return std::move(*f);
}

TEST(MemoryFileSystemTest, ACrashKeepsWhatWasSyncedAndNamed) {
  MemoryFileSystem fs;
  {
    auto a = Create(fs, "/d/a");
    ASSERT_TRUE(a->Append("synced").ok());
    ASSERT_TRUE(a->Sync().ok());
    ASSERT_TRUE(fs.SyncDir("/d").ok());
    ASSERT_TRUE(a->Append(" and not").ok());
    auto b = Create(fs, "/d/b");  // its directory never synced after
    ASSERT_TRUE(b->Append("x").ok());
    ASSERT_TRUE(b->Sync().ok());
  }
  EXPECT_EQ(*fs.Read("/d/a"), "synced and not");
  fs.Crash();
  EXPECT_EQ(*fs.Read("/d/a"), "synced");
  EXPECT_FALSE(fs.Read("/d/b").ok());
  EXPECT_EQ(fs.List("/d")->size(), 1u);
}

TEST(MemoryFileSystemTest, ATornCrashKeepsAPrefixOfTheUnsyncedBytes) {
  util::SeededRandom random(7);
  bool kept_some = false, zeroed_some = false;
  for (int i = 0; i < 50; ++i) {
    MemoryFileSystem fs;
    {
      auto f = Create(fs, "/d/f");
      ASSERT_TRUE(f->Append("synced|").ok());
      ASSERT_TRUE(f->Sync().ok());
      ASSERT_TRUE(fs.SyncDir("/d").ok());
      ASSERT_TRUE(f->Append("abcdefghijklmnop").ok());
    }
    fs.Crash(&random);
    const std::string after = *fs.Read("/d/f");
    ASSERT_EQ(after.substr(0, 7), "synced|");
    const std::string torn = after.substr(7);
    ASSERT_LE(torn.size(), 16u);
    kept_some = kept_some || !torn.empty();
    for (size_t j = 0; j < torn.size(); ++j) {
      if (torn[j] == '\0') {
        zeroed_some = true;
      } else {
        EXPECT_EQ(torn[j], 'a' + static_cast<char>(j));
      }
    }
  }
  EXPECT_TRUE(kept_some);
  EXPECT_TRUE(zeroed_some);
}

TEST(MemoryFileSystemTest, ALyingDiskLosesSyncedBytes) {
  MemoryFileSystem fs;
  {
    auto f = Create(fs, "/d/f");
    ASSERT_TRUE(fs.SyncDir("/d").ok());
    for (const char* part : {"one,", "two,", "three"}) {
      ASSERT_TRUE(f->Append(part).ok());
      ASSERT_TRUE(f->Sync().ok());
    }
  }
  fs.CrashLosingSynced(2);
  EXPECT_EQ(*fs.Read("/d/f"), "one,");
}

}  // namespace
}  // namespace tally::kv::storage
