#ifndef TALLY_KV_STORAGE_SEGMENT_LOG_H_
#define TALLY_KV_STORAGE_SEGMENT_LOG_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "kv/storage/file_system.h"
#include "raft/host/interfaces.h"

namespace tally::kv::storage {

// The raft log of every group of a node, in segment files of its own
// (kv/storage/internal/log_record.h has the record format):
//   <dir>/<sequence, 16 hex digits>.log   segments, written in turn
//   <dir>/meta.<name>                     node metadata (identity, layout)
// One Write is one record, whatever the number of groups: one write() and,
// when asked, one fdatasync. Segments are preallocated; a full one is synced
// and the next begins with a checkpoint (every group's hard state and
// snapshot), so a segment whose entries have all been compacted away is
// deleted, oldest first, once that compaction is synced. A quiet group that
// is seldom compacted would keep old segments forever: once there are more
// than `Options::segments_kept`, the live entries of the groups holding
// the oldest are copied into the new segment, and it goes after the next
// sync.
//
// On Open, a damaged record at the end of the last segment (a write torn by
// a crash) is cut off with everything after it. A damaged record anywhere
// else, or one followed by records written after it had been synced, is
// data lost from the middle of the log: Open fails with DATA_LOSS.
//
// Thread safety: Load and Write from one thread at a time; the metadata
// methods from any thread.
class SegmentLog final : public raft::host::LogStore {
 public:
  struct Options {
    FileSystem* fs = PosixFileSystem();
    // Bytes preallocated per segment; a larger write makes a larger one.
    uint64_t segment_size = 64 << 20;
    // Segments beyond which quiet groups' entries are copied forward.
    size_t segments_kept = 4;
  };

  // Opens (creating if missing) the log in directory `dir`, recovering as
  // above. DATA_LOSS with the file and offset when the log is damaged.
  static absl::StatusOr<std::unique_ptr<SegmentLog>> Open(
      const std::string& dir, const Options& options);
  static absl::StatusOr<std::unique_ptr<SegmentLog>> Open(
      const std::string& dir) {
    return Open(dir, Options());
  }

  // Reads every segment again.
  absl::StatusOr<std::map<raft::host::GroupId, raft::host::PersistedGroup>>
  Load() override;
  absl::Status Write(const std::vector<raft::host::GroupWrite>& batch,
                     bool sync) override;

  // Node metadata: NOT_FOUND when absent.
  absl::StatusOr<std::string> GetMeta(const std::string& name) const;
  absl::Status PutMeta(const std::string& name, const std::string& value);

  // Segment files on disk, for tests and metrics.
  size_t segments() const { return segments_.size(); }

 private:
  // What a checkpoint repeats of a group, and what says which of its
  // entries are gone.
  struct GroupState {
    std::optional<raft::HardState> hard_state;
    std::optional<raft::Snapshot> snapshot;
    raft::Index compacted = 0;  // entries at or below it are gone
    // All its entries in segments before this one are gone or copied.
    uint64_t reset_seq = 0;
  };
  struct Segment {
    uint64_t seq = 0;
    // The highest entry index of each group written into it.
    std::map<raft::host::GroupId, raft::Index> last_index;
  };

  SegmentLog(std::string dir, const Options& options)
      : dir_(std::move(dir)), options_(options) {}

  std::string SegmentPath(uint64_t seq) const;
  absl::Status Recover();
  // Appends `record` to the current segment, syncing if asked.
  absl::Status Append(const std::string& record, bool sync);
  // Syncs the current segment and starts segment `seq` with a checkpoint.
  absl::Status StartSegment(uint64_t seq);
  void Track(const raft::host::GroupWrite& w, bool rewrite = false);
  // Whether group `group`'s entries in `s` are all compacted or replaced.
  bool Dead(const Segment& s, raft::host::GroupId group, raft::Index last);
  absl::Status ReleaseSegments();
  // Copies the live entries of the groups holding the oldest segment into
  // the current one (a kRewrite record).
  absl::Status RewriteOldest();

  const std::string dir_;
  const Options options_;
  std::map<raft::host::GroupId, GroupState> groups_;
  std::deque<Segment> segments_;  // oldest first; the last is written
  std::unique_ptr<WritableFile> file_;
  uint64_t synced_ = 0;  // bytes of the current segment known durable
  // False while the current segment holds only its checkpoint: a record too
  // large for it goes in anyway rather than starting another.
  bool batches_in_segment_ = false;
  // A compaction or snapshot was written since the last release of
  // segments; they are released after the next sync.
  bool release_pending_ = false;
  std::string buffer_;  // reused for each record
};

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_SEGMENT_LOG_H_
