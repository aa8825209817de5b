#ifndef TALLY_KV_SERVER_INTERNAL_LOCK_WAITS_H_
#define TALLY_KV_SERVER_INTERNAL_LOCK_WAITS_H_

#include <cstdint>
#include <functional>
#include <map>
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

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_LOCK_WAITS_H_
