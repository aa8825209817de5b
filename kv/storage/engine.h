#ifndef TALLY_KV_STORAGE_ENGINE_H_
#define TALLY_KV_STORAGE_ENGINE_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tally::kv::storage {

// Writes applied together: all or none.
class WriteBatch {
 public:
  void Put(std::string key, std::string value) {
    ops_.emplace_back(std::move(key), std::move(value));
  }
  void Delete(std::string key) {
    ops_.emplace_back(std::move(key), std::nullopt);
  }
  // In order; nullopt is a delete.
  const std::vector<std::pair<std::string, std::optional<std::string>>>& ops()
      const {
    return ops_;
  }
  bool empty() const { return ops_.empty(); }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> ops_;
};

// Walks keys in byte order.
class Iterator {
 public:
  virtual ~Iterator() = default;
  // To the first key >= `key`.
  virtual void Seek(std::string_view key) = 0;
  virtual bool Valid() const = 0;
  virtual void Next() = 0;
  // REQUIRES: Valid().
  virtual std::string_view key() const = 0;
  virtual std::string_view value() const = 0;
  // An error met while iterating (then !Valid()).
  virtual absl::Status status() const = 0;
};

// A consistent view of the engine at one moment.
class Snapshot {
 public:
  virtual ~Snapshot() = default;
  virtual absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const = 0;
  virtual std::unique_ptr<Iterator> NewIterator() const = 0;
};

// The ordered key-value store the state machines of a node share: LevelDB
// (leveldb_engine.h) in a node, memory (memory_engine.h) in tests and the
// simulator, which can lose what was not synced.
//
// Thread safety: thread-safe.
class Engine {
 public:
  virtual ~Engine() = default;
  // nullopt when the key is absent.
  virtual absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const = 0;
  // Applies the batch atomically; durable on return when `sync` (and then so
  // is every write before it).
  virtual absl::Status Write(const WriteBatch& batch, bool sync) = 0;
  // Iterates the current state (each step sees a consistent state, not
  // necessarily the same one: use a Snapshot for that).
  virtual std::unique_ptr<Iterator> NewIterator() const = 0;
  virtual std::unique_ptr<Snapshot> GetSnapshot() const = 0;
};

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_ENGINE_H_
