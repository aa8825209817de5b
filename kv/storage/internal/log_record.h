#ifndef TALLY_KV_STORAGE_INTERNAL_LOG_RECORD_H_
#define TALLY_KV_STORAGE_INTERNAL_LOG_RECORD_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/host/interfaces.h"

// The records of the raft log's segment files (kv/storage/segment_log.h).
//
// A record is a 24-byte header, then its payload, then zeros up to the next
// multiple of 8 bytes:
//   u32 header crc    CRC-32C of the next 20 bytes
//   u32 payload crc   CRC-32C of the payload
//   u32 payload length
//   u32 kind          kBatch or kCheckpoint
//   u64 synced        bytes of this segment made durable before this record
//                     was written (tells a torn tail from a damaged middle)
// All integers little-endian. A payload is a list of group writes:
//   u32 count, then per write: u64 group, u8 flags (1 hard state,
//   2 snapshot, 4 compact), [u64 term, u64 vote, u64 commit],
//   [u32 length, RaftSnapshot], [u32 length, RaftSnapshot, u64 compact_to],
//   u32 entries, [u64 first index, per entry: u64 term, u8 type,
//   u32 length, data].
// A checkpoint's payload starts with the segment's u64 sequence number.
namespace tally::kv::storage::internal {

inline constexpr size_t kRecordHeaderSize = 24;

enum class RecordKind : uint32_t {
  kBatch = 1,       // one LogStore::Write
  kCheckpoint = 2,  // a segment's first record: every group's state
  kRewrite = 3,     // groups' live entries copied from older segments
};

// Appends one record, header and padding included, to `out`.
void AppendRecord(RecordKind kind, uint64_t synced,
                  const std::vector<raft::host::GroupWrite>& writes,
                  uint64_t seq, std::string* out);

// Frames a payload already in `out`: out[start, start + kRecordHeaderSize)
// is room for the header, the payload follows to the end. Fills in the
// header and pads.
void FrameRecord(RecordKind kind, uint64_t synced, size_t start,
                 std::string* out);

struct Record {
  RecordKind kind = RecordKind::kBatch;
  uint64_t offset = 0;  // in the segment
  uint64_t synced = 0;
  uint64_t seq = 0;  // checkpoints only
  std::vector<raft::host::GroupWrite> writes;
};

// What a segment file holds.
struct SegmentScan {
  std::vector<Record> records;
  // Just after the last good record and its padding (which may be beyond
  // the end of the file).
  uint64_t end = 0;
  // Something other than zeros follows `end`: a torn or damaged record.
  bool damaged = false;
  // A good record after `end` says the bytes at `end` had been synced: the
  // damage is not a torn write but data lost from the middle of the log.
  bool synced_damage = false;
};

// Reads the records of one segment. `keep_entries` false leaves the entries'
// data out (their indexes and terms are kept). DATA_LOSS for a record whose
// checksums hold but whose payload does not decode.
absl::StatusOr<SegmentScan> ScanSegment(std::string_view file,
                                        bool keep_entries);

}  // namespace tally::kv::storage::internal

#endif  // TALLY_KV_STORAGE_INTERNAL_LOG_RECORD_H_
