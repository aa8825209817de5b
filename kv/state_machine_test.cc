#include "kv/state_machine.h"

#include <filesystem>
#include <map>
#include <utility>

#include "gtest/gtest.h"
#include "kv/state_machine_testing.h"
#include "kv/storage/leveldb_engine.h"
#include "kv/storage/memory_engine.h"
#include "kv/storage/testing/power_loss_env.h"

namespace tally::kv {
namespace {

kvpb::Command PutCommand(std::string key, std::string value, uint64_t client,
                         uint64_t seq) {
  kvpb::Command c;
  c.mutable_put()->set_key(key);
  c.mutable_put()->set_value(value);
  c.set_request_fingerprint(std::hash<std::string>()(key + '=' + value));
  if (client != 0) {
    c.mutable_session()->set_client_id(client);
    c.mutable_session()->set_sequence(seq);
    c.mutable_session()->set_first_incomplete(seq);
    c.mutable_session()->set_group(2);
  }
  return c;
}

kvpb::Command OpenSessionCommand(int64_t ttl_ms) {
  kvpb::Command c;
  c.mutable_open_session()->set_ttl_ms(ttl_ms);
  return c;
}

class StateMachineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = (std::filesystem::temp_directory_path() /
            ("tally-sm-" + std::to_string(getpid())))
               .string();
    std::filesystem::remove_all(dir_);
    auto db = storage::LevelDBEngine::Open(dir_);
    ASSERT_TRUE(db.ok());
    db_ = std::move(*db);
    auto sm = StateMachine::Open(db_.get(), 2);
    ASSERT_TRUE(sm.ok());
    sm_ = std::move(*sm);
  }
  void TearDown() override {
    sm_.reset();
    db_.reset();
    std::filesystem::remove_all(dir_);
  }
  kvpb::CommandResult Apply(kvpb::Command cmd, int64_t time_ms = 0) {
    return ApplyNext(*sm_, &index_, std::move(cmd), time_ms);
  }
  static kvpb::Command Put(std::string k, std::string v, uint64_t client = 0,
                           uint64_t seq = 0) {
    return PutCommand(std::move(k), std::move(v), client, seq);
  }
  uint64_t OpenSession() {
    return Apply(OpenSessionCommand(0)).open_session().client_id();
  }

  std::string dir_;
  std::unique_ptr<storage::Engine> db_;
  std::unique_ptr<StateMachine> sm_;
  raft::Index index_ = 0;
};

TEST_F(StateMachineTest, PutAssignsRevisionsAndVersions) {
  EXPECT_EQ(Apply(Put("a", "1")).put().header().revision(), 1);
  kvpb::CommandResult r = Apply(Put("a", "2"));
  EXPECT_EQ(r.put().header().revision(), 2);
  EXPECT_TRUE(r.put().had_prev());
  EXPECT_EQ(r.put().prev().value(), "1");
  auto kv = sm_->kv().Get("a");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  EXPECT_EQ((*kv)->value(), "2");
  EXPECT_EQ((*kv)->version(), 2);
  EXPECT_EQ((*kv)->create_revision(), 1);
  EXPECT_EQ(sm_->applied(), 2u);
}

