#include "gtest/gtest.h"
#include "spdlog/spdlog.h"
#include "tests/hostsim/host_simulation.h"

namespace tally::hostsim {
namespace {

// One seed, with the hosts' logging off.
HostSimResult RunSeed(uint64_t seed, uint64_t ticks = 1000) {
  spdlog::set_level(spdlog::level::off);
  HostSimOptions o;
  o.seed = seed;
  o.ticks = ticks;
  return RunHostSimulation(o);
}

TEST(HostSimulationTest, SameSeedReplaysExactly) {
  HostSimResult a = RunSeed(7, 400);
  HostSimResult b = RunSeed(7, 400);
  EXPECT_EQ(a.counts.ticks, b.counts.ticks);
  EXPECT_EQ(a.counts.acked_writes, b.counts.acked_writes);
  EXPECT_EQ(a.counts.acked_reads, b.counts.acked_reads);
  EXPECT_EQ(a.counts.crashes, b.counts.crashes);
  EXPECT_EQ(a.violation, b.violation);
}

TEST(HostSimulationTest, ClientsGetAnswersWhileNodesCrashAndMembersChange) {
  HostSimCounts total;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    HostSimResult r = RunSeed(seed, 600);
    ASSERT_FALSE(r.violation) << "seed " << seed << ": " << *r.violation;
    total += r.counts;
  }
  // The runs exercised something: clients got answers, nodes crashed,
  // members changed, leadership moved (and leaders heard of it), snapshots
  // were fetched.
  EXPECT_GT(total.acked_writes, 200u);
  EXPECT_GT(total.acked_reads, 200u);
  EXPECT_GT(total.crashes, 3u);
  EXPECT_GT(total.conf_changes, 3u);
  EXPECT_GT(total.transfers, 3u);
  EXPECT_GT(total.leaderships, 10u);
  EXPECT_GT(total.snapshots_fetched, 3u);
  // Lock clients held the lock, and paused (past their leases at times).
  EXPECT_GT(total.locks_held, 10u);
  EXPECT_GT(total.lock_pauses, 3u);
  EXPECT_GT(total.fenced_writes, 10u);
}

// A voter added straight into a joint configuration (voters (2 4)&&(1 2))
// had no replica of the group yet, and a node only started one for a
// leader's message: once the leader that added it stepped down, its vote
// requests were dropped, and no one could win both majorities. Seed 49
// showed it (no leader in 600 ticks after the faults stopped); since the
// simulated disk tears unsynced writes, seed 10 does.
TEST(HostSimulationTest, NewVoterWithoutAReplicaYetCanVote) {
  HostSimResult r = RunSeed(10, 1000);
  EXPECT_FALSE(r.violation) << *r.violation;
  EXPECT_GT(r.counts.conf_changes, 0u);
}

// A follower that applied past a snapshot while fetching it (the leader
// offered a newer snapshot after compacting; the log got there first) took
// its state machine back to the snapshot's older state, and then applied
// the next entries on top of it: its data differed from the others'. Seed
// 2474 showed it ("applied index went back from 530 to 529"); since the
// simulated disk tears unsynced writes, seed 985 did ("from 21 to 20");
// since the proposals of one raft pass are appended together, seed 205
// meets the case twice (the node logs "not installed: already applied").
TEST(HostSimulationTest, SnapshotOlderThanTheAppliedStateIsNotInstalled) {
  HostSimResult r = RunSeed(205, 1000);
  EXPECT_FALSE(r.violation) << *r.violation;
  EXPECT_GT(r.counts.snapshots_fetched, 0u);
}

}  // namespace
}  // namespace tally::hostsim
