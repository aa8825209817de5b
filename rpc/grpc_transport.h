#ifndef TALLY_RPC_GRPC_TRANSPORT_H_
#define TALLY_RPC_GRPC_TRANSPORT_H_

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/security/credentials.h"
#include "raft/host/interfaces.h"
#include "rpc/peer_directory.h"
#include "rpc/raft.grpc.pb.h"

namespace tally::rpc {

// A channel to another node's peer port: large messages, pings every 2 s
// (a peer cut off without a reset is noticed within seconds), and
// reconnects at most 500 ms apart once it is back.
std::shared_ptr<grpc::Channel> DialPeer(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials);

// What the transport knows of one peer node, for /metrics.
struct PeerStats {
  raft::NodeId peer = 0;
  size_t queued = 0;      // messages waiting to be sent
  uint64_t sent = 0;      // messages written to the peer's stream
  uint64_t dropped = 0;   // messages dropped: queue full, or peer down
  uint64_t connects = 0;  // streams opened to it
  uint64_t ping_failures = 0;
  // The last ping's round trip on the stream's connection (-1: none yet,
  // or the last one failed).
  double rtt_seconds = -1;
};

// Raft traffic between nodes over gRPC: one long-lived client stream per
// peer node carries the messages of every group in batches; snapshots are
// pulled by the receiver as a server stream of chunks.
//
// Thread safety: thread-safe.
class GrpcTransport final : public raft::host::Transport {
 public:
  // `credentials`: how to dial the peers (rpc/tls.h).
  GrpcTransport(raft::NodeId self, std::string cluster_id,
                std::string client_address, PeerDirectory* peers,
                std::shared_ptr<grpc::ChannelCredentials> credentials);
  ~GrpcTransport() override;

  // REQUIRES: called once, before any Send.
  void set_host(raft::host::MessageHandler* host) { host_ = host; }
  void Stop();

  void Send(raft::NodeId to,
            std::vector<raft::host::GroupMessage> msgs) override;
  absl::Status FetchSnapshot(raft::NodeId from, raft::host::GroupId group,
                             raft::Index min_index,
                             const raft::host::ChunkSink& sink) override;
  void CancelFetches() override;

  // The server half, registered with the node's gRPC server.
  grpc::Service* service();

  // Every peer this node has sent to, by id. Each is pinged every 2 s.
  std::vector<PeerStats> Stats();

 private:
  class Peer;
  class Service;

  Peer* GetPeer(raft::NodeId to);

  const raft::NodeId self_;
  const std::string cluster_id_;
  const std::string client_address_;
  PeerDirectory* const directory_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  raft::host::MessageHandler* host_ = nullptr;
  std::unique_ptr<Service> service_;

  absl::Mutex mu_;
  std::map<raft::NodeId, std::unique_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Snapshot fetches in progress, cancelled by CancelFetches.
  std::set<grpc::ClientContext*> fetches_ ABSL_GUARDED_BY(mu_);
  bool fetches_cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tally::rpc

#endif  // TALLY_RPC_GRPC_TRANSPORT_H_
