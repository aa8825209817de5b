// A group's state streamed between nodes: export from a consistent LevelDB
// snapshot, import in one batch.

#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/state_machine.h"
#include "kv/storage/leveldb_util.h"
#include "leveldb/write_batch.h"
#include "spdlog/spdlog.h"
#include "util/status_macros.h"

namespace tally::kv {

using storage::FromLevelDB;

// Snapshots stream the group's whole key space, applied state included, in
// chunks of about 1 MiB, from a LevelDB snapshot (a consistent view).
absl::Status StateMachine::Export(raft::Index min_index,
                                  const raft::host::ChunkSink& sink) {
  leveldb::ReadOptions ro;
  ro.snapshot = db_->GetSnapshot();
  struct Release {
    leveldb::DB* db;
    const leveldb::Snapshot* s;
    ~Release() { db->ReleaseSnapshot(s); }
  } release{db_, ro.snapshot};
  std::string raw;
  rpc::AppliedState st;
  leveldb::Status s = db_->Get(ro, keys_.Key(Space::kApplied), &raw);
  if (!s.ok() || !st.ParseFromString(raw) || st.index() < min_index) {
    return absl::UnavailableError(absl::StrCat(
        "group ", keys_.group(), " has not applied index ", min_index, " yet"));
  }
  constexpr size_t kChunkBytes = 1 << 20;
  raft::host::SnapshotChunk chunk;
  chunk.applied_index = st.index();
  size_t bytes = 0;
  const std::string& prefix = keys_.prefix();
  std::unique_ptr<leveldb::Iterator> it(db_->NewIterator(ro));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    chunk.kvs.emplace_back(it->key().ToString().substr(prefix.size()),
                           it->value().ToString());
    bytes += it->key().size() + it->value().size();
    if (bytes >= kChunkBytes) {
      RETURN_IF_ERROR(sink(std::exchange(chunk, {})));
      bytes = 0;
    }
  }
  if (!it->status().ok()) return FromLevelDB(it->status(), "exporting");
  chunk.done = true;
  return sink(std::move(chunk));
}

absl::Status StateMachine::Import(const raft::host::ChunkSource& source) {
  // One batch clears the group's key space and writes the new state, so a
  // crash part-way leaves the old state whole (the raft log did not move
  // either, and the snapshot is fetched again). The batch holds the whole
  // state in memory.
  const std::string& prefix = keys_.prefix();
  leveldb::WriteBatch wb;
  {
    std::unique_ptr<leveldb::Iterator> it(
        db_->NewIterator(leveldb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      wb.Delete(it->key());
    }
  }
  rpc::AppliedState st;
  size_t keys = 0;
  while (true) {
    absl::StatusOr<raft::host::SnapshotChunk> c = source();
    if (!c.ok()) return c.status();
    keys += c->kvs.size();
    for (auto& [k, v] : c->kvs) {
      if (k == "a" && !st.ParseFromString(v)) {
        return absl::DataLossError("malformed applied state in snapshot");
      }
      wb.Put(prefix + k, v);
    }
    if (c->done) break;
  }
  if (st.index() == 0) {
    return absl::DataLossError("snapshot without an applied state");
  }
  leveldb::WriteOptions opts;
  opts.sync = true;
  RETURN_IF_ERROR(FromLevelDB(db_->Write(opts, &wb), "installing snapshot"));
  {
    absl::MutexLock l(&mu_);
    state_ = st;
    Rebase(st.log_time_ms());
  }
  spdlog::info("[g={}] installed snapshot at applied index {}: {} keys",
               keys_.group(), st.index(), keys);
  return absl::OkStatus();
}

}  // namespace tally::kv
