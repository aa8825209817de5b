#ifndef TALLY_KV_STORAGE_LEVELDB_UTIL_H_
#define TALLY_KV_STORAGE_LEVELDB_UTIL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "leveldb/db.h"

namespace tally::kv::storage {

// leveldb::Status -> absl::Status, the one place this conversion happens.
// Corruption is DATA_LOSS; I/O errors are INTERNAL (the caller treats them
// as fatal).
absl::Status FromLevelDB(const leveldb::Status& s, const std::string& what);

struct LevelDBOptions {
  // The file system; nullptr for the real one.
  leveldb::Env* env = nullptr;
  size_t write_buffer_size = 16 << 20;
};

// Opens (creating if missing) a LevelDB database at `path`. Every file the
// database writes is synced before it is closed: LevelDB closes the log it
// rotates away from without a sync, so writes made before a rotation could
// be lost on power loss while later ones, synced in the next log, survive,
// leaving a hole (such as an applied index ahead of the data it covers).
absl::StatusOr<std::unique_ptr<leveldb::DB>> OpenLevelDB(
    const std::string& path, const LevelDBOptions& options = {});

// Big-endian so that byte order is numeric order.
void AppendBigEndian64(std::string* out, uint64_t v);
uint64_t ReadBigEndian64(std::string_view in);

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_LEVELDB_UTIL_H_
