#include "kv/storage/segment_log.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv/storage/internal/log_record.h"
#include "kv/storage/log_store.h"
#include "kv/storage/memory_file_system.h"
#include "kv/storage/node_log.h"

namespace tally::kv::storage {
namespace {

using raft::Entry;
using raft::host::GroupWrite;
using ::testing::HasSubstr;

class SegmentLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("tally-segments-" + std::to_string(getpid())))
               .string();
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<SegmentLog> Open(SegmentLog::Options o = {}) {
    if (o.fs == PosixFileSystem()) o.segment_size = segment_size_;
    auto log = SegmentLog::Open(dir_, o);
    EXPECT_TRUE(log.ok()) << log.status();
    return log.ok() ? std::move(*log) : nullptr;
  }

  static std::vector<Entry> Entries(raft::Index from, raft::Index to,
                                    raft::Term t) {
    std::vector<Entry> out;
    for (raft::Index i = from; i <= to; ++i) {
      out.push_back(
          {t, i, raft::EntryType::kNormal, "entry " + std::to_string(i)});
    }
    return out;
  }

  std::map<raft::host::GroupId, raft::host::PersistedGroup> Load(
      SegmentLog& log) {
    auto loaded = log.Load();
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    if (!loaded.ok()) return {};
    return *std::move(loaded);
  }

  std::string Segment(uint64_t seq) const {
    char name[32];
    std::snprintf(name, sizeof(name), "/%016lx.log", seq);
    return dir_ + name;
  }

  // Where each record of a segment starts.
  std::vector<uint64_t> RecordOffsets(uint64_t seq) const {
    std::ifstream in(Segment(seq), std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), {});
    auto scan = internal::ScanSegment(data, false);
    EXPECT_TRUE(scan.ok());
    std::vector<uint64_t> out;
    for (const auto& r : scan->records) out.push_back(r.offset);
    out.push_back(scan->end);
    return out;
  }

  void Overwrite(uint64_t seq, uint64_t offset, const std::string& bytes) {
    std::fstream f(Segment(seq),
                   std::ios::binary | std::ios::in | std::ios::out);
    f.seekp(offset);
    f.write(bytes.data(), bytes.size());
  }

  void FlipBit(uint64_t seq, uint64_t offset) {
    std::fstream f(Segment(seq),
                   std::ios::binary | std::ios::in | std::ios::out);
    f.seekg(offset);
    char c;
    f.get(c);
    f.seekp(offset);
    f.put(static_cast<char>(c ^ 0x10));
  }

  std::string dir_;
  uint64_t segment_size_ = 1 << 20;
};

TEST_F(SegmentLogTest, ReloadsWhatWasWrittenPerGroup) {
  {
    auto log = Open();
    ASSERT_TRUE(
        log->Write({{1, raft::HardState{2, 1, 3}, {}, Entries(1, 5, 1)},
                    {2, raft::HardState{1, 0, 0}, {}, Entries(1, 2, 1)}},
                   true)
            .ok());
    // A new leader overwrites 4..5 with 4 only: 5 must go.
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(4, 4, 2)}}, true).ok());
  }
  auto log = Open();
  auto loaded = Load(*log);
  const auto& g1 = loaded.at(1);
  EXPECT_EQ(g1.hard_state, (raft::HardState{2, 1, 3}));
  ASSERT_EQ(g1.entries.size(), 4u);
  EXPECT_EQ(g1.entries.back().term, 2u);
  EXPECT_EQ(g1.entries.back().data, "entry 4");
  EXPECT_EQ(loaded.at(2).entries, Entries(1, 2, 1));
}

TEST_F(SegmentLogTest, SnapshotAndCompactionDropCoveredEntries) {
  auto log = Open();
  ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 10, 1)}}, true).ok());
  raft::Snapshot snap;
  snap.metadata = {.index = 8, .term = 1};
  snap.metadata.conf_state.voters = {1, 2, 3};
  GroupWrite compact{.group = 1};
  compact.compact = snap;
  compact.compact_to = 6;
  ASSERT_TRUE(log->Write({compact}, false).ok());
  auto loaded = Load(*log);
  EXPECT_EQ(loaded.at(1).snapshot, snap);
  EXPECT_EQ(loaded.at(1).entries, Entries(9, 10, 1));

  // An installed snapshot replaces the whole log, even entries above it.
  snap.metadata.index = 9;
  ASSERT_TRUE(log->Write({{1, {}, snap, {}}}, true).ok());
  log.reset();
  log = Open();
  loaded = Load(*log);
  EXPECT_EQ(loaded.at(1).snapshot.metadata.index, 9u);
  EXPECT_TRUE(loaded.at(1).entries.empty());
}

