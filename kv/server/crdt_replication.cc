#include "kv/server/internal/crdt_replication.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kv/server/internal/node.h"
#include "kv/storage/leveldb_engine.h"
#include "rpc/grpc_transport.h"
#include "spdlog/spdlog.h"
#include "util/thread_name.h"

namespace tally::kv::server {

namespace {

using Clock = std::chrono::system_clock;

// Threads that run client updates and reads (each waits for a synced
// write, which concurrent ones share), and the calls that may wait for one.
constexpr int kWorkers = 16;
constexpr size_t kMaxQueuedCalls = 10000;
// Deltas waiting for one peer before new ones are dropped (anti-entropy
// repairs what they carried), and what one push carries at most.
constexpr size_t kMaxQueuedDeltas = 100'000;
constexpr size_t kMaxPushChanges = 1000;
constexpr size_t kMaxPushBytes = 4 << 20;
// Anti-entropy: the buckets one Diff asks for.
constexpr size_t kBucketsPerPull = 64;
constexpr auto kPeerCallTimeout = std::chrono::seconds(5);
// Under steady writes nearly every bucket differs (the deltas in flight),
// so a pull reads every row of the table here and on the peer: with many
// rows, more than a second's work. After a pull that read rows and took T,
// the sync thread compares only digests with that peer for kPullPause * T,
// so reading rows takes at most a tenth of the time whatever the table's
// size (digests, a few KB a table, are compared every round).
constexpr int kPullPause = 9;
// A node about to be removed answers Leave within this, or is taken for
// gone; it refuses updates for kLeaveHold unless the removal happens.
constexpr auto kLeaveAnswerWithin = std::chrono::seconds(2);
constexpr auto kLeaveHold = std::chrono::seconds(60);
// Refused changes are logged at most this often.
constexpr auto kRefusalLogEvery = std::chrono::seconds(10);
// The metadata group's leader proposes the replicas' reports when they
// changed, and at least this often.
constexpr auto kReportEvery = std::chrono::seconds(10);
// How long an update waits for this node's replica to be registered.
constexpr auto kRegistrationWait = std::chrono::seconds(10);

void ToWire(const CrdtVector& v,
            google::protobuf::RepeatedPtrField<rpc::CrdtCount>* out) {
  for (const auto& [r, n] : v) {
    rpc::CrdtCount* c = out->Add();
    c->set_replica(r);
    c->set_counter(n);
  }
}

CrdtVector FromWire(
    const google::protobuf::RepeatedPtrField<rpc::CrdtCount>& counts) {
  CrdtVector v;
  for (const rpc::CrdtCount& c : counts) {
    if (c.replica() != 0 && c.counter() != 0) v[c.replica()] = c.counter();
  }
  return v;
}

// `t` named in the change unless the message around it names it.
rpc::CrdtRowChange ToWire(const kvpb::CrdtTable* t, const CrdtRowChange& c) {
  rpc::CrdtRowChange w;
  if (t != nullptr) {
    w.set_table(t->name());
    w.set_table_id(c.table);
  }
  w.set_row(c.row);
  w.set_full(c.full);
  for (const auto& [k, v] : c.entries) {
    w.add_entry_keys(k);
    w.add_entry_values(v);
  }
  return w;
}

// Names the table of an answer's changes (left out on the wire).
void Adopt(const std::string& table, uint64_t id, rpc::CrdtRowsResponse* r) {
  for (rpc::CrdtRowChange& c : *r->mutable_changes()) {
    c.set_table(table);
    c.set_table_id(id);
  }
}

CrdtRowChange FromWire(const rpc::CrdtRowChange& w) {
  CrdtRowChange c;
  c.table = w.table_id();
  c.row = w.row();
  c.full = w.full();
  for (int i = 0; i < w.entry_keys_size() && i < w.entry_values_size(); ++i) {
    c.entries.emplace_back(w.entry_keys(i), w.entry_values(i));
  }
  return c;
}

}  // namespace

struct CrdtReplication::Peer {
  Peer(uint64_t id, std::shared_ptr<grpc::ChannelCredentials> credentials)
      : id(id), credentials(std::move(credentials)) {}
  const uint64_t id;
  const std::shared_ptr<grpc::ChannelCredentials> credentials;
  absl::Mutex mu;
  bool stop ABSL_GUARDED_BY(mu) = false;
  std::string address ABSL_GUARDED_BY(mu);
  std::shared_ptr<rpc::CrdtPeer::Stub> stub ABSL_GUARDED_BY(mu);
  std::deque<std::shared_ptr<const rpc::CrdtRowChange>> queue
      ABSL_GUARDED_BY(mu);
  uint64_t sent ABSL_GUARDED_BY(mu) = 0;
  uint64_t bytes_pushed ABSL_GUARDED_BY(mu) = 0;
  uint64_t dropped ABSL_GUARDED_BY(mu) = 0;
  std::optional<std::chrono::steady_clock::time_point> last_sync
      ABSL_GUARDED_BY(mu);
  uint32_t differing ABSL_GUARDED_BY(mu) = 0;
  bool in_sync ABSL_GUARDED_BY(mu) = false;
  uint64_t rows_pulled ABSL_GUARDED_BY(mu) = 0;
  uint64_t bytes_pulled ABSL_GUARDED_BY(mu) = 0;
  std::string last_error ABSL_GUARDED_BY(mu);
  std::thread pusher;
  // When the sync thread may next read the rows of buckets that differ
  // from this peer's (SyncWith, paced).
  std::chrono::steady_clock::time_point next_rows;

