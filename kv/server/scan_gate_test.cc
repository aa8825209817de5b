#include "kv/server/internal/scan_gate.h"

#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tally::kv::server {
namespace {

using ::testing::HasSubstr;

// Waits (up to 10 s) until `gate` has seen `n` scans find every place taken.
bool WaitForWaiters(const ScanGate& gate, uint64_t n) {
  for (int i = 0; i < 1000 && gate.stats().waited < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return gate.stats().waited >= n;
}

TEST(ScanGateTest, ANextScanWaitsUntilAnAnswerIsDone) {
  ScanGate gate(2, absl::Seconds(60));
  gate.Enter();
  gate.Enter();
  std::atomic<bool> third{false};
  std::thread t([&] {
    gate.Enter();
    third = true;
  });
  ASSERT_TRUE(WaitForWaiters(gate, 1));
  EXPECT_FALSE(third) << "a third scan went ahead with both places taken";
  gate.Leave();
  t.join();
  EXPECT_TRUE(third);
  const ScanGate::Stats s = gate.stats();
  EXPECT_EQ(s.answering, 2u);
  EXPECT_EQ(s.entered, 3u);
  EXPECT_EQ(s.waited, 1u);
  EXPECT_EQ(s.overtaken, 0u);
}

TEST(ScanGateTest, AnAnswerNeverDoneDelaysTheNextByTheLongestWaitOnly) {
  ScanGate gate(1, absl::Milliseconds(50));
  gate.Enter();  // a client that never reads its answer
  gate.Enter();
  const ScanGate::Stats s = gate.stats();
  EXPECT_EQ(s.answering, 2u);
  EXPECT_EQ(s.overtaken, 1u);
  gate.Leave();
  gate.Leave();
  EXPECT_EQ(gate.stats().answering, 0u);
}

TEST(ScanGateTest, StoppingLetsTheWaitingThrough) {
  ScanGate gate(1, absl::Seconds(60));
  gate.Enter();
  std::thread t([&] { gate.Enter(); });
  ASSERT_TRUE(WaitForWaiters(gate, 1));
  gate.Stop();
  t.join();
  gate.Enter();  // at once
  EXPECT_EQ(gate.stats().overtaken, 0u);
}

TEST(ScanGateTest, AtLeastOnePlace) {
  ScanGate gate(0, absl::Seconds(60));
  gate.Enter();
  EXPECT_EQ(gate.stats().waited, 0u);
}

TEST(ScanGateTest, MetricsInPrometheusText) {
  ScanGate gate(1, absl::Milliseconds(1));
  gate.Enter();
  gate.Enter();
  const std::string m = gate.Render();
  EXPECT_THAT(m, HasSubstr("# TYPE tally_scans_answering gauge\n"
                           "tally_scans_answering 2\n"));
  EXPECT_THAT(m, HasSubstr("tally_scans_waited_total 1\n"));
  EXPECT_THAT(m, HasSubstr("tally_scans_overtaken_total 1\n"));
}

}  // namespace
}  // namespace tally::kv::server
