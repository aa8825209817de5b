#include "kv/saga/saga.h"

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "rpc/reasons.h"

namespace tally::kv {
namespace {

using Record = kvpb::SagaRecord;
using Phase = kvpb::SagaPhase;
using StepDef = kvpb::SagaStepDef;
using Position = Sagas::Position;

std::string Describe(std::string_view id) {
  return absl::StrCat("saga \"",
                      absl::CHexEscape(absl::string_view(id.data(), id.size())),
                      "\"");
}

const char* StateName(Record::State s) {
  switch (s) {
    case Record::RUNNING:
      return "running";
    case Record::COMPENSATING:
      return "compensating";
    case Record::DONE:
      return "done";
    case Record::COMPENSATED:
      return "compensated";
    default:
      return "in an incident";
  }
}

bool Finished(const Phase& p) {
  return p.state() == Phase::SUCCEEDED || p.state() == Phase::SKIPPED ||
         p.state() == Phase::MARKED_DONE;
}

// Whether step `i` did, or may have done, work to undo.
bool NeedsUndo(const Record& r, int i) {
  const Phase& f = r.steps(i).forward();
  return r.definition().steps(i).kind() == StepDef::COMPENSABLE &&
         (f.state() == Phase::SUCCEEDED || f.state() == Phase::MARKED_DONE ||
          (f.state() != Phase::SKIPPED && f.maybe_applied()));
}

bool PassedPivot(const Record& r) {
  for (int i = 0; i < r.steps_size(); ++i) {
    if (r.definition().steps(i).kind() == StepDef::PIVOT) {
      return Finished(r.steps(i).forward());
    }
  }
  return false;
}

std::string StepName(const Record& r, Position p) {
  return absl::StrCat(
      p.compensation ? "the compensation of step \"" : "step \"",
      r.definition().steps(p.step).name(), "\"");
}

Phase* PhaseAt(Record& r, Position p) {
  kvpb::SagaStepRecord* s = r.mutable_steps(p.step);
  return p.compensation ? s->mutable_compensation() : s->mutable_forward();
}

// RUNNING or COMPENSATING with nothing left to do: finished.
void Advance(Record& r, int64_t now) {
  if (Sagas::Current(r)) return;
  if (r.state() == Record::RUNNING) {
    r.set_state(Record::DONE);
    r.set_finished_ms(now);
  } else if (r.state() == Record::COMPENSATING) {
    r.set_state(Record::COMPENSATED);
    r.set_finished_ms(now);
  }
}

void Incident(Record& r, Position p, std::string why) {
  r.set_state(Record::INCIDENT);
  r.set_incident_step(p.step);
  r.set_incident_compensation(p.compensation);
  r.set_incident(std::move(why));
}

// The attempt running at `p` failed: tried again if it may be, else the
// phase failed for good and the saga compensates or waits for an operator.
void FailPhase(Record& r, Position p, const std::string& error, bool retryable,
               bool maybe_applied, int64_t now) {
  Phase* ph = PhaseAt(r, p);
  const StepDef& def = r.definition().steps(p.step);
  ph->set_error(error);
  ph->set_maybe_applied(ph->maybe_applied() || maybe_applied);
  ph->set_finished_ms(now);
  ph->set_deadline_ms(0);
  if (retryable && ph->attempts() - ph->retried_at() < def.max_attempts()) {
    ph->set_state(Phase::PENDING);
    return;
  }
  ph->set_state(Phase::FAILED);
  const std::string what =
      absl::StrCat(StepName(r, p), " failed after ",
                   ph->attempts() - ph->retried_at(), " attempt(s): ", error);
  if (p.compensation) {
    Incident(r, p, what);
  } else if (def.kind() == StepDef::COMPENSABLE ||
             (def.kind() == StepDef::PIVOT && !ph->maybe_applied())) {
    r.set_state(Record::COMPENSATING);
    r.set_reason(what);
  } else if (def.kind() == StepDef::PIVOT) {
    Incident(r, p, absl::StrCat(what, " (the pivot may have run)"));
  } else {
    Incident(r, p, absl::StrCat(what, " (after the pivot)"));
  }
  Advance(r, now);
}

// The next log time at which the record needs a Tick (0: none).
int64_t DueAt(const Record& r) {
  int64_t due = INT64_MAX;
  if (std::optional<Position> p = Sagas::Current(r);
      p && r.state() != Record::INCIDENT) {
    const Phase& ph = p->compensation ? r.steps(p->step).compensation()
                                      : r.steps(p->step).forward();
    if (ph.state() == Phase::RUNNING && ph.deadline_ms() > 0) {
      due = ph.deadline_ms();
    }
  }
  if (r.state() == Record::RUNNING && r.deadline_ms() > 0 && !PassedPivot(r)) {
    due = std::min(due, r.deadline_ms());
  }
  if (r.state() == Record::DONE || r.state() == Record::COMPENSATED) {
    due = std::min(due, AddMs(r.finished_ms(), r.retention_ms()));
  }
  return due == INT64_MAX ? 0 : due;
}

// Applies what log time `now` decides: a timed-out attempt fails, a passed
// deadline turns the saga to compensating. Whether anything changed.
bool ApplyTime(Record& r, int64_t now) {
  bool changed = false;
  if (r.state() == Record::RUNNING || r.state() == Record::COMPENSATING) {
    if (std::optional<Position> p = Sagas::Current(r)) {
      Phase* ph = PhaseAt(r, *p);
      if (ph->state() == Phase::RUNNING && ph->deadline_ms() > 0 &&
          ph->deadline_ms() <= now) {
        FailPhase(
            r, *p,
            absl::StrCat("attempt ", ph->attempts(), " timed out after ",
                         r.definition().steps(p->step).timeout_ms(), " ms"),
            /*retryable=*/true, /*maybe_applied=*/true, now);
        changed = true;
      }
    }
  }
  if (r.state() == Record::RUNNING && r.deadline_ms() > 0 &&
      r.deadline_ms() <= now && !PassedPivot(r)) {
    if (std::optional<Position> p = Sagas::Current(r)) {
      Phase* ph = PhaseAt(r, *p);
      if (ph->state() == Phase::RUNNING) {
        ph->set_state(Phase::FAILED);
        ph->set_maybe_applied(true);
        ph->set_finished_ms(now);
        ph->set_deadline_ms(0);
        ph->set_error("cut off by the saga's deadline");
      }
    }
    r.set_state(Record::COMPENSATING);
    r.set_reason("the saga's deadline passed");
    Advance(r, now);
    changed = true;
  }
  return changed;
}

}  // namespace

absl::Status Sagas::CheckId(std::string_view id) {
  if (id.empty() || id.size() > kMaxSagaIdBytes ||
      id.find('\0') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("a saga id must be 1 to ", kMaxSagaIdBytes,
                     " bytes with no NUL byte (got ", id.size(), " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status Sagas::CheckDefinition(const kvpb::SagaDefinition& def) {
  if (def.steps().empty() ||
      static_cast<size_t>(def.steps_size()) > kMaxSagaSteps) {
    return absl::InvalidArgumentError(
        absl::StrCat("a saga has 1 to ", kMaxSagaSteps, " steps (got ",
                     def.steps_size(), ")"));
  }
  std::set<std::string> names;
  int pivot = -1;
  for (int i = 0; i < def.steps_size(); ++i) {
    const StepDef& s = def.steps(i);
    const std::string which =
        absl::StrCat("step ", i + 1, " \"", absl::CHexEscape(s.name()), "\"");
    if (s.name().empty() || s.name().size() > kMaxSagaStepNameBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("step ", i + 1, ": a step name must be 1 to ",
                       kMaxSagaStepNameBytes, " bytes"));
    }
    if (!names.insert(s.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(which, ": two steps have this name"));
    }
    if (s.max_attempts() == 0 || s.max_attempts() > kMaxSagaStepAttempts) {
      return absl::InvalidArgumentError(absl::StrCat(
          which, ": max attempts must be 1 to ", kMaxSagaStepAttempts));
    }
    if (s.timeout_ms() < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(which, ": a negative timeout"));
    }
    switch (s.kind()) {
      case StepDef::PIVOT:
        if (pivot >= 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              which, ": a second pivot (step ", pivot + 1, " is the pivot)"));
        }
        pivot = i;
        break;
      case StepDef::COMPENSABLE:
        if (pivot >= 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              which, ": a compensable step after the pivot (step ", pivot + 1,
              "): nothing before it could be undone once the pivot ran"));
        }
        break;
      case StepDef::RETRIABLE:
        if (pivot < 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              which,
              ": a step without compensation before the pivot; give it one, "
              "or make it (or an earlier step) the pivot"));
        }
        break;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(which, ": unknown kind ", s.kind()));
    }
  }
  return absl::OkStatus();
}

