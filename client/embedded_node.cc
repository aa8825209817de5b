#include "tally/embedded_node.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/server/server.h"

namespace tally {

EmbeddedNode::EmbeddedNode(EmbeddedNodeOptions options,
                           std::unique_ptr<kv::server::Server> server)
    : options_(std::move(options)), server_(std::move(server)) {}

EmbeddedNode::~EmbeddedNode() { Shutdown(); }

absl::StatusOr<std::unique_ptr<EmbeddedNode>> EmbeddedNode::Start(
    EmbeddedNodeOptions options) {
  if (options.data_dir.empty() || options.client_address.empty() ||
      options.peer_address.empty() || options.id == 0) {
    return absl::InvalidArgumentError(
        "an embedded node needs a data dir, a client and a peer address, "
        "and an id above 0");
  }
  if (options.tick.count() <= 0) {
    return absl::InvalidArgumentError("the tick must be positive");
  }
  kv::server::ServerOptions so;
  so.name = absl::StrCat("n", options.id);
  so.data_dir = options.data_dir;
  so.client_address = options.client_address;
  so.peer_address = options.peer_address;
  so.tick_ms = static_cast<int>(options.tick.count());
  if (options.initial_cluster.empty()) {
    so.initial_cluster[options.id] = options.peer_address;
  }
  for (const auto& [id, address] : options.initial_cluster) {
    so.initial_cluster[id] = address;
  }
  absl::StatusOr<std::unique_ptr<kv::server::Server>> server =
      kv::server::Server::Start(so);
  if (!server.ok()) return server.status();
  return std::unique_ptr<EmbeddedNode>(
      new EmbeddedNode(std::move(options), *std::move(server)));
}

absl::StatusOr<std::unique_ptr<Client>> EmbeddedNode::Connect(
    std::chrono::milliseconds timeout) const {
  ClientOptions o;
  o.endpoints = {options_.client_address};
  o.timeout = timeout;
  return Client::Connect(std::move(o));
}

std::string EmbeddedNode::cluster_id() const {
  return server_ ? server_->cluster_id() : "";
}

void EmbeddedNode::Shutdown() {
  if (server_) {
    server_->Shutdown();
    server_.reset();
  }
}

}  // namespace tally
