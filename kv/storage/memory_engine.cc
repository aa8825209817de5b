#include "kv/storage/memory_engine.h"

#include <utility>

namespace tally::kv::storage {

namespace {

using Map = std::map<std::string, std::string, std::less<>>;

// Walks a frozen copy of the map.
class MapIterator final : public Iterator {
 public:
  explicit MapIterator(std::shared_ptr<const Map> map)
      : map_(std::move(map)), it_(map_->begin()) {}
  void Seek(std::string_view key) override { it_ = map_->lower_bound(key); }
  bool Valid() const override { return it_ != map_->end(); }
  void Next() override { ++it_; }
  std::string_view key() const override { return it_->first; }
  std::string_view value() const override { return it_->second; }
  absl::Status status() const override { return absl::OkStatus(); }

 private:
  std::shared_ptr<const Map> map_;
  Map::const_iterator it_;
};

class MapSnapshot final : public Snapshot {
 public:
  explicit MapSnapshot(std::shared_ptr<const Map> map) : map_(std::move(map)) {}
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const override {
    auto it = map_->find(key);
    if (it == map_->end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  std::unique_ptr<Iterator> NewIterator() const override {
    return std::make_unique<MapIterator>(map_);
  }

 private:
  std::shared_ptr<const Map> map_;
};

}  // namespace

absl::StatusOr<std::optional<std::string>> MemoryEngine::Get(
    std::string_view key) const {
  absl::MutexLock l(&mu_);
  auto it = live_.find(key);
  if (it == live_.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

absl::Status MemoryEngine::Write(const WriteBatch& batch, bool sync) {
  absl::MutexLock l(&mu_);
  Undo& undo = undo_.emplace_back();
  for (const auto& [k, v] : batch.ops()) {
    auto it = live_.find(k);
    undo.old.emplace_back(k, it == live_.end()
                                 ? std::nullopt
                                 : std::optional<std::string>(it->second));
    if (v) {
      live_[k] = *v;
    } else if (it != live_.end()) {
      live_.erase(it);
    }
  }
  if (sync) {
    for (auto u = undo_.rbegin(); u != undo_.rend() && !u->synced; ++u) {
      u->synced = true;
    }
    unsynced_ = 0;
    while (undo_.size() > kKeptSynced) undo_.pop_front();
  } else {
    ++unsynced_;
  }
  return absl::OkStatus();
}

void MemoryEngine::RollBack() {
  Undo& u = undo_.back();
  for (auto it = u.old.rbegin(); it != u.old.rend(); ++it) {
    if (it->second) {
      live_[it->first] = std::move(*it->second);
    } else {
      live_.erase(it->first);
    }
  }
  undo_.pop_back();
}

std::shared_ptr<const Map> MemoryEngine::Copy() const {
  absl::MutexLock l(&mu_);
  return std::make_shared<const Map>(live_);
}

std::unique_ptr<Iterator> MemoryEngine::NewIterator() const {
  return std::make_unique<MapIterator>(Copy());
}

std::unique_ptr<Snapshot> MemoryEngine::GetSnapshot() const {
  return std::make_unique<MapSnapshot>(Copy());
}

void MemoryEngine::Crash() { CrashLosingSynced(0); }

void MemoryEngine::CrashLosingSynced(size_t synced) {
  absl::MutexLock l(&mu_);
  for (; unsynced_ > 0; --unsynced_) RollBack();
  for (; synced > 0 && !undo_.empty(); --synced) RollBack();
  undo_.clear();
}

size_t MemoryEngine::unsynced_writes() const {
  absl::MutexLock l(&mu_);
  return unsynced_;
}

}  // namespace tally::kv::storage
