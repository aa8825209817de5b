#ifndef TALLY_KV_SERVER_INTERNAL_LOCK_WAITS_H_
#define TALLY_KV_SERVER_INTERNAL_LOCK_WAITS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "kv/lock/lock.h"

namespace tally::kv::server {

// The Acquire calls of this node waiting for a lock, by request id. A wait
// is registered before its request is proposed, so a grant applied at any
// time after (in the same apply pass even) finds it.
//
// Thread safety: thread-safe. `Granted` runs on the apply thread.
class LockWaits {
 public:
  using Done = std::function<void(const kvpb::LockGrant&)>;

  void Add(uint64_t request_id, Done done) {
    absl::MutexLock l(&mu_);
    waits_[request_id] = std::move(done);
  }
  // False if it was granted (or never added).
  bool Remove(uint64_t request_id) {
    absl::MutexLock l(&mu_);
    return waits_.erase(request_id) > 0;
  }
  // Answers (and removes) the waits that the grants are for.
  void Granted(const std::vector<Locks::Grant>& grants) {
    std::vector<std::pair<Done, kvpb::LockGrant>> ready;
    {
      absl::MutexLock l(&mu_);
      for (const Locks::Grant& g : grants) {
        auto it = waits_.find(g.holder.request_id());
        if (it == waits_.end()) continue;
        ready.emplace_back(std::move(it->second), g.holder);
        waits_.erase(it);
      }
    }
    for (auto& [done, grant] : ready) done(grant);
  }

 private:
  absl::Mutex mu_;
  std::map<uint64_t, Done> waits_ ABSL_GUARDED_BY(mu_);
};

// The Observe streams of this node, by lock name: each is poked when an
// apply pass changes its lock's record.
//
// Thread safety: thread-safe. `Changed` runs on the apply thread; a poke
// runs under this registry's mutex and must not block.
class LockObservers {
 public:
  using Poke = std::function<void()>;

  // Until Remove(`id`), `poke` runs at every change of lock `name`.
  void Add(const void* id, const std::string& name, Poke poke) {
    absl::MutexLock l(&mu_);
    observers_[name][id] = std::move(poke);
  }
  // After it returns, the observer's poke no longer runs.
  void Remove(const void* id, const std::string& name) {
    absl::MutexLock l(&mu_);
    auto it = observers_.find(name);
    if (it == observers_.end()) return;
    it->second.erase(id);
    if (it->second.empty()) observers_.erase(it);
  }
  void Changed(const std::set<std::string>& names) {
    absl::MutexLock l(&mu_);
    for (const std::string& name : names) {
      auto it = observers_.find(name);
      if (it == observers_.end()) continue;
      for (auto& [id, poke] : it->second) poke();
    }
  }

 private:
  absl::Mutex mu_;
  std::map<std::string, std::map<const void*, Poke>> observers_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_LOCK_WAITS_H_
