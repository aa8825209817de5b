#ifndef TALLY_KV_SERVER_INTERNAL_GROUP_REGISTRY_H_
#define TALLY_KV_SERVER_INTERNAL_GROUP_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv/state_machine.h"
#include "raft/host/interfaces.h"

namespace tally::kv::server {

// The state machines of the raft groups this node holds, opened on first
// use. The raft loop adds groups (a leader reaches out to a node that joined)
// while gRPC threads look them up. A state machine is never removed, so a
// pointer from Find stays valid for the registry's life.
//
// Thread safety: thread-safe.
class GroupRegistry {
 public:
  using Opener = std::function<absl::StatusOr<std::unique_ptr<StateMachine>>(
      raft::host::GroupId)>;
  explicit GroupRegistry(Opener open) : open_(std::move(open)) {}

  // The group's state machine, opened now if this node did not hold it.
  absl::StatusOr<StateMachine*> GetOrOpen(raft::host::GroupId group) {
    absl::MutexLock l(&mu_);
    auto& sm = machines_[group];
    if (!sm) {
      absl::StatusOr<std::unique_ptr<StateMachine>> opened = open_(group);
      if (!opened.ok()) {
        machines_.erase(group);
        return opened.status();
      }
      sm = std::move(*opened);
      StateMachine* raw = sm.get();
      raw->set_duties_pending([this, group, raw] {
        absl::MutexLock l(&mu_);
        with_duties_.emplace(group, raw);
      });
    }
    return sm.get();
  }
  // The groups that may have leader duties (StateMachine::MayHaveDuties):
  // with thousands of idle groups, only the few that lead and hold leases
  // or keys attached to leases.
  std::vector<std::pair<raft::host::GroupId, StateMachine*>> WithDuties()
      const {
    absl::MutexLock l(&mu_);
    return {with_duties_.begin(), with_duties_.end()};
  }
  // Drops `group` from WithDuties until it may have duties again.
  void NoDuties(raft::host::GroupId group) {
    absl::MutexLock l(&mu_);
    auto it = with_duties_.find(group);
    // Asked under the mutex: a change that makes it true after this
    // waits for the mutex to add the group back.
    if (it != with_duties_.end() && !it->second->MayHaveDuties()) {
      with_duties_.erase(it);
    }
  }
  // nullptr if this node does not hold the group.
  StateMachine* Find(raft::host::GroupId group) const {
    absl::MutexLock l(&mu_);
    auto it = machines_.find(group);
    return it == machines_.end() ? nullptr : it->second.get();
  }

 private:
  const Opener open_;
  mutable absl::Mutex mu_;
  std::map<raft::host::GroupId, std::unique_ptr<StateMachine>> machines_
      ABSL_GUARDED_BY(mu_);
  std::map<raft::host::GroupId, StateMachine*> with_duties_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_GROUP_REGISTRY_H_
