#ifndef TALLY_KV_STORAGE_MEMORY_ENGINE_H_
#define TALLY_KV_STORAGE_MEMORY_ENGINE_H_

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv/storage/engine.h"

namespace tally::kv::storage {

// The Engine in memory, for tests and the simulator. It keeps apart what
// was synced: Crash() drops every write since the last synced one, as a
// power loss does to a store that loses its unsynced suffix. A write and a
// crash cost what the batches they touch hold, not the whole map.
//
// Thread safety: thread-safe.
class MemoryEngine final : public Engine {
 public:
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const override;
  absl::Status Write(const WriteBatch& batch, bool sync) override;
  std::unique_ptr<Iterator> NewIterator() const override;
  std::unique_ptr<Snapshot> GetSnapshot() const override;

  // Forgets every write after the last synced one.
  void Crash();
  // A disk that breaks its promise: forgets the unsynced writes and the
  // last `synced` synced batches too (at most kKeptSynced).
  void CrashLosingSynced(size_t synced);
  static constexpr size_t kKeptSynced = 16;
  // Writes made since the last sync.
  size_t unsynced_writes() const;

 private:
  using Map = std::map<std::string, std::string, std::less<>>;
  std::shared_ptr<const Map> Copy() const;

  // What a batch overwrote, to roll it back.
  struct Undo {
    std::vector<std::pair<std::string, std::optional<std::string>>> old;
    bool synced = false;
  };
  // Rolls back the newest batch.
  void RollBack() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  Map live_ ABSL_GUARDED_BY(mu_);
  // The unsynced batches and up to kKeptSynced synced ones before them,
  // oldest first.
  std::deque<Undo> undo_ ABSL_GUARDED_BY(mu_);
  size_t unsynced_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_MEMORY_ENGINE_H_