  // The stub for `addr`, made anew when the peer moved.
  std::shared_ptr<rpc::CrdtPeer::Stub> Stub(const std::string& addr) {
    absl::MutexLock l(&mu);
    if (addr != address || !stub) {
      address = addr;
      stub = rpc::CrdtPeer::NewStub(rpc::DialPeer(addr, credentials));
    }
    return stub;
  }
};

class CrdtReplication::PeerService final : public rpc::CrdtPeer::Service {
 public:
  explicit PeerService(CrdtReplication* r) : r_(r) {}

  grpc::Status Push(grpc::ServerContext*, const rpc::CrdtPushRequest* req,
                    rpc::CrdtPushResponse* resp) override {
    if (grpc::Status st = Check(req->cluster_id(), req->from_node(),
                                /*removed_too=*/true);
        !st.ok()) {
      return st;
    }
    const uint32_t refused =
        r_->MergeFrom(req->from_node(), req->from_replica(), req->changes());
    resp->set_refused(refused);
    resp->set_merged(req->changes_size() - refused);
    return grpc::Status::OK;
  }

  grpc::Status Leave(grpc::ServerContext*, const rpc::CrdtLeaveRequest* req,
                     rpc::CrdtLeaveResponse* resp) override {
    if (grpc::Status st = Check(req->cluster_id(), req->from_node());
        !st.ok()) {
      return st;
    }
    resp->set_registered(r_->registered());
    return rpc::ToGrpc(r_->Leave(req->from_node()));
  }

  grpc::Status TakeOver(grpc::ServerContext* ctx,
                        const rpc::CrdtTakeOverRequest* req,
                        rpc::CrdtTakeOverResponse* resp) override {
    if (grpc::Status st = Check(req->cluster_id(), req->from_node());
        !st.ok()) {
      return st;
    }
    absl::StatusOr<bool> taken = r_->TakeOver(req->node(), ctx->deadline());
    if (!taken.ok()) return rpc::ToGrpc(taken.status());
    if (!*taken) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("n", req->node(), " did not answer"));
    }
    resp->set_node(r_->node_->id);
    return grpc::Status::OK;
  }

  grpc::Status Digest(grpc::ServerContext*, const rpc::CrdtDigestRequest* req,
                      rpc::CrdtDigestResponse* resp) override {
    if (grpc::Status st = Check(req->cluster_id(), req->from_node());
        !st.ok()) {
      return st;
    }
    // Seen first: everything it counts is in the state compared below.
    resp->set_replica(r_->replica_->id());
    ToWire(r_->replica_->Seen(), resp->mutable_seen());
    bool complete = true;
    if (StateMachine* meta = r_->node_->Machine(kMetaGroup)) {
      absl::StatusOr<std::vector<kvpb::CrdtTable>> all =
          meta->crdt_schema().List();
      complete = all.ok();
      if (!all.ok()) all = std::vector<kvpb::CrdtTable>{};
      for (const kvpb::CrdtTable& t : *all) {
        const bool asked =
            std::any_of(req->tables().begin(), req->tables().end(),
                        [&](const rpc::CrdtTableRoot& r) {
                          return r.table_id() == t.id();
                        });
        if (!asked && r_->replica_->Root(t.id()) != 0) complete = false;
      }
    }
    resp->set_complete(complete);
    for (const rpc::CrdtTableRoot& t : req->tables()) {
      absl::StatusOr<kvpb::CrdtTable> mine = r_->Table(t.table());
      if (!mine.ok() || mine->id() != t.table_id()) continue;
      if (r_->replica_->Root(t.table_id()) == t.root()) continue;
      rpc::CrdtTableDigest* d = resp->add_tables();
      d->set_table(t.table());
      d->set_table_id(t.table_id());
      for (uint64_t h : r_->replica_->Digest(t.table_id())) d->add_buckets(h);
    }
    return grpc::Status::OK;
  }

  grpc::Status Diff(grpc::ServerContext*, const rpc::CrdtDiffRequest* req,
                    rpc::CrdtRowsResponse* resp) override {
    absl::StatusOr<kvpb::CrdtTable> t = Known(*req);
    if (!t.ok()) return rpc::ToGrpc(t.status());
    std::vector<uint32_t> buckets(req->buckets().begin(), req->buckets().end());
    std::unordered_set<uint64_t> have(req->have().begin(), req->have().end());
    resp->set_replica(r_->replica_->id());
    ToWire(r_->replica_->floor(), resp->mutable_floor());
    auto rows = r_->replica_->RowsNotIn(t->id(), buckets, have);
    if (!rows.ok()) return rpc::ToGrpc(rows.status());
    for (const CrdtRowChange& c : *rows) {
      *resp->add_changes() = ToWire(nullptr, c);
    }
    return grpc::Status::OK;
  }

  grpc::Status Rows(grpc::ServerContext*, const rpc::CrdtRowsRequest* req,
                    rpc::CrdtRowsResponse* resp) override {
    absl::StatusOr<kvpb::CrdtTable> t = Known(*req);
    if (!t.ok()) return rpc::ToGrpc(t.status());
    std::vector<std::string> rows(req->rows().begin(), req->rows().end());
    resp->set_replica(r_->replica_->id());
    ToWire(r_->replica_->floor(), resp->mutable_floor());
    auto states = r_->replica_->RowStates(t->id(), rows);
    if (!states.ok()) return rpc::ToGrpc(states.status());
    for (const CrdtRowChange& c : *states) {
      *resp->add_changes() = ToWire(nullptr, c);
    }
    return grpc::Status::OK;
  }

 private:
  // The request's table, checked like its sender.
  template <typename Req>
  absl::StatusOr<kvpb::CrdtTable> Known(const Req& req) const {
    if (grpc::Status st = Check(req.cluster_id(), req.from_node()); !st.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(st.error_code()),
                          st.error_message());
    }
    absl::StatusOr<kvpb::CrdtTable> t = r_->Table(req.table());
    if (!t.ok() || t->id() != req.table_id()) {
      return absl::NotFoundError(absl::StrCat(
          "no CRDT table ", req.table(), " with id ", req.table_id(), " here"));
    }
    return t;
  }

  // Only members of this cluster; one that was removed only with
  // `removed_too` (its pushes: what it acknowledged before it learned of
  // its removal would be lost with its disk otherwise; its replica is
  // still checked, CheckReplica).
  grpc::Status Check(const std::string& cluster, uint64_t from,
                     bool removed_too = false) const {
    Node* node = r_->node_;
    if (cluster != node->layout.cluster_id()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("CRDT change from cluster ", cluster,
                                       ", not ", node->layout.cluster_id()));
    }
    StateMachine* meta = node->Machine(kMetaGroup);
    const bool removed = meta != nullptr && meta->meta().WasRemoved(from);
    const bool member =
        meta != nullptr && !node->directory.Peer(from).empty() && !removed;
    if (!member && !(removed_too && removed)) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat("n", from, " is not a member"));
    }
    {
      absl::MutexLock l(&r_->mu_);
      if (r_->stop_) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down");
      }
    }
    return grpc::Status::OK;
  }

  CrdtReplication* const r_;
};

