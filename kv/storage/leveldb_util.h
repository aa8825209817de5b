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

// Opens (creating if missing) a LevelDB database at `path`.
absl::StatusOr<std::unique_ptr<leveldb::DB>> OpenLevelDB(
    const std::string& path);

// Big-endian so that byte order is numeric order.
void AppendBigEndian64(std::string* out, uint64_t v);
uint64_t ReadBigEndian64(std::string_view in);

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_LEVELDB_UTIL_H_
