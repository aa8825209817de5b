#include "kv/storage/node_log.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "kv/storage/log_store.h"
#include "spdlog/spdlog.h"
#include "util/status_macros.h"

namespace tally::kv::storage {

namespace {

// Node metadata the server keeps in the log (kv/server/server.cc).
constexpr const char* kMetaNames[] = {"identity", "layout"};

absl::Status CopyOldLog(const std::string& from, const std::string& to) {
  ASSIGN_OR_RETURN(std::unique_ptr<LogStore> old, LogStore::Open(from));
  ASSIGN_OR_RETURN(auto groups, old->Load());
  std::error_code ec;
  std::filesystem::remove_all(to, ec);
  ASSIGN_OR_RETURN(std::unique_ptr<SegmentLog> log, SegmentLog::Open(to));
  std::vector<raft::host::GroupWrite> writes;
  for (auto& [group, g] : groups) {
    raft::host::GroupWrite& w = writes.emplace_back();
    w.group = group;
    w.hard_state = g.hard_state;
    if (!g.snapshot.IsEmpty()) w.snapshot = g.snapshot;
    w.entries = std::move(g.entries);
  }
  RETURN_IF_ERROR(log->Write(writes, /*sync=*/true));
  for (const char* name : kMetaNames) {
    absl::StatusOr<std::string> value = old->GetMeta(name);
    if (absl::IsNotFound(value.status())) continue;
    if (!value.ok()) return value.status();
    RETURN_IF_ERROR(log->PutMeta(name, *value));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SegmentLog>> OpenNodeLog(
    const std::string& data_dir) {
  const std::string dir = data_dir + "/log";
  const std::string old = data_dir + "/raft";
  if (std::filesystem::exists(old) && !std::filesystem::exists(dir)) {
    spdlog::info("copying the raft log from {} (LevelDB) to {}", old, dir);
    const std::string partial = dir + ".partial";
    absl::Status st = CopyOldLog(old, partial);
    if (!st.ok()) {
      return absl::Status(st.code(), absl::StrCat("copying the raft log from ",
                                                  old, ": ", st.message()));
    }
    FileSystem* fs = PosixFileSystem();
    RETURN_IF_ERROR(fs->Rename(partial, dir));
    RETURN_IF_ERROR(fs->Rename(old, old + ".old"));
    RETURN_IF_ERROR(fs->SyncDir(data_dir));
    spdlog::info("raft log copied; {}.old may be removed", old);
  }
  return SegmentLog::Open(dir);
}

}  // namespace tally::kv::storage