TEST_F(SegmentLogTest, FullSegmentsAreReleasedOnceCompacted) {
  segment_size_ = 16 << 10;
  auto log = Open();
  raft::Snapshot snap;
  snap.metadata.conf_state.voters = {1};
  for (raft::Index i = 1; i <= 2000; ++i) {
    std::vector<GroupWrite> batch = {
        {1, raft::HardState{1, 1, i}, {}, Entries(i, i, 1)},
        {2, raft::HardState{1, 1, i}, {}, Entries(i, i, 1)}};
    if (i % 100 == 0) {
      snap.metadata.index = i - 50;
      batch[0].compact = batch[1].compact = snap;
      batch[0].compact_to = batch[1].compact_to = i - 60;
    }
    ASSERT_TRUE(log->Write(batch, i % 3 == 0).ok());
  }
  // 2 x 2000 entries of ~40 bytes: about 10 segments written, the log
  // holds the last 50 to 60 of each group, so 2 or 3 remain.
  EXPECT_LE(log->segments(), 3u);
  uint64_t newest = 0;
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    newest = std::max(newest, std::stoul(f.path().stem(), nullptr, 16));
  }
  EXPECT_GE(newest, 10u);
  log.reset();
  log = Open();
  auto loaded = Load(*log);
  for (raft::host::GroupId g : {1, 2}) {
    EXPECT_EQ(loaded.at(g).hard_state, (raft::HardState{1, 1, 2000}));
    EXPECT_EQ(loaded.at(g).snapshot.metadata.index, 1950u);
    EXPECT_EQ(loaded.at(g).entries, Entries(1951, 2000, 1));
  }
}

// A segment goes only once the compaction that let it go is durable: a
// crash that loses an unsynced compaction record must find the entries it
// would have dropped.
TEST_F(SegmentLogTest, NoSegmentIsDeletedOnAnUnsyncedCompaction) {
  MemoryFileSystem fs;
  const SegmentLog::Options o{.fs = &fs, .segment_size = 4096};
  auto log = SegmentLog::Open("/log", o);
  ASSERT_TRUE(log.ok());
  raft::Index last = 0;
  while ((*log)->segments() < 3) {
    ++last;
    ASSERT_TRUE(
        (*log)->Write({{1, {}, {}, Entries(last, last, 1)}}, true).ok());
  }
  raft::Snapshot snap;
  snap.metadata = {.index = last - 2, .term = 1};
  GroupWrite compact{.group = 1, .compact = snap, .compact_to = last - 2};
  ASSERT_TRUE((*log)->Write({compact}, /*sync=*/false).ok());
  log->reset();
  fs.Crash();
  log = SegmentLog::Open("/log", o);
  ASSERT_TRUE(log.ok()) << log.status();
  auto loaded = (*log)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->at(1).entries, Entries(1, last, 1));
  // Once synced, it lets the first segment go (the second holds last - 1).
  ASSERT_TRUE((*log)->Write({compact}, /*sync=*/true).ok());
  EXPECT_EQ((*log)->segments(), 2u);
  EXPECT_FALSE(fs.Read("/log/0000000000000001.log").ok());
}

// A group that is seldom compacted does not keep old segments: its live
// entries are copied forward, and they survive restarts and crashes.
TEST_F(SegmentLogTest, AQuietGroupDoesNotKeepOldSegments) {
  MemoryFileSystem fs;
  const SegmentLog::Options o{
      .fs = &fs, .segment_size = 4096, .segments_kept = 3};
  auto log = SegmentLog::Open("/log", o);
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
  raft::Snapshot snap;
  for (raft::Index i = 1; i <= 3000; ++i) {
    GroupWrite w{2, raft::HardState{1, 1, i}, {}, Entries(i, i, 1)};
    if (i % 50 == 0) {
      snap.metadata.index = i;
      w.compact = snap;
      w.compact_to = i - 10;
    }
    ASSERT_TRUE((*log)->Write({w}, i % 7 != 0).ok());
    ASSERT_LE((*log)->segments(), 5u) << "after entry " << i;
    if (i % 1000 == 0) {  // a crash now and then
      log->reset();
      fs.Crash();
      log = SegmentLog::Open("/log", o);
      ASSERT_TRUE(log.ok()) << log.status();
    }
  }
  log->reset();
  log = SegmentLog::Open("/log", o);
  ASSERT_TRUE(log.ok()) << log.status();
  auto loaded = (*log)->Load();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->at(1).entries, Entries(1, 3, 1));
  EXPECT_EQ(loaded->at(2).snapshot.metadata.index, 3000u);
  EXPECT_EQ(fs.List("/log")->size(), (*log)->segments());
}

