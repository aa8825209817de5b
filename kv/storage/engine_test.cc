#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "kv/storage/leveldb_engine.h"
#include "kv/storage/leveldb_util.h"
#include "kv/storage/memory_engine.h"

namespace tally::kv::storage {
namespace {

// The same behaviour from both engines: reads, ordered iteration, batches,
// snapshots.
void Exercise(Engine& e) {
  WriteBatch b;
  b.Put("b", "2");
  b.Put("a", "1");
  b.Put("c", "3");
  b.Delete("c");
  ASSERT_TRUE(e.Write(b, false).ok());
  EXPECT_EQ(*e.Get("a"), "1");
  EXPECT_FALSE(e.Get("c")->has_value());
  std::unique_ptr<Snapshot> snap = e.GetSnapshot();
  WriteBatch later;
  later.Put("a", "changed");
  later.Put("ab", "new");
  ASSERT_TRUE(e.Write(later, true).ok());
  EXPECT_EQ(**snap->Get("a"), "1") << "a snapshot saw a later write";
  std::string keys;
  std::unique_ptr<Iterator> it = snap->NewIterator();
  for (it->Seek(""); it->Valid(); it->Next()) keys += it->key();
  EXPECT_EQ(keys, "ab");
  keys.clear();
  it = e.NewIterator();
  for (it->Seek("aa"); it->Valid(); it->Next()) keys += it->key();
  EXPECT_EQ(keys, "abb");
  EXPECT_TRUE(it->status().ok());
}

TEST(EngineTest, LevelDBEngine) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("tally-engine-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  auto e = LevelDBEngine::Open(dir.string());
  ASSERT_TRUE(e.ok()) << e.status();
  Exercise(**e);
  e->reset();
  std::filesystem::remove_all(dir);
}

// The names of this process's threads.
std::vector<std::string> ThreadNames() {
  std::vector<std::string> names;
  for (const auto& task :
       std::filesystem::directory_iterator("/proc/self/task")) {
    std::string name;
    std::getline(std::ifstream(task.path() / "comm"), name);
    names.push_back(name);
  }
  return names;
}

// LevelDB's background thread (flushes, compactions) starts when a write
// first needs one, as a child of the writing thread whose name it would
// carry (a profile then counted compactions as the apply thread's work).
TEST(EngineTest, LevelDBsBackgroundThreadHasANameOfItsOwn) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("tally-engine-bg-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  LevelDBOptions o;
  o.write_buffer_size = 64 << 10;
  auto e = LevelDBEngine::Open(dir.string(), o);
  ASSERT_TRUE(e.ok()) << e.status();
  std::thread writer([&] {
    pthread_setname_np(pthread_self(), "engine-writer");
    for (int i = 0; i < 64; ++i) {  // 4 MiB: several memtables flushed
      WriteBatch b;
      b.Put(absl::StrCat("k", i), std::string(64 << 10, 'v'));
      ASSERT_TRUE((*e)->Write(b, false).ok());
    }
  });
  writer.join();
  e->reset();  // waits for the background work
  std::vector<std::string> names = ThreadNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "leveldb-bg"), names.end())
      << absl::StrJoin(names, " ");
  std::filesystem::remove_all(dir);
}

TEST(EngineTest, MemoryEngine) {
  MemoryEngine e;
  Exercise(e);
}

TEST(EngineTest, MemoryEngineCrashLosesOnlyWhatWasNotSynced) {
  MemoryEngine e;
  WriteBatch a, b, c;
  a.Put("k", "1");
  b.Put("k", "2");
  b.Put("x", "synced");
  c.Put("k", "3");
  c.Delete("x");
  ASSERT_TRUE(e.Write(a, false).ok());
  ASSERT_TRUE(e.Write(b, true).ok());  // makes a durable too
  ASSERT_TRUE(e.Write(c, false).ok());
  EXPECT_EQ(e.unsynced_writes(), 1u);
  e.Crash();
  EXPECT_EQ(**e.Get("k"), "2");
  EXPECT_EQ(**e.Get("x"), "synced");
  EXPECT_EQ(e.unsynced_writes(), 0u);
}

TEST(EngineTest, MemoryEngineCanBeMadeToForgetSyncedWrites) {
  MemoryEngine e;
  WriteBatch a, b, c;
  a.Put("k", "1");
  b.Put("k", "2");
  b.Put("x", "synced");
  c.Delete("k");
  ASSERT_TRUE(e.Write(a, true).ok());
  ASSERT_TRUE(e.Write(b, true).ok());
  ASSERT_TRUE(e.Write(c, false).ok());
  e.CrashLosingSynced(1);  // c, never synced, and b, synced
  EXPECT_EQ(**e.Get("k"), "1");
  EXPECT_FALSE(e.Get("x")->has_value());
  // What is left is durable: a second crash changes nothing.
  e.Crash();
  EXPECT_EQ(**e.Get("k"), "1");
}

}  // namespace
}  // namespace tally::kv::storage
