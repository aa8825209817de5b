#include "kv/state_machine.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/encode.h"

namespace tally::kv {

kvpb::CommandResult Refusal(absl::StatusCode code, std::string message,
                            const char* reason) {
  kvpb::CommandResult r;
  r.set_error_code(static_cast<int>(code));
  r.set_error_message(std::move(message));
  r.set_error_reason(reason);
  return r;
}

StateMachine::StateMachine(storage::Engine* engine, raft::host::GroupId group,
                           MonotonicClock clock)
    : engine_(engine),
      keys_(group),
      clock_(std::move(clock)),
      watch_(engine, &keys_),
      kv_(engine, &keys_, &watch_),
      meta_(engine, &keys_),
      leases_(engine, &keys_),
      locks_(engine, &keys_, &leases_),
      idem_(engine, &keys_, &kv_),
      sagas_(engine, &keys_),
      crdt_schema_(engine, &keys_),
      crdt_members_(engine, &keys_),
      crdt_cas_rows_(engine, &keys_),
      auth_(engine, &keys_),
      sessions_(&keys_),
      modules_{&sessions_,      &kv_,          &meta_,
               &leases_,        &locks_,       &idem_,
               &sagas_,         &crdt_schema_, &crdt_members_,
               &crdt_cas_rows_, &watch_,       &auth_} {}

absl::StatusOr<std::unique_ptr<StateMachine>> StateMachine::Open(
    storage::Engine* engine, raft::host::GroupId group, MonotonicClock clock) {
  if (!clock) {
    clock = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
  std::unique_ptr<StateMachine> sm(
      new StateMachine(engine, group, std::move(clock)));
  absl::StatusOr<std::optional<std::string>> v =
      engine->Get(sm->keys_.Key(Space::kApplied));
  if (!v.ok()) return v.status();
  absl::MutexLock l(&sm->mu_);
  if (v->has_value() && !sm->state_.ParseFromString(**v)) {
    return absl::DataLossError(
        absl::StrCat("malformed applied state of group ", group));
  }
  sm->base_log_ms_ = sm->state_.log_time_ms();
  sm->base_clock_ms_ = sm->clock_();
  return sm;
}

int64_t StateMachine::ProposalTimeMs() const {
  absl::MutexLock l(&mu_);
  return AddMs(base_log_ms_, clock_() - base_clock_ms_);
}

int64_t StateMachine::log_time_ms() const {
  absl::MutexLock l(&mu_);
  return state_.log_time_ms();
}

void StateMachine::Rebase(int64_t before, int64_t log_time) {
  // A leader only moves the base forward (to a previous leader's entries
  // ahead of it): its own proposals carry this very projection, so its log
  // time advances at its clock's rate and loses nothing to commit latency.
  // Any other node follows the log: from the last entry that moved log
  // time, its time plus the node's own clock since, never a base of its own
  // that ran ahead while the group stood still (it stayed up while a quorum
  // was down). Elected with such a base, it would jump log time forward and
  // end leases early. Entries that leave log time where it was (the empty
  // entry of a new term, a proposer behind) say nothing of the time now.
  const int64_t now = clock_();
  const bool move = leading_term_ != 0
                        ? log_time > AddMs(base_log_ms_, now - base_clock_ms_)
                        : log_time > before;
  if (move) {
    base_log_ms_ = log_time;
    base_clock_ms_ = now;
  }
}

void StateMachine::OnLeadership(raft::Term term, bool leading) {
  leading_term_ = leading ? term : 0;
  for (Module* m : modules_) m->OnLeadership(term, leading);
  MaybeDutiesPending();
}

int64_t StateMachine::NextDue() const {
  int64_t next = INT64_MAX;
  for (const Module* m : modules_) next = std::min(next, m->NextDue());
  return next;
}

bool StateMachine::MayHaveDuties() const {
  return leading_term_ != 0 && NextDue() != INT64_MAX;
}

void StateMachine::MaybeDutiesPending() {
  if (duties_pending_ && MayHaveDuties()) duties_pending_();
}

std::vector<kvpb::Command> StateMachine::Due() const {
  const int64_t next = NextDue();
  if (next == INT64_MAX) return {};
  const int64_t now = ProposalTimeMs();
  if (now < next) return {};
  std::vector<kvpb::Command> out;
  for (const Module* m : modules_) {
    for (kvpb::Command& c : m->Due(now)) out.push_back(std::move(c));
  }
  return out;
}

absl::StatusOr<std::pair<raft::Index, std::optional<kvpb::LockRecord>>>
StateMachine::LockAt(const std::string& name) const {
  // The applied state is written in the same batch as the data it covers.
  std::unique_ptr<storage::Snapshot> snap = engine_->GetSnapshot();
  absl::StatusOr<std::optional<std::string>> applied =
      snap->Get(keys_.Key(Space::kApplied));
  if (!applied.ok()) return applied.status();
  kvpb::AppliedState st;
  if (*applied && !st.ParseFromString(**applied)) {
    return absl::DataLossError("malformed applied state");
  }
  absl::StatusOr<std::optional<kvpb::LockRecord>> rec =
      locks_.Get(name, snap.get());
  if (!rec.ok()) return rec.status();
  return std::make_pair(st.index(), *std::move(rec));
}

absl::StatusOr<WatchRead> StateMachine::WatchChanges(int64_t after,
                                                     const std::string& start,
                                                     const std::string& end,
                                                     bool prev,
                                                     size_t limit) const {
  std::unique_ptr<storage::Snapshot> snap = engine_->GetSnapshot();
  return watch_.Read(*snap, after, start, end, prev, limit);
}

raft::Term StateMachine::leading_term() const { return leading_term_; }

raft::Index StateMachine::applied() const {
  absl::MutexLock l(&mu_);
  return state_.index();
}

int64_t StateMachine::revision() const {
  absl::MutexLock l(&mu_);
  return state_.revision();
}

absl::Status StateMachine::Bootstrap(
    raft::Index index, const std::vector<kvpb::Member>& members,
    const std::vector<kvpb::RangeDescriptor>& ranges) {
  Batch b(engine_);
  meta_.Bootstrap(b, members, ranges);
  kvpb::AppliedState st;
  st.set_index(index);
  b.Put(keys_.Key(Space::kApplied), st.SerializeAsString());
  if (absl::Status s = engine_->Write(b.writes(), /*sync=*/true); !s.ok()) {
    return s;
  }
  absl::MutexLock l(&mu_);
  state_ = st;
  return absl::OkStatus();
}

// The applies of the groups of one engine, in one batch. Each group's
// applied state is staged with its writes and becomes its state at Commit.
class StateMachine::Pass final : public raft::host::ApplyPass {
 public:
  explicit Pass(storage::Engine* engine) : engine_(engine), batch_(engine) {}

  absl::Status Commit() override {
    if (!batch_.status().ok()) return batch_.status();
    if (absl::Status s = engine_->Write(batch_.writes(), /*sync=*/false);
        !s.ok()) {
      return s;
    }
    for (auto& [sm, st] : staged_) sm->Publish(st);
    staged_.clear();
    return absl::OkStatus();
  }

 private:
  friend class StateMachine;

  // `sm`'s applied state as staged in this pass, else nullptr.
  kvpb::AppliedState* Staged(const StateMachine* sm) {
    for (auto& [s, st] : staged_) {
      if (s == sm) return &st;
    }
    return nullptr;
  }

  storage::Engine* const engine_;
  Batch batch_;
  // Each state machine applied into the pass, in the order of its first
  // apply, with its applied state after its last.
  std::vector<std::pair<StateMachine*, kvpb::AppliedState>> staged_;
};

std::unique_ptr<raft::host::ApplyPass> StateMachine::NewPass() {
  return std::make_unique<Pass>(engine_);
}

bool StateMachine::Joins(const raft::host::ApplyPass& pass) const {
  const auto* p = dynamic_cast<const Pass*>(&pass);
  return p != nullptr && p->engine_ == engine_;
}

absl::StatusOr<std::vector<std::string>> StateMachine::Apply(
    const std::vector<raft::Entry>& entries) {
  Pass pass(engine_);
  absl::StatusOr<std::vector<std::string>> results = ApplyInto(pass, entries);
  if (!results.ok()) return results.status();
  if (absl::Status s = pass.Commit(); !s.ok()) return s;
  return results;
}

absl::StatusOr<std::vector<std::string>> StateMachine::ApplyInto(
    raft::host::ApplyPass& into, const std::vector<raft::Entry>& entries) {
  Pass& pass = static_cast<Pass&>(into);
  kvpb::AppliedState* staged = pass.Staged(this);
  if (staged == nullptr) {
    absl::MutexLock l(&mu_);
    staged = &pass.staged_.emplace_back(this, state_).second;
  }
  kvpb::AppliedState& st = *staged;
  Batch& b = pass.batch_;
  std::vector<std::string> results;
  results.reserve(entries.size());
  for (const raft::Entry& e : entries) {
    if (e.index <= st.index()) {
      results.emplace_back();  // already applied (before a restart)
      continue;
    }
    st.set_index(e.index);
    if (e.type != raft::EntryType::kNormal || e.data.empty()) {
      results.emplace_back();
      continue;
    }
    kvpb::Command cmd;
    if (!cmd.ParseFromString(e.data)) {
      return absl::DataLossError(absl::StrCat("undecodable command at index ",
                                              e.index, " of group ",
                                              keys_.group()));
    }
    ApplyContext ctx{b, keys_, e.index, st};
    const int64_t before = st.log_time_ms();
    st.set_log_time_ms(std::max(before, cmd.time_ms()));
    if (st.log_time_ms() != before) {
      for (Module* m : modules_) m->OnLogTime(ctx, before);
    }
    results.push_back(EncodeDeterministic(Execute(ctx, cmd)));
  }
  if (!b.status().ok()) return b.status();
  b.Put(keys_.Key(Space::kApplied), st.SerializeAsString());
  return results;
}

void StateMachine::Publish(const kvpb::AppliedState& st) {
  {
    absl::MutexLock l(&mu_);
    const int64_t before = state_.log_time_ms();
    state_ = st;
    Rebase(before, st.log_time_ms());
  }
  for (Module* m : modules_) m->Committed();
  MaybeDutiesPending();
}

kvpb::CommandResult StateMachine::Execute(ApplyContext& ctx,
                                          const kvpb::Command& cmd) {
  if (sessions_.Handles(cmd)) return sessions_.Apply(ctx, cmd);
  auto it = std::find_if(modules_.begin(), modules_.end(),
                         [&](Module* m) { return m->Handles(cmd); });
  auto run = [&]() {
    if (it == modules_.end()) {
      return Refusal(absl::StatusCode::kInvalidArgument, "empty command");
    }
    return (*it)->Apply(ctx, cmd);
  };
  if (cmd.session().client_id() != 0) return sessions_.RunOnce(ctx, cmd, run);
  return run();
}

absl::StatusOr<raft::Index> StateMachine::Sync() {
  kvpb::AppliedState st;
  {
    absl::MutexLock l(&mu_);
    st = state_;
  }
  storage::WriteBatch wb;
  wb.Put(keys_.Key(Space::kApplied), st.SerializeAsString());
  if (absl::Status s = engine_->Write(wb, /*sync=*/true); !s.ok()) return s;
  return st.index();
}

}  // namespace tally::kv
