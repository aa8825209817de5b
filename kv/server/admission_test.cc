#include "kv/server/internal/admission.h"

#include <chrono>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::kv::server {
namespace {

using ::testing::HasSubstr;
using Clock = Admission::Clock;

Clock::time_point Later() { return Clock::now() + std::chrono::seconds(10); }

TEST(AdmissionTest, RefusesBeyondTheClassLimitUntilOneIsAnswered) {
  Admission a({.most_writes = 2, .most_reads = 1});
  ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
  ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
  absl::Status full = a.Admit(Priority::kWrite, Later());
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_THAT(full.message(), HasSubstr("2 write calls are waiting"));
  a.Release(Priority::kWrite, 0.01);
  EXPECT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
  const Admission::ClassStats s = a.Stats(Priority::kWrite);
  EXPECT_EQ(s.in_flight, 2u);
  EXPECT_EQ(s.admitted, 3u);
  EXPECT_EQ(s.shed, 1u);
}

TEST(AdmissionTest, AFullClassLeavesTheOthersTheirPlaces) {
  Admission a({.most_writes = 1, .most_reads = 1});
  ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
  ASSERT_FALSE(a.Admit(Priority::kWrite, Later()).ok());
  EXPECT_TRUE(a.Admit(Priority::kControl, Later()).ok());
  EXPECT_TRUE(a.Admit(Priority::kRead, Later()).ok());
}

TEST(AdmissionTest, DropsACallWhoseDeadlinePassedWithoutTakingAPlace) {
  Admission a({.most_writes = 1, .most_reads = 1});
  absl::Status st =
      a.Admit(Priority::kWrite, Clock::now() - std::chrono::milliseconds(1));
  EXPECT_TRUE(absl::IsDeadlineExceeded(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("nothing was done"));
  EXPECT_EQ(a.Stats(Priority::kWrite).expired, 1u);
  EXPECT_EQ(a.Stats(Priority::kWrite).in_flight, 0u);
  EXPECT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
}

TEST(AdmissionTest, RefusesACallTooNearItsDeadlineWhileOthersWait) {
  Admission a({.most_writes = 8, .most_reads = 8});
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
    a.Release(Priority::kWrite, 0.5);  // writes take about 500 ms
  }
  // None waiting: served at once, however near its deadline.
  const auto soon = [] {
    return Clock::now() + std::chrono::milliseconds(100);
  };
  ASSERT_TRUE(a.Admit(Priority::kWrite, soon()).ok());
  absl::Status st = a.Admit(Priority::kWrite, soon());
  EXPECT_TRUE(absl::IsResourceExhausted(st)) << st;
  EXPECT_THAT(st.message(), HasSubstr("nothing was done"));
  EXPECT_EQ(a.Stats(Priority::kWrite).late, 1u);
  EXPECT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
  EXPECT_TRUE(a.Admit(Priority::kRead, soon()).ok());  // reads are fast
}

TEST(AdmissionTest, TheBoundShrinksWhileCallsAreSlowAndGrowsBackWhenUsed) {
  Admission a({.most_writes = 100, .target = std::chrono::milliseconds(200)});
  auto t = Admission::Steady::now();
  // Writes take a second: the bound shrinks by a tenth every 50 ms, to 8.
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
    t += Admission::kAdjustEvery;
    a.Release(Priority::kWrite, 1.0, t);
  }
  EXPECT_EQ(a.Stats(Priority::kWrite).limit, 8u);
  EXPECT_EQ(a.Stats(Priority::kRead).limit, 4096u);  // the others keep theirs
  // Fast again, but hardly used: the bound stays.
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
    t += Admission::kAdjustEvery;
    a.Release(Priority::kWrite, 0.01, t);
  }
  EXPECT_EQ(a.Stats(Priority::kWrite).limit, 8u);
  // Fast and at least half used: it grows back to the most.
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
    t += Admission::kAdjustEvery;
    a.Release(Priority::kWrite, 0.01, t);
    while (a.Stats(Priority::kWrite).in_flight <=
           a.Stats(Priority::kWrite).limit / 2 + 1) {
      ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
    }
  }
  EXPECT_EQ(a.Stats(Priority::kWrite).limit, 100u);
}

TEST(AdmissionTest, RetryAfterFollowsTheClassLatencyWithinBounds) {
  Admission a({});
  EXPECT_EQ(a.RetryAfter(Priority::kWrite), std::chrono::milliseconds(5));
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
    a.Release(Priority::kWrite, 0.2);
  }
  EXPECT_NEAR(a.RetryAfter(Priority::kWrite).count(), 200, 2);
  EXPECT_EQ(a.RetryAfter(Priority::kRead), std::chrono::milliseconds(5));
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(a.Admit(Priority::kWrite, Later()).ok());
    a.Release(Priority::kWrite, 30);
  }
  EXPECT_EQ(a.RetryAfter(Priority::kWrite), std::chrono::milliseconds(1000));
}

TEST(AdmissionTest, ReleasesOfLocksAndLeasesComeFirst) {
  EXPECT_EQ(PriorityOf("LockRelease", true, false), Priority::kControl);
  EXPECT_EQ(PriorityOf("LeaseRevoke", true, false), Priority::kControl);
  EXPECT_EQ(PriorityOf("Put", true, false), Priority::kWrite);
  EXPECT_EQ(PriorityOf("Get", false, false), Priority::kRead);
  EXPECT_EQ(PriorityOf("Range", false, true), Priority::kScan);
}

TEST(AdmissionTest, RendersEveryClass) {
  Admission a({.most_writes = 1, .most_reads = 1});
  ASSERT_TRUE(a.Admit(Priority::kRead, Later()).ok());
  ASSERT_FALSE(a.Admit(Priority::kRead, Later()).ok());
  const std::string m = a.Render();
  EXPECT_THAT(m, HasSubstr("tally_admission_in_flight{class=\"read\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("tally_admission_limit{class=\"control\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("tally_admission_shed_total{class=\"read\","
                           "reason=\"overload\"} 1\n"));
  EXPECT_THAT(m, HasSubstr("tally_admission_shed_total{class=\"write\","
                           "reason=\"expired\"} 0\n"));
}

}  // namespace
}  // namespace tally::kv::server