CrdtReplication::CrdtReplication(Node* node,
                                 std::unique_ptr<storage::Engine> engine,
                                 absl::Duration sync_every)
    : node_(node), sync_every_(sync_every), engine_(std::move(engine)) {}

absl::StatusOr<std::unique_ptr<CrdtReplication>> CrdtReplication::Start(
    Node* node, const std::string& dir, absl::Duration sync_every,
    size_t cache_bytes) {
  // Every update and every merge inserts into LevelDB's memtable, a skip
  // list searched from the top at each insert: a memtable of 4 MiB
  // (LevelDB's default) instead of the raft store's 16 MiB takes 7% less
  // CPU per increment (docs/crdt.md, Measured).
  storage::LevelDBOptions options;
  options.write_buffer_size = 4 << 20;
  absl::StatusOr<std::unique_ptr<storage::LevelDBEngine>> engine =
      storage::LevelDBEngine::Open(dir, options);
  if (!engine.ok()) return engine.status();
  std::unique_ptr<CrdtReplication> r(
      new CrdtReplication(node, *std::move(engine), sync_every));
  absl::StatusOr<std::unique_ptr<CrdtReplica>> replica =
      CrdtReplica::Open(r->engine_.get(), &r->clock_, cache_bytes);
  if (!replica.ok()) return replica.status();
  r->replica_ = *std::move(replica);
  r->workers_ = std::make_unique<util::ThreadPool>("crdt-peer", kWorkers,
                                                   kMaxQueuedCalls);
  r->service_ = std::make_unique<PeerService>(r.get());
  r->RefreshPeers();
  r->sync_thread_ = std::thread([p = r.get()] {
    util::NameThisThread("crdt-sync");
    p->SyncLoop();
  });
  spdlog::info("[n={}] CRDT replica {:x}: {} entries", node->id,
               r->replica_->id(), r->replica_->stats().entries);
  return r;
}

CrdtReplication::~CrdtReplication() { Stop(); }

void CrdtReplication::Stop() {
  std::vector<Peer*> peers;
  {
    absl::MutexLock l(&mu_);
    if (stop_) return;
    stop_ = true;
    for (auto& [id, p] : peers_) peers.push_back(p.get());
  }
  sleeper_.Stop();
  for (Peer* p : peers) {
    absl::MutexLock l(&p->mu);
    p->stop = true;
  }
  if (sync_thread_.joinable()) sync_thread_.join();
  for (Peer* p : peers) {
    if (p->pusher.joinable()) p->pusher.join();
  }
  workers_.reset();
  replica_->Close();  // answers the updates still waiting
}

grpc::Service* CrdtReplication::peer_service() { return service_.get(); }

