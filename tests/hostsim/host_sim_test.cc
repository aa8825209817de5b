#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/hostsim/host_simulation.h"

namespace tally::hostsim {
namespace {

TEST(HostSimulationTest, SameSeedReplaysExactly) {
  spdlog::set_level(spdlog::level::off);
  HostSimOptions o;
  o.seed = 7;
  o.ticks = 400;
  HostSimResult a = RunHostSimulation(o);
  HostSimResult b = RunHostSimulation(o);
  EXPECT_EQ(a.ticks, b.ticks);
  EXPECT_EQ(a.acked_writes, b.acked_writes);
  EXPECT_EQ(a.acked_reads, b.acked_reads);
  EXPECT_EQ(a.crashes, b.crashes);
  EXPECT_EQ(a.violation, b.violation);
}

TEST(HostSimulationTest, ClientsGetAnswersWhileNodesCrashAndMembersChange) {
  spdlog::set_level(spdlog::level::off);
  HostSimResult total;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    HostSimOptions o;
    o.seed = seed;
    o.ticks = 600;
    HostSimResult r = RunHostSimulation(o);
    ASSERT_FALSE(r.violation) << "seed " << seed << ": " << *r.violation;
    total.acked_writes += r.acked_writes;
    total.acked_reads += r.acked_reads;
    total.crashes += r.crashes;
    total.conf_changes += r.conf_changes;
    total.transfers += r.transfers;
    total.snapshots_fetched += r.snapshots_fetched;
  }
  // The runs exercised something: clients got answers, nodes crashed,
  // members changed, leadership moved, snapshots were fetched.
  EXPECT_GT(total.acked_writes, 200u);
  EXPECT_GT(total.acked_reads, 200u);
  EXPECT_GT(total.crashes, 3u);
  EXPECT_GT(total.conf_changes, 3u);
  EXPECT_GT(total.transfers, 3u);
  EXPECT_GT(total.snapshots_fetched, 3u);
}

}  // namespace
}  // namespace tally::hostsim
