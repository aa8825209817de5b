#include "tests/sim/sim_disk.h"

#include "gtest/gtest.h"

namespace tally::sim {
namespace {

raft::Entry E(raft::Index i, raft::Term t) {
  return raft::Entry{t, i, raft::EntryType::kNormal, {}};
}

TEST(SimDiskTest, CrashLosesOnlyUnsyncedWrites) {
  SimDisk disk(/*faulty=*/false);
  disk.Write(raft::HardState{1, 2, 0}, {E(1, 1)});
  disk.Sync();
  disk.Write(raft::HardState{1, 2, 1}, {E(2, 1)});
  EXPECT_TRUE(disk.has_unsynced_writes());
  disk.Crash();
  EXPECT_EQ(disk.hard_state(), (raft::HardState{1, 2, 0}));
  ASSERT_EQ(disk.EntriesAfterSnapshot().size(), 1u);
}

TEST(SimDiskTest, WritesReplaceSuffixOnSync) {
  SimDisk disk(false);
  disk.Write(std::nullopt, {E(1, 1), E(2, 1), E(3, 1)});
  disk.Write(std::nullopt, {E(2, 2)});
  disk.Sync();
  ASSERT_EQ(disk.EntriesAfterSnapshot().size(), 2u);
  EXPECT_EQ(disk.EntriesAfterSnapshot()[1].term, 2u);
}

TEST(SimDiskTest, FaultyDiskForgetsSyncedTermAndVote) {
  SimDisk disk(/*faulty=*/true);
  disk.Write(raft::HardState{7, 3, 5}, {E(1, 1)});
  disk.Sync();
  disk.Crash();
  EXPECT_EQ(disk.hard_state().term, 0u);
  EXPECT_EQ(disk.hard_state().vote, raft::kNoNode);
  EXPECT_EQ(disk.EntriesAfterSnapshot().size(), 1u);  // entries survive
}

TEST(SimDiskTest, SnapshotCompactsAndSurvivesCrash) {
  SimDisk disk(false);
  disk.Write(std::nullopt, {E(1, 1), E(2, 1), E(3, 1), E(4, 1)});
  raft::Snapshot snap;
  snap.metadata.index = 3;
  snap.metadata.term = 1;
  snap.data_ref = "s3";
  disk.SaveSnapshot(snap, 2);  // syncs the pending write first
  disk.Crash();
  EXPECT_EQ(disk.snapshot().data_ref, "s3");
  ASSERT_EQ(disk.EntriesAfterSnapshot().size(), 1u);
  EXPECT_EQ(disk.EntriesAfterSnapshot()[0].index, 4u);
  disk.Write(std::nullopt, {E(5, 2)});  // appends after the kept entries
  disk.Sync();
  EXPECT_EQ(disk.EntriesAfterSnapshot().size(), 2u);
}

}  // namespace
}  // namespace tally::sim