TEST_F(StateMachineTest, ARangeDeleteTakesTheRangeInOneRevisionUpToItsLimit) {
  kvpb::Command watched;  // the history on, to see the deletions in it
  watched.mutable_watch_compact()->set_enable(true);
  Apply(watched);
  for (const char* k : {"a", "b1", "b2", "b3", "c"}) Apply(Put(k, "v"));
  auto del = [&](std::string key, std::string end, uint32_t limit,
                 uint64_t token = 0) {
    kvpb::Command c;
    c.mutable_delete_()->set_key(key);
    c.mutable_delete_()->set_range_end(end);
    c.mutable_delete_()->set_limit(limit);
    c.set_fence_token(token);
    return Apply(c);
  };
  // [b, c) with a limit of 2: b1 and b2 at one revision, b3 left.
  kvpb::CommandResult r = del("b", "c", 2);
  EXPECT_EQ(r.delete_().count(), 2);
  EXPECT_EQ(r.delete_().resume_key(), "b3");
  EXPECT_EQ(r.delete_().header().revision(), 6);
  EXPECT_FALSE(sm_->kv().Get("b2")->has_value());
  EXPECT_TRUE(sm_->kv().Get("b3")->has_value());
  auto changes = sm_->WatchChanges(5, "", std::string(1, '\0'), false, 10);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->changes.size(), 2u);
  EXPECT_TRUE(changes->changes[1].record.deleted());
  EXPECT_EQ(changes->changes[1].revision, 6);
  // The rest; then nothing left: no new revision.
  r = del("b3", "c", 2);
  EXPECT_EQ(r.delete_().count(), 1);
  EXPECT_EQ(r.delete_().resume_key(), "");
  r = del("b", "c", 2);
  EXPECT_FALSE(r.delete_().deleted());
  EXPECT_EQ(r.delete_().header().revision(), 7);
  // A fence on one key of the range refuses the whole delete.
  kvpb::Command bind;
  bind.mutable_fence_bind()->set_prefix("c");
  bind.mutable_fence_bind()->set_lock("l");
  Apply(bind);
  r = del("a", std::string(1, '\0'), 100);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(sm_->kv().Get("a")->has_value());
  // Every key from "a" on, with the lock's token.
  r = del("a", std::string(1, '\0'), 100, /*token=*/5);
  EXPECT_EQ(r.delete_().count(), 2);
  bool more = false;
  EXPECT_TRUE(sm_->kv().Range("", "", 10, &more)->empty());
}

TEST_F(StateMachineTest, KnowsTheTermItLeadsIn) {
  EXPECT_EQ(sm_->leading_term(), 0u);
  sm_->OnLeadership(3, true);
  EXPECT_EQ(sm_->leading_term(), 3u);
  sm_->OnLeadership(3, false);
  EXPECT_EQ(sm_->leading_term(), 0u);
}

TEST_F(StateMachineTest, TxnComparesThenAppliesOneBranch) {
  Apply(Put("k", "v1"));
  kvpb::Command c;
  kvpb::Compare* cmp = c.mutable_txn()->add_compare();
  cmp->set_key("k");
  cmp->set_target(kvpb::Compare::VALUE);
  cmp->set_value("v0");
  auto* put = c.mutable_txn()->add_success()->mutable_put();
  put->set_key("k");
  put->set_value("v2");
  c.mutable_txn()->add_failure()->mutable_get()->set_key("k");
  kvpb::CommandResult r = Apply(c);
  EXPECT_FALSE(r.txn().succeeded());
  EXPECT_EQ(r.txn().results(0).get().kv().value(), "v1");
  cmp->set_value("v1");
  r = Apply(c);
  EXPECT_TRUE(r.txn().succeeded());
  EXPECT_EQ((*sm_->kv().Get("k"))->value(), "v2");
}

TEST_F(StateMachineTest, RetriedSessionRequestIsAnsweredNotReapplied) {
  const uint64_t id = OpenSession();
  kvpb::CommandResult first = Apply(Put("a", "x", id, 1));
  kvpb::CommandResult again = Apply(Put("a", "x", id, 1));
  EXPECT_TRUE(again.put().header().replayed());
  EXPECT_EQ(again.put().header().revision(), first.put().header().revision());
  EXPECT_EQ((*sm_->kv().Get("a"))->version(), 1);
}

TEST_F(StateMachineTest, SessionIdIsTheIndexOfItsOpening) {
  Apply(Put("a", "1"));
  kvpb::CommandResult r = Apply(OpenSessionCommand(5000));
  EXPECT_EQ(r.open_session().client_id(), 2u);
  EXPECT_EQ(r.open_session().ttl_ms(), 5000);
  EXPECT_EQ(Apply(Put("b", "1", 2, 1)).error_code(), 0);
}