absl::StatusOr<kvpb::CrdtTable> CrdtReplication::Table(
    const std::string& name) const {
  StateMachine* meta = node_->Machine(kMetaGroup);
  if (meta == nullptr) {
    return absl::UnavailableError(
        "this node has no replica of the metadata group yet");
  }
  const uint64_t generation = meta->crdt_schema().generation();
  {
    absl::MutexLock l(&tables_mu_);
    if (tables_generation_ != generation) {
      tables_.clear();
      tables_generation_ = generation;
    }
    auto it = tables_.find(name);
    if (it != tables_.end()) return it->second;
  }
  absl::StatusOr<std::optional<kvpb::CrdtTable>> t =
      meta->crdt_schema().Get(name);
  if (!t.ok()) return t.status();
  if (t->has_value()) {
    absl::MutexLock l(&tables_mu_);
    if (tables_generation_ == generation) tables_.emplace(name, **t);
  }
  if (!t->has_value()) {
    return absl::NotFoundError(absl::StrCat(
        "no CRDT table ", name, " (create it with kvctl crdt create)"));
  }
  return **t;
}

absl::StatusOr<kvpb::CrdtTable> CrdtReplication::CurrentTable(
    const std::string& name,
    std::chrono::system_clock::time_point deadline) const {
  absl::StatusOr<kvpb::CrdtTable> t = Table(name);
  if (!absl::IsNotFound(t.status())) return t;
  // Created through another node, perhaps, and not applied here yet.
  node_->CatchUpWithMeta(deadline, [&] {
    t = Table(name);
    return !absl::IsNotFound(t.status());
  });
  return t;
}

void CrdtReplication::RefreshPeers() {
  std::map<raft::NodeId, std::string> known = node_->directory.Peers();
  absl::MutexLock l(&mu_);
  if (stop_) return;
  for (const auto& [id, addr] : known) {
    if (id == node_->id || peers_.contains(id)) continue;
    auto p = std::make_unique<Peer>(id, node_->peer_credentials);
    Peer* raw = p.get();
    peers_.emplace(id, std::move(p));
    raw->pusher = std::thread([this, raw] {
      util::NameThisThread(absl::StrCat("crdt-push-", raw->id));
      PushLoop(raw);
    });
  }
}

