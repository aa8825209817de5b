#include "gtest/gtest.h"
#include "tests/sim/simulation.h"

namespace tally::sim {
namespace {

TEST(SimulationTest, SameSeedReplaysExactly) {
  SimOptions o;
  o.seed = 12345;
  o.steps = 1500;
  SimResult a = RunSimulation(o);
  SimResult b = RunSimulation(o);
  EXPECT_EQ(a.steps, b.steps);
  EXPECT_EQ(a.acked_ops, b.acked_ops);
  EXPECT_EQ(a.elections, b.elections);
  EXPECT_EQ(a.crashes, b.crashes);
  EXPECT_EQ(a.violation, b.violation);
}

TEST(SimulationTest, CorrectDiskKeepsEveryInvariantAndMakesProgress) {
  uint64_t acked = 0, crashes = 0, partitions = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.steps = 1500;
    SimResult r = RunSimulation(o);
    ASSERT_FALSE(r.violation) << "seed " << seed << ": " << *r.violation;
    acked += r.acked_ops;
    crashes += r.crashes;
    partitions += r.partitions;
  }
  // The runs exercised something: clients got answers, faults happened.
  EXPECT_GT(acked, 1000u);
  EXPECT_GT(crashes, 10u);
  EXPECT_GT(partitions, 10u);
}

TEST(SimulationTest, FaultyDiskIsCaught) {
  // A disk that forgets votes and terms lets a node vote twice in a term;
  // across enough seeds the checks must notice.
  int violations = 0;
  for (uint64_t seed = 1; seed <= 300 && violations == 0; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.steps = 2000;
    o.faulty_disk = true;
    violations += RunSimulation(o).violation.has_value();
  }
  EXPECT_GT(violations, 0);
}

TEST(SimulationTest, AllFeaturesRunsEveryFeatureAndKeepsEveryInvariant) {
  SimResult total;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.steps = 2000;
    o.all_features = true;
    SimResult r = RunSimulation(o);
    ASSERT_FALSE(r.violation) << "seed " << seed << ": " << *r.violation;
    total.snapshots_sent += r.snapshots_sent;
    total.conf_changes += r.conf_changes;
    total.transfers += r.transfers;
    total.index_reads += r.index_reads;
    total.acked_ops += r.acked_ops;
  }
  EXPECT_GT(total.snapshots_sent, 20u);
  EXPECT_GT(total.conf_changes, 100u);
  EXPECT_GT(total.transfers, 20u);
  EXPECT_GT(total.index_reads, 1000u);
  EXPECT_GT(total.acked_ops, 1000u);
}

TEST(SimulationTest, LeaseReadsWithClocksDriftingBeyondTheMarginAreCaught) {
  // Lease reads are only as safe as the clocks; past the configured drift
  // margin a deposed leader serves stale reads, and the per-key
  // linearizability check must find them.
  int stale = 0;
  for (uint64_t seed = 1; seed <= 300 && stale == 0; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.steps = 3000;
    o.lease_drift_beyond_bound = true;
    SimResult r = RunSimulation(o);
    if (r.violation) {
      EXPECT_NE(r.violation->find("linearizability"), std::string::npos)
          << "seed " << seed << ": " << *r.violation;
      ++stale;
    }
  }
  EXPECT_GT(stale, 0);
}

}  // namespace
}  // namespace tally::sim
