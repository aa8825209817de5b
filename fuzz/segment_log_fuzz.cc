// The raft log's segment files as a node finds them on disk
// (kv/storage/segment_log.h). The first byte picks the input's form: odd,
// records framed here with good checksums (kind, synced offset and payload
// from the input), so the payload decoder is reached; even, the raw bytes
// of a segment (torn, zeroed or damaged anywhere). Opening and loading must
// give a log the host can start from (entries contiguous, after the
// snapshot) or an error; never a crash.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fuzz/input.h"
#include "fuzz/loaded_log.h"
#include "kv/storage/internal/log_record.h"
#include "kv/storage/memory_file_system.h"
#include "kv/storage/segment_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace storage = tally::kv::storage;
  tally::fuzz::Input in(data, size);
  std::string file;
  if (in.Byte() & 1) {
    while (!in.empty()) {
      const auto kind = static_cast<storage::internal::RecordKind>(in.Byte());
      const uint64_t synced = in.Byte();
      const size_t start = file.size();
      file.append(storage::internal::kRecordHeaderSize, '\0');
      file += in.Piece();
      storage::internal::FrameRecord(kind, synced, start, &file);
    }
  } else {
    file = in.Rest();
  }
  storage::MemoryFileSystem fs;
  {
    auto f = fs.OpenAt("/log/0000000000000001.log", 0, 0);
    TALLY_FUZZ_CHECK(f.ok() && (*f)->Append(file).ok());
  }
  TALLY_FUZZ_CHECK(fs.SyncDir("/log").ok());
  auto log =
      storage::SegmentLog::Open("/log", {.fs = &fs, .segment_size = 1 << 16});
  if (!log.ok()) return 0;
  auto loaded = (*log)->Load();
  if (!loaded.ok()) return 0;
  tally::fuzz::CheckHostCanStart(*loaded);
  return 0;
}
