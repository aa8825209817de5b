#include <algorithm>
#include <exception>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "client/fingerprint.h"
#include "client/internal/writes.h"
#include "client/lock_session.h"
#include "rpc/reasons.h"
#include "rpc/status.h"
#include "tally/saga.h"

namespace tally {

using client::Fingerprint;
using client::LockSession;
namespace internal = client::internal;

StepResult StepResult::Ok(std::string output, std::vector<Write> effects) {
  return {kOk, std::move(output), std::move(effects)};
}
StepResult StepResult::Retry(std::string error) {
  return {kRetryable, std::move(error), {}};
}
StepResult StepResult::Fail(std::string error) {
  return {kTerminal, std::move(error), {}};
}

namespace {

using std::chrono::milliseconds;

bool Ended(const rpc::SagaRecord& r) {
  return r.state() == rpc::SAGA_DONE || r.state() == rpc::SAGA_COMPENSATED ||
         r.state() == rpc::SAGA_INCIDENT;
}

const rpc::SagaPhase& PhaseOf(const rpc::SagaRecord& r, uint32_t step,
                              bool compensation) {
  return compensation ? r.steps(step).compensation() : r.steps(step).forward();
}

rpc::SagaDefinition ToApi(const SagaDefinition& d) {
  rpc::SagaDefinition out;
  out.set_name(d.name);
  for (const SagaStep& s : d.steps) {
    rpc::SagaStepDef* def = out.add_steps();
    def->set_name(s.name);
    def->set_kind(s.kind == StepKind::kPivot       ? rpc::STEP_PIVOT
                  : s.kind == StepKind::kRetriable ? rpc::STEP_RETRIABLE
                                                   : rpc::STEP_COMPENSABLE);
    def->set_timeout_ms(s.timeout.count());
    def->set_max_attempts(s.max_attempts);
  }
  return out;
}

PhaseStatus FromApi(const rpc::SagaPhase& p) {
  return {static_cast<PhaseState>(p.state()), p.attempts(), p.output(),
          p.error()};
}

SagaStatus FromApi(const rpc::SagaRecord& r) {
  SagaStatus out;
  out.id = r.id();
  out.definition = r.definition();
  out.state = static_cast<SagaState>(r.state());
  out.version = r.version();
  for (const rpc::SagaStep& s : r.steps()) {
    out.steps.push_back(
        {s.name(), FromApi(s.forward()), FromApi(s.compensation())});
  }
  out.reason = r.reason();
  out.incident = r.incident();
  return out;
}

static_assert(static_cast<int>(SagaState::kIncident) == rpc::SAGA_INCIDENT);
static_assert(static_cast<int>(PhaseState::kMarkedDone) ==
              rpc::PHASE_MARKED_DONE);

// Full jitter: uniform in [0, min(max, base * 2^failures)].
milliseconds Backoff(const SagaStep& s, uint32_t failures) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  int64_t cap = s.backoff_base.count();
  for (uint32_t i = 0; i < failures && cap < s.backoff_max.count(); ++i) {
    cap *= 2;
  }
  cap = std::min<int64_t>(cap, s.backoff_max.count());
  return milliseconds(std::uniform_int_distribution<int64_t>(0, cap)(rng));
}

// One saga driven by this process under its lock.
class Coordinator {
 public:
  Coordinator(client::Client* client, const SagaRunner::Options& options,
              const SagaDefinition& def, std::string id, LockSession* lock,
              uint64_t token)
      : client_(client),
        options_(options),
        def_(def),
        id_(std::move(id)),
        lock_(lock),
        token_(token) {}

