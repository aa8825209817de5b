#ifndef TALLY_KV_SERVER_INTERNAL_WATCH_READS_H_
#define TALLY_KV_SERVER_INTERNAL_WATCH_READS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv/state_machine.h"
#include "kv/watch/history.h"

namespace tally::kv::server {

// Reads of the groups' watch histories, shared: the watch streams of a
// group poked by one change all read the changes after the same revision,
// so one read of every key's changes serves them all, each stream keeping
// those in its range (InWatchRange). A read serves those who ask while the
// group's revision is still the one it began at, and those who ask while
// it runs; a later one reads again.
//
// Thread safety: thread-safe.
class WatchReads {
 public:
  using Result = std::shared_ptr<const absl::StatusOr<WatchRead>>;

  // The changes of every key of `group` (held by `sm`) after `after`, as
  // StateMachine::WatchChanges reads them with `prev` and `limit`.
  Result Get(uint64_t group, const StateMachine& sm, int64_t after, bool prev,
             size_t limit) {
    const int64_t revision = sm.revision();
    std::shared_ptr<Slot> slot;
    bool mine = false;
    {
      absl::MutexLock l(&mu_);
      std::shared_ptr<Slot>& s = slots_[{group, after, prev, limit}];
      if (s == nullptr || s->revision < revision) {
        s = std::make_shared<Slot>();
        s->revision = revision;
        mine = true;
      }
      slot = s;
      if (slots_.size() > kMaxSlots) Evict();
    }
    if (mine) {
      auto r = std::make_shared<const absl::StatusOr<WatchRead>>(
          sm.WatchChanges(after, "", std::string(1, '\0'), prev, limit));
      absl::MutexLock l(&slot->mu);
      slot->result = r;
      return r;
    }
    absl::MutexLock l(&slot->mu);
    slot->mu.Await(absl::Condition(
        +[](Result* r) { return *r != nullptr; }, &slot->result));
    return slot->result;
  }

 private:
  static constexpr size_t kMaxSlots = 256;

  struct Slot {
    int64_t revision = 0;  // the group's when the read began
    absl::Mutex mu;
    Result result ABSL_GUARDED_BY(mu);  // null while the read runs
  };

  // Forgets the reads done (their readers hold what they took).
  void Evict() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = slots_.begin(); it != slots_.end();) {
      bool done;
      {
        absl::MutexLock l(&it->second->mu);
        done = it->second->result != nullptr;
      }
      it = done ? slots_.erase(it) : std::next(it);
    }
  }

  absl::Mutex mu_;
  // By group, revision read after, prev and limit.
  std::map<std::tuple<uint64_t, int64_t, bool, size_t>, std::shared_ptr<Slot>>
      slots_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_WATCH_READS_H_