CrdtReplication::Peer* CrdtReplication::FindPeer(uint64_t id) const {
  absl::MutexLock l(&mu_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second.get();
}

void CrdtReplication::Spread(const kvpb::CrdtTable& table,
                             const CrdtRowChange& change) {
  if (change.entries.empty()) return;
  auto wire =
      std::make_shared<const rpc::CrdtRowChange>(ToWire(&table, change));
  absl::MutexLock l(&mu_);
  for (auto& [id, p] : peers_) {
    absl::MutexLock pl(&p->mu);
    if (p->queue.size() >= kMaxQueuedDeltas) {
      ++p->dropped;
    } else {
      p->queue.push_back(wire);
    }
  }
}

void CrdtReplication::PushLoop(Peer* p) {
  while (true) {
    rpc::CrdtPushRequest req;
    {
      absl::MutexLock l(&p->mu);
      auto ready = [p] {
        p->mu.AssertReaderHeld();
        return p->stop || !p->queue.empty();
      };
      p->mu.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      if (p->stop) return;
      size_t bytes = 0;
      while (!p->queue.empty() &&
             req.changes_size() < static_cast<int>(kMaxPushChanges) &&
             bytes < kMaxPushBytes) {
        bytes += p->queue.front()->ByteSizeLong();
        *req.add_changes() = *p->queue.front();
        p->queue.pop_front();
      }
    }
    if (req.changes_size() == 0) continue;
    req.set_cluster_id(node_->layout.cluster_id());
    req.set_from_node(node_->id);
    req.set_from_replica(replica_->id());
    const std::string addr = node_->directory.Peer(p->id);
    grpc::Status st(grpc::StatusCode::UNAVAILABLE, "address unknown");
    rpc::CrdtPushResponse resp;
    if (!addr.empty()) {
      grpc::ClientContext ctx;
      ctx.set_deadline(Clock::now() + kPeerCallTimeout);
      st = p->Stub(addr)->Push(&ctx, req, &resp);
    }
    absl::MutexLock l(&p->mu);
    if (st.ok()) {
      p->sent += req.changes_size();
      p->bytes_pushed += req.ByteSizeLong();
    } else {
      // Anti-entropy brings over what these carried.
      p->dropped += req.changes_size();
      p->last_error = absl::StrCat("push: ", st.error_message());
    }
  }
}

bool CrdtReplication::Stopping(absl::Duration d) {
  return sleeper_.SleepFor(absl::ToChronoNanoseconds(d));
}

void CrdtReplication::SyncLoop() {
  // Sooner while this replica waits to be registered (updates wait too).
  while (!Stopping(registered_ ? sync_every_ : absl::Milliseconds(200))) {
    RefreshPeers();
    Housekeep();
    std::vector<Peer*> peers;
    {
      absl::MutexLock l(&mu_);
      for (auto& [id, p] : peers_) peers.push_back(p.get());
    }
    for (Peer* p : peers) {
      SyncWith(p, kPeerCallTimeout, /*paced=*/true).IgnoreError();
    }
  }
}

absl::Status CrdtReplication::SyncWith(Peer* p, Clock::duration call_timeout,
                                       bool paced) {
  const auto began = std::chrono::steady_clock::now();
  const bool rows_due = !paced || began >= p->next_rows;
  StateMachine* meta = node_->Machine(kMetaGroup);
  const std::string addr = node_->directory.Peer(p->id);
  if (meta == nullptr || addr.empty()) {
    return absl::UnavailableError(
        absl::StrCat("n", p->id, "'s address or the metadata group unknown"));
  }
  // Even with no table yet: the answer names the peer's replica, which
  // the metadata leader registers before the first update needs it.
  absl::StatusOr<std::vector<kvpb::CrdtTable>> tables =
      meta->crdt_schema().List();
  if (!tables.ok()) return tables.status();
  std::shared_ptr<rpc::CrdtPeer::Stub> stub = p->Stub(addr);
  rpc::CrdtDigestRequest req;
  req.set_cluster_id(node_->layout.cluster_id());
  req.set_from_node(node_->id);
  std::map<std::string, const kvpb::CrdtTable*> by_name;
  for (const kvpb::CrdtTable& t : *tables) {
    rpc::CrdtTableRoot* r = req.add_tables();
    r->set_table(t.name());
    r->set_table_id(t.id());
    r->set_root(replica_->Root(t.id()));
    by_name[t.name()] = &t;
  }
  rpc::CrdtDigestResponse digests;
  grpc::ClientContext ctx;
  ctx.set_deadline(Clock::now() + call_timeout);
  grpc::Status st = stub->Digest(&ctx, req, &digests);
  const CrdtVector peer_seen = FromWire(digests.seen());
  if (st.ok()) {
    absl::MutexLock l(&mu_);
    reports_[p->id] = {digests.replica(), peer_seen};
  }
  // Whether this round merges everything the peer had seen.
  const absl::Status replica =
      st.ok() ? CheckReplica(p->id, digests.replica()) : absl::OkStatus();
  bool whole = st.ok() && digests.complete() && replica.ok();
  uint32_t differing = 0;
  // Buckets that differ: read (rows_read), or left for a later round.
  bool rows_read = false, deferred = false;
  uint64_t rows = 0, bytes = req.ByteSizeLong() + digests.ByteSizeLong();
  for (const rpc::CrdtTableDigest& d : digests.tables()) {
    if (!st.ok()) break;
    auto t = by_name.find(d.table());
    if (t == by_name.end() || t->second->id() != d.table_id() ||
        d.buckets_size() != static_cast<int>(kCrdtBuckets)) {
      whole = false;
      continue;
    }
    const std::vector<uint64_t> mine = replica_->Digest(d.table_id());
    std::vector<uint32_t> differ;
    for (uint32_t i = 0; i < kCrdtBuckets; ++i) {
      if (mine[i] != d.buckets(i)) differ.push_back(i);
    }
    differing += differ.size();
    if (!rows_due) {
      deferred |= !differ.empty();
      continue;
    }
    rows_read |= !differ.empty();
    for (size_t at = 0; at < differ.size() && st.ok(); at += kBucketsPerPull) {
      // The peer's rows of these buckets that differ from ours.
      rpc::CrdtDiffRequest ask;
      ask.set_cluster_id(node_->layout.cluster_id());
      ask.set_from_node(node_->id);
      ask.set_table(d.table());
      ask.set_table_id(d.table_id());
      const std::vector<uint32_t> chunk(
          differ.begin() + at,
          differ.begin() + std::min(differ.size(), at + kBucketsPerPull));
      for (uint32_t b : chunk) ask.add_buckets(b);
      auto mine_rows = replica_->RowHashes(d.table_id(), chunk);
      if (!mine_rows.ok()) {
        whole = false;
        break;
      }
      for (const auto& [row, h] : *mine_rows) ask.add_have(h);
      rpc::CrdtRowsResponse got;
      grpc::ClientContext dctx;
      dctx.set_deadline(Clock::now() + call_timeout);
      st = stub->Diff(&dctx, ask, &got);
      if (!st.ok()) break;
      rows += got.changes_size();
      bytes += ask.ByteSizeLong() + got.ByteSizeLong();
      Adopt(d.table(), d.table_id(), &got);
      const CrdtVector floor = FromWire(got.floor());
      if (MergeFrom(p->id, got.replica(), got.changes(), &floor) != 0) {
        whole = false;
      }
    }
  }
  if (paced && rows_read && st.ok()) {
    // The peer answered: what the pull cost sets the pause (kPullPause).
    p->next_rows =
        began + (kPullPause + 1) * (std::chrono::steady_clock::now() - began);
  }
  if (st.ok() && whole && !deferred) {
    if (absl::Status s = replica_->RecordPull(peer_seen); !s.ok()) {
      st = rpc::ToGrpc(s);
    }
  }
  absl::MutexLock l(&p->mu);
  p->rows_pulled += rows;
  p->bytes_pulled += bytes;
  if (st.ok()) {
    p->last_sync = std::chrono::steady_clock::now();
    p->differing = differing;
    p->in_sync = differing == 0;
    p->last_error.clear();
  } else {
    p->in_sync = false;
    p->last_error = absl::StrCat("anti-entropy: ", st.error_message());
  }
  if (!st.ok()) return rpc::FromGrpc(st);
  if (!replica.ok()) return replica;
  if (!whole) {
    return absl::AbortedError(absl::StrCat(
        "the pull from n", p->id,
        " did not take all it holds (a table or replica unknown here, or a "
        "row refused)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> CrdtReplication::HandOver(uint64_t node,
                                               Clock::time_point deadline) {
  if (node != node_->id) return TakeOver(node, deadline);
  // This node is the one leaving: a peer takes its rows.
  if (absl::Status s = Leave(node_->id); !s.ok()) return s;
  std::vector<uint64_t> peers;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, p] : peers_) peers.push_back(id);
  }
  std::string errors;
  for (uint64_t id : peers) {
    Peer* p = FindPeer(id);
    const std::string addr = node_->directory.Peer(id);
    if (p == nullptr || addr.empty()) continue;
    rpc::CrdtTakeOverRequest req;
    req.set_cluster_id(node_->layout.cluster_id());
    req.set_from_node(node_->id);
    req.set_node(node_->id);
    rpc::CrdtTakeOverResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(deadline);
    grpc::Status st = p->Stub(addr)->TakeOver(&ctx, req, &resp);
    if (st.ok()) return true;
    absl::StrAppend(&errors, errors.empty() ? "" : "; ", "n", id, ": ",
                    st.error_message());
  }
  return absl::UnavailableError(absl::StrCat(
      "no other node took over this node's CRDT rows (", errors, ")"));
}

absl::StatusOr<bool> CrdtReplication::TakeOver(uint64_t node,
                                               Clock::time_point deadline) {
  RefreshPeers();
  Peer* p = FindPeer(node);
  const std::string addr = node_->directory.Peer(node);
  if (p == nullptr || addr.empty()) return false;  // not a peer: nothing held
  rpc::CrdtLeaveRequest req;
  req.set_cluster_id(node_->layout.cluster_id());
  req.set_from_node(node_->id);
  rpc::CrdtLeaveResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::min(deadline, Clock::now() + kLeaveAnswerWithin));
  ctx.set_wait_for_ready(true);  // through a reconnect (a partition healed)
  grpc::Status st = p->Stub(addr)->Leave(&ctx, req, &resp);
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE ||
      st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    spdlog::warn(
        "[n={}] CRDT: n{} did not answer before its removal ({}): CRDT "
        "updates it acknowledged and no other node has are lost if its "
        "disk is",
        node_->id, node, st.error_message());
    return false;
  }
  if (!st.ok()) return rpc::FromGrpc(st);
  const auto left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) {
    return absl::DeadlineExceededError(
        absl::StrCat("no time left to take over n", node, "'s CRDT rows"));
  }
  absl::Status pulled = SyncWith(p, left);
  if (absl::IsPermissionDenied(pulled) ||
      (absl::IsFailedPrecondition(pulled) && !resp.registered())) {
    // Its replica was retired (what it acknowledged as that replica is
    // refused everywhere), or never registered (it acknowledged nothing).
    spdlog::warn("[n={}] CRDT: nothing to take over from n{}: {}", node_->id,
                 node, std::string(pulled.message()));
    return false;
  }
  if (!pulled.ok()) {
    return absl::Status(pulled.code(),
                        absl::StrCat("taking over n", node,
                                     "'s CRDT rows: ", pulled.message()));
  }
  if (absl::Status s = replica_->Sync(); !s.ok()) return s;
  spdlog::info("[n={}] CRDT: took over n{}'s rows before its removal",
               node_->id, node);
  return true;
}

