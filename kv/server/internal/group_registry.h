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
    }
    return sm.get();
  }
  // Every state machine, by group.
  std::vector<std::pair<raft::host::GroupId, StateMachine*>> All() const {
    absl::MutexLock l(&mu_);
    std::vector<std::pair<raft::host::GroupId, StateMachine*>> out;
    out.reserve(machines_.size());
    for (const auto& [group, sm] : machines_) out.emplace_back(group, sm.get());
    return out;
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
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_GROUP_REGISTRY_H_
