#include "rpc/grpc_transport.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "rpc/raft_codec.h"
#include "rpc/status.h"
#include "spdlog/spdlog.h"
#include "util/thread_name.h"
#include "util/waker.h"

namespace tally::rpc {

namespace {

constexpr size_t kMaxQueuedMessages = 10000;
constexpr auto kReconnectDelay = std::chrono::milliseconds(200);
constexpr auto kSnapshotDeadline = std::chrono::minutes(30);
constexpr auto kPingEvery = std::chrono::seconds(2);
constexpr auto kPingDeadline = std::chrono::seconds(1);

}  // namespace

std::shared_ptr<grpc::Channel> DialPeer(
    const std::string& address,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 2000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 500);
  return grpc::CreateCustomChannel(address, credentials, args);
}

// One peer node: a queue, a thread that keeps a stream open to it, and
// one that pings it on the stream's connection.
class GrpcTransport::Peer {
 public:
  Peer(GrpcTransport* t, raft::NodeId id) : t_(t), id_(id) {
    thread_ = std::thread([this] {
      util::NameThisThread(absl::StrCat("peer-send-", id_));
      Run();
    });
    pinger_ = std::thread([this] {
      util::NameThisThread(absl::StrCat("peer-ping-", id_));
      PingLoop();
    });
  }
  ~Peer() {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
      if (ctx_) ctx_->TryCancel();
    }
    ping_sleep_.Stop();
    thread_.join();
    pinger_.join();
  }

  PeerStats Stats() {
    absl::MutexLock l(&mu_);
    PeerStats s = stats_;
    s.peer = id_;
    s.queued = queue_.size();
    return s;
  }
  void Enqueue(std::vector<raft::host::GroupMessage> msgs) {
    std::vector<raft::host::GroupMessage> dropped;
    {
      absl::MutexLock l(&mu_);
      for (auto& m : msgs) {
        if (queue_.size() >= kMaxQueuedMessages) {
          // Raft resends what matters, but a leader waits for news of a
          // snapshot it sent before it sends another.
          if (queue_.front().msg.type == raft::MessageType::kSnapshot) {
            dropped.push_back(std::move(queue_.front()));
          }
          queue_.pop_front();
          ++stats_.dropped;
        }
        queue_.push_back(std::move(m));
      }
    }
    for (const auto& m : dropped) {
      if (t_->host_ != nullptr) {
        t_->host_->ReportSnapshot(m.group, id_, false);
      }
    }
  }

 private:
  void Run() {
    while (true) {
      const std::string address = t_->directory_->Peer(id_);
      {
        absl::MutexLock l(&mu_);
        if (stopping_) return;
      }
      if (address.empty()) {  // not known yet: the member table brings it
        std::this_thread::sleep_for(kReconnectDelay);
        continue;
      }
      std::shared_ptr<grpc::Channel> channel =
          DialPeer(address, t_->credentials_);
      auto stub = RaftTransport::NewStub(channel);
      auto ctx = std::make_unique<grpc::ClientContext>();
      BatchAck ack;
      {
        absl::MutexLock l(&mu_);
        if (stopping_) return;
        ctx_ = ctx.get();
        channel_ = channel;
        ++stats_.connects;
      }
      std::unique_ptr<grpc::ClientWriter<MessageBatch>> writer =
          stub->Send(ctx.get(), &ack);
      bool healthy = writer != nullptr;
      while (healthy) {
        std::vector<raft::host::GroupMessage> batch;
        {
          absl::MutexLock l(&mu_);
          auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
            return !queue_.empty() || stopping_;
          };
          mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(1));
          if (stopping_) break;
          while (!queue_.empty() && batch.size() < 512) {
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
          }
        }
        if (batch.empty()) continue;
        MessageBatch mb;
        mb.set_cluster_id(t_->cluster_id_);
        mb.set_from(t_->self_);
        mb.set_to(id_);
        mb.set_from_client_address(t_->client_address_);
        for (const auto& m : batch) ToProto(m, mb.add_messages());
        const bool written = writer->Write(mb);
        {
          absl::MutexLock l(&mu_);
          (written ? stats_.sent : stats_.dropped) += batch.size();
        }
        if (!written) {
          healthy = false;
          Failed(batch);
        }
      }
      writer->WritesDone();
      writer->Finish().IgnoreError();
      std::vector<raft::host::GroupMessage> dropped;
      {
        absl::MutexLock l(&mu_);
        ctx_ = nullptr;
        if (stopping_) return;
        // Drop what queued while the peer was unreachable: raft resends.
        dropped.assign(std::make_move_iterator(queue_.begin()),
                       std::make_move_iterator(queue_.end()));
        queue_.clear();
        stats_.dropped += dropped.size();
      }
      Failed(dropped);
      std::this_thread::sleep_for(kReconnectDelay);
    }
  }

  // Every kPingEvery (by the steady clock), a Ping on the connection the
  // stream last opened.
  void PingLoop() {
    while (!ping_sleep_.SleepFor(kPingEvery)) {
      absl::MutexLock l(&mu_);
      if (stopping_ || channel_ == nullptr) continue;
      std::shared_ptr<grpc::Channel> channel = channel_;
      mu_.Unlock();
      PingRequest req;
      req.set_cluster_id(t_->cluster_id_);
      req.set_from(t_->self_);
      PingResponse resp;
      grpc::ClientContext ctx;
      const auto start = std::chrono::steady_clock::now();
      ctx.set_deadline(std::chrono::system_clock::now() + kPingDeadline);
      const bool ok =
          RaftTransport::NewStub(channel)->Ping(&ctx, req, &resp).ok();
      const std::chrono::duration<double> rtt =
          std::chrono::steady_clock::now() - start;
      mu_.Lock();
      stats_.rtt_seconds = ok ? rtt.count() : -1;
      stats_.ping_failures += ok ? 0 : 1;
    }
  }

  void Failed(const std::vector<raft::host::GroupMessage>& msgs) {
    if (t_->host_ == nullptr) return;
    t_->host_->ReportUnreachable(id_);
    for (const auto& m : msgs) {
      if (m.msg.type == raft::MessageType::kSnapshot) {
        t_->host_->ReportSnapshot(m.group, id_, false);
      }
    }
  }

  GrpcTransport* const t_;
  const raft::NodeId id_;
  util::Waker ping_sleep_;
  std::thread thread_, pinger_;
  absl::Mutex mu_;
  std::deque<raft::host::GroupMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  PeerStats stats_ ABSL_GUARDED_BY(mu_);  // without `peer` and `queued`
};