absl::Status CrdtReplication::Leave(uint64_t taker) {
  {
    absl::MutexLock l(&mu_);
    leaving_until_ = std::chrono::steady_clock::now() + kLeaveHold;
  }
  spdlog::info(
      "[n={}] CRDT: leaving the cluster (rows taken over by {}); "
      "refusing updates",
      node_->id, taker == node_->id ? "a peer" : absl::StrCat("n", taker));
  return replica_->StopUpdates(absl::UnavailableError(
      "this node is leaving the cluster and takes no more CRDT updates: "
      "send them to another node"));
}

uint32_t CrdtReplication::MergeFrom(
    uint64_t from, uint64_t replica,
    const google::protobuf::RepeatedPtrField<rpc::CrdtRowChange>& changes,
    const CrdtVector* floor) {
  std::map<std::string, std::optional<kvpb::CrdtTable>> tables;
  std::vector<CrdtRowChange> decoded;
  std::vector<const kvpb::CrdtTable*> of;
  decoded.reserve(changes.size());
  uint32_t refused = 0;
  std::string why;
  const absl::Status member = CheckReplica(from, replica);
  for (const rpc::CrdtRowChange& w : changes) {
    if (!member.ok()) {
      ++refused;
      why = std::string(member.message());
      continue;
    }
    auto [it, fresh] = tables.try_emplace(w.table());
    if (fresh) {
      absl::StatusOr<kvpb::CrdtTable> t = Table(w.table());
      if (t.ok()) it->second = *t;
    }
    if (!it->second || it->second->id() != w.table_id() ||
        w.entry_keys_size() != w.entry_values_size()) {
      ++refused;
      why = absl::StrCat("table ", w.table(), " (id ", w.table_id(),
                         ") unknown here or the change is malformed");
      continue;
    }
    decoded.push_back(FromWire(w));
    of.push_back(&*it->second);
  }
  std::vector<CrdtReplica::Incoming> in;
  for (size_t i = 0; i < decoded.size(); ++i) {
    in.push_back({of[i], &decoded[i], floor});
  }
  for (const absl::Status& s : replica_->MergeAll(in)) {
    if (!s.ok()) {
      ++refused;
      why = s.ToString();
    }
  }
  if (refused > 0) {
    absl::MutexLock l(&mu_);
    refused_ += refused;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_refusal_log_ >= kRefusalLogEvery) {
      last_refusal_log_ = now;
      spdlog::warn("[n={}] CRDT: refused {} change(s) from n{} ({} in all): {}",
                   node_->id, refused, from, refused_, why);
    }
  }
  return refused;
}

