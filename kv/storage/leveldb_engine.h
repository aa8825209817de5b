#ifndef TALLY_KV_STORAGE_LEVELDB_ENGINE_H_
#define TALLY_KV_STORAGE_LEVELDB_ENGINE_H_

#include <memory>
#include <string>

#include "kv/storage/engine.h"
#include "kv/storage/leveldb_util.h"
#include "leveldb/db.h"

namespace tally::kv::storage {

// The Engine over a LevelDB database.
class LevelDBEngine final : public Engine {
 public:
  // Opens (creating if missing) the database at `path` (OpenLevelDB).
  static absl::StatusOr<std::unique_ptr<LevelDBEngine>> Open(
      const std::string& path, const LevelDBOptions& options = {});

  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const override;
  absl::Status Write(const WriteBatch& batch, bool sync) override;
  std::unique_ptr<Iterator> NewIterator() const override;
  std::unique_ptr<Snapshot> GetSnapshot() const override;

 private:
  explicit LevelDBEngine(std::unique_ptr<leveldb::DB> db)
      : db_(std::move(db)) {}
  std::unique_ptr<leveldb::DB> db_;
};

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_LEVELDB_ENGINE_H_
