#include "kv/storage/leveldb_util.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "leveldb/cache.h"
#include "leveldb/env.h"
#include "leveldb/filter_policy.h"
#include "util/thread_name.h"

namespace tally::kv::storage {

absl::Status FromLevelDB(const leveldb::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  const std::string msg = absl::StrCat(what, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  return absl::InternalError(msg);
}

namespace {

class SyncOnCloseFile final : public leveldb::WritableFile {
 public:
  explicit SyncOnCloseFile(leveldb::WritableFile* f) : f_(f) {}
  ~SyncOnCloseFile() override { Close(); }
  leveldb::Status Append(const leveldb::Slice& data) override {
    return f_->Append(data);
  }
  leveldb::Status Flush() override { return f_->Flush(); }
  leveldb::Status Sync() override { return f_->Sync(); }
  leveldb::Status Close() override {
    if (closed_) return leveldb::Status::OK();
    closed_ = true;
    leveldb::Status synced = f_->Sync();
    leveldb::Status closed = f_->Close();
    return synced.ok() ? closed : synced;
  }

 private:
  std::unique_ptr<leveldb::WritableFile> f_;
  bool closed_ = false;
};

class SyncOnCloseEnv final : public leveldb::EnvWrapper {
 public:
  explicit SyncOnCloseEnv(leveldb::Env* base) : EnvWrapper(base) {}
  leveldb::Status NewWritableFile(const std::string& name,
                                  leveldb::WritableFile** out) override {
    return Wrap(target()->NewWritableFile(name, out), out);
  }
  leveldb::Status NewAppendableFile(const std::string& name,
                                    leveldb::WritableFile** out) override {
    return Wrap(target()->NewAppendableFile(name, out), out);
  }
  // LevelDB's background thread (flushes, compactions) starts at the first
  // Schedule, as a child of the thread that called it, whose name it would
  // keep (util/thread_name.h): each task it runs names it first.
  void Schedule(void (*fn)(void*), void* arg) override {
    target()->Schedule(&RunNamed, new Task{fn, arg});
  }

 private:
  struct Task {
    void (*fn)(void*);
    void* arg;
  };
  static void RunNamed(void* task) {
    std::unique_ptr<Task> t(static_cast<Task*>(task));
    util::NameThisThread("leveldb-bg");
    t->fn(t->arg);
  }
  static leveldb::Status Wrap(leveldb::Status s, leveldb::WritableFile** out) {
    if (s.ok()) *out = new SyncOnCloseFile(*out);
    return s;
  }
};

// A database together with the file system wrapper it was opened with,
// which must outlive it.
class DBWithEnv final : public leveldb::DB {
 public:
  DBWithEnv(std::unique_ptr<leveldb::Env> env, leveldb::DB* db)
      : env_(std::move(env)), db_(db) {}
  leveldb::Status Put(const leveldb::WriteOptions& o, const leveldb::Slice& k,
                      const leveldb::Slice& v) override {
    return db_->Put(o, k, v);
  }
  leveldb::Status Delete(const leveldb::WriteOptions& o,
                         const leveldb::Slice& k) override {
    return db_->Delete(o, k);
  }
  leveldb::Status Write(const leveldb::WriteOptions& o,
                        leveldb::WriteBatch* b) override {
    return db_->Write(o, b);
  }
  leveldb::Status Get(const leveldb::ReadOptions& o, const leveldb::Slice& k,
                      std::string* v) override {
    return db_->Get(o, k, v);
  }
  leveldb::Iterator* NewIterator(const leveldb::ReadOptions& o) override {
    return db_->NewIterator(o);
  }
  const leveldb::Snapshot* GetSnapshot() override { return db_->GetSnapshot(); }
  void ReleaseSnapshot(const leveldb::Snapshot* s) override {
    db_->ReleaseSnapshot(s);
  }
  bool GetProperty(const leveldb::Slice& p, std::string* v) override {
    return db_->GetProperty(p, v);
  }
  void GetApproximateSizes(const leveldb::Range* r, int n,
                           uint64_t* sizes) override {
    db_->GetApproximateSizes(r, n, sizes);
  }
  void CompactRange(const leveldb::Slice* begin,
                    const leveldb::Slice* end) override {
    db_->CompactRange(begin, end);
  }

 private:
  std::unique_ptr<leveldb::Env> env_;  // declared first: destroyed last
  std::unique_ptr<leveldb::DB> db_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<leveldb::DB>> OpenLevelDB(
    const std::string& path, const LevelDBOptions& o) {
  auto env = std::make_unique<SyncOnCloseEnv>(
      o.env != nullptr ? o.env : leveldb::Env::Default());
  leveldb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  options.write_buffer_size = o.write_buffer_size;
  options.env = env.get();
  // Leaked on purpose: LevelDB requires it to outlive every database.
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
  return std::unique_ptr<leveldb::DB>(new DBWithEnv(std::move(env), db));
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
