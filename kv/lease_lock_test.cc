// Leases, locks and fence floors through the dispatcher, as the log drives
// them: every time below is log time carried by a command.

#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kv/state_machine.h"
#include "kv/state_machine_testing.h"
#include "kv/storage/memory_engine.h"
#include "util/status_macros.h"

namespace tally::kv {
namespace {

// A memory engine that counts the iterators opened on it.
class CountingEngine final : public storage::Engine {
 public:
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const override {
    return inner_.Get(key);
  }
  absl::Status Write(const storage::WriteBatch& batch, bool sync) override {
    return inner_.Write(batch, sync);
  }
  std::unique_ptr<storage::Iterator> NewIterator() const override {
    ++iterators_;
    return inner_.NewIterator();
  }
  std::unique_ptr<storage::Snapshot> GetSnapshot() const override {
    return inner_.GetSnapshot();
  }
  // Iterators opened since the last call.
  int TakeIterators() { return std::exchange(iterators_, 0); }

 private:
  storage::MemoryEngine inner_;
  mutable int iterators_ = 0;
};

class LeaseLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sm = StateMachine::Open(&db_, 1);
    ASSERT_TRUE(sm.ok());
    sm_ = std::move(*sm);
    sm_->set_locks_granted([this](const std::vector<Locks::Grant>& g) {
      for (const auto& x : g) granted_.push_back(x);
    });
  }
  kvpb::CommandResult Apply(kvpb::Command cmd, int64_t time_ms) {
    return ApplyNext(*sm_, &index_, std::move(cmd), time_ms);
  }
  uint64_t Grant(int64_t ttl_ms, int64_t at) {
    kvpb::Command c;
    c.mutable_lease_grant()->set_ttl_ms(ttl_ms);
    return Apply(c, at).lease().id();
  }
  kvpb::CommandResult Renew(uint64_t id, int64_t at) {
    kvpb::Command c;
    c.mutable_lease_renew()->add_ids(id);
    return Apply(c, at);
  }
  kvpb::CommandResult Expire(uint64_t id, int64_t at) {
    kvpb::Command c;
    c.mutable_lease_expire()->add_ids(id);
    return Apply(c, at);
  }
  kvpb::CommandResult Acquire(const std::string& name, uint64_t lease,
                              uint64_t request, int64_t wait_ms, int64_t at,
                              bool cancel = false,
                              const std::string& value = "") {
    kvpb::Command c;
    kvpb::LockAcquire* a = c.mutable_lock_acquire();
    a->set_name(name);
    a->set_lease(lease);
    a->set_request_id(request);
    a->set_wait_ms(wait_ms);
    a->set_cancel(cancel);
    a->set_value(value);
    return Apply(c, at);
  }
  kvpb::CommandResult Campaign(const std::string& name, uint64_t lease,
                               uint64_t request, const std::string& value,
                               int64_t at) {
    kvpb::Command c;
    kvpb::LockAcquire* a = c.mutable_lock_acquire();
    a->set_name(name);
    a->set_lease(lease);
    a->set_request_id(request);
    a->set_wait_ms(60'000);
    a->set_value(value);
    return Apply(c, at);
  }
  kvpb::CommandResult Proclaim(const std::string& name, uint64_t token,
                               const std::string& value, int64_t at) {
    kvpb::Command c;
    c.mutable_lock_proclaim()->set_name(name);
    c.mutable_lock_proclaim()->set_token(token);
    c.mutable_lock_proclaim()->set_value(value);
    return Apply(c, at);
  }
  kvpb::CommandResult Release(const std::string& name, uint64_t token,
                              int64_t at) {
    kvpb::Command c;
    c.mutable_lock_release()->set_name(name);
    c.mutable_lock_release()->set_token(token);
    return Apply(c, at);
  }
  kvpb::CommandResult FencedPut(const std::string& key, uint64_t token,
                                int64_t at) {
    kvpb::Command c;
    c.mutable_put()->set_key(key);
    c.mutable_put()->set_value("v" + std::to_string(token));
    c.set_fence_token(token);
    return Apply(c, at);
  }
  void Bind(const std::string& prefix, const std::string& lock) {
    kvpb::Command c;
    c.mutable_fence_bind()->set_prefix(prefix);
    c.mutable_fence_bind()->set_lock(lock);
    Apply(c, 0);
  }

  // Installs this replica's state in `to`, as a snapshot.
  absl::Status SendSnapshot(StateMachine* to) {
    std::vector<raft::host::SnapshotChunk> chunks;
    RETURN_IF_ERROR(sm_->Export(index_, [&](raft::host::SnapshotChunk c) {
      chunks.push_back(std::move(c));
      return absl::OkStatus();
    }));
    size_t next = 0;
    return to->Import([&]() -> absl::StatusOr<raft::host::SnapshotChunk> {
      return chunks.at(next++);
    });
  }

  CountingEngine db_;
  std::unique_ptr<StateMachine> sm_;
  raft::Index index_ = 0;
  std::vector<Locks::Grant> granted_;
};

TEST_F(LeaseLockTest, LeaseEndsOnlyByAnExpiryEntryAtOrAfterItsEnd) {
  const uint64_t id = Grant(10'000, 1'000);
  EXPECT_EQ(id, 1u);
  // Nothing ends on its own: the record stays until an entry ends it.
  ASSERT_TRUE(sm_->leases().Ending(10'999, 10)->empty());
  EXPECT_EQ(*sm_->leases().Ending(11'000, 10), std::vector<uint64_t>{id});
  // An expiry proposed early (a leader's clock ahead) ends nothing.
  Expire(id, 10'500);
  EXPECT_TRUE(sm_->leases().Get(id)->has_value());
  // A renewal restarts the TTL from its own log time.
  EXPECT_EQ(Renew(id, 10'600).lease_renew().remaining_ms().at(id), 10'000);
  Expire(id, 11'000);
  EXPECT_TRUE(sm_->leases().Get(id)->has_value());
  Expire(id, 20'600);
  EXPECT_FALSE(sm_->leases().Get(id)->has_value());
  EXPECT_TRUE(sm_->leases().Ending(1'000'000, 10)->empty());
}

TEST_F(LeaseLockTest, DueReadsTheStoreOnlyWhenALeaseMayBeDue) {
  // Every group a leader leads is asked every 100 ms: a group without
  // leases, or whose first lease ends later, must cost no store read.
  const Leases& leases = sm_->leases();
  EXPECT_TRUE(leases.Due(0).empty());  // after opening: unknown, so it looks
  db_.TakeIterators();
  EXPECT_TRUE(leases.Due(5'000).empty());
  EXPECT_EQ(db_.TakeIterators(), 0);
  EXPECT_EQ(leases.NextDue(), INT64_MAX);  // nothing to ask about

  const uint64_t id = Grant(10'000, 1'000);
  db_.TakeIterators();
  EXPECT_TRUE(leases.Due(5'000).empty());  // the end just written is known
  EXPECT_TRUE(leases.Due(10'999).empty());
  EXPECT_EQ(db_.TakeIterators(), 0);
  EXPECT_EQ(leases.NextDue(), 11'000);
  ASSERT_EQ(leases.Due(11'000).size(), 1u);
  // Still due until the expiry is applied: proposed again if it was lost.
  ASSERT_EQ(leases.Due(11'100).size(), 1u);
  Expire(id, 11'100);
  EXPECT_TRUE(leases.Due(11'200).empty());
  db_.TakeIterators();
  EXPECT_TRUE(leases.Due(1'000'000).empty());
  EXPECT_EQ(db_.TakeIterators(), 0);
}

TEST_F(LeaseLockTest, DueFindsLeasesThatArrivedWithASnapshot) {
  storage::MemoryEngine other_db;
  auto other = StateMachine::Open(&other_db, 1);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE((*other)->leases().Due(50'000).empty());  // none, known now
  const uint64_t id = Grant(10'000, 1'000);
  ASSERT_TRUE(SendSnapshot(other->get()).ok());
  std::vector<kvpb::Command> due = (*other)->leases().Due(50'000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].lease_expire().ids(0), id);
}

TEST_F(LeaseLockTest, RenewingALeaseThatIsDueEndsIt) {
  const uint64_t id = Grant(5'000, 0);
  EXPECT_EQ(Renew(id, 5'000).lease_renew().remaining_ms().at(id), 0);
  EXPECT_FALSE(sm_->leases().Get(id)->has_value());
}

TEST_F(LeaseLockTest, TokensAreUniqueAndGrowAcrossLocks) {
  const uint64_t lease = Grant(10'000, 0);
  kvpb::CommandResult a = Acquire("a", lease, 1, 0, 1);
  kvpb::CommandResult b = Acquire("b", lease, 2, 0, 2);
  ASSERT_TRUE(a.lock().acquired());
  ASSERT_TRUE(b.lock().acquired());
  EXPECT_LT(a.lock().holder().token(), b.lock().holder().token());
  ASSERT_FALSE(Release("a", a.lock().holder().token(), 3).error_code());
  kvpb::CommandResult again = Acquire("a", lease, 3, 0, 4);
  EXPECT_GT(again.lock().holder().token(), b.lock().holder().token());
  EXPECT_EQ(again.lock().holder().generation(), 2u);
}

TEST_F(LeaseLockTest, RetriedAcquireGetsTheSameGrant) {
  const uint64_t lease = Grant(10'000, 0);
  kvpb::CommandResult first = Acquire("l", lease, 42, 0, 1);
  kvpb::CommandResult retry = Acquire("l", lease, 42, 0, 2);
  ASSERT_TRUE(retry.lock().acquired());
  EXPECT_EQ(retry.lock().holder().token(), first.lock().holder().token());
}

TEST_F(LeaseLockTest, TryOnAHeldLockNamesTheHolderAndQueuesNothing) {
  const uint64_t a = Grant(10'000, 0);
  const uint64_t b = Grant(10'000, 1);
  const uint64_t token = Acquire("l", a, 1, 0, 1).lock().holder().token();
  kvpb::CommandResult r = Acquire("l", b, 2, 0, 2);
  EXPECT_FALSE(r.lock().acquired());
  EXPECT_EQ(r.lock().holder().token(), token);
  EXPECT_EQ(sm_->locks().Get("l")->value().waiters_size(), 0);
}

TEST_F(LeaseLockTest, WaitersAreServedInOrderAndOnlyTheNextIsWoken) {
  const uint64_t a = Grant(60'000, 0);
  const uint64_t b = Grant(60'000, 0);
  const uint64_t c = Grant(60'000, 0);
  const uint64_t token = Acquire("l", a, 1, 0, 1).lock().holder().token();
  EXPECT_EQ(Acquire("l", b, 2, 30'000, 2).lock().queued_at(), 1u);
  EXPECT_EQ(Acquire("l", c, 3, 30'000, 3).lock().queued_at(), 2u);
  // A retried wait keeps its place.
  EXPECT_EQ(Acquire("l", b, 2, 30'000, 4).lock().queued_at(), 1u);
  Release("l", token, 5);
  ASSERT_EQ(granted_.size(), 1u);
  EXPECT_EQ(granted_[0].holder.lease(), b);
  EXPECT_EQ(granted_[0].holder.request_id(), 2u);
  EXPECT_GT(granted_[0].holder.token(), token);
}

// Locks are not re-entrant: a new request under the holding lease waits its
// turn like any other, so threads sharing one lease exclude each other.
TEST_F(LeaseLockTest, NewRequestOfTheHoldingLeaseWaitsItsTurn) {
  const uint64_t a = Grant(60'000, 0);
  const uint64_t token = Acquire("l", a, 1, 0, 1).lock().holder().token();
  kvpb::CommandResult again = Acquire("l", a, 2, 0, 2);
  EXPECT_FALSE(again.lock().acquired());
  EXPECT_EQ(again.lock().holder().request_id(), 1u);
  EXPECT_EQ(Acquire("l", a, 3, 30'000, 3).lock().queued_at(), 1u);
  Release("l", token, 4);
  ASSERT_EQ(granted_.size(), 1u);
  EXPECT_EQ(granted_[0].holder.lease(), a);
  EXPECT_EQ(granted_[0].holder.request_id(), 3u);
  EXPECT_GT(granted_[0].holder.token(), token);
  // The lease still holds the lock: ending it releases it.
  Expire(a, 60'000);
  EXPECT_FALSE(sm_->locks().Get("l")->value().has_holder());
}

// A lock's record, waiters included, is read and written whole by every
// request on it: its queue is bounded, in waiters and in their values.
TEST_F(LeaseLockTest, WaitBeyondTheQueueBoundIsRefusedAndQueuesNothing) {
  const uint64_t a = Grant(600'000, 0);
  Acquire("l", a, 1, 0, 1);
  uint64_t request = 2;
  for (size_t i = 0; i < kMaxLockWaiters; ++i) {
    ASSERT_EQ(Acquire("l", a, request++, 300'000, 2).error_code(), 0);
  }
  kvpb::CommandResult r = Acquire("l", a, request, 300'000, 3);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_NE(r.error_message().find("waiters"), std::string::npos)
      << r.error_message();
  EXPECT_EQ(sm_->locks().Get("l")->value().waiters_size(), kMaxLockWaiters);
  // A queued request asked again keeps its place; a try is answered.
  EXPECT_EQ(Acquire("l", a, 2, 300'000, 4).lock().queued_at(), 1u);
  EXPECT_FALSE(Acquire("l", a, request + 1, 0, 5).lock().acquired());
  // Once their waits have run out, the waiters make room.
  EXPECT_EQ(Acquire("l", a, request, 1'000, 300'003).lock().queued_at(), 1u);
  EXPECT_EQ(sm_->locks().Get("l")->value().waiters_size(), 1);

  // Values count too: few waiters with large values fill it as well.
  // (Log time is at 300,003 now: it never goes back.)
  Acquire("m", a, 1, 0, 300'004);
  const std::string value(kMaxLockWaitingBytes / 4, 'v');
  size_t queued = 0;
  while (Acquire("m", a, 100 + queued, 10'000, 300'005, false, value)
             .error_code() == 0) {
    ++queued;
    ASSERT_LE(queued, 4u);
  }
  EXPECT_EQ(queued, 4u);
  // Once their waits have run out, they make room as well.
  kvpb::CommandResult room = Acquire("m", a, 200, 1'000, 310'006, false, value);
  EXPECT_EQ(room.error_code(), 0) << room.error_message();
  EXPECT_EQ(room.lock().queued_at(), 1u);
}

TEST_F(LeaseLockTest, LockPassesOnWhenItsHolderLeaseExpires) {
  const uint64_t a = Grant(5'000, 0);
  const uint64_t b = Grant(60'000, 0);
  Acquire("l", a, 1, 0, 1);
  Acquire("l", b, 2, 30'000, 2);
  Expire(a, 5'000);
  ASSERT_EQ(granted_.size(), 1u);
  EXPECT_EQ(sm_->locks().Get("l")->value().holder().lease(), b);
}

TEST_F(LeaseLockTest, LockIsNeverGrantedToAnEndedLeaseOrAGivenUpWaiter) {
  const uint64_t a = Grant(60'000, 0);
  const uint64_t short_lived = Grant(2'000, 0);
  const uint64_t impatient = Grant(60'000, 0);
  const uint64_t c = Grant(60'000, 0);
  const uint64_t token = Acquire("l", a, 1, 0, 1).lock().holder().token();
  Acquire("l", short_lived, 2, 50'000, 2);
  Acquire("l", impatient, 3, 1'000, 3);
  Acquire("l", c, 4, 50'000, 4);
  // At 3,000 the short lease is due (not yet ended by an entry) and the
  // impatient waiter gave up at 1,003.
  Release("l", token, 3'000);
  EXPECT_EQ(sm_->locks().Get("l")->value().holder().lease(), c);
  // A request under a lease that has ended is refused, nothing queued.
  kvpb::CommandResult r = Acquire("m", short_lived, 5, 0, 3'001);
  EXPECT_EQ(r.error_code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_FALSE(sm_->locks().Get("m")->has_value());
}

TEST_F(LeaseLockTest, CancelledWaitIsDroppedButAGrantThatCameFirstIsKept) {
  const uint64_t a = Grant(60'000, 0);
  const uint64_t b = Grant(60'000, 0);
  const uint64_t token = Acquire("l", a, 1, 0, 1).lock().holder().token();
  Acquire("l", b, 2, 30'000, 2);
  EXPECT_FALSE(Acquire("l", b, 2, 0, 3, /*cancel=*/true).lock().acquired());
  Release("l", token, 4);
  EXPECT_FALSE(sm_->locks().Get("l")->value().has_holder());
  // Granted, then the waiter's deadline passed: the cancel answers the grant.
  Acquire("l", a, 5, 0, 5);
  Acquire("l", b, 6, 30'000, 6);
  Release("l", sm_->locks().Get("l")->value().holder().token(), 7);
  EXPECT_TRUE(Acquire("l", b, 6, 0, 8, /*cancel=*/true).lock().acquired());
}

TEST_F(LeaseLockTest, ReleaseUnderAnotherTokenIsRefused) {
  const uint64_t a = Grant(60'000, 0);
  const uint64_t token = Acquire("l", a, 1, 0, 1).lock().holder().token();
  kvpb::CommandResult r = Release("l", token + 1, 2);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(r.error_message().find(std::to_string(token)), std::string::npos)
      << r.error_message();
  EXPECT_TRUE(sm_->locks().Get("l")->value().has_holder());
}

TEST_F(LeaseLockTest, ElectionLeaderProclaimsAndTheNextCandidateTakesOver) {
  std::vector<std::set<std::string>> changes;
  sm_->set_locks_changed(
      [&](const std::set<std::string>& names) { changes.push_back(names); });
  const uint64_t a = Grant(10'000, 0);
  const uint64_t b = Grant(10'000, 1);
  kvpb::CommandResult first = Campaign("svc", a, 1, "a:1", 1);
  ASSERT_TRUE(first.lock().acquired());
  EXPECT_EQ(first.lock().holder().value(), "a:1");
  EXPECT_FALSE(Campaign("svc", b, 2, "b:1", 2).lock().acquired());
  EXPECT_EQ(*sm_->leases().Count(), 2u);
  EXPECT_EQ(sm_->locks().Count()->held, 1u);
  EXPECT_EQ(sm_->locks().Count()->waiting, 1u);
  const uint64_t token = first.lock().holder().token();
  EXPECT_TRUE(Proclaim("svc", token, "a:2", 3).lock().acquired());
  EXPECT_EQ(sm_->locks().Get("svc")->value().holder().value(), "a:2");
  // What Observe sends: the record with the index it is from.
  auto at = sm_->LockAt("svc");
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->first, index_);
  EXPECT_EQ(at->second->holder().value(), "a:2");
  EXPECT_FALSE(sm_->LockAt("other")->second.has_value());
  // Only the leader proclaims.
  EXPECT_EQ(Proclaim("svc", token + 1, "b:2", 4).error_reason(),
            "lock-not-held");
  // When the leader's lease ends, the next candidate leads with its value.
  Expire(a, 10'000);
  const kvpb::LockGrant next = sm_->locks().Get("svc")->value().holder();
  EXPECT_EQ(next.lease(), b);
  EXPECT_EQ(next.value(), "b:1");
  EXPECT_GT(next.token(), token);
  EXPECT_EQ(Proclaim("svc", token, "a:3", 10'001).error_reason(),
            "lock-not-held");
  // Every pass that changed the record said so, and only those.
  EXPECT_EQ(changes.size(), 4u);
  for (const auto& c : changes) EXPECT_EQ(c, std::set<std::string>{"svc"});
}

TEST_F(LeaseLockTest, FenceRefusesStaleAndMissingTokensAndAppliesNothing) {
  Bind("acct/", "L");
  EXPECT_EQ(FencedPut("acct/1", 7, 1).error_code(), 0);
  EXPECT_EQ(FencedPut("acct/1", 7, 2).error_code(), 0);  // same holder again
  kvpb::CommandResult stale = FencedPut("acct/1", 5, 3);
  EXPECT_EQ(stale.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(stale.error_message().find("token 7 was accepted"),
            std::string::npos)
      << stale.error_message();
  EXPECT_EQ(stale.error_reason(), "fence-stale");
  kvpb::CommandResult none = FencedPut("acct/1", 0, 4);
  EXPECT_EQ(none.error_reason(), "fence-missing");
  EXPECT_EQ(sm_->kv().Get("acct/1")->value().value(), "v7");
  // Keys outside the prefix take any write.
  EXPECT_EQ(FencedPut("other", 0, 5).error_code(), 0);
  EXPECT_EQ(sm_->kv().Fence("acct/")->value().floor(), 7u);
}

TEST_F(LeaseLockTest, TransactionWithAStaleTokenWritesNothing) {
  Bind("acct/", "L");
  FencedPut("acct/1", 9, 1);
  kvpb::Command c;
  c.mutable_txn()->add_success()->mutable_put()->set_key("free");
  c.mutable_txn()->add_success()->mutable_put()->set_key("acct/2");
  c.set_fence_token(8);
  EXPECT_EQ(Apply(c, 2).error_reason(), "fence-stale");
  EXPECT_FALSE(sm_->kv().Get("free")->has_value());
  EXPECT_FALSE(sm_->kv().Get("acct/2")->has_value());
}

TEST_F(LeaseLockTest, WritesToAGroupWithoutFencesLookNoFenceUp) {
  FencedPut("a", 0, 1);  // the first write finds out there are none
  db_.TakeIterators();
  for (int i = 0; i < 5; ++i) FencedPut("a", 0, 2);
  EXPECT_EQ(db_.TakeIterators(), 0);
  // A fence bound later, or unbound and bound again, is enforced at once.
  Bind("a", "L");
  EXPECT_EQ(FencedPut("a", 0, 3).error_reason(), "fence-missing");
  Bind("a", "");
  EXPECT_EQ(FencedPut("a", 0, 4).error_code(), 0);
  Bind("a", "L");
  EXPECT_EQ(FencedPut("a", 0, 5).error_reason(), "fence-missing");
}

TEST_F(LeaseLockTest, FenceThatArrivedWithASnapshotIsEnforced) {
  storage::MemoryEngine other_db;
  auto other = StateMachine::Open(&other_db, 1);
  ASSERT_TRUE(other.ok());
  auto put = [&](raft::Index index) {
    kvpb::Command c;
    c.mutable_put()->set_key("acct/1");
    raft::Entry e{1, index, raft::EntryType::kNormal, c.SerializeAsString()};
    auto r = (*other)->Apply({e});
    EXPECT_TRUE(r.ok());
    kvpb::CommandResult out;
    out.ParseFromString(r->at(0));
    return out;
  };
  EXPECT_EQ(put(1).error_code(), 0);  // no fences there yet
  Bind("acct/", "L");
  ASSERT_TRUE(SendSnapshot(other->get()).ok());
  EXPECT_EQ(put(index_ + 1).error_reason(), "fence-missing");
}

TEST_F(LeaseLockTest, KeysOfAnEndedLeaseAreDeletedByTheLeadersProposal) {
  std::set<uint64_t> ended;
  sm_->set_lease_ended([&](uint64_t id) { return ended.count(id) > 0; });
  auto put = [&](const std::string& key, uint64_t lease) {
    kvpb::Command c;
    c.mutable_put()->set_key(key);
    c.mutable_put()->set_value("v");
    c.mutable_put()->set_lease(lease);
    return Apply(c, 1);
  };
  const KvStore& kv = sm_->kv();
  EXPECT_TRUE(kv.Due(0).empty());  // unknown at first: looks, finds none
  EXPECT_EQ(kv.NextDue(), INT64_MAX);
  put("a", 7);
  put("b", 7);
  put("c", 8);
  put("b", 0);  // put again without the lease: no longer attached
  EXPECT_EQ(kv.Get("a")->value().lease(), 7u);
  EXPECT_EQ(kv.NextDue(), INT64_MIN);
  EXPECT_TRUE(kv.Due(0).empty());  // nothing has ended yet
  ended.insert(7);
  std::vector<kvpb::Command> due = kv.Due(0);
  ASSERT_EQ(due.size(), 1u);
  ASSERT_EQ(due[0].lease_keys_end().leases_size(), 1);
  EXPECT_EQ(due[0].lease_keys_end().leases(0), 7u);
  put("a2", 7);  // attached after the proposal: that entry takes it too
  const int64_t before = sm_->revision();
  EXPECT_TRUE(Apply(due[0], 2).delete_().deleted());
  EXPECT_EQ(sm_->revision(), before + 1);
  EXPECT_FALSE(kv.Get("a")->has_value());
  EXPECT_FALSE(kv.Get("a2")->has_value());
  EXPECT_TRUE(kv.Get("b")->has_value());
  EXPECT_TRUE(kv.Get("c")->has_value());
  ended.insert(8);
  due = kv.Due(0);
  ASSERT_EQ(due.size(), 1u);
  Apply(due[0], 3);
  EXPECT_FALSE(kv.Get("c")->has_value());
  EXPECT_TRUE(kv.Due(0).empty());  // none attached any more
  EXPECT_EQ(kv.NextDue(), INT64_MAX);
}

}  // namespace
}  // namespace tally::kv