// Issue: an unknown session asking for sequence 1 was taken for a new one,
// so a first request retried after its session expired applied twice.
TEST_F(StateMachineTest, FirstRequestRetriedAfterExpiryAppliesOnce) {
  const uint64_t id = OpenSession();
  kvpb::Command put = Put("a", "x", id, 1);
  EXPECT_EQ(Apply(put, 1000).error_code(), 0);
  kvpb::CommandResult retry = Apply(put, 1000 + kSessionTtlMs + 1);
  EXPECT_EQ(retry.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_EQ(retry.error_reason(), "session-expired");
  EXPECT_EQ((*sm_->kv().Get("a"))->version(), 1);
  // Unknown ids are refused the same way, whatever their sequence.
  EXPECT_EQ(Apply(Put("a", "y", 4242, 1)).error_reason(), "session-expired");
  EXPECT_EQ((*sm_->kv().Get("a"))->version(), 1);
}

TEST_F(StateMachineTest, SessionStaysOpenWhileUsedWithinItsTtl) {
  const uint64_t id = OpenSession();
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    const int64_t t = static_cast<int64_t>(seq) * (kSessionTtlMs - 1);
    EXPECT_EQ(Apply(Put("a", "x", id, seq), t).error_code(), 0) << seq;
  }
}

// Issue: a sequence reused for another request got the first one's saved
// result back, marked replayed: the second write was acknowledged, never
// applied.
TEST_F(StateMachineTest, SequenceReusedForAnotherRequestIsRefused) {
  const uint64_t id = OpenSession();
  EXPECT_EQ(Apply(Put("a", "1", id, 1)).error_code(), 0);
  kvpb::CommandResult r = Apply(Put("b", "1", id, 1));
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(r.put().header().replayed());
}