class GrpcTransport::Service final : public RaftTransport::Service {
 public:
  explicit Service(GrpcTransport* t) : t_(t) {}

  grpc::Status Send(grpc::ServerContext*,
                    grpc::ServerReader<MessageBatch>* reader,
                    BatchAck*) override {
    MessageBatch mb;
    raft::NodeId from = raft::kNoNode;
    while (reader->Read(&mb)) {
      from = mb.from();
      if (mb.cluster_id() != t_->cluster_id_) {
        return grpc::Status(
            grpc::StatusCode::FAILED_PRECONDITION,
            absl::StrCat("node ", mb.from(), " belongs to cluster ",
                         mb.cluster_id(), ", this node to ", t_->cluster_id_));
      }
      if (mb.to() != t_->self_) {
        return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            absl::StrCat("messages for node ", mb.to(),
                                         " reached node ", t_->self_));
      }
      t_->directory_->SetClient(mb.from(), mb.from_client_address());
      std::vector<raft::host::GroupMessage> msgs;
      msgs.reserve(mb.messages_size());
      for (const RaftMessage& m : mb.messages()) {
        absl::StatusOr<raft::host::GroupMessage> gm = FromProto(m);
        if (gm.ok()) msgs.push_back(std::move(*gm));
      }
      if (t_->host_ != nullptr) t_->host_->Deliver(std::move(msgs));
    }
    // The peer went away (crashed, restarted, cut off): groups it led and
    // that went quiet must notice.
    if (from != raft::kNoNode && t_->host_ != nullptr) {
      t_->host_->ReportUnreachable(from);
    }
    return grpc::Status::OK;
  }

  grpc::Status FetchSnapshot(
      grpc::ServerContext*, const SnapshotRequest* req,
      grpc::ServerWriter<SnapshotChunk>* writer) override {
    if (req->cluster_id() != t_->cluster_id_) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "snapshot request from another cluster");
    }
    if (t_->host_ == nullptr) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "starting");
    }
    absl::Status st = t_->host_->ExportSnapshot(
        req->group(), req->from(), req->min_index(),
        [&](raft::host::SnapshotChunk c) {
          SnapshotChunk out;
          out.set_applied_index(c.applied_index);
          for (auto& [k, v] : c.kvs) {
            out.add_keys(std::move(k));
            out.add_values(std::move(v));
          }
          out.set_done(c.done);
          if (!writer->Write(out)) {
            return absl::UnavailableError("snapshot receiver went away");
          }
          return absl::OkStatus();
        });
    return ToGrpc(st);
  }

  grpc::Status Ping(grpc::ServerContext*, const PingRequest* req,
                    PingResponse*) override {
    if (req->cluster_id() != t_->cluster_id_) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          "ping from another cluster");
    }
    return grpc::Status::OK;
  }

 private:
  GrpcTransport* const t_;
};