std::optional<Position> Sagas::Current(const Record& r) {
  switch (r.state()) {
    case Record::RUNNING:
      for (int i = 0; i < r.steps_size(); ++i) {
        if (!Finished(r.steps(i).forward())) {
          return Position{static_cast<uint32_t>(i), false};
        }
      }
      return std::nullopt;
    case Record::COMPENSATING:
      for (int i = r.steps_size() - 1; i >= 0; --i) {
        if (NeedsUndo(r, i) && !Finished(r.steps(i).compensation())) {
          return Position{static_cast<uint32_t>(i), true};
        }
      }
      return std::nullopt;
    case Record::INCIDENT:
      return Position{r.incident_step(), r.incident_compensation()};
    default:
      return std::nullopt;
  }
}

std::string Sagas::RecordKey(std::string_view id) const {
  return keys_->Key(Space::kSaga, id);
}

bool Sagas::Handles(const kvpb::Command& cmd) const {
  return cmd.has_saga_create() || cmd.has_saga_transition() ||
         cmd.has_saga_tick();
}

std::optional<Record> Sagas::Read(Batch& b, std::string_view id) {
  std::optional<std::string> raw = b.Read(RecordKey(id));
  if (!raw) return std::nullopt;
  Record rec;
  if (!rec.ParseFromString(*raw)) {
    b.Fail(absl::DataLossError("malformed saga record"));
    return std::nullopt;
  }
  return rec;
}

