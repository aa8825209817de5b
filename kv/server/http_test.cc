#include "kv/server/internal/http.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "kv/server/internal/rpc_stats.h"

namespace tally::kv::server {
namespace {

TEST(MetricsTest, EveryPeerWithItsQueueCountsAndRoundTrip) {
  rpc::PeerStats two;
  two.peer = 2;
  two.queued = 3;
  two.sent = 120;
  two.dropped = 4;
  two.connects = 2;
  two.rtt_seconds = 0.0015;
  rpc::PeerStats three;  // never pinged yet
  three.peer = 3;
  three.ping_failures = 1;
  const std::string m = RenderPeerMetrics({two, three});
  for (const char* line : {"# TYPE tally_peer_send_queue gauge\n",
                           "tally_peer_send_queue{peer=\"n2\"} 3\n",
                           "# TYPE tally_peer_messages_sent_total counter\n",
                           "tally_peer_messages_sent_total{peer=\"n2\"} 120\n",
                           "tally_peer_messages_dropped_total{peer=\"n2\"} 4\n",
                           "tally_peer_connects_total{peer=\"n2\"} 2\n",
                           "tally_peer_ping_failures_total{peer=\"n3\"} 1\n",
                           "# TYPE tally_peer_rtt_seconds gauge\n",
                           "tally_peer_rtt_seconds{peer=\"n2\"} 0.0015\n"}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << "\nin\n" << m;
  }
  EXPECT_EQ(m.find("tally_peer_rtt_seconds{peer=\"n3\"}"), std::string::npos)
      << m;
}

TEST(MetricsTest, EveryGroupAndTheProcessInPrometheusText) {
  raft::host::GroupInfo meta;
  meta.group = 1;
  meta.leader = 2;
  meta.term = 7;
  meta.commit = 40;
  meta.applied = 39;
  meta.first_index = 2;
  meta.last_index = 41;
  raft::host::GroupInfo data;
  data.group = 2;
  data.role = raft::Role::kLeader;
  data.leader = 1;
  data.quiet = true;
  raft::host::HostCounters counters;
  counters.Proposed();
  counters.Proposed();
  counters.LogWrite(0.0003, /*synced=*/true, 1);
  counters.LogWrite(0.003, /*synced=*/false, 3);
  counters.LogWrite(2.0, /*synced=*/true, 300);
  const std::string m =
      RenderMetrics({meta, data}, /*serving=*/true, counters.Get());
  for (const char* line :
       {"# TYPE tally_serving gauge\ntally_serving 1\n",
        "tally_raft_has_leader{group=\"1\"} 1\n",
        "tally_raft_is_leader{group=\"1\"} 0\n",
        "tally_raft_is_leader{group=\"2\"} 1\n",
        "tally_raft_term{group=\"1\"} 7\n",
        "tally_raft_commit_index{group=\"1\"} 40\n",
        "tally_raft_applied_index{group=\"1\"} 39\n",
        "tally_raft_log_entries{group=\"1\"} 40\n",
        "tally_raft_quiet{group=\"2\"} 1\n",
        "# TYPE process_cpu_seconds_total counter\n",
        "tally_proposals_total 2\n",
        "tally_raft_log_syncs_total 2\n",
        "# TYPE tally_raft_log_write_seconds histogram\n",
        "tally_raft_log_write_seconds_bucket{le=\"0.0005\"} 1\n",
        "tally_raft_log_write_seconds_bucket{le=\"0.002\"} 1\n",
        "tally_raft_log_write_seconds_bucket{le=\"0.005\"} 2\n",
        "tally_raft_log_write_seconds_bucket{le=\"1\"} 2\n",
        "tally_raft_log_write_seconds_bucket{le=\"+Inf\"} 3\n",
        "tally_raft_log_write_seconds_count 3\n",
        "# TYPE tally_raft_log_write_entries histogram\n",
        "tally_raft_log_write_entries_bucket{le=\"1\"} 1\n",
        "tally_raft_log_write_entries_bucket{le=\"2\"} 1\n",
        "tally_raft_log_write_entries_bucket{le=\"4\"} 2\n",
        "tally_raft_log_write_entries_bucket{le=\"256\"} 2\n",
        "tally_raft_log_write_entries_bucket{le=\"+Inf\"} 3\n",
        "tally_raft_log_write_entries_sum 304\n",
        "tally_raft_log_write_entries_count 3\n",
        "process_resident_memory_bytes ",
        "process_open_fds "}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << " not in\n" << m;
  }
  EXPECT_NE(RenderMetrics({}, false, {}).find("tally_serving 0\n"),
            std::string::npos);
  EXPECT_EQ(m.find("tally_leases"), std::string::npos);  // no replica: none
  const std::string with_modules =
      RenderMetrics({meta}, true, counters.Get(), ModuleStats{3, 1, 2});
  for (const char* line : {"# TYPE tally_leases gauge\ntally_leases 3\n",
                           "tally_locks_held 1\n", "tally_lock_waiters 2\n"}) {
    EXPECT_NE(with_modules.find(line), std::string::npos) << line;
  }
}

TEST(MetricsTest, WritesPendingFailedAndTheirCommitLatency) {
  WriteStats writes;
  for (int i = 0; i < 4; ++i) writes.Proposed();
  writes.Done(/*applied=*/true, 0.003);
  writes.Done(/*applied=*/true, 0.3);
  writes.Done(/*applied=*/false, 5);
  const std::string m = writes.Render();
  for (const char* line :
       {"# TYPE tally_proposals_pending gauge\ntally_proposals_pending 1\n",
        "# TYPE tally_proposals_failed_total counter\n"
        "tally_proposals_failed_total 1\n",
        "# TYPE tally_commit_seconds histogram\n",
        "tally_commit_seconds_bucket{le=\"0.005\"} 1\n",
        "tally_commit_seconds_bucket{le=\"0.25\"} 1\n",
        "tally_commit_seconds_bucket{le=\"1\"} 2\n",
        "tally_commit_seconds_count 2\n"}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << " not in\n" << m;
  }
}

TEST(MetricsTest, StorageBytesAndWatchers) {
  const std::string dir = ::testing::TempDir() + "/metrics_storage";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir + "/raft");
  std::ofstream(dir + "/raft/000001.log") << std::string(1000, 'x');
  std::ofstream(dir + "/CURRENT") << std::string(24, 'y');
  const std::string m = RenderNodeMetrics(dir, 4);
  for (const char* line :
       {"# TYPE tally_storage_bytes gauge\ntally_storage_bytes 1024\n",
        "# TYPE tally_watchers gauge\ntally_watchers 4\n"}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << " not in\n" << m;
  }
  EXPECT_NE(RenderNodeMetrics(dir + "/gone", 0).find("tally_storage_bytes 0\n"),
            std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST(MetricsTest, ClientCallsByMethodAndCode) {
  RpcStats rpcs;
  rpcs.Record("Put", 0, 0.004);
  rpcs.Record("Put", 0, 0.2);
  rpcs.Record("Put", 14, 0.0001);  // UNAVAILABLE
  rpcs.Record("Get", 0, 0.0003);
  const std::string m = rpcs.Render();
  for (const char* line :
       {"# TYPE tally_rpc_total counter\n",
        "tally_rpc_total{method=\"Put\",code=\"OK\"} 2\n",
        "tally_rpc_total{method=\"Put\",code=\"UNAVAILABLE\"} 1\n",
        "tally_rpc_total{method=\"Get\",code=\"OK\"} 1\n",
        "# TYPE tally_rpc_seconds histogram\n",
        "tally_rpc_seconds_bucket{method=\"Put\",le=\"0.0005\"} 1\n",
        "tally_rpc_seconds_bucket{method=\"Put\",le=\"0.005\"} 2\n",
        "tally_rpc_seconds_bucket{method=\"Put\",le=\"0.25\"} 3\n",
        "tally_rpc_seconds_bucket{method=\"Put\",le=\"+Inf\"} 3\n",
        "tally_rpc_seconds_count{method=\"Put\"} 3\n"}) {
    EXPECT_NE(m.find(line), std::string::npos) << line << " not in\n" << m;
  }
}

}  // namespace
}  // namespace tally::kv::server