  // Moves the saga on until it ends (or this coordinator is replaced).
  absl::StatusOr<rpc::SagaRecord> Drive() {
    for (;;) {
      if (lock_->lost()) return Lost();
      absl::StatusOr<rpc::SagaRecord> rec = client_->SagaGet(id_);
      if (!rec.ok()) return rec.status();
      if (Ended(*rec)) return rec;
      if (!rec->has_next()) {
        return absl::InternalError(
            absl::StrCat("saga \"", id_, "\" is running with no step next"));
      }
      const uint32_t step = rec->next_step();
      const bool compensation = rec->next_compensation();
      const rpc::SagaPhase& phase = PhaseOf(*rec, step, compensation);
      if (phase.state() == rpc::PHASE_PENDING && phase.attempts() > 0) {
        std::this_thread::sleep_for(
            Backoff(def_.steps[step], phase.attempts()));
      }
      rpc::SagaTransitionRequest start = Request(*rec, rpc::SAGA_START);
      absl::StatusOr<rpc::SagaRecord> started = Transition(start);
      if (!started.ok()) {
        if (rpc::HasReason(started.status(), rpc::kReasonVersionChanged)) {
          continue;  // changed under us (a timeout): read it again
        }
        return started.status();
      }
      absl::StatusOr<std::optional<rpc::SagaTransitionRequest>> end =
          Attempt(*started, step, compensation);
      if (!end.ok()) return end.status();
      if (!*end) continue;  // another coordinator took the step's key over
      absl::StatusOr<rpc::SagaRecord> ended = Transition(**end);
      if (!ended.ok() &&
          !rpc::HasReason(ended.status(), rpc::kReasonVersionChanged)) {
        return ended.status();
      }
    }
  }

 private:
  absl::Status Lost() const {
    return absl::AbortedError(absl::StrCat(
        "lost the lock on saga \"", id_,
        "\" (its lease may have ended): another coordinator may run it"));
  }

  rpc::SagaTransitionRequest Request(const rpc::SagaRecord& rec,
                                     rpc::SagaAction action) const {
    rpc::SagaTransitionRequest req;
    req.set_id(id_);
    req.set_version(rec.version());
    req.set_fence_token(token_);
    req.set_action(action);
    req.set_step(rec.next_step());
    req.set_compensation(rec.next_compensation());
    return req;
  }

  absl::StatusOr<rpc::SagaRecord> Transition(
      const rpc::SagaTransitionRequest& req) {
    absl::StatusOr<rpc::SagaTransitionResponse> r =
        client_->SagaTransition(req);
    if (!r.ok()) {
      if (rpc::HasReason(r.status(), rpc::kReasonStaleToken)) {
        return absl::AbortedError(
            absl::StrCat("another coordinator took saga \"", id_,
                         "\" over: ", r.status().message()));
      }
      return r.status();
    }
    if (options_.on_transition) options_.on_transition(FromApi(r->record()));
    return std::move(*r->mutable_record());
  }

