#ifndef TALLY_KV_SERVER_INTERNAL_NODE_H_
#define TALLY_KV_SERVER_INTERNAL_NODE_H_

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "kv/server/internal/admission.h"
#include "kv/server/internal/auth.h"
#include "kv/server/internal/crdt_replication.h"
#include "kv/server/internal/group_registry.h"
#include "kv/server/internal/lock_waits.h"
#include "kv/server/internal/rpc_stats.h"
#include "kv/server/internal/scan_gate.h"
#include "kv/server/internal/watch_hub.h"
#include "kv/server/internal/watch_reads.h"
#include "kv/server/server.h"
#include "kv/state_machine.h"
#include "kv/storage/engine.h"
#include "kv/storage/segment_log.h"
#include "raft/host/node_host.h"
#include "rpc/cluster.pb.h"
#include "rpc/grpc_transport.h"
#include "rpc/peer_directory.h"
#include "rpc/status.h"
#include "rpc/storage.pb.h"
#include "util/thread_pool.h"

namespace tally::kv::server {

inline constexpr raft::host::GroupId kMetaGroup = 1;

// What the gRPC services need of the node.
// A range read of at most this many keys is served like a point read; a
// longer one is a scan (Node::scans).
inline constexpr uint32_t kMaxPointRange = 64;

struct Node {
  ServerOptions options;
  raft::NodeId id = 0;
  rpc::ClusterLayout layout;
  std::unique_ptr<storage::SegmentLog> log;
  std::unique_ptr<storage::Engine> data;
  std::unique_ptr<GroupRegistry> groups;
  rpc::PeerDirectory directory;
  // How this node dials the others: their peer ports, and their client
  // ports when joining or changing membership (TLS or plaintext).
  std::shared_ptr<grpc::ChannelCredentials> peer_credentials;
  std::unique_ptr<rpc::GrpcTransport> transport;
  // The writes proposed through WriteAsync, for /metrics: before `host`,
  // whose last callbacks (at its destruction) still count.
  WriteStats writes;
  std::unique_ptr<raft::host::NodeHost> host;
  // Linearizable and lease reads run here once their index is applied,
  // never on the raft loop or the apply thread that report it.
  std::unique_ptr<util::ThreadPool> reads;
  // Scans (ranges of more than kMaxPointRange keys), in any read mode, at
  // the lowest CPU priority: bulk reads take only the CPU that the raft
  // loop, the apply thread and point reads leave.
  std::unique_ptr<util::ThreadPool> scans;
  // How many scans' answers are in flight at once (scan_gate.h).
  std::unique_ptr<ScanGate> scan_gate;
  // The client calls answered, for /metrics.
  RpcStats rpcs;
  // Bounds the client calls in progress, per class (Calls::Admit).
  std::unique_ptr<Admission> admission;
  // Acquire calls waiting for a lock of the metadata group, and Observe
  // streams watching one.
  LockWaits lock_waits;
  LockObservers lock_observers;
  // Watch streams, poked when their group's history changes, and the
  // reads of the history they share.
  WatchHub watchers;
  WatchReads watch_reads;
  // This node's replica of the CRDT tables, and its replication.
  std::unique_ptr<CrdtReplication> crdt;
  // Who may make each client call.
  Authorizer auth{this};
  // CatchUpWithMeta's callers waiting.
  std::atomic<int> meta_catch_ups{0};

  // The range holding `key`.
  const rpc::RangeDescriptor& RangeFor(const std::string& key) const;
  StateMachine* Machine(raft::host::GroupId group) const;
  using WriteDone = std::function<void(absl::StatusOr<kvpb::CommandResult>)>;
  using ReadDone = std::function<void(absl::StatusOr<raft::Index>)>;

  // Proposes; `done` gets the applied result (on the apply thread), or why
  // it will not come (on the raft loop).
  void WriteAsync(raft::host::GroupId group, kvpb::Command cmd, WriteDone done);
  // `done` gets the index at which reading `group` here is linearizable (or
  // lease-safe) once this node has applied it.
  void ReadAsync(raft::host::GroupId group, bool lease, ReadDone done);
  // For a caller that found something missing from this node's replica of
  // the metadata group that a change acknowledged before its call would
  // have brought (a token just issued, a table just created): calls
  // `found` again once this node has caught up with the group. Leading it:
  // after a linearizable read (for at most kMetaCatchUpTime); following: every
  // few milliseconds for up to four ticks, which bring it the leader's
  // commit index. At most kMostMetaCatchUps callers wait at once; the
  // others get false at once. Waits: not for the raft loop or the apply
  // thread.
  static constexpr auto kMetaCatchUpTime = std::chrono::seconds(1);
  static constexpr int kMostMetaCatchUps = 16;
  bool CatchUpWithMeta(std::chrono::system_clock::time_point deadline,
                       const std::function<bool()>& found);
  // ReadAsync, waiting (bounded by `deadline`).
  absl::StatusOr<raft::Index> Read(
      raft::host::GroupId group,
      std::chrono::system_clock::time_point deadline);
  // WriteAsync, waiting (bounded by `deadline`).
  absl::StatusOr<kvpb::CommandResult> Write(
      raft::host::GroupId group, kvpb::Command cmd,
      std::chrono::system_clock::time_point deadline);
  // UNAVAILABLE naming the group's leader, for redirects.
  grpc::Status NotLeader(grpc::ServerContextBase* ctx,
                         raft::host::GroupId group,
                         const absl::Status& cause) const;
  // An operation's error for the client: NotLeader for UNAVAILABLE (with
  // the redirect), else the same code and message, and its reason (if any)
  // as "tally-reason" trailing metadata.
  grpc::Status Refuse(grpc::ServerContextBase* ctx, raft::host::GroupId group,
                      const absl::Status& s) const;
  // The index of the change once applied; 0 when it was already in effect
  // and nothing was proposed.
  absl::StatusOr<raft::Index> ProposeConfChange(
      raft::host::GroupId group, const raft::ConfChange& cc,
      std::chrono::system_clock::time_point deadline);
};

// What this node's replica of the metadata group says of lease `id`:
// live, ended (or never granted: an id is the index of its grant, so a
// replica that has applied that index and holds no such lease knows), or
// unknown yet (the replica has not applied that far, or holds no replica).
enum class LeaseKnown { kLive, kEnded, kUnknown };
LeaseKnown LeaseState(const Node& node, uint64_t id);

// A hash of a client request, the same for the same request on every build:
// a session's retry must carry the same one (kvpb::Command).
uint64_t Fingerprint(const google::protobuf::Message& request);
std::unique_ptr<grpc::Service> NewKvService(Node* node);
std::unique_ptr<grpc::Service> NewClusterService(Node* node);
std::unique_ptr<grpc::Service> NewLeaseService(Node* node);
std::unique_ptr<grpc::Service> NewLockService(Node* node);
std::unique_ptr<grpc::Service> NewIdemService(Node* node);
std::unique_ptr<grpc::Service> NewSagaService(Node* node);
std::unique_ptr<grpc::Service> NewCrdtService(Node* node);
std::unique_ptr<grpc::Service> NewWatchService(Node* node);
std::unique_ptr<grpc::Service> NewAuthService(Node* node);

// The shortest lease or idempotency claim: twice the election timeout.
int64_t MinTtlMs(const ServerOptions& o);

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_NODE_H_
