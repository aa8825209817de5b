#ifndef TALLY_KV_SERVER_INTERNAL_WATCH_HUB_H_
#define TALLY_KV_SERVER_INTERNAL_WATCH_HUB_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "util/thread_name.h"
#include "util/waker.h"

namespace tally::kv::server {

// The Watch streams of this node, by group: each is poked when an apply
// pass changes its group's watch history (`tick` false), and every 200 ms
// (`tick` true) for its progress answers and retries.
//
// Thread safety: thread-safe. A poke runs under the hub's mutex (on the
// apply thread or the hub's own) and must not block.
class WatchHub {
 public:
  using Poke = std::function<void(bool tick)>;

  WatchHub()
      : ticker_([this] {
          util::NameThisThread("watch-ticker");
          Tick();
        }) {}
  ~WatchHub() {
    stop_.Stop();
    ticker_.join();
  }
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Until Remove(`id`), `poke` runs at every change of `group`'s history
  // and every 200 ms.
  void Add(const void* id, uint64_t group, Poke poke) {
    absl::MutexLock l(&mu_);
    watchers_[group][id] = std::move(poke);
  }
  // After it returns, the watcher's poke no longer runs.
  void Remove(const void* id, uint64_t group) {
    absl::MutexLock l(&mu_);
    auto it = watchers_.find(group);
    if (it == watchers_.end()) return;
    it->second.erase(id);
    if (it->second.empty()) watchers_.erase(it);
  }
  // Watch streams open.
  size_t Count() {
    absl::MutexLock l(&mu_);
    size_t n = 0;
    for (const auto& [group, pokes] : watchers_) n += pokes.size();
    return n;
  }
  void Changed(uint64_t group) {
    absl::MutexLock l(&mu_);
    auto it = watchers_.find(group);
    if (it == watchers_.end()) return;
    for (auto& [id, poke] : it->second) poke(false);
  }

 private:
  void Tick() {
    while (!stop_.SleepFor(std::chrono::milliseconds(200))) {
      absl::MutexLock l(&mu_);
      for (auto& [group, pokes] : watchers_) {
        for (auto& [id, poke] : pokes) poke(true);
      }
    }
  }

  absl::Mutex mu_;
  util::Waker stop_;  // by the steady clock
  std::map<uint64_t, std::map<const void*, Poke>> watchers_
      ABSL_GUARDED_BY(mu_);
  std::thread ticker_;  // last: started once the rest is
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_WATCH_HUB_H_
