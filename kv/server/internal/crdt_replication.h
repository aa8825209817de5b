#ifndef TALLY_KV_SERVER_INTERNAL_CRDT_REPLICATION_H_
#define TALLY_KV_SERVER_INTERNAL_CRDT_REPLICATION_H_

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "clocks/clock.h"
#include "grpcpp/grpcpp.h"
#include "kv/crdt_table/replica.h"
#include "kv/storage/engine.h"
#include "rpc/crdt.grpc.pb.h"
#include "util/thread_pool.h"
#include "util/waker.h"

namespace tally::kv::server {

struct Node;

// This node's CRDT replica (kv/crdt_table/replica.h) and how it converges
// with the others': the delta of every local update is pushed to each peer
// (batched per peer, from a bounded queue), and every second each peer's
// digests are compared with ours and the rows of the buckets that differ
// are pulled and merged (anti-entropy), which repairs whatever a dropped
// delta, a partition or a restart left out. Both run on the peer port
// (CrdtPeer in rpc/crdt.proto).
//
// A change is refused, counted and logged, never merged, when it comes
// from a node that is not a member or from a retired replica, names a
// table this node does not know (or one dropped and created again), or
// does not decode.
//
// Garbage collection (crdt_table/members.h): each complete pull from a
// peer tells this replica what the peer had seen; the metadata group's
// leader hears every node's Seen during its pulls and proposes them, raft
// commits the stability cut, and every node collects below it. Updates
// are refused until the metadata group has this replica registered; a
// node whose replica was retired throws it away and resyncs under a new
// one.
//
// Thread safety: thread-safe.
class CrdtReplication {
 public:
  // Opens (or creates) the replica's store at `dir`.
  // `sync_every`: the time between two anti-entropy rounds; `cache_bytes`:
  // the replica's memory for values of keys used lately.
  static absl::StatusOr<std::unique_ptr<CrdtReplication>> Start(
      Node* node, const std::string& dir, absl::Duration sync_every,
      size_t cache_bytes);
  ~CrdtReplication();
  // Stops pushing and syncing; the peer service refuses from then on.
  void Stop();

  CrdtReplica& replica() { return *replica_; }
  // Where client updates and reads run (their engine writes are synced).
  util::ThreadPool& workers() { return *workers_; }
  grpc::Service* peer_service();

  // Table `name` as this node's replica of the metadata group has it:
  // NOT_FOUND naming it, UNAVAILABLE before this node has that replica.
  absl::StatusOr<kvpb::CrdtTable> Table(const std::string& name) const;
  // Table(), and when this node does not know the table, again once it has
  // caught up with the metadata group (Node::CatchUpWithMeta, until
  // `deadline` at the latest): a table whose creation was acknowledged
  // through any node is found. Waits: for the worker threads.
  absl::StatusOr<kvpb::CrdtTable> CurrentTable(
      const std::string& name,
      std::chrono::system_clock::time_point deadline) const;
  // Queues a local update's delta for every peer.
  void Spread(const kvpb::CrdtTable& table, const CrdtRowChange& change);
  // Merges `row` as a majority of the nodes hold it (this one included)
  // into this replica; how many nodes that was. UNAVAILABLE without a
  // majority by `deadline`.
  absl::StatusOr<uint32_t> MergeFromMajority(
      const kvpb::CrdtTable& table, const std::string& row,
      std::chrono::system_clock::time_point deadline);
  rpc::CrdtStatusResponse Status() const;
  // Whether the metadata group has this node's replica as active.
  bool registered() const { return registered_.load(); }
  // OK once registered(), waiting a few seconds for it: UNAVAILABLE after
  // (a node just started, or resyncing, and no metadata leader).
  absl::Status Writable() const;
  // Before node `node` is removed from the cluster: it stops taking
  // updates, and this node (or, when `node` is this one, a peer) pulls
  // everything it holds and syncs it, so that no update it acknowledged
  // goes with it. False if `node` did not answer (nothing could be taken:
  // what it acknowledged and did not push is lost if its disk is).
  absl::StatusOr<bool> HandOver(uint64_t node,
                                std::chrono::system_clock::time_point deadline);

