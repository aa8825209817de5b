#ifndef TALLY_KV_STORAGE_LOG_STORE_H_
#define TALLY_KV_STORAGE_LOG_STORE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "kv/storage/engine.h"
#include "raft/host/interfaces.h"

namespace tally::kv::storage {

// The raft log of every group of a node in one engine (a LevelDB database of
// its own in a node, memory in the simulator):
//   'e' group index -> entry      (both big-endian: a group's log is one
//   'h' group       -> hard state  contiguous key range in index order)
//   's' group       -> snapshot metadata
//   'm' name        -> node metadata (identity, cluster layout)
// A batch with sync is durable when Write returns (the engine syncs it).
//
// Thread safety: Write from one thread at a time; the metadata methods from
// any thread.
class LogStore final : public raft::host::LogStore {
 public:
  // Opens (creating if missing) the LevelDB database at `path`.
  static absl::StatusOr<std::unique_ptr<LogStore>> Open(
      const std::string& path);
  // The log in `engine` (not owned), which holds nothing else.
  static std::unique_ptr<LogStore> Over(Engine* engine);

  absl::StatusOr<std::map<raft::host::GroupId, raft::host::PersistedGroup>>
  Load() override;
  absl::Status Write(const std::vector<raft::host::GroupWrite>& batch,
                     bool sync) override;

  // Node metadata: NOT_FOUND when absent.
  absl::StatusOr<std::string> GetMeta(const std::string& name) const;
  absl::Status PutMeta(const std::string& name, const std::string& value);

 private:
  LogStore(std::unique_ptr<Engine> owned, Engine* engine)
      : owned_(std::move(owned)), engine_(engine) {}

  const std::unique_ptr<Engine> owned_;
  Engine* const engine_;
  // Range of entry keys stored per group, to delete without scanning.
  struct Span {
    raft::Index first = 0;
    raft::Index last = 0;  // 0: none
  };
  std::map<raft::host::GroupId, Span> spans_;
};

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_LOG_STORE_H_