// A crash tears the last write: its record is cut, the rest stays, and the
// log takes writes again where it ends.
TEST_F(SegmentLogTest, ATornFinalWriteIsCut) {
  {
    auto log = Open();
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(4, 9, 1)}}, true).ok());
  }
  const std::vector<uint64_t> at = RecordOffsets(1);
  ASSERT_EQ(at.size(), 4u);  // checkpoint, two batches, end
  std::filesystem::resize_file(Segment(1), (at[2] + at[3]) / 2);
  auto log = Open();
  EXPECT_EQ(Load(*log).at(1).entries, Entries(1, 3, 1));
  ASSERT_TRUE(log->Write({{1, {}, {}, Entries(4, 5, 2)}}, true).ok());
  log.reset();
  log = Open();
  EXPECT_EQ(Load(*log).at(1).entries.back(), Entries(5, 5, 2)[0]);
}

// A record whose padding did not reach the disk is whole; the next one
// still starts at a multiple of 8 bytes.
TEST_F(SegmentLogTest, ARecordMissingOnlyItsPaddingIsKept) {
  {
    auto log = Open();
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
  }
  std::vector<uint64_t> at = RecordOffsets(1);
  ASSERT_EQ(at.size(), 3u);
  uint32_t length;  // of the batch's payload, from its header
  std::ifstream(Segment(1), std::ios::binary)
      .seekg(at[1] + 8)
      .read(reinterpret_cast<char*>(&length), 4);
  const uint64_t unpadded = at[1] + internal::kRecordHeaderSize + length;
  ASSERT_LT(unpadded, at[2]);
  std::filesystem::resize_file(Segment(1), unpadded);
  {
    auto log = Open();
    EXPECT_EQ(Load(*log).at(1).entries, Entries(1, 3, 1));
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(4, 4, 1)}}, true).ok());
  }
  auto log = Open();
  EXPECT_EQ(Load(*log).at(1).entries, Entries(1, 4, 1));
}

TEST_F(SegmentLogTest, AZeroedTailIsCut) {
  {
    auto log = Open();
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(4, 9, 1)}}, true).ok());
  }
  const std::vector<uint64_t> at = RecordOffsets(1);
  const uint64_t from = at[2] + 40;
  Overwrite(1, from, std::string(at[3] - from, '\0'));
  auto log = Open();
  EXPECT_EQ(Load(*log).at(1).entries, Entries(1, 3, 1));
}

// Unsynced records may reach the disk in any order: damage followed only by
// records written before it was synced is still a torn tail.
TEST_F(SegmentLogTest, DamageFollowedOnlyByUnsyncedRecordsIsATornTail) {
  {
    auto log = Open();
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
    ASSERT_TRUE(
        log->Write({{1, raft::HardState{1, 1, 2}, {}, {}}}, false).ok());
    ASSERT_TRUE(
        log->Write({{1, raft::HardState{1, 1, 3}, {}, {}}}, false).ok());
  }
  const std::vector<uint64_t> at = RecordOffsets(1);
  ASSERT_EQ(at.size(), 5u);
  FlipBit(1, at[2] + 30);
  auto log = Open();
  auto loaded = Load(*log);
  EXPECT_EQ(loaded.at(1).entries, Entries(1, 3, 1));
  EXPECT_EQ(loaded.at(1).hard_state, raft::HardState{});
}

