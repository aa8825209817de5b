#ifndef TALLY_KV_STORAGE_FILE_SYSTEM_H_
#define TALLY_KV_STORAGE_FILE_SYSTEM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tally::kv::storage {

// A file written at increasing offsets. Not thread-safe.
class WritableFile {
 public:
  virtual ~WritableFile() = default;
  // Writes all of `data` at the current offset and advances it. On error
  // (ENOSPC, EIO) some of it may have been written.
  virtual absl::Status Append(std::string_view data) = 0;
  // Makes everything appended durable (fdatasync). An error means some of it
  // may never reach the disk: the caller must not trust the file again.
  virtual absl::Status Sync() = 0;
  virtual uint64_t offset() const = 0;
};

// The file operations of the raft log, so that tests can put faults between
// the log and the disk. Paths are plain strings; errors carry the path and
// errno's text.
//
// Thread safety: the methods may be called from any thread.
class FileSystem {
 public:
  virtual ~FileSystem() = default;
  // Creates `dir` (and its parents) if missing.
  virtual absl::Status CreateDir(const std::string& dir) = 0;
  // The names (not paths) of the regular files in `dir`.
  virtual absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) = 0;
  // The whole file; NOT_FOUND if it does not exist.
  virtual absl::StatusOr<std::string> Read(const std::string& path) = 0;
  // Opens `path` for writing at `offset`, creating it if missing. The file is
  // first cut to `offset` bytes, then, if `preallocate` is larger, given
  // that many bytes of zeros on disk so that appends do not grow it.
  virtual absl::StatusOr<std::unique_ptr<WritableFile>> OpenAt(
      const std::string& path, uint64_t offset, uint64_t preallocate) = 0;
  virtual absl::Status Remove(const std::string& path) = 0;
  // Atomically replaces `to` with `from`.
  virtual absl::Status Rename(const std::string& from,
                              const std::string& to) = 0;
  // Makes the creation, removal and renaming of files in `dir` durable.
  virtual absl::Status SyncDir(const std::string& dir) = 0;
};

// The operating system's files. Never null; lives for the whole process.
FileSystem* PosixFileSystem();

// Writes `contents` to `path` so that a crash leaves either the old file or
// the new one: a temporary file, synced, renamed over `path`, the directory
// synced.
absl::Status WriteFileAtomically(FileSystem* fs, const std::string& dir,
                                 const std::string& name,
                                 std::string_view contents);

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_FILE_SYSTEM_H_