absl::StatusOr<uint32_t> CrdtReplication::MergeFromMajority(
    const kvpb::CrdtTable& table, const std::string& row,
    Clock::time_point deadline) {
  std::vector<Peer*> peers;
  {
    absl::MutexLock l(&mu_);
    for (auto& [id, p] : peers_) peers.push_back(p.get());
  }
  const uint32_t majority = static_cast<uint32_t>(peers.size() + 1) / 2 + 1;
  uint32_t merged = 1;  // this node
  for (Peer* p : peers) {
    if (merged >= majority) break;
    const std::string addr = node_->directory.Peer(p->id);
    if (addr.empty()) continue;
    rpc::CrdtRowsRequest req;
    req.set_cluster_id(node_->layout.cluster_id());
    req.set_from_node(node_->id);
    req.set_table(table.name());
    req.set_table_id(table.id());
    req.add_rows(row);
    rpc::CrdtRowsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(
        std::min(deadline, Clock::now() + std::chrono::seconds(1)));
    if (!p->Stub(addr)->Rows(&ctx, req, &resp).ok()) continue;
    Adopt(table.name(), table.id(), &resp);
    const CrdtVector floor = FromWire(resp.floor());
    if (MergeFrom(p->id, resp.replica(), resp.changes(), &floor) == 0) {
      ++merged;
    }
  }
  if (merged < majority) {
    return absl::UnavailableError(
        absl::StrCat("a majority read needs ", majority, " of ",
                     peers.size() + 1, " nodes; only ", merged, " answered"));
  }
  return merged;
}

absl::Status CrdtReplication::CheckReplica(uint64_t from,
                                           uint64_t replica) const {
  StateMachine* meta = node_->Machine(kMetaGroup);
  if (meta == nullptr) {
    return absl::UnavailableError("no replica of the metadata group here");
  }
  absl::StatusOr<std::optional<kvpb::CrdtReplicaRecord>> r =
      meta->crdt_members().Replica(replica);
  if (!r.ok()) return r.status();
  if (!r->has_value() || (*r)->node() != from) {
    return absl::FailedPreconditionError(
        absl::StrCat("CRDT replica ", absl::Hex(replica), " of n", from,
                     " is not registered here (yet)"));
  }
  if ((*r)->retired()) {
    return absl::PermissionDeniedError(
        absl::StrCat("CRDT replica ", absl::Hex(replica), " of n", from,
                     " was retired; the node resyncs under a new one"));
  }
  return absl::OkStatus();
}

