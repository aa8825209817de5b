#include "kv/storage/memory_file_system.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tally::kv::storage {

namespace {

std::string DirOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "" : path.substr(0, slash);
}

}  // namespace

class MemoryFileSystem::File final : public WritableFile {
 public:
  File(MemoryFileSystem* fs, std::string path, uint64_t offset)
      : fs_(fs), path_(std::move(path)), offset_(offset) {}
  absl::Status Append(std::string_view data) override {
    absl::Status st = fs_->Append(path_, offset_, data);
    if (st.ok()) offset_ += data.size();
    return st;
  }
  absl::Status Sync() override { return fs_->Sync(path_); }
  uint64_t offset() const override { return offset_; }

 private:
  MemoryFileSystem* const fs_;
  const std::string path_;
  uint64_t offset_;
};

absl::Status MemoryFileSystem::CreateDir(const std::string&) {
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> MemoryFileSystem::List(
    const std::string& dir) {
  absl::MutexLock l(&mu_);
  std::vector<std::string> names;
  for (const auto& [path, contents] : files_) {
    if (DirOf(path) == dir) names.push_back(path.substr(dir.size() + 1));
  }
  return names;
}

absl::StatusOr<std::string> MemoryFileSystem::Read(const std::string& path) {
  absl::MutexLock l(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(path);
  return it->second.data;
}

absl::StatusOr<std::unique_ptr<WritableFile>> MemoryFileSystem::OpenAt(
    const std::string& path, uint64_t offset, uint64_t) {
  absl::MutexLock l(&mu_);
  Contents& c = files_[path];
  c.data.resize(offset);
  c.synced = std::min<size_t>(c.synced, offset);
  return std::unique_ptr<WritableFile>(new File(this, path, offset));
}

absl::Status MemoryFileSystem::Append(const std::string& path, uint64_t offset,
                                      std::string_view bytes) {
  absl::MutexLock l(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(path);
  std::string& data = it->second.data;
  if (data.size() < offset + bytes.size()) data.resize(offset + bytes.size());
  data.replace(offset, bytes.size(), bytes);
  return absl::OkStatus();
}

absl::Status MemoryFileSystem::Sync(const std::string& path) {
  absl::MutexLock l(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(path);
  Contents& c = it->second;
  c.synced = c.data.size();
  c.sync_points.push_back(c.synced);
  if (c.sync_points.size() > kKeptSynced) c.sync_points.pop_front();
  synced_last_ = path;
  return absl::OkStatus();
}

absl::Status MemoryFileSystem::Remove(const std::string& path) {
  absl::MutexLock l(&mu_);
  if (files_.erase(path) == 0) return absl::NotFoundError(path);
  return absl::OkStatus();
}

absl::Status MemoryFileSystem::Rename(const std::string& from,
                                      const std::string& to) {
  absl::MutexLock l(&mu_);
  auto it = files_.find(from);
  if (it == files_.end()) return absl::NotFoundError(from);
  Contents c = std::move(it->second);
  files_.erase(it);
  files_[to] = std::move(c);
  return absl::OkStatus();
}

absl::Status MemoryFileSystem::SyncDir(const std::string& dir) {
  absl::MutexLock l(&mu_);
  for (auto& [path, c] : files_) {
    if (DirOf(path) == dir) c.durable_name = true;
  }
  return absl::OkStatus();
}

void MemoryFileSystem::Crash(util::RandomSource* tear) {
  absl::MutexLock l(&mu_);
  std::erase_if(files_, [](const auto& f) { return !f.second.durable_name; });
  for (auto& [path, c] : files_) {
    size_t kept = c.synced;
    if (tear != nullptr && c.data.size() > c.synced) {
      const size_t written = tear->Uniform(c.data.size() - c.synced + 1);
      kept += written;
      if (tear->Uniform(2) == 0) {
        std::fill(c.data.begin() + c.synced + written / 2,
                  c.data.begin() + kept, '\0');
      }
    }
    c.data.resize(kept);
    c.synced = kept;
  }
}

void MemoryFileSystem::CrashLosingSynced(size_t syncs) {
  {
    absl::MutexLock l(&mu_);
    auto it = files_.find(synced_last_);
    if (it != files_.end() && syncs > 0) {
      std::deque<size_t>& points = it->second.sync_points;
      const size_t back = std::min(syncs, points.size());
      const size_t to =
          back == points.size() ? 0 : points[points.size() - 1 - back];
      it->second.synced = std::min(it->second.synced, to);
      points.erase(points.end() - back, points.end());
    }
  }
  Crash();
}

}  // namespace tally::kv::storage
