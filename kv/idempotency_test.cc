// Idempotency records through the dispatcher, as the log drives them: every
// time below is log time carried by a command.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kv/state_machine.h"
#include "kv/state_machine_testing.h"
#include "kv/storage/memory_engine.h"

namespace tally::kv {
namespace {

using Outcome = kvpb::IdemResult;
using Finished = kvpb::IdemFinish;

constexpr char kScope[] = "payments/";
constexpr int64_t kTtl = 5'000;
constexpr int64_t kRetention = 60'000;

class IdemTest : public ModuleTest {
 protected:
  kvpb::CommandResult Begin(const std::string& key, uint64_t fingerprint,
                            int64_t at) {
    return Begin(key, std::to_string(fingerprint), at);
  }
  kvpb::CommandResult Begin(const std::string& key,
                            const std::string& fingerprint, int64_t at) {
    kvpb::Command c;
    kvpb::IdemBegin* b = c.mutable_idem_begin();
    b->set_scope(kScope);
    b->set_key(key);
    b->set_fingerprint(fingerprint);
    b->set_ttl_ms(kTtl);
    b->set_retention_ms(kRetention);
    return Apply(c, at);
  }
  kvpb::CommandResult Finish(const std::string& key, uint64_t token,
                             Finished::Outcome outcome,
                             const std::string& response, int64_t at) {
    kvpb::Command c;
    kvpb::IdemFinish* f = c.mutable_idem_finish();
    f->set_scope(kScope);
    f->set_key(key);
    f->set_token(token);
    f->set_outcome(outcome);
    f->set_response(response);
    return Apply(c, at);
  }
  kvpb::CommandResult Renew(const std::string& key, uint64_t token,
                            int64_t at) {
    kvpb::Command c;
    c.mutable_idem_renew()->set_scope(kScope);
    c.mutable_idem_renew()->set_key(key);
    c.mutable_idem_renew()->set_token(token);
    c.mutable_idem_renew()->set_ttl_ms(kTtl);
    return Apply(c, at);
  }
};

TEST_F(IdemTest, FirstBeginStartsAndLaterOnesReplayTheStoredResponse) {
  kvpb::CommandResult r = Begin("order-1", 7, 1'000);
  ASSERT_EQ(r.idem().outcome(), Outcome::STARTED);
  const uint64_t token = r.idem().record().token();
  EXPECT_EQ(token, index_);
  EXPECT_EQ(r.idem().record().attempts(), 1u);

  r = Begin("order-1", 7, 1'100);  // a retry while the first runs
  EXPECT_EQ(r.idem().outcome(), Outcome::IN_PROGRESS);
  EXPECT_EQ(r.idem().retry_after_ms(), 1'000 + kTtl - 1'100);

  r = Finish("order-1", token, Finished::COMPLETED, "charged 42", 1'200);
  ASSERT_EQ(r.error_code(), 0) << r.error_message();
  EXPECT_EQ(r.idem().record().state(), kvpb::IdemRecord::COMPLETED);

  r = Begin("order-1", 7, 90'000);  // long after the claim would have run out
  EXPECT_EQ(r.idem().outcome(), Outcome::FINISHED);
  EXPECT_EQ(r.idem().record().response(), "charged 42");
  EXPECT_EQ(r.idem().record().retention_ms(), kRetention);
  EXPECT_EQ(r.idem().record().reap_at_ms(), 1'200 + kRetention);
}

TEST_F(IdemTest, ADifferentRequestUnderTheSameKeyIsAMismatch) {
  Begin("order-1", 7, 1'000);
  kvpb::CommandResult r = Begin("order-1", 8, 1'100);
  EXPECT_EQ(r.idem().outcome(), Outcome::MISMATCH);
  EXPECT_EQ(r.idem().record().fingerprint(), "7");
  EXPECT_EQ(r.idem().record().created_ms(), 1'000);
}

// The owner is paused past its claim; a retry takes over under a higher
// token; the first owner's late Complete and Renew are refused, naming the
// new token, and the stored response is the second owner's.
TEST_F(IdemTest, AStaleOwnerCannotFinishAfterATakeover) {
  const uint64_t first = Begin("order-1", 7, 1'000).idem().record().token();
  kvpb::CommandResult r = Begin("order-1", 7, 1'000 + kTtl);
  ASSERT_EQ(r.idem().outcome(), Outcome::STARTED);
  const uint64_t second = r.idem().record().token();
  EXPECT_GT(second, first);
  EXPECT_EQ(r.idem().record().attempts(), 2u);
  EXPECT_EQ(r.idem().record().created_ms(), 1'000);

  r = Finish("order-1", first, Finished::COMPLETED, "first", 7'000);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.error_reason(), "stale-token");
  EXPECT_NE(r.error_message().find(std::to_string(second)), std::string::npos)
      << r.error_message();
  EXPECT_EQ(Renew("order-1", first, 7'000).error_reason(), "stale-token");

  ASSERT_EQ(Finish("order-1", second, Finished::COMPLETED, "second", 7'100)
                .error_code(),
            0);
  EXPECT_EQ(Begin("order-1", 7, 8'000).idem().record().response(), "second");
  // Repeated (its answer was lost): the record as stored, unchanged.
  r = Finish("order-1", second, Finished::COMPLETED, "again", 8'100);
  ASSERT_EQ(r.error_code(), 0);
  EXPECT_EQ(r.idem().record().response(), "second");
  EXPECT_EQ(Renew("order-1", second, 8'200).error_reason(), "stale-token");
}

TEST_F(IdemTest, ARepeatedBeginOfTheSameAttemptGetsItsTokenBack) {
  kvpb::Command c;
  kvpb::IdemBegin* b = c.mutable_idem_begin();
  b->set_scope(kScope);
  b->set_key("k");
  b->set_fingerprint("f");
  b->set_ttl_ms(kTtl);
  b->set_retention_ms(kRetention);
  b->set_attempt_id(99);
  const uint64_t token = Apply(c, 1'000).idem().record().token();
  kvpb::CommandResult r = Apply(c, 1'100);
  EXPECT_EQ(r.idem().outcome(), Outcome::STARTED);
  EXPECT_EQ(r.idem().record().token(), token);
  b->set_attempt_id(100);  // another attempt waits
  EXPECT_EQ(Apply(c, 1'200).idem().outcome(), Outcome::IN_PROGRESS);
}

TEST_F(IdemTest, RenewKeepsTheClaim) {
  const uint64_t token = Begin("k", 1, 1'000).idem().record().token();
  ASSERT_EQ(Renew("k", token, 1'000 + kTtl - 1).error_code(), 0);
  EXPECT_EQ(Begin("k", 1, 1'000 + kTtl).idem().outcome(), Outcome::IN_PROGRESS);
}

TEST_F(IdemTest, RetryableFailuresAreNotCachedTerminalOnesAre) {
  uint64_t token = Begin("k", 1, 1'000).idem().record().token();
  ASSERT_EQ(
      Finish("k", token, Finished::FAILED_RETRYABLE, "", 1'100).error_code(),
      0);
  kvpb::CommandResult r = Begin("k", 1, 1'200);
  ASSERT_EQ(r.idem().outcome(), Outcome::STARTED);  // afresh
  EXPECT_GT(r.idem().record().token(), token);
  EXPECT_EQ(r.idem().record().attempts(), 1u);
  token = r.idem().record().token();
  ASSERT_EQ(
      Finish("k", token, Finished::FAILED_TERMINAL, "card declined", 1'300)
          .error_code(),
      0);
  r = Begin("k", 1, 1'400);
  EXPECT_EQ(r.idem().outcome(), Outcome::FINISHED);
  EXPECT_EQ(r.idem().record().state(), kvpb::IdemRecord::FAILED);
  EXPECT_EQ(r.idem().record().response(), "card declined");
}

TEST_F(IdemTest, FinishingAKeyNeverClaimedIsRefused) {
  kvpb::CommandResult r = Finish("nope", 3, Finished::COMPLETED, "", 1'000);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(r.error_reason(), "not-claimed");
}

TEST_F(IdemTest, BadNamesAreRefusedAndNothingIsWritten) {
  kvpb::Command c;
  c.mutable_idem_begin()->set_scope(std::string("a\0b", 3));
  c.mutable_idem_begin()->set_key("k");
  c.mutable_idem_begin()->set_ttl_ms(kTtl);
  c.mutable_idem_begin()->set_retention_ms(kRetention);
  EXPECT_EQ(Apply(c, 1'000).error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  c.mutable_idem_begin()->set_scope("s");
  c.mutable_idem_begin()->set_key("");
  EXPECT_EQ(Apply(c, 1'000).error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  c.mutable_idem_begin()->set_key("k");
  c.mutable_idem_begin()->set_retention_ms(kMaxIdemRetentionMs + 1);
  EXPECT_EQ(Apply(c, 1'000).error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  auto all = sm_->idempotency().List("s", "", "", 10);
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->empty());
}

// Records go once their retention has passed in log time, proposed by the
// leader; a record renewed or finished since its reap was proposed stays.
TEST_F(IdemTest, TheLeaderReapsRecordsPastTheirRetention) {
  const uint64_t a = Begin("a", 1, 1'000).idem().record().token();
  Finish("a", a, Finished::COMPLETED, "x", 2'000);
  Begin("b", 1, 2'000);  // abandoned: goes retention after its claim ran out
  RunDuties(2'000 + kRetention - 1);
  ASSERT_TRUE(sm_->idempotency().Get(kScope, "a")->has_value());
  RunDuties(2'000 + kRetention);
  EXPECT_FALSE(sm_->idempotency().Get(kScope, "a")->has_value());
  ASSERT_TRUE(sm_->idempotency().Get(kScope, "b")->has_value());
  RunDuties(2'000 + kTtl + kRetention - 1);
  ASSERT_TRUE(sm_->idempotency().Get(kScope, "b")->has_value());
  RunDuties(2'000 + kTtl + kRetention);
  EXPECT_FALSE(sm_->idempotency().Get(kScope, "b")->has_value());
  EXPECT_TRUE(sm_->Due().empty());

  // A reap decided at a stale time changes nothing.
  const uint64_t c = Begin("c", 1, 200'000).idem().record().token();
  kvpb::Command reap;
  kvpb::IdemRef* ref = reap.mutable_idem_reap()->add_refs();
  ref->set_scope(kScope);
  ref->set_key("c");
  Apply(reap, 200'001);
  EXPECT_TRUE(sm_->idempotency().Get(kScope, "c")->has_value());
  EXPECT_EQ(Finish("c", c, Finished::COMPLETED, "y", 200'002).error_code(), 0);
}

// Exactly-once local effects: the owner's writes and its completion commit
// in one entry, or neither does.
TEST_F(IdemTest, ACompletionCommitsItsEffectsInTheSameEntryOrNotAtAll) {
  auto complete = [&](const std::string& key, uint64_t token,
                      const std::string& value, uint64_t fence, int64_t at) {
    kvpb::Command c;
    kvpb::IdemFinish* f = c.mutable_idem_finish();
    f->set_scope(kScope);
    f->set_key(key);
    f->set_token(token);
    f->set_response("ok");
    kvpb::Put* put = f->mutable_effects()->add_success()->mutable_put();
    put->set_key("acct/" + key);
    put->set_value(value);
    f->mutable_effects()->add_success()->mutable_delete_()->set_key("tmp");
    f->set_fence_token(fence);
    return Apply(c, at);
  };
  auto value = [&](const std::string& key) -> std::string {
    auto kv = sm_->kv().Get(key);
    return kv.ok() && kv->has_value() ? (*kv)->value() : "<none>";
  };
  kvpb::Command tmp;
  tmp.mutable_put()->set_key("tmp");
  tmp.mutable_put()->set_value("x");
  Apply(tmp, 900);

  const uint64_t first = Begin("o1", 1, 1'000).idem().record().token();
  const uint64_t second =
      Begin("o1", 1, 1'000 + kTtl).idem().record().token();  // takeover
  const int64_t revision = sm_->revision();
  kvpb::CommandResult r = complete("o1", first, "stale", 0, 7'000);
  EXPECT_EQ(r.error_reason(), "stale-token");
  EXPECT_EQ(value("acct/o1"), "<none>");
  EXPECT_EQ(value("tmp"), "x");
  EXPECT_EQ(sm_->revision(), revision);

  r = complete("o1", second, "charged", 0, 7'100);
  ASSERT_EQ(r.error_code(), 0) << r.error_message();
  EXPECT_EQ(r.idem().record().state(), kvpb::IdemRecord::COMPLETED);
  EXPECT_EQ(value("acct/o1"), "charged");
  EXPECT_EQ(value("tmp"), "<none>");
  EXPECT_GT(r.idem().header().revision(), revision);

  // A fenced prefix: a stale fence token refuses the whole completion.
  kvpb::Command bind;
  bind.mutable_fence_bind()->set_prefix("acct/");
  bind.mutable_fence_bind()->set_lock("payouts");
  Apply(bind, 7'200);
  const uint64_t t2 = Begin("o2", 1, 7'300).idem().record().token();
  kvpb::Command fenced;
  fenced.mutable_put()->set_key("acct/x");
  fenced.set_fence_token(50);
  ASSERT_EQ(Apply(fenced, 7'400).error_code(), 0);
  r = complete("o2", t2, "late", 40, 7'500);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(value("acct/o2"), "<none>");
  EXPECT_EQ(Begin("o2", 1, 7'600).idem().outcome(), Outcome::IN_PROGRESS);
  ASSERT_EQ(complete("o2", t2, "paid", 50, 7'700).error_code(), 0);
  EXPECT_EQ(value("acct/o2"), "paid");
}

TEST_F(IdemTest, APurgeRemovesARecordWhateverItsState) {
  const uint64_t token = Begin("k", 1, 1'000).idem().record().token();
  kvpb::Command purge;
  kvpb::IdemRef* ref = purge.mutable_idem_reap()->add_refs();
  ref->set_scope(kScope);
  ref->set_key("k");
  purge.mutable_idem_reap()->set_purge(true);
  EXPECT_EQ(Apply(purge, 1'100).idem().removed(), 1u);
  EXPECT_EQ(
      Finish("k", token, Finished::COMPLETED, "late", 1'200).error_reason(),
      "not-claimed");
  EXPECT_EQ(Apply(purge, 1'300).idem().removed(), 0u);
  EXPECT_EQ(Begin("k", 2, 1'400).idem().outcome(), Outcome::STARTED);
}

TEST_F(IdemTest, ListPagesThroughAScope) {
  for (const char* k : {"o-1", "o-2", "o-3", "p-1"}) Begin(k, 1, 1'000);
  auto page = sm_->idempotency().List(kScope, "o-", "", 2);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 2u);
  EXPECT_EQ((*page)[0].first, "o-1");
  page = sm_->idempotency().List(kScope, "o-", (*page)[1].first, 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].first, "o-3");
  // An `after` below the prefix starts at the prefix.
  page = sm_->idempotency().List(kScope, "p-", "a", 10);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->size(), 1u);
  EXPECT_EQ((*page)[0].first, "p-1");
}

}  // namespace
}  // namespace tally::kv
