#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kv/state_machine_testing.h"

namespace tally::kv {
namespace {

kvpb::Command PutCmd(const std::string& key, const std::string& value) {
  kvpb::Command c;
  c.mutable_put()->set_key(key);
  c.mutable_put()->set_value(value);
  return c;
}

kvpb::Command DeleteCmd(const std::string& key) {
  kvpb::Command c;
  c.mutable_delete_()->set_key(key);
  return c;
}

kvpb::Command CompactCmd(int64_t revision) {
  kvpb::Command c;
  c.mutable_watch_compact()->set_revision(revision);
  return c;
}

// "rev:PUT key=value" or "rev:DELETE key", each change in order.
std::vector<std::string> Changes(const WatchRead& r) {
  std::vector<std::string> out;
  for (const WatchChange& c : r.changes) {
    out.push_back(std::to_string(c.revision) + ":" +
                  (c.record.deleted()
                       ? "DELETE " + c.record.key()
                       : "PUT " + c.record.key() + "=" + c.record.value()));
  }
  return out;
}

kvpb::Command EnableCmd() {
  kvpb::Command c;
  c.mutable_watch_compact()->set_enable(true);
  return c;
}

// A group whose history a watch has turned on.
class WatchHistoryTest : public ModuleTest {
 protected:
  void SetUp() override {
    ModuleTest::SetUp();
    Apply(EnableCmd(), 0);
  }
};

TEST_F(ModuleTest, TheHistoryIsOffUntilAWatchTurnsItOnAndStartsThere) {
  Apply(PutCmd("k", "1"), 1);
  Apply(PutCmd("k", "2"), 2);
  EXPECT_EQ(sm_->WatchChanges(0, "k", "", false, 10).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(sm_->watch().enabled());
  // Nothing recorded, nothing to compact.
  EXPECT_TRUE(sm_->Due().empty());
  std::unique_ptr<storage::Iterator> it = db_.NewIterator();
  const std::string prefix = Keyspace(2).Key(Space::kWatchRecord);
  it->Seek(prefix);
  EXPECT_FALSE(it->Valid() && it->key().starts_with(prefix));

  kvpb::CommandResult r = Apply(EnableCmd(), 3);
  EXPECT_EQ(r.watch_compact().compacted(), 2);
  EXPECT_TRUE(sm_->watch().enabled());
  auto before = sm_->WatchChanges(1, "k", "", false, 10);
  EXPECT_EQ(before.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(before.status().message().find("start from is 3"),
            std::string::npos)
      << before.status();
  Apply(PutCmd("k", "3"), 4);
  auto after = sm_->WatchChanges(2, "k", "", false, 10);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(Changes(*after), std::vector<std::string>{"3:PUT k=3"});
  // Turning it on again changes nothing.
  EXPECT_EQ(Apply(EnableCmd(), 5).watch_compact().compacted(), 2);
}

TEST_F(WatchHistoryTest,
       EveryChangeIsReadBackInRevisionOrderWithWhatItReplaced) {
  Apply(PutCmd("a", "1"), 1);  // rev 1
  Apply(PutCmd("b", "1"), 2);  // rev 2
  Apply(PutCmd("a", "2"), 3);  // rev 3
  kvpb::Command txn;           // rev 4: two changes
  kvpb::TxnOp* op = txn.mutable_txn()->add_success();
  op->mutable_put()->set_key("c");
  op->mutable_put()->set_value("1");
  txn.mutable_txn()->add_success()->mutable_delete_()->set_key("a");
  Apply(txn, 4);
  Apply(DeleteCmd("missing"), 5);  // no change, no revision
  Apply(PutCmd("zz", "1"), 6);     // rev 5

  auto all = sm_->WatchChanges(0, "", std::string(1, '\0'), true, 100);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(all->through, 5);
  EXPECT_EQ(Changes(*all), (std::vector<std::string>{
                               "1:PUT a=1", "2:PUT b=1", "3:PUT a=2",
                               "4:PUT c=1", "4:DELETE a", "5:PUT zz=1"}));
  // What each change replaced.
  ASSERT_TRUE(all->changes[2].prev.has_value());
  EXPECT_EQ(all->changes[2].prev->value(), "1");
  EXPECT_EQ(all->changes[2].prev_revision, 1);
  ASSERT_TRUE(all->changes[4].prev.has_value());
  EXPECT_EQ(all->changes[4].prev->value(), "2");
  EXPECT_FALSE(all->changes[0].prev.has_value());
  EXPECT_EQ(all->changes[2].record.version(), 2);
  EXPECT_EQ(all->changes[2].record.create_revision(), 1);

  // One key, a range, after a revision.
  auto a = sm_->WatchChanges(1, "a", "", false, 100);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(Changes(*a), (std::vector<std::string>{"3:PUT a=2", "4:DELETE a"}));
  auto range = sm_->WatchChanges(0, "b", "d", false, 100);
  ASSERT_TRUE(range.ok());
  EXPECT_EQ(Changes(*range),
            (std::vector<std::string>{"2:PUT b=1", "4:PUT c=1"}));

  // A limit stops at the end of a whole revision, and says how far it got.
  auto some = sm_->WatchChanges(2, "", std::string(1, '\0'), false, 2);
  ASSERT_TRUE(some.ok());
  EXPECT_EQ(some->through, 4);
  EXPECT_EQ(Changes(*some),
            (std::vector<std::string>{"3:PUT a=2", "4:PUT c=1", "4:DELETE a"}));
  auto rest =
      sm_->WatchChanges(some->through, "", std::string(1, '\0'), false, 2);
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(Changes(*rest), (std::vector<std::string>{"5:PUT zz=1"}));
  EXPECT_EQ(rest->through, 5);

  // Asked for revisions this replica has not applied yet: nothing, and it
  // does not take the reader back.
  auto ahead = sm_->WatchChanges(9, "", std::string(1, '\0'), false, 2);
  ASSERT_TRUE(ahead.ok());
  EXPECT_TRUE(ahead->changes.empty());
  EXPECT_EQ(ahead->through, 9);
}

TEST_F(WatchHistoryTest, ACompactedRevisionIsRefusedNamingTheOldestLeft) {
  for (int i = 0; i < 10; ++i) Apply(PutCmd("k", std::to_string(i)), i + 1);
  kvpb::CommandResult r = Apply(CompactCmd(4), 20);
  EXPECT_EQ(r.watch_compact().compacted(), 4);
  auto old = sm_->WatchChanges(3, "k", "", false, 100);
  ASSERT_EQ(old.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_NE(old.status().message().find("oldest revision a watch may start "
                                        "from is 5"),
            std::string::npos)
      << old.status();
  auto left = sm_->WatchChanges(4, "k", "", true, 100);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->changes.size(), 6u);
  EXPECT_EQ(left->changes.front().revision, 5);
  // The change before revision 5 is forgotten.
  EXPECT_FALSE(left->changes.front().prev.has_value());
  EXPECT_TRUE(left->changes[1].prev.has_value());
  // A compaction never goes back, nor past the group's revision.
  EXPECT_EQ(Apply(CompactCmd(2), 21).watch_compact().compacted(), 4);
  EXPECT_EQ(Apply(CompactCmd(99), 22).watch_compact().compacted(), 10);
  EXPECT_EQ(sm_->WatchChanges(9, "k", "", false, 100).status().code(),
            absl::StatusCode::kOutOfRange);
  auto now = sm_->WatchChanges(10, "k", "", false, 100);
  ASSERT_TRUE(now.ok());
  EXPECT_TRUE(now->changes.empty());
  // Nothing of the history is left in the store.
  int records = 0;
  std::unique_ptr<storage::Iterator> it = db_.NewIterator();
  Keyspace keys(2);
  const std::string prefix = keys.Key(Space::kWatchRecord);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    ++records;
  }
  EXPECT_EQ(records, 0);
}

TEST_F(WatchHistoryTest, ACompactionInThePassOfItsChangesLeavesNoRecord) {
  Apply(PutCmd("k", "0"), 1);
  // One apply pass: two puts, then a compaction past both.
  std::vector<raft::Entry> pass;
  for (kvpb::Command c : {PutCmd("k", "1"), PutCmd("k", "2"), CompactCmd(3)}) {
    c.set_time_ms(2);
    pass.push_back(raft::Entry{1, ++index_, raft::EntryType::kNormal,
                               c.SerializeAsString()});
  }
  ASSERT_TRUE(sm_->Apply(pass).ok());
  EXPECT_EQ(sm_->WatchChanges(2, "k", "", false, 10).status().code(),
            absl::StatusCode::kOutOfRange);
  std::unique_ptr<storage::Iterator> it = db_.NewIterator();
  const std::string prefix = Keyspace(2).Key(Space::kWatchRecord);
  it->Seek(prefix);
  EXPECT_FALSE(it->Valid() && it->key().starts_with(prefix))
      << "a record of the pass was left behind";
}

TEST_F(WatchHistoryTest,
       TheLeaderKeepsTheHistoryBoundedAFewThousandDeletesAtATime) {
  sm_->set_watch_history(1000);
  sm_->OnLeadership(1, true);
  // 25,000 changes: 10,000 per entry is the most a compaction deletes.
  for (int i = 0; i < 25; ++i) {
    kvpb::Command txn;
    for (int j = 0; j < 1000; ++j) {
      kvpb::TxnOp* op = txn.mutable_txn()->add_success();
      op->mutable_put()->set_key("k" + std::to_string(j));
      op->mutable_put()->set_value(std::to_string(i));
    }
    Apply(txn, i + 1);
  }
  // 25 revisions of 1,000 changes each: keep the last 1,000 revisions means
  // everything, so nothing is due.
  EXPECT_TRUE(sm_->Due().empty());
  EXPECT_FALSE(sm_->MayHaveDuties());
  // A compaction asked for deletes 10,000 records; the leader proposes the
  // rest until none is left.
  Apply(CompactCmd(24), 30);
  EXPECT_EQ(
      sm_->WatchChanges(23, "", std::string(1, '\0'), false, 1).status().code(),
      absl::StatusCode::kOutOfRange);
  int rounds = 0;
  while (sm_->MayHaveDuties() && rounds < 10) {
    std::vector<kvpb::Command> due = sm_->Due();
    ASSERT_EQ(due.size(), 1u);
    EXPECT_EQ(due[0].watch_compact().revision(), 24);
    Apply(due[0], 31 + rounds);
    ++rounds;
  }
  EXPECT_EQ(rounds, 2);  // 24,000 records: 10,000 then 4,000 more
  auto left = sm_->WatchChanges(24, "", std::string(1, '\0'), false, 5000);
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->changes.size(), 1000u);

  // Past the history kept (and a tenth), the leader compacts by itself.
  for (int i = 0; i < 1200; ++i) Apply(PutCmd("x", std::to_string(i)), 100 + i);
  ASSERT_TRUE(sm_->MayHaveDuties());
  std::vector<kvpb::Command> due = sm_->Due();
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].watch_compact().revision(), sm_->revision() - 1000);
  Apply(due[0], 2000);
  EXPECT_FALSE(sm_->MayHaveDuties());
}