void Sagas::Write(ApplyContext& ctx, std::string_view id, Record& rec,
                  int64_t old_due) {
  rec.set_due_ms(DueAt(rec));
  if (old_due != 0 && old_due != rec.due_ms()) {
    ctx.batch.Delete(due_.Key(old_due, id));
  }
  if (rec.due_ms() != 0) {
    ctx.batch.Put(due_.Key(rec.due_ms(), id), "");
    due_.Wrote(rec.due_ms());
  }
  ctx.batch.Put(RecordKey(id), rec.SerializeAsString());
}

kvpb::CommandResult Sagas::Apply(ApplyContext& ctx, const kvpb::Command& cmd) {
  if (cmd.has_saga_create()) return Create(ctx, cmd.saga_create());
  if (cmd.has_saga_transition()) return Transition(ctx, cmd.saga_transition());
  return Tick(ctx, cmd.saga_tick());
}

kvpb::CommandResult Sagas::Create(ApplyContext& ctx,
                                  const kvpb::SagaCreate& req) {
  absl::Status s = CheckId(req.id());
  if (s.ok()) s = CheckDefinition(req.definition());
  if (s.ok() && (req.deadline_ms() < 0 || req.retention_ms() <= 0 ||
                 req.retention_ms() > kMaxSagaRetentionMs)) {
    s = absl::InvalidArgumentError(
        "a saga needs a deadline of 0 (none) or more and a retention of 1 ms "
        "to 30 days");
  }
  if (s.ok() && req.input().size() > kMaxSagaInputBytes) {
    s = absl::InvalidArgumentError(
        absl::StrCat("saga input of ", req.input().size(),
                     " bytes exceeds the ", kMaxSagaInputBytes, "-byte limit"));
  }
  if (!s.ok()) return Refusal(s.code(), std::string(s.message()));
  const int64_t now = ctx.state.log_time_ms();
  kvpb::CommandResult r;
  kvpb::SagaResult* out = r.mutable_saga();
  out->set_log_time_ms(now);
  if (std::optional<Record> rec = Read(ctx.batch, req.id())) {
    if (rec->fingerprint() != req.fingerprint()) {
      return Refusal(absl::StatusCode::kAlreadyExists,
                     absl::StrCat(Describe(req.id()),
                                  " exists for another request (another "
                                  "fingerprint), created at log time ",
                                  rec->created_ms(), " ms"),
                     rpc::kReasonMismatch);
    }
    out->set_outcome(kvpb::SagaResult::EXISTS);
    *out->mutable_record() = *std::move(rec);
    ctx.Header(out->mutable_header());
    return r;
  }
  Record rec;
  *rec.mutable_definition() = req.definition();
  rec.set_input(req.input());
  rec.set_fingerprint(req.fingerprint());
  rec.set_state(Record::RUNNING);
  rec.set_version(1);
  rec.set_created_ms(now);
  rec.set_updated_ms(now);
  if (req.deadline_ms() > 0) rec.set_deadline_ms(AddMs(now, req.deadline_ms()));
  rec.set_retention_ms(req.retention_ms());
  for (int i = 0; i < req.definition().steps_size(); ++i) rec.add_steps();
  Write(ctx, req.id(), rec, 0);
  out->set_outcome(kvpb::SagaResult::OK);
  *out->mutable_record() = std::move(rec);
  ctx.Header(out->mutable_header());
  return r;
}

