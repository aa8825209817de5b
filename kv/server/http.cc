#include "kv/server/internal/http.h"

#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "httplib.h"
#include "kv/server/internal/health.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/prometheus.h"
#include "util/thread_name.h"

namespace tally::kv::server {

namespace {

// One metric family: its HELP and TYPE lines.
void Family(std::string* out, const char* name, const char* type,
            const char* help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type,
                  "\n");
}

// The process's CPU seconds and resident bytes, from /proc/self.
void ProcessMetrics(std::string* out) {
  std::ifstream stat("/proc/self/stat");
  std::string line;
  std::getline(stat, line);
  // Fields after the command name, which may hold spaces: state is 3rd,
  // utime the 14th, stime the 15th, rss (pages) the 24th.
  const size_t paren = line.rfind(')');
  if (paren != std::string::npos) {
    std::vector<std::string> f =
        absl::StrSplit(line.substr(paren + 2), ' ', absl::SkipEmpty());
    uint64_t utime = 0, stime = 0, rss = 0;
    if (f.size() > 21 && absl::SimpleAtoi(f[11], &utime) &&
        absl::SimpleAtoi(f[12], &stime) && absl::SimpleAtoi(f[21], &rss)) {
      const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      Family(out, "process_cpu_seconds_total", "counter",
             "User and system CPU time spent, in seconds.");
      absl::StrAppend(out, "process_cpu_seconds_total ",
                      static_cast<double>(utime + stime) / ticks, "\n");
      Family(out, "process_resident_memory_bytes", "gauge",
             "Resident memory size, in bytes.");
      absl::StrAppend(out, "process_resident_memory_bytes ",
                      rss * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)), "\n");
    }
  }
  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  Family(out, "process_open_fds", "gauge", "Open file descriptors.");
  absl::StrAppend(out, "process_open_fds ", fds, "\n");
}

// The host's counters and the raft log write latency histogram.
void HostMetrics(std::string* out, const raft::host::HostStats& s) {
  const struct {
    const char* name;
    const char* help;
    uint64_t value;
  } counters[] = {
      {"tally_raft_leaderships_won_total",
       "Times a group made this node its leader.", s.leaderships_won},
      {"tally_proposals_total", "Proposals taken into a raft log here.",
       s.proposals},
      {"tally_proposals_shed_total",
       "Proposals refused as overload (RESOURCE_EXHAUSTED).", s.proposals_shed},
      {"tally_entries_applied_total",
       "Committed entries applied to state machines here.", s.entries_applied},
      {"tally_raft_log_syncs_total", "Raft log writes that were synced.",
       s.log_syncs},
      {"tally_snapshots_offered_total", "Snapshots offered to followers.",
       s.snapshots_offered},
      {"tally_snapshots_installed_total", "Snapshots installed here.",
       s.snapshots_installed},
      {"tally_raft_slow_disk_handoffs_total",
       "Leaderships this node handed off as its disk was the slow part of "
       "replication.",
       s.slow_disk_handoffs},
  };
  for (const auto& c : counters) {
    Family(out, c.name, "counter", c.help);
    absl::StrAppend(out, c.name, " ", c.value, "\n");
  }
  Family(out, "tally_raft_slow_disk", "gauge",
         "1 while this node's raft log syncs take several times a follower's "
         "round trip (it leads no group then).");
  absl::StrAppend(out, "tally_raft_slow_disk ", s.slow_disk ? 1 : 0, "\n");
  const char* h = "tally_raft_log_write_seconds";
  Family(out, h, "histogram",
         "Raft log batch writes (every group's, sync included), in seconds.");
  AppendHistogram(out, h, "", raft::host::kLogWriteBucketsMs,
                  s.log_write_buckets, s.log_write_seconds, s.log_writes);
  const char* b = "tally_raft_log_write_entries";
  Family(out, b, "histogram",
         "Entries per raft log batch write (every group's in one).");
  AppendSizeHistogram(out, b, raft::host::kLogBatchBuckets, s.log_batch_buckets,
                      s.log_entries);
}

}  // namespace

