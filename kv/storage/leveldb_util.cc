#include "kv/storage/leveldb_util.h"

#include "absl/strings/str_cat.h"
#include "leveldb/cache.h"
#include "leveldb/filter_policy.h"

namespace tally::kv::storage {

absl::Status FromLevelDB(const leveldb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<leveldb::DB>> OpenLevelDB(
    const std::string& path) {
  leveldb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  options.write_buffer_size = 16 << 20;
  // Leaked on purpose: LevelDB requires both to outlive every database, and
  // a node opens few.
  static const leveldb::FilterPolicy* filter =
      leveldb::NewBloomFilterPolicy(10);
  options.filter_policy = filter;
  leveldb::DB* db = nullptr;
  leveldb::Status s = leveldb::DB::Open(options, path, &db);
  if (s.IsIOError() && s.ToString().find("LOCK") != std::string::npos) {
    return absl::FailedPreconditionError(absl::StrCat(
        path,
        " is in use by another process (is a kvd already running on "
        "this data dir?)"));
  }
  if (!s.ok()) return FromLevelDB(s, absl::StrCat("opening ", path));
  return std::unique_ptr<leveldb::DB>(db);
}

void AppendBigEndian64(std::string* out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(std::string_view in) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < in.size(); ++i) {
    v = (v << 8) | static_cast<uint8_t>(in[i]);
  }
  return v;
}

}  // namespace tally::kv::storage
