#include "kv/server/server.h"

#include <chrono>
#include <filesystem>
#include <functional>
#include <future>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "kv/leader_duties.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/health.h"
#include "kv/server/internal/http.h"
#include "kv/server/internal/node.h"
#include "kv/storage/leveldb_engine.h"
#include "kv/storage/node_log.h"
#include "rpc/cluster.grpc.pb.h"
#include "spdlog/spdlog.h"
#include "util/hash.h"
#include "util/status_macros.h"
#include "util/thread_name.h"
#include "util/waker.h"

namespace tally::kv::server {

namespace {

// Threads that serve linearizable and lease reads, and the reads that may
// wait for them before new ones get RESOURCE_EXHAUSTED; the same for scans,
// whose threads run at the lowest priority (Node::scans).
constexpr int kReadThreads = 2;
constexpr size_t kMaxQueuedReads = 10000;
constexpr int kScanThreads = 2;
constexpr size_t kMaxQueuedScans = 1000;
constexpr int kScanNice = 19;
// The longest a scan waits for another's answer to be sent (ScanGate).
constexpr absl::Duration kMostScanWait = absl::Seconds(1);
// The gRPC health service name that liveness probes ask: SERVING while the
// process runs. The overall status ("") says whether it can serve (health.h).
constexpr char kLivenessService[] = "liveness";
// How often the gRPC health status is brought up to date.
constexpr absl::Duration kHealthEvery = absl::Milliseconds(250);
// How often a leader looks for work due (lease expiries): a lease ends at
// most this much after its time, plus a commit.
constexpr absl::Duration kDutiesEvery = absl::Milliseconds(100);

using raft::host::GroupId;

// Same flags, same id: the cluster id is a hash of the initial cluster,
// ranges and token, so a node started with another cluster's flags is
// recognised.
std::string ClusterId(const ServerOptions& o) {
  std::string spec;
  for (const auto& [id, addr] : o.initial_cluster) {
    absl::StrAppend(&spec, id, "=", addr, ",");
  }
  absl::StrAppend(&spec, "|", absl::StrJoin(o.initial_ranges, ","));
  // Without a token, the ids of clusters made before tokens existed.
  if (!o.initial_cluster_token.empty()) {
    absl::StrAppend(&spec, "|token=", o.initial_cluster_token);
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx",
                static_cast<unsigned long long>(util::Fnv1a64(spec)));
  return buf;
}

rpc::Member MemberOf(raft::NodeId id, const std::string& peer) {
  rpc::Member m;
  m.set_id(id);
  m.set_name(absl::StrCat("n", id));
  m.set_peer_address(peer);
  return m;
}

class ServerImpl final : public Server {
 public:
  ~ServerImpl() override { Shutdown(); }
  void Shutdown() override {
    if (down_) return;
    down_ = true;
    stop_.Stop();
    if (health_thread_.joinable()) health_thread_.join();
    if (duties_thread_.joinable()) duties_thread_.join();
    http_.reset();
    for (grpc::Server* server : {grpc_.get(), peer_grpc_.get()}) {
      if (server != nullptr) {
        server->Shutdown(std::chrono::system_clock::now() +
                         std::chrono::seconds(2));
      }
    }
    if (node_.crdt) node_.crdt->Stop();
    if (node_.host) node_.host->Stop();
    node_.reads.reset();  // answers what the host's stop failed
    if (node_.scan_gate) node_.scan_gate->Stop();
    node_.scans.reset();
    if (node_.transport) node_.transport->Stop();
  }
  std::string cluster_id() const override { return node_.layout.cluster_id(); }

  absl::Status Init(const ServerOptions& o);

 private:
  absl::Status Bootstrap(const ServerOptions& o);
  absl::Status JoinLayout(const ServerOptions& o);
  void RefreshDirectory();
  // Every kHealthEvery, sets the gRPC health status (what kvctl health,
  // the compose health checks and Kubernetes probes ask) from the groups'
  // state (health.h), logging each change.
  void WatchHealth();
  // Every kDutiesEvery, proposes in each group this node leads what its
  // modules find due (StateMachine::Due: lease expiries), one command per
  // group in flight at a time.
  void LeaderDuties();
  // Waits up to `d` (by the steady clock) for Shutdown; true once it is
  // called.
  bool Stopping(absl::Duration d) {
    return stop_.SleepFor(absl::ToChronoNanoseconds(d));
  }