std::string RenderMetrics(const std::vector<raft::host::GroupInfo>& groups,
                          bool serving, const raft::host::HostStats& stats,
                          const std::optional<ModuleStats>& modules) {
  std::string out;
  Family(&out, "tally_serving", "gauge",
         "1 when the node can serve (what /health and gRPC health say).");
  absl::StrAppend(&out, "tally_serving ", serving ? 1 : 0, "\n");
  struct Gauge {
    const char* name;
    const char* help;
    uint64_t (*value)(const raft::host::GroupInfo&);
  };
  const Gauge gauges[] = {
      {"tally_raft_has_leader", "1 when this replica knows its group's leader.",
       [](const raft::host::GroupInfo& g) -> uint64_t {
         return g.leader != raft::kNoNode;
       }},
      {"tally_raft_is_leader", "1 when this replica leads its group.",
       [](const raft::host::GroupInfo& g) -> uint64_t {
         return g.role == raft::Role::kLeader;
       }},
      {"tally_raft_term", "The group's current term at this replica.",
       [](const raft::host::GroupInfo& g) -> uint64_t { return g.term; }},
      {"tally_raft_commit_index", "The group's commit index at this replica.",
       [](const raft::host::GroupInfo& g) -> uint64_t { return g.commit; }},
      {"tally_raft_applied_index",
       "The index this replica's state machine has applied.",
       [](const raft::host::GroupInfo& g) -> uint64_t { return g.applied; }},
      {"tally_raft_log_entries", "Entries in this replica's raft log.",
       [](const raft::host::GroupInfo& g) -> uint64_t {
         return g.last_index + 1 > g.first_index
                    ? g.last_index + 1 - g.first_index
                    : 0;
       }},
      {"tally_raft_quiet", "1 when the group is idle and stopped ticking.",
       [](const raft::host::GroupInfo& g) -> uint64_t { return g.quiet; }},
  };
  for (const Gauge& m : gauges) {
    Family(&out, m.name, "gauge", m.help);
    for (const raft::host::GroupInfo& g : groups) {
      absl::StrAppend(&out, m.name, "{group=\"", g.group, "\"} ", m.value(g),
                      "\n");
    }
  }
  HostMetrics(&out, stats);
  if (modules) {
    const struct {
      const char* name;
      const char* help;
      size_t value;
    } module_gauges[] = {
        {"tally_leases", "Leases in the metadata group (this replica).",
         modules->leases},
        {"tally_locks_held", "Locks held (this replica of the metadata group).",
         modules->locks_held},
        {"tally_lock_waiters",
         "Waits queued for locks (this replica of the metadata group).",
         modules->lock_waiters},
    };
    for (const auto& g : module_gauges) {
      Family(&out, g.name, "gauge", g.help);
      absl::StrAppend(&out, g.name, " ", g.value, "\n");
    }
  }
  ProcessMetrics(&out);
  return out;
}

