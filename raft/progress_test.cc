#include "raft/progress.h"

#include "gtest/gtest.h"

namespace tally::raft {
namespace {

TEST(InflightsTest, FullByCountOrBytes) {
  Inflights by_count(2, 0);
  by_count.Add(1, 1000);
  EXPECT_FALSE(by_count.Full());
  by_count.Add(2, 1000);
  EXPECT_TRUE(by_count.Full());

  Inflights by_bytes(100, 150);
  by_bytes.Add(1, 100);
  EXPECT_FALSE(by_bytes.Full());
  by_bytes.Add(2, 100);
  EXPECT_TRUE(by_bytes.Full());
  by_bytes.FreeLE(1);
  EXPECT_FALSE(by_bytes.Full());
  EXPECT_EQ(by_bytes.bytes(), 100u);
}

TEST(InflightsTest, FreeLEFreesAcknowledgedPrefix) {
  Inflights w(10, 0);
  for (Index i : {3, 5, 9}) w.Add(i, 1);
  w.FreeLE(6);
  EXPECT_EQ(w.count(), 1u);
  w.FreeLE(2);
  EXPECT_EQ(w.count(), 1u);
  w.FreeFirstOne();
  EXPECT_EQ(w.count(), 0u);
  EXPECT_EQ(w.bytes(), 0u);
}

TEST(ProgressTest, ProbePausesAfterOneSendUntilAnswered) {
  Progress pr(5, 10, 0);
  EXPECT_FALSE(pr.IsPaused());
  pr.SentEntries(6, 10);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_EQ(pr.next(), 5u);  // probes do not move next optimistically
  pr.OnHeartbeatResponse();
  EXPECT_FALSE(pr.IsPaused());
}

TEST(ProgressTest, ReplicateMovesNextOptimistically) {
  Progress pr(5, 2, 0);
  EXPECT_TRUE(pr.MaybeUpdate(4));
  pr.BecomeReplicate();
  pr.SentEntries(7, 10);
  EXPECT_EQ(pr.next(), 8u);
  pr.SentEntries(9, 10);
  EXPECT_TRUE(pr.IsPaused());  // window of 2 is full
  EXPECT_TRUE(pr.MaybeUpdate(7));
  EXPECT_FALSE(pr.IsPaused());
  EXPECT_FALSE(pr.MaybeUpdate(6));  // stale acknowledgement
}

TEST(ProgressTest, MaybeDecreaseIgnoresStaleRejections) {
  Progress replicate(10, 10, 0);
  replicate.MaybeUpdate(8);
  replicate.BecomeReplicate();
  EXPECT_FALSE(replicate.MaybeDecreaseTo(7, 5));  // at or below match
  EXPECT_TRUE(replicate.MaybeDecreaseTo(9, 5));
  EXPECT_EQ(replicate.next(), 9u);  // back to match + 1

  Progress probe(10, 10, 0);
  EXPECT_FALSE(probe.MaybeDecreaseTo(5, 2));  // not the last probe (9)
  EXPECT_TRUE(probe.MaybeDecreaseTo(9, 3));
  EXPECT_EQ(probe.next(), 4u);  // hint + 1
  EXPECT_TRUE(probe.MaybeDecreaseTo(3, 100));
  EXPECT_EQ(probe.next(), 3u);  // never past the rejected index
}

TEST(ProgressTest, SnapshotStatePausesUntilProbe) {
  Progress pr(3, 10, 0);
  pr.BecomeSnapshot(20);
  EXPECT_TRUE(pr.IsPaused());
  EXPECT_EQ(pr.pending_snapshot(), 20u);
  pr.BecomeProbe();
  EXPECT_EQ(pr.next(), 21u);
  EXPECT_FALSE(pr.IsPaused());
}

TEST(ProgressTest, HeartbeatResponseFreesOneSlotOfFullWindow) {
  Progress pr(1, 1, 0);
  pr.BecomeReplicate();
  pr.SentEntries(3, 10);
  ASSERT_TRUE(pr.IsPaused());
  pr.OnHeartbeatResponse();
  EXPECT_FALSE(pr.IsPaused());
}

}  // namespace
}  // namespace tally::raft