TEST_F(WatchHistoryTest, AReplicaRebuiltFromASnapshotServesTheSameHistory) {
  for (int i = 0; i < 5; ++i) Apply(PutCmd("k", std::to_string(i)), i + 1);
  Apply(CompactCmd(2), 10);
  std::vector<raft::host::SnapshotChunk> chunks;
  ASSERT_TRUE(sm_->Export(index_,
                          [&](raft::host::SnapshotChunk c) {
                            chunks.push_back(std::move(c));
                            return absl::OkStatus();
                          })
                  .ok());
  storage::MemoryEngine other_db;
  auto other = StateMachine::Open(&other_db, 2);
  ASSERT_TRUE(other.ok());
  int changed = 0;
  (*other)->set_watch_changed([&] { ++changed; });
  size_t next = 0;
  ASSERT_TRUE((*other)
                  ->Import([&]() -> absl::StatusOr<raft::host::SnapshotChunk> {
                    return chunks.at(next++);
                  })
                  .ok());
  EXPECT_GE(changed, 1);  // watchers are told to read again
  auto here = sm_->WatchChanges(2, "k", "", true, 100);
  auto there = (*other)->WatchChanges(2, "k", "", true, 100);
  ASSERT_TRUE(here.ok() && there.ok());
  EXPECT_EQ(Changes(*here), Changes(*there));
  EXPECT_EQ((*other)->WatchChanges(1, "k", "", true, 100).status().code(),
            absl::StatusCode::kOutOfRange);
}

}  // namespace
}  // namespace tally::kv