kvpb::CommandResult Sagas::Transition(ApplyContext& ctx,
                                      const kvpb::SagaTransition& req) {
  using T = kvpb::SagaTransition;
  std::optional<Record> rec = Read(ctx.batch, req.id());
  if (!rec) {
    return Refusal(absl::StatusCode::kNotFound,
                   absl::StrCat(Describe(req.id()),
                                " does not exist (never created, or removed "
                                "after its retention)"));
  }
  const bool coordinator = req.action() == T::START ||
                           req.action() == T::SUCCEED ||
                           req.action() == T::FAIL;
  if (coordinator && req.fence_token() < rec->fence()) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("lock token ", req.fence_token(),
                     " is below the fence of ", Describe(req.id()), " (",
                     rec->fence(), "): another coordinator took it over"),
        rpc::kReasonStaleToken);
  }
  if (req.version() != rec->version()) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat(Describe(req.id()), " is at version ", rec->version(),
                     ", not ", req.version(), ": read it again"),
        rpc::kReasonVersionChanged);
  }
  if (req.output().size() > kMaxSagaOutputBytes ||
      req.error().size() > kMaxSagaOutputBytes) {
    return Refusal(absl::StatusCode::kInvalidArgument,
                   absl::StrCat("a step's output and error are at most ",
                                kMaxSagaOutputBytes, " bytes each"));
  }
  const Position want{req.step(), req.compensation()};
  const std::optional<Position> at = Current(*rec);
  const bool active =
      rec->state() == Record::RUNNING || rec->state() == Record::COMPENSATING;
  if (coordinator != active || (!coordinator && !at)) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat(
            Describe(req.id()), " is ", StateName(rec->state()),
            coordinator ? ": no step to run" : ": no incident to resolve"),
        rpc::kReasonSagaState);
  }
  if (!at || !(*at == want)) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat(Describe(req.id()), " is at ",
                     at ? StepName(*rec, *at) : "no step", ", not step ",
                     req.step(), req.compensation() ? " (compensation)" : ""),
        rpc::kReasonSagaState);
  }
  const int64_t now = ctx.state.log_time_ms();
  Phase* ph = PhaseAt(*rec, want);
  const StepDef& def = rec->definition().steps(want.step);
  switch (req.action()) {
    case T::START:
      ph->set_state(Phase::RUNNING);
      ph->set_attempts(ph->attempts() + 1);
      ph->set_started_ms(now);
      ph->set_deadline_ms(def.timeout_ms() > 0 ? AddMs(now, def.timeout_ms())
                                               : 0);
      break;
    case T::SUCCEED:
    case T::FAIL:
      if (ph->state() != Phase::RUNNING) {
        return Refusal(
            absl::StatusCode::kFailedPrecondition,
            absl::StrCat(StepName(*rec, want), " of ", Describe(req.id()),
                         " has no attempt running"),
            rpc::kReasonSagaState);
      }
      ph->set_token(req.token());
      if (req.action() == T::FAIL) {
        FailPhase(*rec, want, req.error(), req.retryable(),
                  /*maybe_applied=*/false, now);
        break;
      }
      ph->set_state(Phase::SUCCEEDED);
      ph->set_output(req.output());
      ph->set_error("");
      ph->set_finished_ms(now);
      ph->set_deadline_ms(0);
      Advance(*rec, now);
      break;
    case T::RETRY:
    case T::SKIP:
    case T::MARK_DONE:
      if (req.action() == T::RETRY) {
        ph->set_state(Phase::PENDING);
        ph->set_retried_at(ph->attempts());
      } else if (req.action() == T::SKIP) {
        ph->set_state(Phase::SKIPPED);
      } else {
        ph->set_state(Phase::MARKED_DONE);
        ph->set_output(req.output());
        ph->set_finished_ms(now);
      }
      rec->set_state(want.compensation ? Record::COMPENSATING
                                       : Record::RUNNING);
      rec->clear_incident();
      rec->clear_incident_step();
      rec->clear_incident_compensation();
      Advance(*rec, now);
      break;
    default:
      return Refusal(absl::StatusCode::kInvalidArgument,
                     absl::StrCat("unknown saga action ", req.action()));
  }
  const int64_t old_due = rec->due_ms();
  rec->set_version(rec->version() + 1);
  rec->set_updated_ms(now);
  if (coordinator) rec->set_fence(req.fence_token());
  Write(ctx, req.id(), *rec, old_due);
  kvpb::CommandResult r;
  kvpb::SagaResult* out = r.mutable_saga();
  out->set_outcome(kvpb::SagaResult::OK);
  out->set_log_time_ms(now);
  *out->mutable_record() = *std::move(rec);
  ctx.Header(out->mutable_header());
  return r;
}

