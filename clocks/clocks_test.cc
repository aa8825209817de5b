#include <algorithm>

#include "clocks/dotted.h"
#include "clocks/hybrid_logical_clock.h"
#include "clocks/lamport.h"
#include "clocks/version_vector.h"
#include "gtest/gtest.h"
#include "util/random.h"

namespace tally::clocks {
namespace {

TEST(LamportTest, ReceiveJumpsPastTheSender) {
  LamportClock a, b;
  a.Tick();
  a.Tick();
  EXPECT_EQ(b.Observe(a.time()), 3u);
  EXPECT_GT(b.Tick(), a.time());
}

TEST(VersionVectorTest, ComparesAllFourWays) {
  VersionVector a({{1, 2}, {2, 1}});
  VersionVector b = a;
  EXPECT_EQ(a.Compare(b), Order::kEqual);
  b.Increment(2);
  EXPECT_EQ(a.Compare(b), Order::kBefore);
  EXPECT_EQ(b.Compare(a), Order::kAfter);
  a.Increment(3);
  EXPECT_EQ(a.Compare(b), Order::kConcurrent);
  a.Merge(b);
  EXPECT_EQ(a, VersionVector({{1, 2}, {2, 2}, {3, 1}}));
  EXPECT_EQ(a.Compare(b), Order::kAfter);
}

TEST(VersionVectorTest, EncodingRoundTripsAndRejectsGarbage) {
  VersionVector v({{1, 5}, {7, 300}, {1000000, 1}});
  absl::StatusOr<VersionVector> back = VersionVector::Decode(v.Encode());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, v);
  EXPECT_LE(v.Encode().size(), 12u);
  util::SeededRandom rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::string junk(rng.Uniform(16), '\0');
    for (char& c : junk) c = static_cast<char>(rng.Uniform(256));
    (void)VersionVector::Decode(junk);  // must not crash
  }
  EXPECT_FALSE(VersionVector::Decode(std::string("\x02\x00", 2)).ok());
  EXPECT_FALSE(VersionVector::Decode(v.Encode() + "x").ok());
}

TEST(DottedVersionTest, OrderComesFromThePast) {
  DottedVersion a{{1, 1}, VersionVector()};
  DottedVersion b{{2, 1}, VersionVector(std::map<ReplicaId, uint64_t>{{1, 1}})};
  DottedVersion c{{3, 1}, VersionVector()};
  EXPECT_EQ(a.Compare(b), Order::kBefore);
  EXPECT_EQ(b.Compare(a), Order::kAfter);
  EXPECT_EQ(a.Compare(c), Order::kConcurrent);
  EXPECT_EQ(a.Compare(a), Order::kEqual);
}

TEST(DvvSetTest, ConcurrentWritesBecomeSiblingsAndAReadWriteReplacesThem) {
  DvvSet s;
  s.Update({}, 1, "a");  // two clients write with nothing read
  s.Update({}, 1, "b");
  std::vector<std::string> v = s.Values();
  std::sort(v.begin(), v.end());
  EXPECT_EQ(v, (std::vector<std::string>{"a", "b"}));
  // A client that read both replaces both.
  s.Update(s.Context(), 1, "c");
  EXPECT_EQ(s.Values(), std::vector<std::string>{"c"});
}

TEST(DvvSetTest, SyncKeepsWhatEitherSideHasNotOverwritten) {
  DvvSet a, b;
  a.Update({}, 1, "x");
  b.Sync(a);
  const VersionVector seen = b.Context();
  a.Update(seen, 1, "y");  // overwrites x at replica 1
  b.Update(seen, 2, "z");  // overwrites x at replica 2, concurrent with y
  a.Sync(b);
  b.Sync(a);
  EXPECT_EQ(a, b);
  std::vector<std::string> v = a.Values();
  std::sort(v.begin(), v.end());
  EXPECT_EQ(v, (std::vector<std::string>{"y", "z"}));
}

