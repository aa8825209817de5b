#ifndef TALLY_RPC_PEER_DIRECTORY_H_
#define TALLY_RPC_PEER_DIRECTORY_H_

#include <map>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "raft/types.h"

namespace tally::rpc {

// Where each node of the cluster listens: for peers (raft traffic) and for
// clients (named in redirects).
//
// Thread safety: thread-safe.
class PeerDirectory {
 public:
  void SetPeer(raft::NodeId id, const std::string& address) {
    absl::MutexLock l(&mu_);
    if (!address.empty()) peers_[id] = address;
  }
  void SetClient(raft::NodeId id, const std::string& address) {
    absl::MutexLock l(&mu_);
    if (!address.empty()) clients_[id] = address;
  }
  void Remove(raft::NodeId id) {
    absl::MutexLock l(&mu_);
    peers_.erase(id);
    clients_.erase(id);
  }
  // Empty when unknown.
  std::string Peer(raft::NodeId id) const {
    absl::MutexLock l(&mu_);
    auto it = peers_.find(id);
    return it == peers_.end() ? "" : it->second;
  }
  std::string Client(raft::NodeId id) const {
    absl::MutexLock l(&mu_);
    auto it = clients_.find(id);
    return it == clients_.end() ? "" : it->second;
  }
  std::map<raft::NodeId, std::string> Peers() const {
    absl::MutexLock l(&mu_);
    return peers_;
  }

 private:
  mutable absl::Mutex mu_;
  std::map<raft::NodeId, std::string> peers_ ABSL_GUARDED_BY(mu_);
  std::map<raft::NodeId, std::string> clients_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::rpc

#endif  // TALLY_RPC_PEER_DIRECTORY_H_