  // Runs the started attempt at (`step`, `compensation`) under the phase's
  // idempotency key: the transition that ends it, or nullopt if another
  // coordinator took the key over.
  absl::StatusOr<std::optional<rpc::SagaTransitionRequest>> Attempt(
      const rpc::SagaRecord& rec, uint32_t step, bool compensation) {
    const rpc::SagaStep& s = rec.steps(step);
    StepContext ctx;
    ctx.saga_id = id_;
    ctx.input = rec.input();
    ctx.step = s.name();
    ctx.compensation = compensation;
    ctx.attempt = PhaseOf(rec, step, compensation).attempts();
    ctx.idem_scope = s.idem_scope();
    ctx.idem_key = compensation ? s.compensation_idem_key() : s.idem_key();
    ctx.fence_token = token_;
    for (const rpc::SagaStep& done : rec.steps()) {
      if (done.forward().state() == rpc::PHASE_SUCCEEDED ||
          done.forward().state() == rpc::PHASE_MARKED_DONE) {
        ctx.outputs[done.name()] = done.forward().output();
      }
    }
    rpc::SagaTransitionRequest end = Request(rec, rpc::SAGA_SUCCEED);
    auto fail = [&end](const std::string& error, bool retryable) {
      end.set_action(rpc::SAGA_FAIL);
      end.set_error(error);
      end.set_retryable(retryable);
      return std::optional(end);
    };
    rpc::IdemBeginRequest begin;
    begin.set_scope(ctx.idem_scope);
    begin.set_key(ctx.idem_key);
    begin.set_fingerprint(Fingerprint(ctx.idem_key));
    begin.set_claim_ttl_ms(options_.claim_ttl.count());
    // Kept as long as the saga is: a step resumed within that time is
    // never run again once done.
    begin.set_retention_ms(rec.retention_ms());
    for (;;) {
      if (lock_->lost()) return Lost();
      absl::StatusOr<rpc::IdemBeginResponse> begun = client_->IdemBegin(begin);
      if (!begun.ok()) return begun.status();
      switch (begun->outcome()) {
        case rpc::IdemBeginResponse::STARTED:
          break;
        case rpc::IdemBeginResponse::FINISHED:
          // Done before (by this saga's earlier coordinator): its result,
          // without running the step's code again.
          if (begun->record().state() == rpc::IDEM_COMPLETED) {
            end.set_output(begun->record().response());
            return std::optional(end);
          }
          return fail(begun->record().response(), false);
        case rpc::IdemBeginResponse::IN_PROGRESS:
          // An earlier attempt's claim: it finishes, or runs out.
          std::this_thread::sleep_for(std::min<milliseconds>(
              milliseconds(begun->retry_after_ms()), milliseconds(1000)));
          continue;
        default:
          return fail(absl::StrCat("idempotency key \"", ctx.idem_key,
                                   "\" was used for another request"),
                      false);
      }
      ctx.idem_token = begun->token();
      end.set_token(ctx.idem_token);
      const SagaStep& def = def_.steps[step];
      StepResult result;
      try {
        result = compensation ? def.compensation(ctx) : def.action(ctx);
      } catch (const std::exception& e) {
        result = StepResult::Retry(absl::StrCat("threw: ", e.what()));
      }
      absl::Status finished;
      if (result.kind == StepResult::kOk) {
        finished = client_
                       ->IdemComplete(ctx.idem_scope, ctx.idem_key,
                                      ctx.idem_token, result.output,
                                      internal::ToTxnOps(result.effects))
                       .status();
      } else {
        const bool retryable = result.kind == StepResult::kRetryable;
        finished = client_
                       ->IdemFail(ctx.idem_scope, ctx.idem_key, ctx.idem_token,
                                  retryable, result.output)
                       .status();
        // A retried retryable Fail finds the record gone: failed either way.
        if (retryable && rpc::HasReason(finished, rpc::kReasonNotClaimed)) {
          finished = absl::OkStatus();
        }
      }
      if (rpc::HasReason(finished, rpc::kReasonStaleToken)) {
        return std::nullopt;  // taken over: the taker records the step
      }
      if (!finished.ok()) return finished;
      if (options_.on_step_stored) options_.on_step_stored(ctx, result);
      if (result.kind == StepResult::kOk) {
        end.set_output(result.output);
        return std::optional(end);
      }
      return fail(result.output, result.kind == StepResult::kRetryable);
    }
  }

  client::Client* const client_;
  const SagaRunner::Options& options_;
  const SagaDefinition& def_;
  const std::string id_;
  LockSession* const lock_;
  const uint64_t token_;
};

}  // namespace

const char* Name(SagaState s) {
  switch (s) {
    case SagaState::kRunning:
      return "running";
    case SagaState::kCompensating:
      return "compensating";
    case SagaState::kDone:
      return "done";
    case SagaState::kCompensated:
      return "compensated";
    default:
      return "incident";
  }
}

struct SagaRunner::Impl {
  client::Client* client;
  Options options;
  absl::Mutex mu;
  std::map<std::string, SagaDefinition> definitions ABSL_GUARDED_BY(mu);

  const SagaDefinition* Find(const std::string& name) {
    absl::MutexLock l(&mu);
    auto it = definitions.find(name);
    return it == definitions.end() ? nullptr : &it->second;
  }

  // Drives the existing saga `id` to its end under its lock.
  absl::StatusOr<rpc::SagaRecord> Run(const std::string& id,
                                      milliseconds lock_wait) {
    absl::StatusOr<rpc::SagaRecord> rec = client->SagaGet(id);
    if (!rec.ok() || Ended(*rec)) return rec;
    const SagaDefinition* def = Find(rec->definition());
    bool same = def != nullptr &&
                def->steps.size() == static_cast<size_t>(rec->steps_size());
    for (int i = 0; same && i < rec->steps_size(); ++i) {
      same = def->steps[i].name == rec->steps(i).name();
    }
    if (!same) {
      return absl::FailedPreconditionError(absl::StrCat(
          "saga \"", id, "\" is of definition \"", rec->definition(),
          "\", which this runner has not registered with the same steps"));
    }
    LockSession::Options lo;
    lo.ttl = options.lock_ttl;
    absl::StatusOr<std::unique_ptr<LockSession>> lock =
        LockSession::Open(client, lo);
    if (!lock.ok()) return lock.status();
    absl::StatusOr<rpc::AcquireResponse> grant =
        (*lock)->Acquire(absl::StrCat("saga/", id), lock_wait);
    if (grant.ok() && !grant->acquired()) {
      return absl::DeadlineExceededError(
          absl::StrCat("saga \"", id,
                       "\" is being run by another coordinator (its lock "
                       "is held under token ",
                       grant->holder().token(), ")"));
    }
    if (!grant.ok()) return grant.status();
    // Ends with the lock session: the lease is revoked, the lock released.
    return Coordinator(client, options, *def, id, lock->get(),
                       grant->holder().token())
        .Drive();
  }
};