TEST(DvvSetTest, RetriedWriteMakesNoFalseConflict) {
  DvvSet s;
  s.Update({}, 1, "v1");
  const VersionVector ctx = s.Context();
  s.Update(ctx, 1, "v2");
  s.Update(ctx, 1, "v2");  // the answer was lost; the client retries
  EXPECT_EQ(s.Values(), std::vector<std::string>{"v2"});
}

TEST(DvvSetTest, EncodingRoundTrips) {
  DvvSet s;
  s.Update({}, 1, "a");
  s.Update({}, 2, std::string("b\0c", 3));
  absl::StatusOr<DvvSet> back = DvvSet::Decode(s.Encode());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, s);
  EXPECT_FALSE(DvvSet::Decode(s.Encode().substr(0, 5)).ok());
}

class HlcTest : public ::testing::Test {
 protected:
  ManualClock wall_{1000};
  HybridLogicalClock hlc_{&wall_, /*max_offset_ms=*/500};
};

TEST_F(HlcTest, LocalEventsAreMonotonicEvenWhenTheWallClockStepsBack) {
  HlcTimestamp a = *hlc_.Now();
  EXPECT_EQ(a, (HlcTimestamp{1000, 0}));
  HlcTimestamp b = *hlc_.Now();
  EXPECT_EQ(b, (HlcTimestamp{1000, 1}));
  wall_.Set(900);
  HlcTimestamp c = *hlc_.Now();
  EXPECT_GT(c, b);
  EXPECT_EQ(c.physical_ms, 1000);
  wall_.Set(1200);
  EXPECT_EQ(*hlc_.Now(), (HlcTimestamp{1200, 0}));
}

TEST_F(HlcTest, ReceiveRules) {
  (void)hlc_.Now();                                             // 1000.0
  EXPECT_EQ(*hlc_.Update({1000, 5}), (HlcTimestamp{1000, 6}));  // same ms
  EXPECT_EQ(*hlc_.Update({1300, 2}), (HlcTimestamp{1300, 3}));  // remote ahead
  EXPECT_EQ(*hlc_.Update({900, 9}), (HlcTimestamp{1300, 4}));   // remote behind
  wall_.Set(2000);
  EXPECT_EQ(*hlc_.Update({1500, 1}), (HlcTimestamp{2000, 0}));  // wall ahead
}

TEST_F(HlcTest, RefusesRemoteTimestampsBeyondTheMaxOffset) {
  const HlcTimestamp before = *hlc_.Now();
  absl::StatusOr<HlcTimestamp> r = hlc_.Update({1000 + 501, 0});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("maximum offset"), std::string::npos);
  EXPECT_EQ(hlc_.last(), before);
  EXPECT_TRUE(hlc_.Update({1000 + 500, 0}).ok());
}

TEST_F(HlcTest, LogicalOverflowMovesToTheNextMillisecond) {
  HlcTimestamp t;
  for (int i = 0; i <= 65535; ++i) t = *hlc_.Now();
  EXPECT_EQ(t, (HlcTimestamp{1000, 65535}));
  EXPECT_EQ(*hlc_.Now(), (HlcTimestamp{1001, 0}));
}

TEST_F(HlcTest, LimitAndRestoreKeepTimeMovingForwardAcrossRestarts) {
  hlc_.SetLimit(1100);
  EXPECT_TRUE(hlc_.Now().ok());
  wall_.Set(1100);
  EXPECT_EQ(hlc_.Now().status().code(), absl::StatusCode::kFailedPrecondition);
  const HlcTimestamp last = hlc_.last();
  // The node restarts with its wall clock far behind.
  ManualClock wall2(500);
  HybridLogicalClock restarted(&wall2, 500);
  restarted.Restore(1100);
  restarted.SetLimit(2000);
  EXPECT_GT(*restarted.Now(), last);
  EXPECT_EQ(HlcTimestamp::Unpack(last.Pack()), last);
}

}  // namespace
}  // namespace tally::clocks
