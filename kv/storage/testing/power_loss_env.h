#ifndef TALLY_KV_STORAGE_TESTING_POWER_LOSS_ENV_H_
#define TALLY_KV_STORAGE_TESTING_POWER_LOSS_ENV_H_

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "leveldb/env.h"

namespace tally::kv::storage::testing {

// The real file system, with a record of how much of each written file was
// synced, so that a test can take the image a power loss would leave: every
// file cut to its synced length. Background work (LevelDB's compactions)
// can be held, to take the image in the window before a rotated log is
// compacted away.
class PowerLossEnv final : public leveldb::EnvWrapper {
 public:
  PowerLossEnv() : EnvWrapper(leveldb::Env::Default()) {}

  leveldb::Status NewWritableFile(const std::string& name,
                                  leveldb::WritableFile** out) override {
    leveldb::Status s = target()->NewWritableFile(name, out);
    if (s.ok()) *out = new File(this, name, *out, 0);
    return s;
  }
  leveldb::Status NewAppendableFile(const std::string& name,
                                    leveldb::WritableFile** out) override {
    uint64_t size = 0;
    if (!target()->GetFileSize(name, &size).ok()) size = 0;
    leveldb::Status s = target()->NewAppendableFile(name, out);
    if (s.ok()) *out = new File(this, name, *out, size);
    return s;
  }
  leveldb::Status RemoveFile(const std::string& name) override {
    absl::MutexLock l(&mu_);
    synced_.erase(name);
    return target()->RemoveFile(name);
  }
  leveldb::Status RenameFile(const std::string& from,
                             const std::string& to) override {
    absl::MutexLock l(&mu_);
    auto it = synced_.find(from);
    if (it != synced_.end()) {
      synced_[to] = it->second;
      synced_.erase(from);
    } else {
      synced_.erase(to);
    }
    return target()->RenameFile(from, to);
  }
  void Schedule(void (*fn)(void*), void* arg) override {
    {
      absl::MutexLock l(&mu_);
      if (hold_) {
        held_.emplace_back(fn, arg);
        return;
      }
    }
    target()->Schedule(fn, arg);
  }

  // While held, background work waits (a database cannot be closed then).
  void HoldBackgroundWork(bool hold) {
    std::vector<std::pair<void (*)(void*), void*>> run;
    {
      absl::MutexLock l(&mu_);
      hold_ = hold;
      if (!hold) run.swap(held_);
    }
    for (auto& [fn, arg] : run) target()->Schedule(fn, arg);
  }

  // Copies directory `dir` to `out` as a power loss would leave it: files
  // written through this env are cut to what was synced of them.
  void CopyAsAfterPowerLoss(const std::string& dir, const std::string& out) {
    absl::MutexLock l(&mu_);
    std::filesystem::create_directories(out);
    for (const auto& f : std::filesystem::directory_iterator(dir)) {
      const std::string name = f.path().string();
      const std::string to = (std::filesystem::path(out) / f.path().filename());
      std::filesystem::copy_file(
          name, to, std::filesystem::copy_options::overwrite_existing);
      auto it = synced_.find(name);
      if (it != synced_.end()) std::filesystem::resize_file(to, it->second);
    }
  }

 private:
  class File final : public leveldb::WritableFile {
   public:
    File(PowerLossEnv* env, std::string name, leveldb::WritableFile* f,
         uint64_t size)
        : env_(env), name_(std::move(name)), f_(f), size_(size) {
      absl::MutexLock l(&env_->mu_);
      env_->synced_[name_] = size;
    }
    leveldb::Status Append(const leveldb::Slice& data) override {
      size_ += data.size();
      return f_->Append(data);
    }
    leveldb::Status Flush() override { return f_->Flush(); }
    leveldb::Status Sync() override {
      leveldb::Status s = f_->Sync();
      if (s.ok()) {
        absl::MutexLock l(&env_->mu_);
        auto it = env_->synced_.find(name_);
        if (it != env_->synced_.end()) it->second = size_;
      }
      return s;
    }
    leveldb::Status Close() override { return f_->Close(); }

   private:
    PowerLossEnv* const env_;
    const std::string name_;
    std::unique_ptr<leveldb::WritableFile> f_;
    uint64_t size_;
  };

  absl::Mutex mu_;
  std::map<std::string, uint64_t> synced_ ABSL_GUARDED_BY(mu_);
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::pair<void (*)(void*), void*>> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv::storage::testing

#endif  // TALLY_KV_STORAGE_TESTING_POWER_LOSS_ENV_H_