SagaRunner::SagaRunner(Client* client, Options options)
    : impl_(new Impl{&client->internal(), std::move(options)}) {}

SagaRunner::~SagaRunner() = default;

absl::Status SagaRunner::Register(SagaDefinition definition) {
  if (definition.name.empty()) {
    return absl::InvalidArgumentError("a saga definition needs a name");
  }
  for (const SagaStep& s : definition.steps) {
    const std::string which =
        absl::StrCat("saga \"", definition.name, "\", step \"", s.name, "\"");
    if (!s.action) {
      return absl::InvalidArgumentError(absl::StrCat(which, ": no action"));
    }
    if (s.kind == StepKind::kCompensable && !s.compensation) {
      return absl::InvalidArgumentError(absl::StrCat(
          which,
          ": a compensable step without compensation; give it one, or make "
          "it the pivot or a retriable step after the pivot"));
    }
    if (s.kind != StepKind::kCompensable && s.compensation) {
      return absl::InvalidArgumentError(absl::StrCat(
          which,
          ": the pivot and the steps after it are never undone; drop "
          "the compensation or make the step compensable"));
    }
    if (s.backoff_base.count() <= 0 || s.backoff_max < s.backoff_base) {
      return absl::InvalidArgumentError(absl::StrCat(
          which, ": backoff needs 0 < backoff_base <= backoff_max"));
    }
  }
  absl::MutexLock l(&impl_->mu);
  const std::string name = definition.name;
  impl_->definitions[name] = std::move(definition);
  return absl::OkStatus();
}

absl::StatusOr<SagaStatus> SagaRunner::Run(const std::string& definition,
                                           const std::string& id,
                                           const std::string& input) {
  const SagaDefinition* def = impl_->Find(definition);
  if (def == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("no saga definition \"", definition, "\" registered"));
  }
  rpc::SagaCreateRequest req;
  req.set_id(id);
  *req.mutable_definition() = ToApi(*def);
  req.set_input(input);
  req.set_fingerprint(Fingerprint(absl::StrCat(definition, "\n", input)));
  req.set_deadline_ms(impl_->options.deadline.count());
  req.set_retention_ms(impl_->options.retention.count());
  absl::StatusOr<rpc::SagaCreateResponse> created =
      impl_->client->SagaCreate(req);
  if (!created.ok()) return created.status();
  return Resume(id);
}

absl::StatusOr<SagaStatus> SagaRunner::Resume(const std::string& id) {
  absl::StatusOr<rpc::SagaRecord> r = impl_->Run(id, impl_->options.lock_wait);
  if (!r.ok()) return r.status();
  return FromApi(*r);
}

absl::StatusOr<size_t> SagaRunner::ResumeAll(milliseconds idle) {
  absl::StatusOr<std::vector<rpc::SagaRecord>> sagas = impl_->client->SagaList(
      {rpc::SAGA_RUNNING, rpc::SAGA_COMPENSATING}, idle);
  if (!sagas.ok()) return sagas.status();
  size_t ended = 0;
  for (const rpc::SagaRecord& r : *sagas) {
    if (impl_->Find(r.definition()) == nullptr) continue;
    absl::StatusOr<rpc::SagaRecord> out = impl_->Run(r.id(), milliseconds(0));
    if (out.ok()) {
      ++ended;
    } else if (out.status().code() != absl::StatusCode::kDeadlineExceeded &&
               out.status().code() != absl::StatusCode::kAborted) {
      return out.status();  // not merely run by someone else
    }
  }
  return ended;
}

absl::StatusOr<SagaStatus> SagaRunner::Get(const std::string& id) {
  absl::StatusOr<rpc::SagaRecord> r = impl_->client->SagaGet(id);
  if (!r.ok()) return r.status();
  return FromApi(*r);
}

}  // namespace tally
