// The apply thread: state machines, in order per group, and the reads
// waiting for an applied index.

#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/host/internal/group_state.h"
#include "raft/host/node_host.h"

namespace tally::raft::host {

void NodeHost::EnqueueApply(ApplyTask task) {
  apply_backlog_ += task.entries.size();
  absl::MutexLock l(&apply_mu_);
  apply_queue_.push_back(std::move(task));
}

void NodeHost::ApplyLoop() {
  while (true) {
    ApplyTask task;
    {
      absl::MutexLock l(&apply_mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(apply_mu_) {
        return !apply_queue_.empty() || apply_stopping_;
      };
      apply_mu_.Await(absl::Condition(&ready));
      if (apply_queue_.empty()) return;
      task = std::move(apply_queue_.front());
      apply_queue_.pop_front();
    }
    RunApply(task);
  }
}

bool NodeHost::RunApplyTask() {
  ApplyTask task;
  {
    absl::MutexLock l(&apply_mu_);
    if (apply_queue_.empty()) return false;
    task = std::move(apply_queue_.front());
    apply_queue_.pop_front();
  }
  RunApply(task);
  return true;
}

void NodeHost::RunApply(ApplyTask& task) {
  if (task.run) {
    task.run();
    return;
  }
  absl::StatusOr<std::vector<std::string>> results =
      task.sm->Apply(task.entries);
  if (!results.ok())
    StorageFailed("applying committed entries", results.status());
  apply_backlog_ -= task.entries.size();
  counters_.Applied(task.entries.size());
  for (size_t i = 0; i < task.entries.size(); ++i) {
    if (task.callbacks[i]) {
      task.callbacks[i](Applied{task.entries[i].index, (*results)[i]});
    }
  }
  const Index applied = task.sm->applied();
  FireWaiters(task.group, applied);
  // Snapshot and compact now and then. The state machine syncs first so
  // that the log never drops entries the state does not durably hold.
  Index& last = applied_at_last_snapshot_[task.group];
  if (applied >= last + options_.snapshot_every) {
    last = applied;
    absl::StatusOr<Index> durable = task.sm->Sync();
    if (!durable.ok())
      StorageFailed("syncing the state machine", durable.status());
    Post([this, group = task.group, d = *durable]() {
      if (GroupState* g = Touch(group)) MaybeCompact(*g, d);
    });
  }
}

void NodeHost::WaitApplied(GroupId group, Index index, ReadCallback done) {
  StateMachine* sm = nullptr;
  {
    absl::MutexLock l(&mu_);
    sm = machines_[group];
  }
  {
    absl::MutexLock l(&apply_mu_);
    if (sm == nullptr ||
        (sm->applied() < index && !options_.defects.read_before_applied)) {
      waiters_[group].emplace(index, std::move(done));
      return;
    }
  }
  done(index);
}

void NodeHost::FireWaiters(GroupId group, Index applied) {
  std::vector<std::pair<Index, ReadCallback>> ready;
  {
    absl::MutexLock l(&apply_mu_);
    auto& w = waiters_[group];
    auto end = w.upper_bound(applied);
    for (auto it = w.begin(); it != end; ++it) {
      ready.emplace_back(it->first, std::move(it->second));
    }
    w.erase(w.begin(), end);
  }
  for (auto& [index, cb] : ready) cb(index);
}

}  // namespace tally::raft::host
