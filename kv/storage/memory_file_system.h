#ifndef TALLY_KV_STORAGE_MEMORY_FILE_SYSTEM_H_
#define TALLY_KV_STORAGE_MEMORY_FILE_SYSTEM_H_

#include <cstddef>
#include <deque>
#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv/storage/file_system.h"
#include "util/random.h"

namespace tally::kv::storage {

// The FileSystem in memory, for tests and the simulator. Like MemoryEngine
// it keeps apart what was synced, and a crash loses what a power loss
// would: each file's bytes written since its last sync (perhaps leaving a
// torn part of them) and the files created since their directory was last
// synced.
//
// Thread safety: thread-safe. A file's handle must not outlive a crash.
class MemoryFileSystem final : public FileSystem {
 public:
  // Sync points remembered per file, for CrashLosingSynced.
  static constexpr size_t kKeptSynced = 8;

  absl::Status CreateDir(const std::string& dir) override;
  absl::StatusOr<std::vector<std::string>> List(
      const std::string& dir) override;
  absl::StatusOr<std::string> Read(const std::string& path) override;
  // `preallocate` is ignored: the file holds what was written.
  absl::StatusOr<std::unique_ptr<WritableFile>> OpenAt(
      const std::string& path, uint64_t offset, uint64_t preallocate) override;
  absl::Status Remove(const std::string& path) override;
  absl::Status Rename(const std::string& from, const std::string& to) override;
  absl::Status SyncDir(const std::string& dir) override;

  // Power loss. Each file keeps what was synced; with `tear`, also a prefix
  // of what was not, drawn from it, whose second half may be zeros (a
  // write that reached the disk in part).
  void Crash(util::RandomSource* tear = nullptr);
  // A disk that breaks its promise: as Crash without tearing, and the file
  // synced last also loses its last `syncs` syncs (at most kKeptSynced).
  void CrashLosingSynced(size_t syncs);

 private:
  class File;
  struct Contents {
    std::string data;
    size_t synced = 0;
    std::deque<size_t> sync_points;  // newest last
    bool durable_name = false;       // its directory was synced since
  };

  absl::Status Append(const std::string& path, uint64_t offset,
                      std::string_view bytes);
  absl::Status Sync(const std::string& path);

  absl::Mutex mu_;
  std::map<std::string, Contents> files_ ABSL_GUARDED_BY(mu_);
  std::string synced_last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_MEMORY_FILE_SYSTEM_H_
