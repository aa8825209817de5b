// The apply thread: state machines, in order per group, several groups per
// pass, and the reads waiting for an applied index.

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "raft/host/internal/group_state.h"
#include "raft/host/node_host.h"

namespace tally::raft::host {

namespace {

// An apply pass takes the queued tasks up to this many entries and bytes
// of entries (and at least one task): enough to write many groups' applies
// at once, few enough that the first proposals of the pass are answered
// soon. Large entries are often costly ones (a lock wait of 64 KiB
// rewrites its lock's queue of up to 4 MiB): a pass of many of them held
// every answer for as long as all took.
constexpr size_t kMostEntriesPerPass = 4096;
constexpr size_t kMostBytesPerPass = 256 << 10;

size_t Bytes(const std::vector<Entry>& entries) {
  size_t n = 0;
  for (const Entry& e : entries) n += e.data.size();
  return n;
}

}  // namespace

void NodeHost::EnqueueApply(std::vector<ApplyTask> tasks) {
  if (tasks.empty()) return;
  for (const ApplyTask& t : tasks) apply_backlog_ += t.entries.size();
  absl::MutexLock l(&apply_mu_);
  for (ApplyTask& t : tasks) apply_queue_.push_back(std::move(t));
}

std::vector<NodeHost::ApplyTask> NodeHost::TakeApplyPass() {
  std::vector<ApplyTask> tasks;
  size_t entries = 0, bytes = 0;
  while (!apply_queue_.empty()) {
    const ApplyTask& next = apply_queue_.front();
    const size_t next_bytes = Bytes(next.entries);
    if (!tasks.empty() &&
        (entries + next.entries.size() > kMostEntriesPerPass ||
         bytes + next_bytes > kMostBytesPerPass)) {
      break;
    }
    entries += next.entries.size();
    bytes += next_bytes;
    tasks.push_back(std::move(apply_queue_.front()));
    apply_queue_.pop_front();
  }
  return tasks;
}

void NodeHost::ApplyLoop() {
  while (true) {
    std::vector<ApplyTask> tasks;
    {
      absl::MutexLock l(&apply_mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(apply_mu_) {
        return !apply_queue_.empty() || apply_stopping_;
      };
      apply_mu_.Await(absl::Condition(&ready));
      if (apply_queue_.empty()) return;
      tasks = TakeApplyPass();
    }
    RunApply(tasks);
  }
}

bool NodeHost::RunApplyPass() {
  std::vector<ApplyTask> tasks;
  {
    absl::MutexLock l(&apply_mu_);
    tasks = TakeApplyPass();
  }
  if (tasks.empty()) return false;
  RunApply(tasks);
  return true;
}

void NodeHost::RunApply(std::vector<ApplyTask>& tasks) {
  std::unique_ptr<ApplyPass> pass;
  // Applied into `pass`, answered once it is committed.
  std::vector<std::pair<ApplyTask*, std::vector<std::string>>> staged;
  auto commit = [&] {
    if (pass != nullptr) {
      if (absl::Status st = pass->Commit(); !st.ok()) {
        StorageFailed("writing applied entries", st);
      }
      pass.reset();
    }
    for (auto& [task, results] : staged) AfterApply(*task, results);
    staged.clear();
  };
  for (ApplyTask& task : tasks) {
    if (task.run) {
      commit();
      task.run();
      continue;
    }
    if (pass != nullptr && !task.sm->Joins(*pass)) commit();
    if (pass == nullptr) pass = task.sm->NewPass();
    absl::StatusOr<std::vector<std::string>> results =
        pass != nullptr ? task.sm->ApplyInto(*pass, task.entries)
                        : task.sm->Apply(task.entries);
    if (!results.ok())
      StorageFailed("applying committed entries", results.status());
    staged.emplace_back(&task, *std::move(results));
    if (pass == nullptr) commit();
  }
  commit();
}

void NodeHost::AfterApply(ApplyTask& task, std::vector<std::string>& results) {
  apply_backlog_ -= task.entries.size();
  counters_.Applied(task.entries.size());
  for (size_t i = 0; i < task.entries.size(); ++i) {
    if (task.callbacks[i]) {
      task.callbacks[i](Applied{task.entries[i].index, std::move(results[i])});
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
