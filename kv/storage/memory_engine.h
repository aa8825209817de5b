#ifndef TALLY_KV_STORAGE_MEMORY_ENGINE_H_
#define TALLY_KV_STORAGE_MEMORY_ENGINE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv/storage/engine.h"

namespace tally::kv::storage {

// The Engine in memory, for tests and the simulator. It keeps apart what
// was synced: Crash() drops every write since the last synced one, as a
// power loss does to a store that loses its unsynced suffix.
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
  // Writes made since the last sync.
  size_t unsynced_writes() const;

 private:
  using Map = std::map<std::string, std::string, std::less<>>;
  std::shared_ptr<const Map> Copy() const;

  mutable absl::Mutex mu_;
  Map live_ ABSL_GUARDED_BY(mu_);
  Map durable_ ABSL_GUARDED_BY(mu_);
  size_t unsynced_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_MEMORY_ENGINE_H_
