// A group's state streamed between nodes: export from a consistent engine
// snapshot, import in one batch.

#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/state_machine.h"
#include "spdlog/spdlog.h"
#include "util/status_macros.h"

namespace tally::kv {

// Snapshots stream the group's whole key space, applied state included, in
// chunks of about 1 MiB, from an engine snapshot (a consistent view).
absl::Status StateMachine::Export(raft::Index min_index,
                                  const raft::host::ChunkSink& sink) {
  std::unique_ptr<storage::Snapshot> snap = engine_->GetSnapshot();
  absl::StatusOr<std::optional<std::string>> raw =
      snap->Get(keys_.Key(Space::kApplied));
  kvpb::AppliedState st;
  if (!raw.ok() || !raw->has_value() || !st.ParseFromString(**raw) ||
      st.index() < min_index) {
    return absl::UnavailableError(absl::StrCat(
        "group ", keys_.group(), " has not applied index ", min_index, " yet"));
  }
  constexpr size_t kChunkBytes = 1 << 20;
  raft::host::SnapshotChunk chunk;
  chunk.applied_index = st.index();
  size_t bytes = 0;
  const std::string& prefix = keys_.prefix();
  std::unique_ptr<storage::Iterator> it = snap->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    chunk.kvs.emplace_back(std::string(it->key().substr(prefix.size())),
                           std::string(it->value()));
    bytes += it->key().size() + it->value().size();
    if (bytes >= kChunkBytes) {
      RETURN_IF_ERROR(sink(std::exchange(chunk, {})));
      bytes = 0;
    }
  }
  RETURN_IF_ERROR(it->status());
  chunk.done = true;
  return sink(std::move(chunk));
}

absl::Status StateMachine::Import(const raft::host::ChunkSource& source) {
  // One batch clears the group's key space and writes the new state, so a
  // crash part-way leaves the old state whole (the raft log did not move
  // either, and the snapshot is fetched again). The batch holds the whole
  // state in memory.
  const std::string& prefix = keys_.prefix();
  storage::WriteBatch wb;
  {
    std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      wb.Delete(std::string(it->key()));
    }
    RETURN_IF_ERROR(it->status());
  }
  kvpb::AppliedState st;
  size_t keys = 0;
  const std::string applied_key(1, static_cast<char>(Space::kApplied));
  while (true) {
    absl::StatusOr<raft::host::SnapshotChunk> c = source();
    if (!c.ok()) return c.status();
    keys += c->kvs.size();
    for (auto& [k, v] : c->kvs) {
      if (k == applied_key && !st.ParseFromString(v)) {
        return absl::DataLossError("malformed applied state in snapshot");
      }
      wb.Put(prefix + k, std::move(v));
    }
    if (c->done) break;
  }
  if (st.index() == 0) {
    return absl::DataLossError("snapshot without an applied state");
  }
  RETURN_IF_ERROR(engine_->Write(wb, /*sync=*/true));
  {
    absl::MutexLock l(&mu_);
    const int64_t before = state_.log_time_ms();
    state_ = st;
    Rebase(before, st.log_time_ms());
  }
  for (Module* m : modules_) m->Reloaded();
  MaybeDutiesPending();
  spdlog::info("[g={}] installed snapshot at applied index {}: {} keys",
               keys_.group(), st.index(), keys);
  return absl::OkStatus();
}

}  // namespace tally::kv
