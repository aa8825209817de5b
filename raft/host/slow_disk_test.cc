#include "raft/host/internal/slow_disk.h"

#include <gtest/gtest.h>

namespace tally::raft::host {
namespace {

using std::chrono::milliseconds;
using Change = SlowDiskDetector::Change;
using TimePoint = SlowDiskDetector::TimePoint;

// One window (1 s) of traffic: `n` syncs of `sync` each here, and `n`
// appends to each of n2 and n3 answered after `n2_rtt` and `n3_rtt`.
class Traffic {
 public:
  explicit Traffic(SlowDiskDetector* d) : d_(d) {}
  Change Window(milliseconds sync, milliseconds n2_rtt, milliseconds n3_rtt,
                int n = 10) {
    for (int i = 0; i < n; ++i) {
      ++index_;
      d_->AppendSent(1, 2, index_, now_);
      d_->AppendSent(1, 3, index_, now_);
      d_->AppendAcked(1, 2, index_, now_ + n2_rtt);
      d_->AppendAcked(1, 3, index_, now_ + n3_rtt);
      d_->Synced(sync);
      now_ +=
          std::chrono::duration_cast<milliseconds>(std::chrono::seconds(1)) / n;
    }
    return d_->Check(now_);
  }

 private:
  SlowDiskDetector* d_;
  TimePoint now_ = TimePoint() + std::chrono::hours(1);
  Index index_ = 0;
};

TEST(SlowDiskDetectorTest,
     SlowOnlyAfterWindowsInARowOfSyncsFarSlowerThanAFollower) {
  SlowDiskDetector d({});
  Traffic t(&d);
  EXPECT_EQ(t.Window(milliseconds(2), milliseconds(3), milliseconds(4)),
            Change::kNone);  // the first window only starts the clock
  EXPECT_EQ(t.Window(milliseconds(60), milliseconds(3), milliseconds(40)),
            Change::kNone);
  EXPECT_EQ(t.Window(milliseconds(60), milliseconds(3), milliseconds(40)),
            Change::kNone);
  EXPECT_FALSE(d.slow());
  EXPECT_EQ(t.Window(milliseconds(60), milliseconds(3), milliseconds(40)),
            Change::kSlow);
  EXPECT_TRUE(d.slow());
  EXPECT_EQ(d.fastest_peer(), 2u);
  EXPECT_NE(d.Describe().find("60 ms"), std::string::npos) << d.Describe();
}

TEST(SlowDiskDetectorTest, AWindowBackToNormalBreaksTheRun) {
  SlowDiskDetector d({});
  Traffic t(&d);
  t.Window(milliseconds(2), milliseconds(3), milliseconds(3));
  t.Window(milliseconds(60), milliseconds(3), milliseconds(3));
  t.Window(milliseconds(60), milliseconds(3), milliseconds(3));
  t.Window(milliseconds(2), milliseconds(3), milliseconds(3));
  t.Window(milliseconds(60), milliseconds(3), milliseconds(3));
  EXPECT_EQ(t.Window(milliseconds(60), milliseconds(3), milliseconds(3)),
            Change::kNone);
  EXPECT_FALSE(d.slow());
}

TEST(SlowDiskDetectorTest, EveryDiskEquallySlowMovesNothing) {
  // One shared slow disk: the followers' round trips include syncs as slow.
  SlowDiskDetector d({});
  Traffic t(&d);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(t.Window(milliseconds(80), milliseconds(85), milliseconds(90)),
              Change::kNone);
  }
  EXPECT_FALSE(d.slow());
}

TEST(SlowDiskDetectorTest, FastDisksAreNeverSlowWhateverTheRatio) {
  // Below the floor: 10 ms syncs against 0.5 ms round trips are fine.
  SlowDiskDetector d({});
  Traffic t(&d);
  for (int i = 0; i < 10; ++i) {
    t.Window(milliseconds(10), milliseconds(0), milliseconds(1));
  }
  EXPECT_FALSE(d.slow());
}

TEST(SlowDiskDetectorTest, RecoversOnTheLastKnownRoundTripOnceSyncsAreFast) {
  SlowDiskDetector d({});
  Traffic t(&d);
  for (int i = 0; i < 4; ++i) {
    t.Window(milliseconds(60), milliseconds(3), milliseconds(3));
  }
  ASSERT_TRUE(d.slow());
  // Led nothing since: syncs, no appends sent. Still slow, then not.
  SlowDiskDetector::TimePoint now = TimePoint() + std::chrono::hours(2);
  for (int i = 0; i < 10; ++i) d.Synced(milliseconds(60));
  EXPECT_EQ(d.Check(now), Change::kNone);
  EXPECT_TRUE(d.slow());
  for (int i = 0; i < 10; ++i) d.Synced(milliseconds(2));
  EXPECT_EQ(d.Check(now + std::chrono::seconds(1)), Change::kRecovered);
  EXPECT_FALSE(d.slow());
}

TEST(SlowDiskDetectorTest, TooFewSamplesDecideNothing) {
  SlowDiskDetector d({});
  Traffic t(&d);
  for (int i = 0; i < 10; ++i) {
    t.Window(milliseconds(60), milliseconds(3), milliseconds(3), /*n=*/4);
  }
  EXPECT_FALSE(d.slow());
}

TEST(SlowDiskDetectorTest, FactorZeroTurnsItOff) {
  SlowDiskDetector d({.factor = 0});
  Traffic t(&d);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(t.Window(milliseconds(500), milliseconds(1), milliseconds(1)),
              Change::kNone);
  }
  EXPECT_FALSE(d.slow());
}

TEST(SlowDiskDetectorTest, AnAnswerCoveringSeveralAppendsTimesTheLatest) {
  // Appends at 0, 10 and 20 ms, one answer for all at 25 ms: 5 ms, the
  // follower's speed (the earlier ones waited in the pipeline).
  SlowDiskDetector d({.min_samples = 1});
  const TimePoint t0 = TimePoint() + std::chrono::hours(1);
  d.Check(t0);
  d.AppendSent(1, 2, 1, t0);
  d.AppendSent(1, 2, 2, t0 + milliseconds(10));
  d.AppendSent(1, 2, 3, t0 + milliseconds(20));
  d.AppendAcked(1, 2, 3, t0 + milliseconds(25));
  d.Synced(milliseconds(100));
  d.Check(t0 + std::chrono::seconds(1));
  EXPECT_NE(d.Describe().find("answers an append in 5 ms"), std::string::npos)
      << d.Describe();
}

}  // namespace
}  // namespace tally::raft::host