TEST_F(StateMachineTest, SessionOfAnotherGroupIsRefused) {
  const uint64_t id = OpenSession();
  kvpb::Command put = Put("a", "1", id, 1);
  put.mutable_session()->set_group(3);
  EXPECT_EQ(Apply(put).error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_FALSE(sm_->kv().Get("a")->has_value());
}

TEST_F(StateMachineTest, ProposalTimeFollowsTheMonotonicClockNotTheLog) {
  int64_t now = 1'000'000;
  auto sm = StateMachine::Open(db_.get(), 7, [&] { return now; });
  ASSERT_TRUE(sm.ok());
  EXPECT_EQ((*sm)->ProposalTimeMs(), 0);
  now += 500;
  EXPECT_EQ((*sm)->ProposalTimeMs(), 500);
  // Another proposer ahead (a previous leader): log time jumps to it.
  kvpb::Command c = Put("k", "v");
  c.set_time_ms(90'000);
  ASSERT_TRUE(
      (*sm)
          ->Apply({{1, 1, raft::EntryType::kNormal, c.SerializeAsString()}})
          .ok());
  EXPECT_EQ((*sm)->ProposalTimeMs(), 90'000);
  // A leader's own proposals, applied later, do not hold it back.
  (*sm)->OnLeadership(2, true);
  c.set_time_ms(90'000);
  now += 200;
  ASSERT_TRUE(
      (*sm)
          ->Apply({{1, 2, raft::EntryType::kNormal, c.SerializeAsString()}})
          .ok());
  EXPECT_EQ((*sm)->ProposalTimeMs(), 90'200);
}

// A node that stayed up while the rest of its group was down (no quorum, so
// log time stood still) had let its own projection run on; elected after
// the others came back and renewed leases at the log's time, it jumped log
// time forward by the downtime and ended those leases at once. The host
// simulation's lock clients found it (seed 140: a lease renewed 30 ms
// before a leadership transfer, ended by the new leader's first expiry).
TEST_F(StateMachineTest, ElectedFollowerContinuesTheLogTimeNotItsOwnClock) {
  int64_t now = 1'000'000;
  auto sm = StateMachine::Open(db_.get(), 7, [&] { return now; });
  ASSERT_TRUE(sm.ok());
  now += 5'000;  // up, while the group made no progress
  kvpb::Command c = Put("k", "v");
  c.set_time_ms(1'000);  // the log's time, proposed by the leader
  ASSERT_TRUE(
      (*sm)
          ->Apply({{1, 1, raft::EntryType::kNormal, c.SerializeAsString()}})
          .ok());
  EXPECT_EQ((*sm)->ProposalTimeMs(), 1'000);
  // An entry that leaves log time where it was (here one without a time,
  // as a new term's empty entry) says nothing of the time now: it must not
  // hold the projection back either.
  now += 4'000;
  c.set_time_ms(0);
  ASSERT_TRUE(
      (*sm)
          ->Apply({{2, 2, raft::EntryType::kNormal, c.SerializeAsString()}})
          .ok());
  EXPECT_EQ((*sm)->ProposalTimeMs(), 5'000);
  (*sm)->OnLeadership(2, true);
  now += 60;
  EXPECT_EQ((*sm)->ProposalTimeMs(), 5'060);
}

TEST_F(StateMachineTest, RemovedMemberIdCannotComeBack) {
  kvpb::Command add;
  add.mutable_set_member()->set_id(4);
  add.mutable_set_member()->set_peer_address("127.0.0.1:7104");
  EXPECT_EQ(Apply(add).error_code(), 0);
  ASSERT_EQ(sm_->meta().Members()->size(), 1u);
  kvpb::Command remove;
  remove.set_remove_member(4);
  Apply(remove);
  EXPECT_TRUE(sm_->meta().Members()->empty());
  EXPECT_TRUE(sm_->meta().WasRemoved(4));
  EXPECT_EQ(Apply(add).error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_TRUE(sm_->meta().Members()->empty());
}

TEST_F(StateMachineTest, BootstrapRecordsMembersAndRanges) {
  kvpb::Member m;
  m.set_id(1);
  std::vector<kvpb::RangeDescriptor> ranges(2);
  ranges[0].set_group(2);
  ranges[0].set_end("m");
  ranges[1].set_group(3);
  ranges[1].set_start("m");
  ASSERT_TRUE(sm_->Bootstrap(1, {m}, {ranges[1], ranges[0]}).ok());
  EXPECT_EQ(sm_->applied(), 1u);
  EXPECT_EQ(sm_->meta().Members()->size(), 1u);
  auto got = sm_->meta().Ranges();
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->size(), 2u);
  EXPECT_EQ((*got)[0].group(), 2u);  // in key order
  EXPECT_EQ((*got)[1].start(), "m");
}

TEST_F(StateMachineTest, SkipsEntriesAlreadyApplied) {
  Apply(Put("a", "1"));
  raft::Entry old{1, 1, raft::EntryType::kNormal,
                  Put("a", "stale").SerializeAsString()};
  ASSERT_TRUE(sm_->Apply({old}).ok());
  EXPECT_EQ((*sm_->kv().Get("a"))->value(), "1");
}

TEST_F(StateMachineTest, SnapshotRoundTripsIntoAnotherGroupReplica) {
  for (int i = 0; i < 100; ++i) Apply(Put("k" + std::to_string(i), "v"));
  std::vector<raft::host::SnapshotChunk> chunks;
  ASSERT_TRUE(sm_->Export(100,
                          [&](raft::host::SnapshotChunk c) {
                            chunks.push_back(std::move(c));
                            return absl::OkStatus();
                          })
                  .ok());
  EXPECT_EQ(sm_->Export(1000, [](auto) { return absl::OkStatus(); }).code(),
            absl::StatusCode::kUnavailable);
  auto other_db = storage::LevelDBEngine::Open(dir_ + "-b");
  ASSERT_TRUE(other_db.ok());
  auto other = StateMachine::Open(other_db->get(), 2);
  ASSERT_TRUE(other.ok());
  size_t next = 0;
  ASSERT_TRUE((*other)
                  ->Import([&]() -> absl::StatusOr<raft::host::SnapshotChunk> {
                    return chunks.at(next++);
                  })
                  .ok());
  EXPECT_EQ((*other)->applied(), 100u);
  EXPECT_EQ((*other)->revision(), 100);
  bool more = false;
  auto all = (*other)->kv().Range("", "", 1000, &more);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 100u);
  other->reset();
  other_db->reset();
  std::filesystem::remove_all(dir_ + "-b");
}

// Replays `entries` into a fresh replica, `batch` entries per Apply, closing
// and reopening the replica after entry `reopen_after` (0: never); returns
// every result and every stored record of the group.
std::pair<std::vector<std::string>, std::map<std::string, std::string>> Replay(
    const std::vector<raft::Entry>& entries, size_t batch,
    size_t reopen_after = 0) {
  storage::MemoryEngine engine;
  auto sm = StateMachine::Open(&engine, 2);
  EXPECT_TRUE(sm.ok());
  std::vector<std::string> results;
  for (size_t i = 0; i < entries.size(); i += batch) {
    if (reopen_after != 0 && i == reopen_after) {
      sm = StateMachine::Open(&engine, 2);
      EXPECT_TRUE(sm.ok());
    }
    std::vector<raft::Entry> part(
        entries.begin() + i,
        entries.begin() + std::min(entries.size(), i + batch));
    auto r = (*sm)->Apply(part);
    EXPECT_TRUE(r.ok()) << r.status();
    for (auto& x : *r) results.push_back(std::move(x));
  }
  std::map<std::string, std::string> data;
  std::unique_ptr<storage::Iterator> it = engine.NewIterator();
  for (it->Seek(""); it->Valid(); it->Next()) {
    data[std::string(it->key())] = std::string(it->value());
  }
  return {results, data};
}

// Issue: expiry ran at the end of each apply batch, so replicas whose batches
// ended at different entries refused or applied the same write.
TEST(SessionExpiryTest, SameResultsAndDataWhateverTheBatching) {
  constexpr int64_t kMinute = 60 * 1000;
  std::vector<raft::Entry> entries;
  auto add = [&](kvpb::Command c, int64_t time_ms) {
    c.set_time_ms(time_ms);
    entries.push_back({1, entries.size() + 1, raft::EntryType::kNormal,
                       c.SerializeAsString()});
  };
  auto put = [](std::string key, uint64_t client, uint64_t seq) {
    return PutCommand(std::move(key), "v", client, seq);
  };
  add(OpenSessionCommand(0), 0);  // session 1
  add(OpenSessionCommand(0), 0);  // session 2
  add(put("a", 1, 1), 0);
  add(put("b", 2, 1), 3 * kMinute);
  // Session 1 is idle past its TTL when the next entries apply.
  add(put("c", 0, 0), kSessionTtlMs + 2 * kMinute);
  add(put("a", 1, 2), kSessionTtlMs + 2 * kMinute);
  add(put("b", 2, 2), kSessionTtlMs + 2 * kMinute);
  add(OpenSessionCommand(0), kSessionTtlMs + 2 * kMinute);  // session 8
  // Both end, in one batch with the opening of session 8 or not.
  add(put("d", 0, 0), 3 * kSessionTtlMs);
  add(put("a", 8, 1), 3 * kSessionTtlMs);
  const auto one = Replay(entries, entries.size());
  auto result = [&](size_t index) {
    kvpb::CommandResult r;
    r.ParseFromString(one.first.at(index - 1));
    return r;
  };
  EXPECT_EQ(result(6).error_reason(), "session-expired");
  EXPECT_EQ(result(7).error_code(), 0);
  EXPECT_EQ(result(10).error_reason(), "session-expired");
  for (size_t batch = 1; batch < entries.size(); ++batch) {
    const auto other = Replay(entries, batch);
    EXPECT_EQ(other.first, one.first) << "results differ, batches of " << batch;
    EXPECT_EQ(other.second, one.second) << "data differ, batches of " << batch;
  }
  for (size_t reopen = 1; reopen < entries.size(); ++reopen) {
    const auto other = Replay(entries, 1, reopen);
    EXPECT_EQ(other.first, one.first)
        << "results differ, reopened at " << reopen;
    EXPECT_EQ(other.second, one.second)
        << "data differ, reopened at " << reopen;
  }
}

raft::Entry PutEntry(raft::Index index, std::string key, std::string value) {
  return {
      1, index, raft::EntryType::kNormal,
      PutCommand(std::move(key), std::move(value), 0, 0).SerializeAsString()};
}

// The apply thread applies what several groups committed into one pass:
// one engine write for all of them, and nothing of it seen before.
TEST(ApplyPassTest, GroupsOfOneEngineAreWrittenAtOnceAtCommit) {
  storage::MemoryEngine db;
  auto a = StateMachine::Open(&db, 2);
  auto b = StateMachine::Open(&db, 3);
  ASSERT_TRUE(a.ok() && b.ok());
  std::unique_ptr<raft::host::ApplyPass> pass = (*a)->NewPass();
  ASSERT_NE(pass, nullptr);
  ASSERT_TRUE((*b)->Joins(*pass));
  const size_t writes = db.unsynced_writes();
  ASSERT_TRUE((*a)->ApplyInto(*pass, {PutEntry(1, "x", "a1")}).ok());
  ASSERT_TRUE((*b)->ApplyInto(*pass, {PutEntry(1, "x", "b1")}).ok());
  // The same group again in the pass goes on from where it stopped.
  auto again = (*a)->ApplyInto(*pass, {PutEntry(2, "x", "a2")});
  ASSERT_TRUE(again.ok());
  kvpb::CommandResult r;
  ASSERT_TRUE(r.ParseFromString(again->at(0)));
  EXPECT_EQ(r.put().header().revision(), 2);
  EXPECT_EQ(r.put().prev().value(), "a1");

  EXPECT_EQ(db.unsynced_writes(), writes);
  EXPECT_EQ((*a)->applied(), 0u);
  EXPECT_EQ((*b)->applied(), 0u);
  auto unseen = (*b)->kv().Get("x");
  ASSERT_TRUE(unseen.ok());
  EXPECT_FALSE(unseen->has_value());

  ASSERT_TRUE(pass->Commit().ok());
  EXPECT_EQ(db.unsynced_writes(), writes + 1);
  EXPECT_EQ((*a)->applied(), 2u);
  EXPECT_EQ((*b)->applied(), 1u);
  EXPECT_EQ((*a)->revision(), 2);
  auto va = (*a)->kv().Get("x");
  auto vb = (*b)->kv().Get("x");
  ASSERT_TRUE(va.ok() && va->has_value() && vb.ok() && vb->has_value());
  EXPECT_EQ((*va)->value(), "a2");
  EXPECT_EQ((*vb)->value(), "b1");

  // A group over another engine cannot join.
  storage::MemoryEngine other;
  auto c = StateMachine::Open(&other, 2);
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE((*c)->Joins(*(*a)->NewPass()));
}

// A session holding many saved results (a client with requests in flight
// past its first incomplete one) is stored as the same bytes on every
// replica: Protobuf's maps iterate in a per-instance random order.
TEST(SessionRecordTest, SameBytesOnEveryReplica) {
  std::vector<raft::Entry> entries;
  auto add = [&](kvpb::Command c) {
    entries.push_back({1, entries.size() + 1, raft::EntryType::kNormal,
                       c.SerializeAsString()});
  };
  add(OpenSessionCommand(0));  // session 1
  for (uint64_t seq = 1; seq <= 16; ++seq) {
    kvpb::Command c = PutCommand("k" + std::to_string(seq), "v", 1, seq);
    c.mutable_session()->set_first_incomplete(1);
    add(std::move(c));
  }
  const auto one = Replay(entries, entries.size());
  for (int replica = 0; replica < 4; ++replica) {
    EXPECT_EQ(Replay(entries, entries.size()).second, one.second);
  }
}

// A crash that loses unsynced applies takes the applied index back with the
// data, and applying the same entries again gives the same results.
TEST(StateMachineCrashTest, LostAppliesAreAppliedAgainAlike) {
  std::vector<raft::Entry> entries;
  for (int i = 1; i <= 20; ++i) {
    kvpb::Command cmd =
        PutCommand(absl::StrCat("k", i % 7), absl::StrCat(i), 0, 0);
    entries.push_back({1, static_cast<raft::Index>(i), raft::EntryType::kNormal,
                       cmd.SerializeAsString()});
  }
  storage::MemoryEngine engine;
  auto sm = StateMachine::Open(&engine, 2);
  ASSERT_TRUE(sm.ok());
  auto first = (*sm)->Apply({entries.begin(), entries.begin() + 8});
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(*(*sm)->Sync(), 8u);
  auto lost = (*sm)->Apply({entries.begin() + 8, entries.end()});
  ASSERT_TRUE(lost.ok());
  engine.Crash();
  sm = StateMachine::Open(&engine, 2);
  ASSERT_TRUE(sm.ok());
  EXPECT_EQ((*sm)->applied(), 8u);
  EXPECT_EQ((*(*sm)->kv().Get("k1"))->value(), "8");  // 1 and 8; not 15
  auto again = (*sm)->Apply(entries);  // the host hands out from the snapshot
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(std::vector<std::string>(again->begin() + 8, again->end()), *lost);
  EXPECT_EQ((*(*sm)->kv().Get("k1"))->value(), "15");
}

// Issue: applies are not synced, and LevelDB closed the log it rotated away
// from without a sync, so after a power loss the applied index (synced in
// the next log) could be ahead of the data the lost log held.
TEST(StateMachinePowerLossTest, AppliedIndexNeverAheadOfTheData) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() /
      ("tally-powerloss-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  storage::testing::PowerLossEnv env;
  storage::LevelDBOptions o;
  o.env = &env;
  o.write_buffer_size = 64 << 10;  // the smallest: a rotation every 64 KiB
  auto db = storage::LevelDBEngine::Open((dir / "live").string(), o);
  ASSERT_TRUE(db.ok()) << db.status();
  auto sm = StateMachine::Open(db->get(), 2);
  ASSERT_TRUE(sm.ok()) << sm.status();
  // The rotated log's memtable is not compacted before the power loss.
  env.HoldBackgroundWork(true);
  constexpr int kEntries = 100;  // 1 KiB each: one rotation, not two
  for (int i = 1; i <= kEntries; ++i) {
    kvpb::Command cmd =
        PutCommand(absl::StrCat("k", i), std::string(1000, 'v'), 0, 0);
    raft::Entry e{1, static_cast<raft::Index>(i), raft::EntryType::kNormal,
                  cmd.SerializeAsString()};
    ASSERT_TRUE((*sm)->Apply({e}).ok());
  }
  absl::StatusOr<raft::Index> synced = (*sm)->Sync();
  ASSERT_TRUE(synced.ok()) << synced.status();
  env.CopyAsAfterPowerLoss((dir / "live").string(), (dir / "after").string());
  env.HoldBackgroundWork(false);
  sm->reset();
  db->reset();

  auto db2 = storage::LevelDBEngine::Open((dir / "after").string());
  ASSERT_TRUE(db2.ok()) << db2.status();
  auto sm2 = StateMachine::Open(db2->get(), 2);
  ASSERT_TRUE(sm2.ok()) << sm2.status();
  EXPECT_EQ((*sm2)->applied(), *synced);
  int missing = 0;
  for (raft::Index i = 1; i <= (*sm2)->applied(); ++i) {
    auto kv = (*sm2)->kv().Get(absl::StrCat("k", i));
    missing += !kv.ok() || !kv->has_value();
  }
  EXPECT_EQ(missing, 0) << "keys applied at or below index "
                        << (*sm2)->applied() << " are gone";
  sm2->reset();
  db2->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tally::kv