  Node node_;
  std::unique_ptr<grpc::Service> kv_, cluster_, leases_, locks_, idem_, sagas_,
      crdt_, watch_, auth_;
  // Clients' and peers' (the raft transport).
  std::unique_ptr<grpc::Server> grpc_, peer_grpc_;
  bool down_ = false;
  util::Waker stop_;
  std::thread health_thread_;
  std::thread duties_thread_;
  std::unique_ptr<HttpEndpoint> http_;
};

absl::Status ServerImpl::Bootstrap(const ServerOptions& o) {
  if (!o.initial_cluster.contains(node_.id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.name,
                     " is not in --initial-cluster; to add a node to a running "
                     "cluster use --join"));
  }
  rpc::ClusterLayout& layout = node_.layout;
  layout.set_cluster_id(ClusterId(o));
  std::vector<kvpb::Member> members;
  for (const auto& [id, peer] : o.initial_cluster) {
    *layout.add_members() = MemberOf(id, peer);
    members.push_back(ToKv(layout.members().Get(layout.members_size() - 1)));
  }
  std::vector<std::string> splits = o.initial_ranges;
  std::sort(splits.begin(), splits.end());
  std::string start;
  for (size_t i = 0; i <= splits.size(); ++i) {
    rpc::RangeDescriptor* r = layout.add_ranges();
    r->set_group(kMetaGroup + 1 + i);
    r->set_start(start);
    if (i < splits.size()) r->set_end(start = splits[i]);
  }
  std::vector<raft::NodeId> voters;
  for (const auto& [id, peer] : o.initial_cluster) voters.push_back(id);
  std::vector<GroupId> groups = {kMetaGroup};
  for (const auto& r : layout.ranges()) groups.push_back(r.group());
  std::vector<kvpb::RangeDescriptor> ranges;
  for (const auto& r : layout.ranges()) ranges.push_back(ToKv(r));
  for (GroupId g : groups) {
    ASSIGN_OR_RETURN(auto sm, StateMachine::Open(node_.data.get(), g));
    RETURN_IF_ERROR(
        g == kMetaGroup
            ? sm->Bootstrap(raft::host::kBootstrapIndex, members, ranges)
            : sm->Bootstrap(raft::host::kBootstrapIndex, {}, {}));
  }
  RETURN_IF_ERROR(raft::host::BootstrapGroups(node_.log.get(), groups, voters));
  return node_.log->PutMeta("layout", layout.SerializeAsString());
}

// A joining node learns the cluster's id, members and ranges from a member.
absl::Status ServerImpl::JoinLayout(const ServerOptions& o) {
  auto stub = rpc::Cluster::NewStub(
      grpc::CreateChannel(o.join, node_.peer_credentials));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  rpc::RangesResponse ranges;
  grpc::Status st = stub->Ranges(&ctx, rpc::RangesRequest(), &ranges);
  if (!st.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot reach --join ", o.join, ": ", st.error_message()));
  }
  grpc::ClientContext ctx2;
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  rpc::StatusResponse status;
  st = stub->Status(&ctx2, rpc::StatusRequest(), &status);
  if (!st.ok()) return absl::UnavailableError(st.error_message());
  rpc::ClusterLayout& layout = node_.layout;
  layout.set_cluster_id(status.cluster_id());
  for (const auto& m : ranges.members()) *layout.add_members() = m;
  for (const auto& r : ranges.ranges()) *layout.add_ranges() = r;
  return node_.log->PutMeta("layout", layout.SerializeAsString());
}

void ServerImpl::RefreshDirectory() {
  StateMachine* meta = node_.Machine(kMetaGroup);
  if (meta == nullptr) return;
  absl::StatusOr<std::vector<kvpb::Member>> members = meta->meta().Members();
  if (!members.ok()) return;
  for (const kvpb::Member& m : *members) {
    node_.directory.SetPeer(m.id(), m.peer_address());
    node_.directory.SetClient(m.id(), m.client_address());
  }
}

absl::Status ServerImpl::Init(const ServerOptions& o) {
  ASSIGN_OR_RETURN(node_.id, ParseMemberName(o.name));
  RETURN_IF_ERROR(rpc::CheckTlsFiles(o.tls, /*identity=*/true));
  node_.options = o;
  node_.admission = std::make_unique<Admission>(Admission::Options{
      .most_writes = o.max_inflight_writes,
      .most_reads = o.max_inflight_reads,
      .target = std::chrono::milliseconds(o.admission_target_ms)});
  node_.peer_credentials = rpc::ChannelCredentials(o.tls);
  std::error_code ec;
  std::filesystem::create_directories(o.data_dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot create data dir ", o.data_dir, ": ", ec.message()));
  }
  ASSIGN_OR_RETURN(node_.log, storage::OpenNodeLog(o.data_dir));
  ASSIGN_OR_RETURN(node_.data,
                   storage::LevelDBEngine::Open(o.data_dir + "/data"));

  absl::StatusOr<std::string> identity = node_.log->GetMeta("identity");
  if (identity.ok()) {
    rpc::NodeIdentity id;
    id.ParseFromString(*identity);
    absl::StatusOr<std::string> layout = node_.log->GetMeta("layout");
    if (!layout.ok() || !node_.layout.ParseFromString(*layout)) {
      return absl::DataLossError("data dir has an identity but no layout");
    }
    if (id.node() != node_.id) {
      return absl::FailedPreconditionError(
          absl::StrCat("data dir ", o.data_dir, " belongs to node n", id.node(),
                       ", not ", o.name));
    }
    if (o.join.empty() && !o.initial_cluster.empty() &&
        ClusterId(o) != id.cluster_id()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "data dir ", o.data_dir, " belongs to cluster ", id.cluster_id(),
          " but --initial-cluster/--initial-ranges/--initial-cluster-token "
          "describe cluster ",
          ClusterId(o),
          "; use the flags it was created with, or another "
          "data dir"));
    }
  } else if (absl::IsNotFound(identity.status())) {
    RETURN_IF_ERROR(o.join.empty() ? Bootstrap(o) : JoinLayout(o));
    rpc::NodeIdentity id;
    id.set_cluster_id(node_.layout.cluster_id());
    id.set_node(node_.id);
    // Written last: a crash before it bootstraps again, identically.
    RETURN_IF_ERROR(node_.log->PutMeta("identity", id.SerializeAsString()));
  } else {
    return identity.status();
  }

  for (const auto& m : node_.layout.members()) {
    node_.directory.SetPeer(m.id(), m.peer_address());
  }
  for (const auto& [id, peer] : o.initial_cluster) {
    node_.directory.SetPeer(id, peer);
  }
  const std::string advertised = o.advertise_client_address.empty()
                                     ? o.client_address
                                     : o.advertise_client_address;
  node_.directory.SetClient(node_.id, advertised);
  node_.transport = std::make_unique<rpc::GrpcTransport>(
      node_.id, node_.layout.cluster_id(), advertised, &node_.directory,
      node_.peer_credentials);

  raft::host::HostOptions ho;
  ho.id = node_.id;
  ho.tick_ms = o.tick_ms;
  ho.election_tick = o.election_tick;
  ho.snapshot_every = o.snapshot_every;
  ho.quiesce_after_ticks = o.quiesce_ticks;
  ho.slow_disk_factor = o.slow_disk_factor;
  ho.seed = std::random_device{}();
  node_.groups = std::make_unique<GroupRegistry>(
      [this](GroupId g) -> absl::StatusOr<std::unique_ptr<StateMachine>> {
        ASSIGN_OR_RETURN(auto sm, StateMachine::Open(node_.data.get(), g));
        sm->set_watch_history(node_.options.watch_history);
        sm->set_watch_changed([this, g] { node_.watchers.Changed(g); });
        sm->set_lease_ended([this](uint64_t id) {
          return LeaseState(node_, id) == LeaseKnown::kEnded;
        });
        if (g == kMetaGroup) {
          sm->set_members_changed([this] { RefreshDirectory(); });
          sm->set_locks_granted([this](const std::vector<Locks::Grant>& g) {
            node_.lock_waits.Granted(g);
          });
          sm->set_locks_changed([this](const std::set<std::string>& names) {
            node_.lock_observers.Changed(names);
          });
        }
        return sm;
      });
  node_.host = std::make_unique<raft::host::NodeHost>(
      ho, node_.log.get(), node_.transport.get(),
      [this](GroupId g) -> absl::StatusOr<raft::host::StateMachine*> {
        ASSIGN_OR_RETURN(StateMachine * sm, node_.groups->GetOrOpen(g));
        return sm;
      });
  node_.transport->set_host(node_.host.get());
  node_.reads = std::make_unique<util::ThreadPool>("kv-read", kReadThreads,
                                                   kMaxQueuedReads);
  node_.scan_gate =
      std::make_unique<ScanGate>(o.max_concurrent_scans, kMostScanWait);
  node_.scans = std::make_unique<util::ThreadPool>("kv-scan", kScanThreads,
                                                   kMaxQueuedScans, kScanNice);
  // A joining node has no groups yet: each starts empty when its leader
  // first reaches out, and catches up by snapshot.
  RETURN_IF_ERROR(node_.host->Start());
  RefreshDirectory();
  ASSIGN_OR_RETURN(node_.crdt, CrdtReplication::Start(
                                   &node_, o.data_dir + "/crdt",
                                   absl::Milliseconds(o.crdt_sync_ms),
                                   static_cast<size_t>(o.crdt_cache_mb) << 20));

  kv_ = NewKvService(&node_);
  cluster_ = NewClusterService(&node_);
  leases_ = NewLeaseService(&node_);
  locks_ = NewLockService(&node_);
  idem_ = NewIdemService(&node_);
  sagas_ = NewSagaService(&node_);
  crdt_ = NewCrdtService(&node_);
  watch_ = NewWatchService(&node_);
  auth_ = NewAuthService(&node_);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // Clients and peers have servers of their own, for their keepalives
  // differ. Each server pings its connections and closes one whose ping
  // goes unanswered.
  //
  // Peers, every 2 s with 2 s to answer: a peer cut off by a partition
  // (packets dropped, no reset) ends its incoming stream within seconds,
  // which wakes the quiet groups it led (GrpcTransport reports it
  // unreachable) so that they elect another leader without waiting for
  // client traffic. Peers ping as often (rpc/grpc_transport.cc); allow it.
  //
  // Clients, every 30 s with 20 s to answer: a client on gRPC's synchronous
  // C++ API answers a ping only while one of its calls waits or when its
  // backup poller wakes (every 5 s), so pinged like a peer, a client that
  // paused between messages had its connection, and the streams open on
  // it, closed under it ("keepalive watchdog timeout").
  //
  // With TLS, both ports verify the other side's certificate against the
  // cluster's CA; the peer port requires one, the client port only with
  // --tls-client-auth.
  auto listen = [](grpc::ServerBuilder& b, const std::string& address,
                   std::shared_ptr<grpc::ServerCredentials> credentials,
                   int* port, int ping_ms, int answer_ms) {
    b.AddListeningPort(address, std::move(credentials), port);
    // Without SO_REUSEPORT (gRPC sets it by default): a port another
    // process listens on is refused, not shared with it.
    b.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    b.SetMaxReceiveMessageSize(64 << 20);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ping_ms);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, answer_ms);
    b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                         1000);
    b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  };
  int client_port = 0, peer_port = 0;
  grpc::ServerBuilder clients;
  listen(clients, o.client_address,
         rpc::ServerCredentials(o.tls, o.tls_client_auth), &client_port, 30'000,
         20'000);
  clients.RegisterService(kv_.get());
  clients.RegisterService(cluster_.get());
  clients.RegisterService(leases_.get());
  clients.RegisterService(locks_.get());
  clients.RegisterService(idem_.get());
  clients.RegisterService(sagas_.get());
  clients.RegisterService(crdt_.get());
  clients.RegisterService(watch_.get());
  clients.RegisterService(auth_.get());
  grpc_ = clients.BuildAndStart();
  grpc::ServerBuilder peers;
  listen(peers, o.peer_address,
         rpc::ServerCredentials(o.tls, /*require_client_cert=*/true),
         &peer_port, 2'000, 2'000);
  peers.RegisterService(node_.transport->service());
  peers.RegisterService(node_.crdt->peer_service());
  peer_grpc_ = peers.BuildAndStart();
  if (!grpc_ || !peer_grpc_ || client_port == 0 || peer_port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", o.client_address, " and ", o.peer_address,
        " (in use, or not an address of this machine?)"));
  }
  spdlog::info("[n={}] serving clients on {}, peers on {}, cluster {}, {}",
               node_.id, o.client_address, o.peer_address,
               node_.layout.cluster_id(),
               !o.tls.enabled()    ? "plaintext (no TLS)"
               : o.tls_client_auth ? "TLS, client certificates required"
                                   : "TLS");
  if (StateMachine* meta = node_.Machine(kMetaGroup)) {
    absl::StatusOr<std::shared_ptr<const AuthView>> auth = meta->auth().view();
    if (auth.ok() && !(*auth)->enabled) {
      spdlog::warn(
          "[n={}] auth disabled: every client may make every call (kvctl "
          "auth enable turns it on)",
          node_.id);
    } else if (auth.ok()) {
      spdlog::info("[n={}] auth enabled: {} users, {} roles, {} tokens",
                   node_.id, (*auth)->users.size(), (*auth)->roles.size(),
                   (*auth)->tokens.size());
    }
  }
  health_thread_ = std::thread([this] {
    util::NameThisThread("health");
    WatchHealth();
  });
  duties_thread_ = std::thread([this] {
    util::NameThisThread("leader-duties");
    LeaderDuties();
  });
  if (!o.http_address.empty()) {
    auto modules = [this]() -> std::optional<ModuleStats> {
      const StateMachine* meta = node_.Machine(kMetaGroup);
      if (meta == nullptr) return std::nullopt;
      absl::StatusOr<size_t> leases = meta->leases().Count();
      absl::StatusOr<Locks::Counts> locks = meta->locks().Count();
      if (!leases.ok() || !locks.ok()) return std::nullopt;
      return ModuleStats{*leases, locks->held, locks->waiting};
    };
    auto peers = [this] { return node_.transport->Stats(); };
    auto node = [this, dir = o.data_dir] {
      return node_.rpcs.Render() + node_.admission->Render() +
             node_.scan_gate->Render() + node_.writes.Render() +
             RenderNodeMetrics(dir, node_.watchers.Count());
    };
    ASSIGN_OR_RETURN(
        http_, HttpEndpoint::Start(o.http_address, node_.host.get(),
                                   std::move(modules), peers, std::move(node)));
    spdlog::info("[n={}] serving HTTP (health, metrics) on {}", node_.id,
                 o.http_address);
  }
  return absl::OkStatus();
}

