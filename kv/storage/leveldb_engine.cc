#include "kv/storage/leveldb_engine.h"

#include <utility>

#include "leveldb/write_batch.h"

namespace tally::kv::storage {

namespace {

class LevelDBIterator final : public Iterator {
 public:
  explicit LevelDBIterator(leveldb::Iterator* it) : it_(it) {}
  void Seek(std::string_view key) override {
    it_->Seek(leveldb::Slice(key.data(), key.size()));
  }
  bool Valid() const override { return it_->Valid(); }
  void Next() override { it_->Next(); }
  std::string_view key() const override {
    return {it_->key().data(), it_->key().size()};
  }
  std::string_view value() const override {
    return {it_->value().data(), it_->value().size()};
  }
  absl::Status status() const override {
    return FromLevelDB(it_->status(), "iterating");
  }

 private:
  std::unique_ptr<leveldb::Iterator> it_;
};

absl::StatusOr<std::optional<std::string>> Read(leveldb::DB* db,
                                                const leveldb::ReadOptions& ro,
                                                std::string_view key) {
  std::string v;
  leveldb::Status s = db->Get(ro, leveldb::Slice(key.data(), key.size()), &v);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) return FromLevelDB(s, "reading");
  return std::optional<std::string>(std::move(v));
}

class LevelDBSnapshot final : public Snapshot {
 public:
  explicit LevelDBSnapshot(leveldb::DB* db) : db_(db) {
    ro_.snapshot = db_->GetSnapshot();
  }
  ~LevelDBSnapshot() override { db_->ReleaseSnapshot(ro_.snapshot); }
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const override {
    return Read(db_, ro_, key);
  }
  std::unique_ptr<Iterator> NewIterator() const override {
    return std::make_unique<LevelDBIterator>(db_->NewIterator(ro_));
  }

 private:
  leveldb::DB* db_;
  leveldb::ReadOptions ro_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<LevelDBEngine>> LevelDBEngine::Open(
    const std::string& path, const LevelDBOptions& options) {
  absl::StatusOr<std::unique_ptr<leveldb::DB>> db = OpenLevelDB(path, options);
  if (!db.ok()) return db.status();
  return std::unique_ptr<LevelDBEngine>(new LevelDBEngine(std::move(*db)));
}

absl::StatusOr<std::optional<std::string>> LevelDBEngine::Get(
    std::string_view key) const {
  return Read(db_.get(), leveldb::ReadOptions(), key);
}

absl::Status LevelDBEngine::Write(const WriteBatch& batch, bool sync) {
  leveldb::WriteBatch wb;
  for (const auto& [k, v] : batch.ops()) {
    if (v) {
      wb.Put(k, *v);
    } else {
      wb.Delete(k);
    }
  }
  leveldb::WriteOptions wo;
  wo.sync = sync;
  return FromLevelDB(db_->Write(wo, &wb), "writing");
}

std::unique_ptr<Iterator> LevelDBEngine::NewIterator() const {
  return std::make_unique<LevelDBIterator>(
      db_->NewIterator(leveldb::ReadOptions()));
}

std::unique_ptr<Snapshot> LevelDBEngine::GetSnapshot() const {
  return std::make_unique<LevelDBSnapshot>(db_.get());
}

}  // namespace tally::kv::storage