TEST_F(SegmentLogTest, AFlippedBitInTheMiddleRefusesToStart) {
  {
    auto log = Open();
    for (raft::Index i = 1; i <= 5; ++i) {
      ASSERT_TRUE(log->Write({{1, {}, {}, Entries(i, i, 1)}}, true).ok());
    }
  }
  const std::vector<uint64_t> at = RecordOffsets(1);
  FlipBit(1, at[2] + 30);
  auto log = SegmentLog::Open(dir_, {.segment_size = segment_size_});
  ASSERT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(log.status().message(),
              HasSubstr("offset " + std::to_string(at[2]) + " of " +
                        Segment(1) + " fails its checksum"));
  EXPECT_THAT(log.status().message(), HasSubstr("records synced after it"));
}

TEST_F(SegmentLogTest, DamageInAnEarlierSegmentRefusesToStart) {
  segment_size_ = 4096;
  {
    auto log = Open();
    for (raft::Index i = 1; log->segments() < 3; ++i) {
      ASSERT_TRUE(log->Write({{1, {}, {}, Entries(i, i, 1)}}, true).ok());
    }
  }
  const std::vector<uint64_t> at = RecordOffsets(1);
  FlipBit(1, at[at.size() - 2] + 30);  // its last record
  auto log = SegmentLog::Open(dir_, {.segment_size = segment_size_});
  ASSERT_EQ(log.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(log.status().message(), HasSubstr("not in the last segment"));
}

TEST_F(SegmentLogTest, ASegmentStartedButNeverWrittenIsRemoved) {
  {
    auto log = Open();
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
  }
  // The crash came after the new file was made, before its checkpoint.
  std::ofstream(Segment(2)).close();
  std::filesystem::resize_file(Segment(2), segment_size_);
  auto log = Open();
  EXPECT_FALSE(std::filesystem::exists(Segment(2)));
  EXPECT_EQ(Load(*log).at(1).entries, Entries(1, 3, 1));
}

// The same for a node's first segment: a crash right after the log was
// created.
TEST_F(SegmentLogTest, AFirstSegmentStartedButNeverWrittenIsRemoved) {
  std::filesystem::create_directories(dir_);
  std::ofstream(Segment(1)).close();
  std::filesystem::resize_file(Segment(1), segment_size_);
  auto log = Open();
  ASSERT_NE(log, nullptr);
  EXPECT_TRUE(Load(*log).empty());
  ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
  log.reset();
  log = Open();
  EXPECT_EQ(Load(*log).at(1).entries, Entries(1, 3, 1));
}

// A record with good checksums that claims more entries than it holds is
// refused before anything is allocated for them (the segment_log fuzz
// target ran out of memory on one: 2.8 GB for a 4-billion count).
TEST_F(SegmentLogTest, ARecordClaimingMoreEntriesThanItHoldsIsRefused) {
  std::string file(internal::kRecordHeaderSize, '\0');
  const uint32_t writes = 1, entries = 0xffffffff;
  const uint64_t group = 2, first = 1;
  const uint8_t flags = 0;
  file.append(reinterpret_cast<const char*>(&writes), 4);
  file.append(reinterpret_cast<const char*>(&group), 8);
  file.append(reinterpret_cast<const char*>(&flags), 1);
  file.append(reinterpret_cast<const char*>(&entries), 4);
  file.append(reinterpret_cast<const char*>(&first), 8);
  internal::FrameRecord(internal::RecordKind::kBatch, 0, 0, &file);
  auto scan = internal::ScanSegment(file, /*keep_entries=*/true);
  EXPECT_EQ(scan.status().code(), absl::StatusCode::kDataLoss);
}

// Writes fail as the disk does; a failed sync is never reported as success.
class FailingFileSystem final : public FileSystem {
 public:
  absl::Status fail_append = absl::OkStatus();
  absl::Status fail_sync = absl::OkStatus();

  absl::Status CreateDir(const std::string& d) override {
    return posix_->CreateDir(d);
  }
  absl::StatusOr<std::vector<std::string>> List(const std::string& d) override {
    return posix_->List(d);
  }
  absl::StatusOr<std::string> Read(const std::string& p) override {
    return posix_->Read(p);
  }
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenAt(
      const std::string& p, uint64_t offset, uint64_t prealloc) override {
    auto f = posix_->OpenAt(p, offset, prealloc);
    if (!f.ok()) return f.status();
    return std::unique_ptr<WritableFile>(new File(this, std::move(*f)));
  }
  absl::Status Remove(const std::string& p) override {
    return posix_->Remove(p);
  }
  absl::Status Rename(const std::string& a, const std::string& b) override {
    return posix_->Rename(a, b);
  }
  absl::Status SyncDir(const std::string& d) override {
    return posix_->SyncDir(d);
  }

 private:
  class File final : public WritableFile {
   public:
    File(FailingFileSystem* fs, std::unique_ptr<WritableFile> f)
        : fs_(fs), f_(std::move(f)) {}
    absl::Status Append(std::string_view d) override {
      if (!fs_->fail_append.ok()) {
        f_->Append(d.substr(0, d.size() / 2)).IgnoreError();
        return fs_->fail_append;
      }
      return f_->Append(d);
    }
    absl::Status Sync() override {
      return fs_->fail_sync.ok() ? f_->Sync() : fs_->fail_sync;
    }
    uint64_t offset() const override { return f_->offset(); }

   private:
    FailingFileSystem* fs_;
    std::unique_ptr<WritableFile> f_;
  };
  FileSystem* posix_ = PosixFileSystem();
};

TEST_F(SegmentLogTest, WriteAndSyncErrorsReachTheCaller) {
  FailingFileSystem fs;
  {
    auto log = Open({.fs = &fs, .segment_size = segment_size_});
    ASSERT_TRUE(log->Write({{1, {}, {}, Entries(1, 3, 1)}}, true).ok());
    fs.fail_sync = absl::InternalError("syncing x: Input/output error");
    absl::Status st = log->Write({{1, {}, {}, Entries(4, 4, 1)}}, true);
    EXPECT_EQ(st.code(), absl::StatusCode::kInternal);
    EXPECT_THAT(st.message(), HasSubstr("writing the raft log: syncing"));
    fs.fail_sync = absl::OkStatus();
    fs.fail_append =
        absl::ResourceExhaustedError("writing x: No space left on device");
    st = log->Write({{1, {}, {}, Entries(5, 5, 1)}}, true);
    EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  }
  // The half-written record is a torn tail on the next start.
  fs.fail_append = absl::OkStatus();
  auto log = Open({.fs = &fs, .segment_size = segment_size_});
  EXPECT_EQ(Load(*log).at(1).entries.front(), Entries(1, 1, 1)[0]);
}

TEST_F(SegmentLogTest, KeepsNodeMetadata) {
  auto log = Open();
  EXPECT_EQ(log->GetMeta("identity").status().code(),
            absl::StatusCode::kNotFound);
  ASSERT_TRUE(log->PutMeta("identity", "node 1").ok());
  ASSERT_TRUE(log->PutMeta("identity", "node 2").ok());
  log.reset();
  log = Open();
  EXPECT_EQ(*log->GetMeta("identity"), "node 2");
}

TEST_F(SegmentLogTest, ALevelDBLogIsCopiedOnce) {
  const std::string data = dir_;
  std::filesystem::create_directories(data);
  raft::Snapshot snap;
  snap.metadata = {.index = 2, .term = 1};
  snap.metadata.conf_state.voters = {1, 2, 3};
  {
    auto old = LogStore::Open(data + "/raft");
    ASSERT_TRUE(old.ok()) << old.status();
    ASSERT_TRUE(
        (*old)->Write({{7, raft::HardState{3, 2, 5}, snap, {}}}, true).ok());
    ASSERT_TRUE((*old)->Write({{7, {}, {}, Entries(3, 6, 3)}}, true).ok());
    ASSERT_TRUE((*old)->PutMeta("identity", "node 2").ok());
  }
  for (int start = 0; start < 2; ++start) {
    auto log = OpenNodeLog(data);
    ASSERT_TRUE(log.ok()) << log.status();
    auto loaded = Load(**log);
    EXPECT_EQ(loaded.at(7).hard_state, (raft::HardState{3, 2, 5}));
    EXPECT_EQ(loaded.at(7).snapshot, snap);
    EXPECT_EQ(loaded.at(7).entries, Entries(3, 6 + start, 3));
    EXPECT_EQ(*(*log)->GetMeta("identity"), "node 2");
    EXPECT_EQ((*log)->GetMeta("layout").status().code(),
              absl::StatusCode::kNotFound);
    ASSERT_TRUE(
        (*log)
            ->Write({{7, {}, {}, Entries(7 + start, 7 + start, 3)}}, true)
            .ok());
  }
  EXPECT_FALSE(std::filesystem::exists(data + "/raft"));
  EXPECT_TRUE(std::filesystem::exists(data + "/raft.old"));
}

}  // namespace
}  // namespace tally::kv::storage