void ServerImpl::WatchHealth() {
  grpc::HealthCheckServiceInterface* health = grpc_->GetHealthCheckService();
  // For liveness probes: SERVING for as long as the process serves at all
  // (restarting a node that is cut off would not bring it back).
  health->SetServingStatus(kLivenessService, true);
  static const std::string kStarting = "starting";
  std::optional<std::string> last = kStarting;
  while (true) {
    std::optional<std::string> why =
        Unhealthy(node_.host->GroupAndFurthestBehind(kMetaGroup), kMetaGroup);
    if (why != last) {
      health->SetServingStatus("", !why.has_value());
      if (why && last == kStarting) {
        // No leader known yet at start: not worth a warning.
        spdlog::info("[n={}] health: NOT_SERVING: {}", node_.id, *why);
      } else if (why) {
        spdlog::warn("[n={}] health: NOT_SERVING: {}", node_.id, *why);
      } else {
        spdlog::info("[n={}] health: SERVING", node_.id);
      }
      last = why;
    }
    if (Stopping(kHealthEvery)) return;
  }
}

void ServerImpl::LeaderDuties() {
  kv::LeaderDuties duties([this](GroupId group, kvpb::Command cmd,
                                 std::function<void()> done) {
    node_.WriteAsync(group, std::move(cmd),
                     [done = std::move(done), group,
                      id = node_.id](absl::StatusOr<kvpb::CommandResult> r) {
                       if (!r.ok()) {
                         spdlog::debug("[n={}] group {}: leader duty: {}", id,
                                       group, r.status().ToString());
                       }
                       done();
                     });
  });
  while (!Stopping(kDutiesEvery)) {
    // Only the groups that may have duties: with thousands of idle groups,
    // walking them all ten times a second cost more than everything else
    // an idle node does.
    for (GroupId group : duties.Run(node_.groups->WithDuties())) {
      node_.groups->NoDuties(group);
    }
  }
}

}  // namespace

absl::StatusOr<raft::NodeId> ParseMemberName(const std::string& name) {
  uint64_t id = 0;
  if (name.size() < 2 || name[0] != 'n' ||
      !absl::SimpleAtoi(name.substr(1), &id) || id == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("member name \"", name, "\" must be n<number>, e.g. n1"));
  }
  return id;
}

absl::StatusOr<std::map<raft::NodeId, std::string>> ParseInitialCluster(
    const std::string& spec) {
  std::map<raft::NodeId, std::string> out;
  for (absl::string_view part : absl::StrSplit(spec, ',', absl::SkipEmpty())) {
    std::vector<std::string> kv = absl::StrSplit(part, absl::MaxSplits('=', 1));
    if (kv.size() != 2 || kv[1].empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster entry \"", part, "\" must be name=host:port"));
    }
    ASSIGN_OR_RETURN(raft::NodeId id, ParseMemberName(kv[0]));
    if (!out.emplace(id, kv[1]).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("--initial-cluster names ", kv[0], " twice"));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& o) {
  auto s = std::make_unique<ServerImpl>();
  RETURN_IF_ERROR(s->Init(o));
  return s;
}

}  // namespace tally::kv::server