GrpcTransport::GrpcTransport(
    raft::NodeId self, std::string cluster_id, std::string client_address,
    PeerDirectory* peers, std::shared_ptr<grpc::ChannelCredentials> credentials)
    : self_(self),
      cluster_id_(std::move(cluster_id)),
      client_address_(std::move(client_address)),
      directory_(peers),
      credentials_(std::move(credentials)),
      service_(std::make_unique<Service>(this)) {}

GrpcTransport::~GrpcTransport() { Stop(); }

grpc::Service* GrpcTransport::service() { return service_.get(); }

void GrpcTransport::Stop() {
  std::map<raft::NodeId, std::unique_ptr<Peer>> peers;
  {
    absl::MutexLock l(&mu_);
    stopped_ = true;
    peers.swap(peers_);
  }
  peers.clear();  // joins each peer's thread
}

std::vector<PeerStats> GrpcTransport::Stats() {
  // Under mu_: Stop takes the peers out under it before joining them.
  absl::MutexLock l(&mu_);
  std::vector<PeerStats> out;
  for (auto& [id, p] : peers_) out.push_back(p->Stats());
  return out;
}

GrpcTransport::Peer* GrpcTransport::GetPeer(raft::NodeId to) {
  absl::MutexLock l(&mu_);
  if (stopped_) return nullptr;
  auto& p = peers_[to];
  if (!p) p = std::make_unique<Peer>(this, to);
  return p.get();
}

void GrpcTransport::Send(raft::NodeId to,
                         std::vector<raft::host::GroupMessage> msgs) {
  if (Peer* p = GetPeer(to)) p->Enqueue(std::move(msgs));
}

absl::Status GrpcTransport::FetchSnapshot(raft::NodeId from,
                                          raft::host::GroupId group,
                                          raft::Index min_index,
                                          const raft::host::ChunkSink& sink) {
  const std::string address = directory_->Peer(from);
  if (address.empty()) {
    return absl::UnavailableError(absl::StrCat("no address for node ", from));
  }
  auto stub = RaftTransport::NewStub(DialPeer(address, credentials_));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + kSnapshotDeadline);
  {
    absl::MutexLock l(&mu_);
    if (stopped_ || fetches_cancelled_) {
      return absl::CancelledError("transport is stopping");
    }
    fetches_.insert(&ctx);
  }
  struct Unregister {
    GrpcTransport* t;
    grpc::ClientContext* ctx;
    ~Unregister() {
      absl::MutexLock l(&t->mu_);
      t->fetches_.erase(ctx);
    }
  } unregister{this, &ctx};
  SnapshotRequest req;
  req.set_cluster_id(cluster_id_);
  req.set_group(group);
  req.set_min_index(min_index);
  req.set_from(self_);
  auto reader = stub->FetchSnapshot(&ctx, req);
  uint64_t keys = 0, bytes = 0;
  raft::Index applied = 0;
  absl::Status st;
  SnapshotChunk c;
  bool done = false;
  while (!done) {
    if (!reader->Read(&c)) {
      grpc::Status gs = reader->Finish();
      st = absl::UnavailableError(absl::StrCat(
          "snapshot stream from node ", from,
          " ended early: ", gs.ok() ? "no last chunk" : gs.error_message()));
      break;
    }
    raft::host::SnapshotChunk out;
    out.applied_index = c.applied_index();
    for (int i = 0; i < c.keys_size() && i < c.values_size(); ++i) {
      out.kvs.emplace_back(c.keys(i), c.values(i));
    }
    out.done = done = c.done();
    keys += out.kvs.size();
    bytes += c.ByteSizeLong();
    applied = std::max(applied, out.applied_index);
    st = sink(std::move(out));
    if (!st.ok()) {
      ctx.TryCancel();
      reader->Finish().IgnoreError();
      break;
    }
  }
  if (!st.ok()) {
    spdlog::warn("[g={} n={}] snapshot from n{} failed: {}", group, self_, from,
                 st.ToString());
    return st;
  }
  reader->Finish().IgnoreError();
  spdlog::info(
      "[g={} n={}] fetched snapshot from n{} at applied index {}: {} keys, "
      "{} bytes",
      group, self_, from, applied, keys, bytes);
  return st;
}

void GrpcTransport::CancelFetches() {
  absl::MutexLock l(&mu_);
  fetches_cancelled_ = true;
  for (grpc::ClientContext* ctx : fetches_) ctx->TryCancel();
}

}  // namespace tally::rpc
