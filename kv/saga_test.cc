// Saga records through the dispatcher, as the log drives them: every time
// below is log time carried by a command.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv/state_machine.h"
#include "kv/state_machine_testing.h"
#include "kv/storage/memory_engine.h"

namespace tally::kv {
namespace {

using Record = kvpb::SagaRecord;
using Phase = kvpb::SagaPhase;
using StepDef = kvpb::SagaStepDef;
using T = kvpb::SagaTransition;

constexpr char kId[] = "order-17";
constexpr int64_t kRetention = 60'000;

// reserve, charge, ship: compensable, each with `attempts` attempts and a
// timeout of `timeout_ms`.
kvpb::SagaDefinition Definition(uint32_t attempts = 2, int64_t timeout_ms = 0) {
  kvpb::SagaDefinition d;
  d.set_name("order");
  for (const char* name : {"reserve", "charge", "ship"}) {
    StepDef* s = d.add_steps();
    s->set_name(name);
    s->set_max_attempts(attempts);
    s->set_timeout_ms(timeout_ms);
  }
  return d;
}

class SagaTest : public ModuleTest {
 protected:
  kvpb::CommandResult Create(const kvpb::SagaDefinition& def,
                             const std::string& fingerprint = "fp",
                             int64_t deadline_ms = 0, int64_t at = 0) {
    kvpb::Command c;
    kvpb::SagaCreate* s = c.mutable_saga_create();
    s->set_id(kId);
    *s->mutable_definition() = def;
    s->set_input("3 shirts");
    s->set_fingerprint(fingerprint);
    s->set_deadline_ms(deadline_ms);
    s->set_retention_ms(kRetention);
    return Apply(c, at);
  }
  // `action` on `step` at the saga's current version.
  kvpb::CommandResult Act(T::Action action, uint32_t step,
                          bool compensation = false, int64_t at = 0,
                          uint64_t fence = 7, bool retryable = false) {
    kvpb::Command c;
    T* t = c.mutable_saga_transition();
    t->set_id(kId);
    t->set_version(Get().version());
    t->set_fence_token(fence);
    t->set_action(action);
    t->set_step(step);
    t->set_compensation(compensation);
    t->set_retryable(retryable);
    t->set_output(absl::StrCat("out-", step));
    t->set_error("boom");
    return Apply(c, at);
  }
  // Starts and finishes `step` successfully.
  void Run(uint32_t step, bool compensation = false, int64_t at = 0) {
    ASSERT_EQ(Act(T::START, step, compensation, at).error_code(), 0);
    ASSERT_EQ(Act(T::SUCCEED, step, compensation, at).error_code(), 0);
  }
  Record Get() {
    auto r = sm_->sagas().Get(kId);
    EXPECT_TRUE(r.ok() && r->has_value());
    return r.ok() && r->has_value() ? **r : Record();
  }
};

TEST_F(SagaTest, RunsEveryStepForwardUntilDone) {
  ASSERT_EQ(Create(Definition()).saga().outcome(), kvpb::SagaResult::OK);
  for (uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(Get().state(), Record::RUNNING);
    Run(i, false, 100 * i);
  }
  const Record r = Get();
  EXPECT_EQ(r.state(), Record::DONE);
  EXPECT_EQ(r.steps(1).forward().output(), "out-1");
  EXPECT_EQ(r.steps(1).forward().attempts(), 1u);
  EXPECT_EQ(r.finished_ms(), 200);
  EXPECT_EQ(r.version(), 7u);  // created, then two changes per step
}

TEST_F(SagaTest, CreateIsDeduplicatedByFingerprint) {
  Create(Definition());
  Run(0);
  kvpb::CommandResult again = Create(Definition());
  EXPECT_EQ(again.saga().outcome(), kvpb::SagaResult::EXISTS);
  EXPECT_EQ(again.saga().record().version(), 3u);  // the existing one
  kvpb::CommandResult other = Create(Definition(), "another request");
  EXPECT_EQ(other.error_code(),
            static_cast<int>(absl::StatusCode::kAlreadyExists));
  EXPECT_NE(other.error_message().find("exists for another request"),
            std::string::npos);
  EXPECT_EQ(Get().version(), 3u);
}

TEST_F(SagaTest, InvalidDefinitionsAreRefusedWithNothingWritten) {
  kvpb::SagaDefinition after_pivot = Definition();
  after_pivot.mutable_steps(1)->set_kind(StepDef::PIVOT);  // then ship
  kvpb::CommandResult r = Create(after_pivot);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(r.error_message().find("compensable step after the pivot"),
            std::string::npos)
      << r.error_message();

  kvpb::SagaDefinition no_undo = Definition();
  no_undo.mutable_steps(0)->set_kind(StepDef::RETRIABLE);
  r = Create(no_undo);
  EXPECT_NE(r.error_message().find("without compensation before the pivot"),
            std::string::npos)
      << r.error_message();

  kvpb::SagaDefinition twice = Definition();
  twice.mutable_steps(2)->set_name("reserve");
  EXPECT_NE(Create(twice).error_message().find("two steps have this name"),
            std::string::npos);
  EXPECT_NE(Create(kvpb::SagaDefinition()).error_code(), 0);
  auto none = sm_->sagas().Get(kId);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(SagaTest, AFailedStepCompensatesTheDoneOnesInReverse) {
  Create(Definition(/*attempts=*/2));
  Run(0);
  Run(1);
  ASSERT_EQ(Act(T::START, 2).error_code(), 0);
  // Retryable: tried again, until the attempts are used up.
  ASSERT_EQ(Act(T::FAIL, 2, false, 0, 7, /*retryable=*/true).error_code(), 0);
  EXPECT_EQ(Get().state(), Record::RUNNING);
  EXPECT_EQ(Get().steps(2).forward().state(), Phase::PENDING);
  ASSERT_EQ(Act(T::START, 2).error_code(), 0);
  ASSERT_EQ(Act(T::FAIL, 2, false, 0, 7, /*retryable=*/true).error_code(), 0);
  Record r = Get();
  EXPECT_EQ(r.state(), Record::COMPENSATING);
  EXPECT_NE(r.reason().find("step \"ship\" failed after 2 attempt(s): boom"),
            std::string::npos)
      << r.reason();
  // The failed step did nothing: charge is undone first, then reserve.
  kvpb::CommandResult wrong = Act(T::START, 0, true);
  EXPECT_EQ(wrong.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(wrong.error_message().find("compensation of step \"charge\""),
            std::string::npos)
      << wrong.error_message();
  Run(1, true);
  Run(0, true);
  r = Get();
  EXPECT_EQ(r.state(), Record::COMPENSATED);
  EXPECT_EQ(r.steps(2).compensation().state(), Phase::PENDING);
}

TEST_F(SagaTest, AStaleCoordinatorOrVersionChangesNothing) {
  Create(Definition());
  ASSERT_EQ(Act(T::START, 0, false, 0, /*fence=*/20).error_code(), 0);
  kvpb::CommandResult stale = Act(T::SUCCEED, 0, false, 0, /*fence=*/19);
  EXPECT_EQ(stale.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(stale.error_message().find("another coordinator took it over"),
            std::string::npos);
  kvpb::Command old;
  T* t = old.mutable_saga_transition();
  t->set_id(kId);
  t->set_version(1);  // before the START
  t->set_fence_token(20);
  t->set_action(T::SUCCEED);
  kvpb::CommandResult r = Apply(old, 0);
  EXPECT_NE(r.error_message().find("is at version 2, not 1"), std::string::npos)
      << r.error_message();
  EXPECT_EQ(Get().steps(0).forward().state(), Phase::RUNNING);
  EXPECT_EQ(Get().version(), 2u);
}

TEST_F(SagaTest, ANewCoordinatorRestartsTheStepThatWasRunning) {
  Create(Definition());
  ASSERT_EQ(Act(T::START, 0, false, 0, /*fence=*/5).error_code(), 0);
  // The first coordinator died; the next one starts the step again.
  ASSERT_EQ(Act(T::START, 0, false, 10, /*fence=*/9).error_code(), 0);
  ASSERT_EQ(Act(T::SUCCEED, 0, false, 20, /*fence=*/9).error_code(), 0);
  EXPECT_EQ(Get().steps(0).forward().attempts(), 2u);
  EXPECT_EQ(Get().fence(), 9u);
}

TEST_F(SagaTest, ATimedOutAttemptIsRetriedAndUndoneIfTheStepFails) {
  Create(Definition(/*attempts=*/1, /*timeout_ms=*/1'000));
  Run(0);
  ASSERT_EQ(Act(T::START, 1, false, 100).error_code(), 0);
  RunDuties(1'099);
  EXPECT_EQ(Get().steps(1).forward().state(), Phase::RUNNING);
  RunDuties(1'100);
  // Its one attempt timed out: charge may have happened, so it is undone.
  Record r = Get();
  EXPECT_EQ(r.state(), Record::COMPENSATING);
  EXPECT_TRUE(r.steps(1).forward().maybe_applied());
  EXPECT_NE(r.steps(1).forward().error().find("timed out after 1000 ms"),
            std::string::npos);
  EXPECT_EQ(Sagas::Current(r)->step, 1u);
  // The late SUCCEED of the attempt that timed out is refused.
  kvpb::Command late;
  T* t = late.mutable_saga_transition();
  t->set_id(kId);
  t->set_version(3);
  t->set_fence_token(7);
  t->set_action(T::SUCCEED);
  t->set_step(1);
  EXPECT_NE(Apply(late, 1'200).error_code(), 0);
}

TEST_F(SagaTest, TheDeadlineCompensatesUnlessThePivotRan) {
  Create(Definition(), "fp", /*deadline_ms=*/5'000, /*at=*/0);
  Run(0, false, 10);
  ASSERT_EQ(Act(T::START, 1, false, 20).error_code(), 0);
  RunDuties(5'000);
  Record r = Get();
  EXPECT_EQ(r.state(), Record::COMPENSATING);
  EXPECT_EQ(r.reason(), "the saga's deadline passed");
  EXPECT_EQ(r.steps(1).forward().state(), Phase::FAILED);
  EXPECT_EQ(Sagas::Current(r)->step, 1u);  // cut off mid-attempt: undone

  // With the pivot done, the deadline changes nothing.
  kvpb::SagaDefinition pivot = Definition();
  pivot.mutable_steps(0)->set_kind(StepDef::PIVOT);
  pivot.mutable_steps(1)->set_kind(StepDef::RETRIABLE);
  pivot.mutable_steps(2)->set_kind(StepDef::RETRIABLE);
  kvpb::Command c;
  c.mutable_saga_create()->set_id("after-pivot");
  *c.mutable_saga_create()->mutable_definition() = pivot;
  c.mutable_saga_create()->set_deadline_ms(1'000);
  c.mutable_saga_create()->set_retention_ms(kRetention);
  ASSERT_EQ(Apply(c, 10'000).error_code(), 0);
  kvpb::Command go;
  T* t = go.mutable_saga_transition();
  t->set_id("after-pivot");
  t->set_version(1);
  t->set_action(T::START);
  ASSERT_EQ(Apply(go, 10'000).error_code(), 0);
  t->set_version(2);
  t->set_action(T::SUCCEED);
  ASSERT_EQ(Apply(go, 10'000).error_code(), 0);
  RunDuties(20'000);
  auto after = sm_->sagas().Get("after-pivot");
  ASSERT_TRUE(after.ok() && after->has_value());
  EXPECT_EQ((*after)->state(), Record::RUNNING);
}

TEST_F(SagaTest, AFailedCompensationWaitsForAnOperator) {
  Create(Definition(/*attempts=*/1));
  Run(0);
  Run(1);
  ASSERT_EQ(Act(T::START, 2).error_code(), 0);
  ASSERT_EQ(Act(T::FAIL, 2).error_code(), 0);  // terminal
  ASSERT_EQ(Act(T::START, 1, true).error_code(), 0);
  ASSERT_EQ(Act(T::FAIL, 1, true).error_code(), 0);  // the refund failed
  Record r = Get();
  ASSERT_EQ(r.state(), Record::INCIDENT);
  EXPECT_EQ(r.incident_step(), 1u);
  EXPECT_TRUE(r.incident_compensation());
  EXPECT_NE(r.incident().find("compensation of step \"charge\" failed"),
            std::string::npos)
      << r.incident();
  // Nothing runs during an incident; the operator retries.
  EXPECT_NE(Act(T::START, 1, true).error_code(), 0);
  EXPECT_NE(Act(T::RETRY, 0, true, 0, 0).error_code(), 0);  // not that one
  ASSERT_EQ(Act(T::RETRY, 1, true, 0, 0).error_code(), 0);
  EXPECT_EQ(Get().state(), Record::COMPENSATING);
  ASSERT_EQ(Act(T::START, 1, true).error_code(), 0);
  ASSERT_EQ(Act(T::FAIL, 1, true).error_code(), 0);  // once more
  // Then marks it done by hand (refunded by hand), and the saga goes on.
  ASSERT_EQ(Act(T::MARK_DONE, 1, true, 0, 0).error_code(), 0);
  r = Get();
  EXPECT_EQ(r.state(), Record::COMPENSATING);
  EXPECT_EQ(r.steps(1).compensation().state(), Phase::MARKED_DONE);
  EXPECT_EQ(r.steps(1).compensation().attempts(), 2u);
  Run(0, true);
  EXPECT_EQ(Get().state(), Record::COMPENSATED);
}

TEST_F(SagaTest, AStepAfterThePivotThatFailsCanBeSkipped) {
  kvpb::SagaDefinition d = Definition(/*attempts=*/1);
  d.mutable_steps(1)->set_kind(StepDef::PIVOT);
  d.mutable_steps(2)->set_kind(StepDef::RETRIABLE);
  Create(d);
  Run(0);
  Run(1);
  ASSERT_EQ(Act(T::START, 2).error_code(), 0);
  ASSERT_EQ(Act(T::FAIL, 2).error_code(), 0);
  ASSERT_EQ(Get().state(), Record::INCIDENT);
  EXPECT_NE(Get().incident().find("(after the pivot)"), std::string::npos);
  ASSERT_EQ(Act(T::SKIP, 2, false, 0, 0).error_code(), 0);
  EXPECT_EQ(Get().state(), Record::DONE);
  EXPECT_EQ(Get().steps(2).forward().state(), Phase::SKIPPED);
}

TEST_F(SagaTest, FinishedSagasGoAfterTheirRetention) {
  Create(Definition());
  for (uint32_t i = 0; i < 3; ++i) Run(i, false, 1'000);
  RunDuties(1'000 + kRetention - 1);
  EXPECT_EQ(Get().state(), Record::DONE);
  RunDuties(1'000 + kRetention);
  auto gone = sm_->sagas().Get(kId);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone->has_value());
  RunDuties(1'000 + kRetention);  // finds nothing more due
  EXPECT_EQ(sm_->sagas().NextDue(), INT64_MAX);
}

TEST_F(SagaTest, ListFiltersInIdOrder) {
  for (const char* id : {"b", "a", "c"}) {
    kvpb::Command c;
    c.mutable_saga_create()->set_id(id);
    *c.mutable_saga_create()->mutable_definition() = Definition();
    c.mutable_saga_create()->set_retention_ms(kRetention);
    Apply(c, 0);
  }
  auto all = sm_->sagas().List("", 10, [](const Record&) { return true; });
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].first, "a");
  auto after_a = sm_->sagas().List("a", 1, [](const Record&) { return true; });
  ASSERT_TRUE(after_a.ok());
  ASSERT_EQ(after_a->size(), 1u);
  EXPECT_EQ((*after_a)[0].first, "b");
  auto none = sm_->sagas().List(
      "", 10, [](const Record& r) { return r.state() == Record::DONE; });
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

}  // namespace
}  // namespace tally::kv
