#ifndef TALLY_PUBLIC_EMBEDDED_NODE_H_
#define TALLY_PUBLIC_EMBEDDED_NODE_H_

// A Tally node running inside the service's own process: a single-node
// cluster of its own, or a member of a cluster of kvd processes and other
// embedded nodes. It serves other processes like any kvd (on its client
// and peer addresses), and the service reaches it through a Client.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tally/client.h"

namespace tally {

namespace kv::server {
class Server;
}

struct EmbeddedNodeOptions {
  // Where the node keeps its raft log and state (created if missing).
  std::string data_dir;
  // This member's number (its name is "n<id>").
  uint64_t id = 1;
  // host:port for clients and for the other members.
  std::string client_address;
  std::string peer_address;
  // Every member's peer address, the same on each of a new cluster's
  // members; empty: a cluster of this node alone.
  std::map<uint64_t, std::string> initial_cluster;
  // Raft's tick; elections start after 10 quiet ticks.
  std::chrono::milliseconds tick{50};
};

// Thread safety: Connect and the accessors from any thread; Shutdown (or
// destruction) once, after the clients it gave are done.
class EmbeddedNode {
 public:
  // Opens or initialises the data dir and starts serving; errors name what
  // is wrong (a port in use, another cluster's data dir, bad options).
  static absl::StatusOr<std::unique_ptr<EmbeddedNode>> Start(
      EmbeddedNodeOptions options);
  // Stops serving (Shutdown).
  ~EmbeddedNode();

  // A client of the node's cluster, starting from this node. Calls wait for
  // a leader within their timeout.
  absl::StatusOr<std::unique_ptr<Client>> Connect(
      std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;
  const std::string& client_address() const { return options_.client_address; }
  std::string cluster_id() const;
  // Finishes the requests in flight and stops; the data dir keeps
  // everything acknowledged.
  void Shutdown();

 private:
  EmbeddedNode(EmbeddedNodeOptions options,
               std::unique_ptr<kv::server::Server> server);
  const EmbeddedNodeOptions options_;
  std::unique_ptr<kv::server::Server> server_;
};

}  // namespace tally

#endif  // TALLY_PUBLIC_EMBEDDED_NODE_H_