absl::Status CrdtReplication::Writable() const {
  const auto until = std::chrono::steady_clock::now() + kRegistrationWait;
  while (!registered_.load()) {
    if (removed_.load()) {
      return absl::UnavailableError(
          "this node was removed from the cluster: it takes no more CRDT "
          "updates (send them to another node)");
    }
    if (std::chrono::steady_clock::now() >= until) {
      return absl::UnavailableError(
          "this node's CRDT replica is not registered with the metadata "
          "group yet (it needs the group's leader; a node that was retired "
          "resyncs first)");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return absl::OkStatus();
}

void CrdtReplication::Housekeep() {
  StateMachine* meta = node_->Machine(kMetaGroup);
  if (meta == nullptr) return;
  const uint64_t id = replica_->id();
  absl::StatusOr<std::optional<kvpb::CrdtReplicaRecord>> rec =
      meta->crdt_members().Replica(id);
  if (!rec.ok()) return;
  // What this replica reported having seen, it had on disk then: a store
  // that now has less was put back from an older copy.
  std::string behind;
  if (rec->has_value() && !(*rec)->retired()) {
    const CrdtVector seen = replica_->Seen();
    for (const auto& [origin, n] : FromCounts((*rec)->seen())) {
      auto it = seen.find(origin);
      const uint64_t have = it == seen.end() ? 0 : it->second;
      if (have < n) {
        behind = absl::StrCat("it reported dots of ", absl::Hex(origin),
                              " up to ", n, " and has them up to ", have);
        break;
      }
    }
  }
  if (rec->has_value() && ((*rec)->retired() || !behind.empty())) {
    // Retired while this node was away, or its store is older than what
    // it reported: what it holds may be from before the cut, so it goes,
    // and the replica starts over under a new id (which retires the old).
    if (!behind.empty()) {
      spdlog::error(
          "[n={}] CRDT replica {:x} is older than what it reported ({}): its "
          "store was put back from an older copy",
          node_->id, id, behind);
    }
    registered_ = false;
    {
      absl::MutexLock l(&mu_);
      for (auto& [pid, p] : peers_) {
        absl::MutexLock pl(&p->mu);
        p->queue.clear();
      }
    }
    absl::Status s = replica_->Reset();
    spdlog::warn(
        "[n={}] CRDT replica {:x} was retired or is behind: threw its rows "
        "away, resyncing from the other nodes as replica {:x} ({})",
        node_->id, id, replica_->id(), s.ok() ? "ok" : s.ToString());
    absl::MutexLock l(&mu_);
    ++resyncs_;
    cut_epoch_ = 0;
    return;
  }
  // A node removed from the cluster takes no more updates: what it
  // acknowledged now could be lost with its disk. It goes on pushing what
  // it has (peers accept that, Check).
  removed_ = meta->meta().WasRemoved(node_->id);
  bool resume = false;
  {
    absl::MutexLock l(&mu_);
    if (leaving_until_ && !removed_ &&
        std::chrono::steady_clock::now() >= *leaving_until_) {
      leaving_until_.reset();
      resume = true;
    }
  }
  if (resume) {
    replica_->ResumeUpdates();
    spdlog::warn(
        "[n={}] CRDT: left for the removal of this node, which did "
        "not happen: taking updates again",
        node_->id);
  }
  registered_ = !removed_ && rec->has_value() && (*rec)->node() == node_->id &&
                !(*rec)->retired();

  absl::StatusOr<kvpb::CrdtCut> cut = meta->crdt_members().Cut();
  uint64_t applied_epoch;
  {
    absl::MutexLock l(&mu_);
    applied_epoch = cut_epoch_;
  }
  if (registered_ && cut.ok() && cut->epoch() != applied_epoch) {
    absl::StatusOr<uint64_t> n = replica_->Collect(FromCounts(cut->floor()));
    if (n.ok()) {
      absl::MutexLock l(&mu_);
      cut_epoch_ = cut->epoch();
    } else {
      spdlog::warn("[n={}] CRDT: not collecting below cut {}: {}", node_->id,
                   cut->epoch(), n.status().ToString());
    }
  }

  if (meta->leading_term() == 0) return;
  std::map<uint64_t, std::pair<uint64_t, CrdtVector>> reports;
  {
    absl::MutexLock l(&mu_);
    reports = reports_;
  }
  reports[node_->id] = {id, replica_->Seen()};
  {
    absl::MutexLock l(&mu_);
    if (reports == proposed_ &&
        std::chrono::steady_clock::now() - proposed_at_ < kReportEvery) {
      return;
    }
  }
  kvpb::Command cmd;
  for (const auto& [node, report] : reports) {
    kvpb::CrdtReplicaReport* r = cmd.mutable_crdt_reports()->add_reports();
    r->set_node(node);
    r->set_replica(report.first);
    ToCounts(report.second, r->mutable_seen());
  }
  absl::StatusOr<kvpb::CommandResult> done =
      node_->Write(kMetaGroup, std::move(cmd), Clock::now() + kPeerCallTimeout);
  if (done.ok()) {
    absl::MutexLock l(&mu_);
    proposed_ = std::move(reports);
    proposed_at_ = std::chrono::steady_clock::now();
  }
}

rpc::CrdtStatusResponse CrdtReplication::Status() const {
  rpc::CrdtStatusResponse out;
  out.set_node(node_->id);
  out.set_replica(replica_->id());
  const CrdtReplica::Stats s = replica_->stats();
  out.set_entries(s.entries);
  out.set_bytes(s.bytes);
  out.set_elements(s.elements);
  out.set_element_bytes(s.element_bytes);
  out.set_tombstones(s.tombstones);
  out.set_collected(s.collected);
  ToWire(replica_->floor(), out.mutable_floor());
  out.set_registered(registered_.load());
  if (StateMachine* meta = node_->Machine(kMetaGroup)) {
    if (auto all = meta->crdt_members().Replicas(); all.ok()) {
      for (const kvpb::CrdtReplicaRecord& r : *all) {
        rpc::CrdtReplicaStatus* rs = out.add_replicas();
        rs->set_node(r.node());
        rs->set_replica(r.replica());
        rs->set_retired(r.retired());
        ToWire(FromCounts(r.seen()), rs->mutable_seen());
      }
    }
  }
  out.set_removed(removed_.load());
  absl::MutexLock l(&mu_);
  out.set_leaving(leaving_until_.has_value());
  out.set_cut_epoch(cut_epoch_);
  out.set_resyncs(resyncs_);
  out.set_refused_changes(refused_);
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [id, p] : peers_) {
    absl::MutexLock pl(&p->mu);
    rpc::CrdtPeerStatus* ps = out.add_peers();
    ps->set_node(id);
    ps->set_pending_deltas(p->queue.size());
    ps->set_sent_deltas(p->sent);
    ps->set_bytes_pushed(p->bytes_pushed);
    ps->set_dropped_deltas(p->dropped);
    ps->set_last_sync_ago_ms(
        p->last_sync ? std::chrono::duration_cast<std::chrono::milliseconds>(
                           now - *p->last_sync)
                           .count()
                     : -1);
    ps->set_differing_buckets(p->differing);
    ps->set_in_sync(p->in_sync);
    ps->set_rows_pulled(p->rows_pulled);
    ps->set_bytes_pulled(p->bytes_pulled);
    ps->set_last_error(p->last_error);
  }
  return out;
}

}  // namespace tally::kv::server
