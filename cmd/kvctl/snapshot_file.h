#ifndef TALLY_CMD_KVCTL_SNAPSHOT_FILE_H_
#define TALLY_CMD_KVCTL_SNAPSHOT_FILE_H_

// The snapshot file of `kvctl snapshot`: "tally-snapshot 1\n"; then, per
// range, rpc::BackupChunk records (a 4-byte big-endian length, then the
// message), the first carrying the range and revision, the last `done`;
// then "sha256 <hex of all before>\n". Written and read as a stream: the
// size of a store never has to fit in memory.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rpc/cluster.pb.h"

namespace tally::kvctl {

// Writes a snapshot to PATH.part, then (Finish) appends the checksum,
// syncs and renames it to PATH: a crash leaves the old file or the new one.
class SnapshotWriter {
 public:
  static absl::StatusOr<std::unique_ptr<SnapshotWriter>> Create(
      const std::string& path);
  // Removes PATH.part unless Finish succeeded.
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // Bytes written so far.
  uint64_t size() const { return size_; }
  absl::Status Append(const rpc::BackupChunk& chunk);
  // Drops what was appended after the first `size` bytes (a range whose
  // copy started again).
  absl::Status Truncate(uint64_t size);
  // The checksum (hex), once the file is in place.
  absl::StatusOr<std::string> Finish();

 private:
  SnapshotWriter(std::string path, int fd);
  absl::Status Write(const char* data, size_t n);

  const std::string path_;
  int fd_;
  uint64_t size_ = 0;
  bool finished_ = false;
};

// What a snapshot holds for one range, its keys left out.
struct SnapshotRange {
  rpc::RangeDescriptor range;
  int64_t revision = 0;
  uint64_t keys = 0;
};

// Checks PATH's checksum, then reads its records in order, passing each to
// `visit` (if given; an error it returns stops the read and is returned).
// INVALID_ARGUMENT if PATH is not a snapshot, DATA_LOSS if it is damaged,
// cut short or holds a range copied only in part.
absl::StatusOr<std::vector<SnapshotRange>> ReadSnapshot(
    const std::string& path,
    const std::function<absl::Status(const rpc::BackupChunk&)>& visit = {});

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_SNAPSHOT_FILE_H_