 private:
  class PeerService;
  struct Peer;

  CrdtReplication(Node* node, std::unique_ptr<storage::Engine> engine,
                  absl::Duration sync_every);
  // Creates the peers the directory knows and we do not yet.
  void RefreshPeers();
  Peer* FindPeer(uint64_t id) const;
  void PushLoop(Peer* p);
  void SyncLoop();
  // Anti-entropy from `p`: OK if the pull took everything `p` holds.
  // `paced` (the sync thread's rounds): the rows of buckets that differ are
  // read only once the pause after the last such read is over
  // (kPullPause); until then the pull compares digests only, and is OK
  // without taking everything.
  absl::Status SyncWith(Peer* p,
                        std::chrono::system_clock::duration call_timeout,
                        bool paced = false);
  // HandOver of a peer's rows into this replica.
  absl::StatusOr<bool> TakeOver(uint64_t node,
                                std::chrono::system_clock::time_point deadline);
  // Refuses updates from now on, for the removal of this node (kLeaveHold,
  // or for good once removed); returns once every update acknowledged is
  // in the store. `taker`: the node taking the rows over.
  absl::Status Leave(uint64_t taker);
  // Merges changes from node `from`, replica `replica` (full states joined
  // with `floor`); how many were refused.
  uint32_t MergeFrom(
      uint64_t from, uint64_t replica,
      const google::protobuf::RepeatedPtrField<rpc::CrdtRowChange>& changes,
      const CrdtVector* floor = nullptr);
  // OK if `replica` of node `from` is active in the metadata group.
  absl::Status CheckReplica(uint64_t from, uint64_t replica) const;
  // Once per anti-entropy round: registration (and the resync of a retired
  // replica), collection below the committed cut, and on the metadata
  // group's leader, the proposal of every replica's report.
  void Housekeep();
  bool Stopping(absl::Duration d);

  Node* const node_;
  const absl::Duration sync_every_;
  std::unique_ptr<storage::Engine> engine_;
  clocks::SystemClock clock_;
  std::unique_ptr<CrdtReplica> replica_;
  std::unique_ptr<util::ThreadPool> workers_;
  std::unique_ptr<PeerService> service_;

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Where SyncLoop sleeps (by the steady clock); Stop ends it.
  util::Waker sleeper_;
  std::map<uint64_t, std::unique_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  uint64_t refused_ ABSL_GUARDED_BY(mu_) = 0;
  // What each peer's replica had seen, from its last Digest answer.
  std::map<uint64_t, std::pair<uint64_t, CrdtVector>> reports_
      ABSL_GUARDED_BY(mu_);
  // What was last proposed, and when.
  std::map<uint64_t, std::pair<uint64_t, CrdtVector>> proposed_
      ABSL_GUARDED_BY(mu_);
  std::chrono::steady_clock::time_point proposed_at_ ABSL_GUARDED_BY(mu_);
  uint64_t cut_epoch_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t resyncs_ ABSL_GUARDED_BY(mu_) = 0;
  // Set while this node refuses updates for its removal (Leave).
  std::optional<std::chrono::steady_clock::time_point> leaving_until_
      ABSL_GUARDED_BY(mu_);
  std::atomic<bool> registered_{false};
  // This node was removed from the cluster.
  std::atomic<bool> removed_{false};
  std::chrono::steady_clock::time_point last_refusal_log_ ABSL_GUARDED_BY(mu_);
  std::thread sync_thread_;
  // Schemas read, by name, and the schema generation they were read at
  // (CrdtSchema::generation): every update looks its table up.
  mutable absl::Mutex tables_mu_;
  mutable uint64_t tables_generation_ ABSL_GUARDED_BY(tables_mu_) = 0;
  mutable std::map<std::string, kvpb::CrdtTable> tables_
      ABSL_GUARDED_BY(tables_mu_);
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_CRDT_REPLICATION_H_
