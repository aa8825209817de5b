#ifndef TALLY_PUBLIC_SAGA_H_
#define TALLY_PUBLIC_SAGA_H_

// Sagas: a workflow across services that finishes or undoes what it did,
// even when its coordinator crashes, run by SagaRunner (docs/guarantees.md,
// "Sagas").

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tally/client.h"

namespace tally {

// What a step's action or compensation is given.
struct StepContext {
  std::string saga_id;
  std::string input;
  std::string step;
  bool compensation = false;
  // This attempt (1, 2, ...) of the phase.
  uint32_t attempt = 0;
  // The idempotency key every attempt of this phase runs under, and the
  // token this attempt holds on it: pass them to the service the step
  // calls, so that it does its work once.
  std::string idem_scope;
  std::string idem_key;
  uint64_t idem_token = 0;
  // The coordinator's lock token on the saga.
  uint64_t fence_token = 0;
  // Outputs of the steps that succeeded, by name.
  std::map<std::string, std::string> outputs;
};

// How an attempt ended.
struct StepResult {
  enum Kind { kOk, kRetryable, kTerminal };
  // Done; `effects` (writes of keys in the shard of the step's idempotency
  // record, idem_scope + idem_key) commit in the same raft entry as the
  // step's completion, or not at all.
  static StepResult Ok(std::string output, std::vector<Write> effects = {});
  // Failed for now: tried again (backoff with full jitter) while attempts
  // are left.
  static StepResult Retry(std::string error);
  // Failed for good: the saga compensates, or waits for an operator.
  static StepResult Fail(std::string error);

  Kind kind = kOk;
  std::string output;  // kOk: the output; otherwise the error
  std::vector<Write> effects;
};

using StepFn = std::function<StepResult(const StepContext&)>;

enum class StepKind {
  // Undone by its compensation when a later step fails.
  kCompensable,
  // The point of no return: never undone; the steps after it must finish.
  kPivot,
  // After the pivot: retried, never undone.
  kRetriable,
};

struct SagaStep {
  std::string name;
  StepKind kind = StepKind::kCompensable;
  StepFn action;
  // Required of a compensable step, and only there. Must tolerate an
  // action that did nothing: it runs for an attempt that timed out too.
  StepFn compensation;
  // An attempt running longer fails retryably (0: no limit); the limit is
  // decided by the cluster's log time, not by this process.
  std::chrono::milliseconds timeout{0};
  uint32_t max_attempts = 3;
  // Backoff between attempts: full jitter, exponential from `backoff_base`
  // to `backoff_max`.
  std::chrono::milliseconds backoff_base{50};
  std::chrono::milliseconds backoff_max{5000};
};

struct SagaDefinition {
  std::string name;
  std::vector<SagaStep> steps;
};

enum class SagaState {
  kRunning,
  kCompensating,
  kDone,
  kCompensated,
  kIncident
};
enum class PhaseState {
  kPending,
  kRunning,
  kSucceeded,
  kFailed,
  kSkipped,
  kMarkedDone
};

// "running", "compensating", "done", "compensated", "incident".
const char* Name(SagaState s);

struct PhaseStatus {
  PhaseState state = PhaseState::kPending;
  uint32_t attempts = 0;
  std::string output;
  std::string error;
};

struct StepStatus {
  std::string name;
  PhaseStatus forward;
  PhaseStatus compensation;
};

// A saga as its records say.
struct SagaStatus {
  std::string id;
  std::string definition;
  SagaState state = SagaState::kRunning;
  uint64_t version = 0;
  std::vector<StepStatus> steps;
  // Why it compensates; what an incident is about.
  std::string reason;
  std::string incident;
};

// Runs sagas: a coordinator that any number of processes can be, one at a
// time per saga.
//
// Run creates a saga (deduplicated: the same id and input again resumes
// it) and drives it to an end: done, compensated, or an incident for an
// operator (kvctl saga). Each step attempt is first recorded in the saga,
// then runs under the phase's idempotency key: an attempt whose key
// already completed replays the stored output instead of running the
// step's code again, so a coordinator that crashed after a step's work but
// before recording it never repeats that work. The coordinator holds a
// lock on the saga ("saga/" + id, under a lease kept alive in the
// background) and fences every transition with its token: a coordinator
// that was paused past its lease and replaced changes nothing more. Resume
// and ResumeAll pick up sagas whose coordinator died.
//
// Thread safety: Register before the first Run; then thread-safe, one
// thread per saga being run.
class SagaRunner {
 public:
  struct Options {
    // The coordinator's lease: another process can take a saga over this
    // long after its coordinator died.
    std::chrono::milliseconds lock_ttl{10000};
    // How long Run and Resume wait for a saga's lock held by another
    // coordinator (ResumeAll never waits).
    std::chrono::milliseconds lock_wait{30000};
    // The claim on a step's idempotency key: another coordinator may take
    // a step over this long after its attempt began.
    std::chrono::milliseconds claim_ttl{30000};
    // For Create: from creation, past which a saga whose pivot has not run
    // compensates (0: none); how long a finished saga is kept (0: 7 days).
    std::chrono::milliseconds deadline{0};
    std::chrono::milliseconds retention{0};
    // Called after each transition this runner made, with the saga as it
    // now is; and after an attempt's end is stored in its idempotency
    // record, before the saga records it (tests crash at both).
    std::function<void(const SagaStatus&)> on_transition;
    std::function<void(const StepContext&, const StepResult&)> on_step_stored;
  };

  // `client` must outlive the runner.
  SagaRunner(Client* client, Options options);
  ~SagaRunner();

  // INVALID_ARGUMENT if a compensable step has no compensation or another
  // step has one; the cluster checks the rest (the order of kinds) on Run.
  absl::Status Register(SagaDefinition definition);

  // Creates saga `id` of the registered `definition` with `input` and runs
  // it to DONE, COMPENSATED or INCIDENT: the saga as it ended. An existing
  // saga with the same input is resumed; with another, ALREADY_EXISTS.
  // ABORTED when another coordinator took it over; DEADLINE_EXCEEDED when
  // its lock stayed held past lock_wait.
  absl::StatusOr<SagaStatus> Run(const std::string& definition,
                                 const std::string& id,
                                 const std::string& input);
  // Runs the existing saga `id` on from where its records say it is.
  absl::StatusOr<SagaStatus> Resume(const std::string& id);
  // Resumes every running or compensating saga of a registered definition
  // unchanged for `idle`, whose lock is free; how many ended.
  absl::StatusOr<size_t> ResumeAll(std::chrono::milliseconds idle);
  // The saga as its records say (NOT_FOUND if there is none).
  absl::StatusOr<SagaStatus> Get(const std::string& id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tally

#endif  // TALLY_PUBLIC_SAGA_H_