std::string RenderNodeMetrics(const std::string& data_dir, size_t watchers) {
  std::string out;
  // What the files hold; a file removed during the walk counts as empty.
  uint64_t bytes = 0;
  std::error_code ec;
  for (std::filesystem::recursive_directory_iterator
           it(data_dir,
              std::filesystem::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end; it.increment(ec)) {
    std::error_code size_ec;
    if (it->is_regular_file(size_ec)) {
      const uintmax_t n = it->file_size(size_ec);
      if (!size_ec) bytes += n;
    }
  }
  Family(&out, "tally_storage_bytes", "gauge",
         "Bytes in the data dir: raft log, state machine and the rest.");
  absl::StrAppend(&out, "tally_storage_bytes ", bytes, "\n");
  Family(&out, "tally_watchers", "gauge", "Watch streams open here.");
  absl::StrAppend(&out, "tally_watchers ", watchers, "\n");
  return out;
}

std::string RenderPeerMetrics(const std::vector<rpc::PeerStats>& peers) {
  std::string out;
  const struct {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const rpc::PeerStats&);
  } metrics[] = {
      {"tally_peer_send_queue", "gauge",
       "Raft messages queued for the peer node.",
       [](const rpc::PeerStats& p) { return static_cast<double>(p.queued); }},
      {"tally_peer_messages_sent_total", "counter",
       "Raft messages written to the peer node's stream.",
       [](const rpc::PeerStats& p) { return static_cast<double>(p.sent); }},
      {"tally_peer_messages_dropped_total", "counter",
       "Raft messages dropped (queue full, or the peer unreachable).",
       [](const rpc::PeerStats& p) { return static_cast<double>(p.dropped); }},
      {"tally_peer_connects_total", "counter",
       "Streams opened to the peer node.",
       [](const rpc::PeerStats& p) { return static_cast<double>(p.connects); }},
      {"tally_peer_ping_failures_total", "counter",
       "Pings of the peer node that failed or took over 1 s.",
       [](const rpc::PeerStats& p) {
         return static_cast<double>(p.ping_failures);
       }},
  };
  for (const auto& m : metrics) {
    Family(&out, m.name, m.type, m.help);
    for (const rpc::PeerStats& p : peers) {
      absl::StrAppend(&out, m.name, "{peer=\"n", p.peer, "\"} ", m.value(p),
                      "\n");
    }
  }
  Family(&out, "tally_peer_rtt_seconds", "gauge",
         "The last ping's round trip to the peer node, every 2 s, on the "
         "raft stream's connection (absent when it failed).");
  for (const rpc::PeerStats& p : peers) {
    if (p.rtt_seconds < 0) continue;
    absl::StrAppend(&out, "tally_peer_rtt_seconds{peer=\"n", p.peer, "\"} ",
                    p.rtt_seconds, "\n");
  }
  return out;
}

HttpEndpoint::HttpEndpoint() : server_(std::make_unique<httplib::Server>()) {
  // SO_REUSEADDR only: cpp-httplib's default also sets SO_REUSEPORT, which
  // lets a second process listen on the same port and take part of its
  // connections instead of being refused.
  server_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
}

HttpEndpoint::~HttpEndpoint() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(
    const std::string& address, raft::host::NodeHost* host,
    std::function<std::optional<ModuleStats>()> modules,
    std::function<std::vector<rpc::PeerStats>()> peers,
    std::function<std::string()> node) {
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port <= 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen-http \"", address, "\" must be host:port"));
  }
  std::unique_ptr<HttpEndpoint> e(new HttpEndpoint());
  auto health = [host](const httplib::Request&, httplib::Response& res) {
    std::optional<std::string> why =
        Unhealthy(host->GroupAndFurthestBehind(kMetaGroup), kMetaGroup);
    res.status = why ? 503 : 200;
    res.set_content(why ? absl::StrCat("NOT_SERVING: ", *why, "\n")
                        : std::string("SERVING\n"),
                    "text/plain");
  };
  e->server_->Get("/health", health);
  e->server_->Get("/ready", health);
  e->server_->Get("/live", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("SERVING\n", "text/plain");
  });
  e->server_->Get(
      "/metrics", [host, modules, peers, node](const httplib::Request&,
                                               httplib::Response& res) {
        const std::vector<raft::host::GroupInfo> groups = host->Groups();
        res.set_content(
            RenderMetrics(groups, !Unhealthy(groups, kMetaGroup).has_value(),
                          host->Stats(), modules()) +
                RenderPeerMetrics(peers()) + node(),
            "text/plain; version=0.0.4");
      });
  if (!e->server_->bind_to_port(address.substr(0, colon), port)) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address,
                     " for HTTP (in use, or not an address of this machine?)"));
  }
  httplib::Server* s = e->server_.get();
  e->thread_ = std::thread([s] {
    util::NameThisThread("http");
    s->listen_after_bind();
  });
  return e;
}

}  // namespace tally::kv::server
