#ifndef TALLY_KV_SAGA_SAGA_H_
#define TALLY_KV_SAGA_SAGA_H_

#include <climits>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/due_index.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// Limits on what a client names and stores.
inline constexpr size_t kMaxSagaIdBytes = 256;
inline constexpr size_t kMaxSagaSteps = 64;
inline constexpr size_t kMaxSagaStepNameBytes = 128;
inline constexpr uint32_t kMaxSagaStepAttempts = 1000;
inline constexpr size_t kMaxSagaInputBytes = 256 << 10;
inline constexpr size_t kMaxSagaOutputBytes = 64 << 10;
inline constexpr int64_t kMaxSagaRetentionMs = 30LL * 24 * 3600 * 1000;
// Sagas one Tick handles at most.
inline constexpr size_t kMaxSagasPerTick = 1000;

// Saga state: one record per saga, in the data group of the range holding
// the KV key of its id. Key spaces 'q' (records) and 'u' (by when
// something is due).
//
// A saga runs its steps forward, one at a time; when a step before the
// pivot fails for good (or the saga's deadline passes first), it
// compensates the steps that did or may have done their work, in reverse
// order. A step after the pivot, or a compensation, that fails for good
// stops the saga in INCIDENT until an operator retries, skips or marks the
// failed phase done. Each phase runs in attempts, started and finished by
// the coordinator; an attempt running past its step's timeout fails
// retryably, and the work it may have done is compensated if the step
// fails in the end.
//
// Every change raises the record's version and must name the version it
// was decided on; a coordinator's change also carries its lock token, and
// a token below the highest one seen is refused (stale-token): a
// coordinator replaced while paused changes nothing. Timeouts, the
// deadline and the removal of finished sagas after their retention are
// decided on log time, proposed by the leader (Due).
//
// Thread safety: Apply and Committed on the apply thread; reads from any
// thread.
class Sagas final : public Module {
 public:
  // None is owned.
  Sagas(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine),
        keys_(keys),
        due_(engine, keys->Key(Space::kSagaDue)) {}

  // INVALID_ARGUMENT naming what is wrong.
  static absl::Status CheckId(std::string_view id);
  static absl::Status CheckDefinition(const kvpb::SagaDefinition& def);

  // The step and phase a RUNNING or COMPENSATING saga acts on next (an
  // INCIDENT: the one that failed); nullopt when none is left.
  struct Position {
    uint32_t step = 0;
    bool compensation = false;
    bool operator==(const Position&) const = default;
  };
  static std::optional<Position> Current(const kvpb::SagaRecord& rec);

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override { due_.Committed(); }
  void Reloaded() override { due_.Reloaded(); }
  std::vector<kvpb::Command> Due(int64_t now) const override;
  int64_t NextDue() const override { return due_.next(); }

  // Reads of applied state.
  absl::StatusOr<std::optional<kvpb::SagaRecord>> Get(
      std::string_view id) const;
  // Sagas from `after` (exclusive; empty: the first) for which `keep` holds,
  // at most `limit`, in id order.
  absl::StatusOr<std::vector<std::pair<std::string, kvpb::SagaRecord>>> List(
      std::string_view after, size_t limit,
      const std::function<bool(const kvpb::SagaRecord&)>& keep) const;

 private:
  std::string RecordKey(std::string_view id) const;
  std::optional<kvpb::SagaRecord> Read(Batch& b, std::string_view id);
  // Writes `rec` with its due time recomputed, moving its index entry.
  void Write(ApplyContext& ctx, std::string_view id, kvpb::SagaRecord& rec,
             int64_t old_due);
  kvpb::CommandResult Create(ApplyContext& ctx, const kvpb::SagaCreate& req);
  kvpb::CommandResult Transition(ApplyContext& ctx,
                                 const kvpb::SagaTransition& req);
  kvpb::CommandResult Tick(ApplyContext& ctx, const kvpb::SagaTick& req);

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  // Sagas by when something is due ('u').
  DueIndex due_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_SAGA_SAGA_H_
