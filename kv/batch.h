#ifndef TALLY_KV_BATCH_H_
#define TALLY_KV_BATCH_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "kv/storage/leveldb_util.h"
#include "leveldb/db.h"
#include "leveldb/write_batch.h"

namespace tally::kv {

// The writes of one Apply: a LevelDB batch plus an overlay so that later
// commands in the batch read what earlier ones wrote. The first read error
// is kept in status(); reads after it find nothing.
//
// Thread safety: one thread (the apply thread).
class Batch {
 public:
  explicit Batch(leveldb::DB* db) : db_(db) {}

  std::optional<std::string> Read(const std::string& key) {
    auto it = overlay_.find(key);
    if (it != overlay_.end()) return it->second;
    std::string v;
    leveldb::Status s = db_->Get(leveldb::ReadOptions(), key, &v);
    if (s.IsNotFound()) return std::nullopt;
    if (!s.ok()) {
      Fail(storage::FromLevelDB(s, "reading state"));
      return std::nullopt;
    }
    return v;
  }
  void Put(const std::string& key, std::string value) {
    wb_.Put(key, value);
    overlay_[key] = std::move(value);
  }
  void Delete(const std::string& key) {
    wb_.Delete(key);
    overlay_[key] = std::nullopt;
  }
  // Calls fn(key, value) for every key under `prefix` as this batch sees it
  // (stored, or written earlier in the batch), in key order.
  void ForEach(
      const std::string& prefix,
      const std::function<void(const std::string&, const std::string&)>& fn) {
    std::map<std::string, std::string> seen;
    std::unique_ptr<leveldb::Iterator> it(
        db_->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      seen.emplace(it->key().ToString(), it->value().ToString());
    }
    if (!it->status().ok()) {
      return Fail(storage::FromLevelDB(it->status(), "scanning state"));
    }
    for (auto o = overlay_.lower_bound(prefix);
         o != overlay_.end() && o->first.starts_with(prefix); ++o) {
      if (o->second) {
        seen[o->first] = *o->second;
      } else {
        seen.erase(o->first);
      }
    }
    for (const auto& [k, v] : seen) fn(k, v);
  }
  void Fail(absl::Status s) {
    if (status_.ok()) status_ = std::move(s);
  }
  leveldb::WriteBatch* batch() { return &wb_; }
  const absl::Status& status() const { return status_; }

 private:
  leveldb::DB* db_;
  leveldb::WriteBatch wb_;
  std::map<std::string, std::optional<std::string>> overlay_;
  absl::Status status_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_BATCH_H_