kvpb::CommandResult Sagas::Tick(ApplyContext& ctx, const kvpb::SagaTick& req) {
  const int64_t now = ctx.state.log_time_ms();
  uint32_t removed = 0;
  for (const std::string& id : req.ids()) {
    std::optional<Record> rec = Read(ctx.batch, id);
    if (!rec || rec->due_ms() == 0 || rec->due_ms() > now) continue;
    const int64_t old_due = rec->due_ms();
    if ((rec->state() == Record::DONE || rec->state() == Record::COMPENSATED) &&
        AddMs(rec->finished_ms(), rec->retention_ms()) <= now) {
      ctx.batch.Delete(due_.Key(old_due, id));
      ctx.batch.Delete(RecordKey(id));
      ++removed;
      continue;
    }
    if (ApplyTime(*rec, now)) {
      rec->set_version(rec->version() + 1);
      rec->set_updated_ms(now);
    }
    Write(ctx, id, *rec, old_due);
  }
  kvpb::CommandResult r;
  r.mutable_saga()->set_outcome(kvpb::SagaResult::OK);
  r.mutable_saga()->set_removed(removed);
  ctx.Header(r.mutable_saga()->mutable_header());
  return r;
}

std::vector<kvpb::Command> Sagas::Due(int64_t now) const {
  std::vector<std::string> ids = due_.Due(now, kMaxSagasPerTick);
  if (ids.empty()) return {};
  kvpb::Command cmd;
  cmd.mutable_saga_tick()->mutable_ids()->Add(ids.begin(), ids.end());
  return {std::move(cmd)};
}

absl::StatusOr<std::optional<Record>> Sagas::Get(std::string_view id) const {
  absl::StatusOr<std::optional<std::string>> raw = engine_->Get(RecordKey(id));
  if (!raw.ok()) return raw.status();
  if (!raw->has_value()) return std::optional<Record>();
  Record rec;
  if (!rec.ParseFromString(**raw)) {
    return absl::DataLossError("malformed saga record");
  }
  return std::optional<Record>(std::move(rec));
}

absl::StatusOr<std::vector<std::pair<std::string, Record>>> Sagas::List(
    std::string_view after, size_t limit,
    const std::function<bool(const Record&)>& keep) const {
  std::vector<std::pair<std::string, Record>> out;
  const std::string prefix = RecordKey("");
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  it->Seek(prefix + std::string(after));
  for (; it->Valid() && it->key().starts_with(prefix) && out.size() < limit;
       it->Next()) {
    std::string id(it->key().substr(prefix.size()));
    if (!after.empty() && id == after) continue;
    Record rec;
    if (!rec.ParseFromArray(it->value().data(),
                            static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed saga record");
    }
    if (keep(rec)) out.emplace_back(std::move(id), std::move(rec));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

}  // namespace tally::kv
