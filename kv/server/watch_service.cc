// The Watch service: streams of a shard's key changes read from its watch
// history (kv/watch/history.h) as this node has applied it, and Compact.

#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/calls.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/kv.grpc.pb.h"

namespace tally::kv::server {

namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kDefaultProgressMs = 10'000;
constexpr uint32_t kMinProgressMs = 100;
// Changes read per answer at most (a revision's changes are never split).
constexpr size_t kMaxChangesPerAnswer = 1000;

void FillKeyValue(const kvpb::WatchRecord& r, int64_t revision,
                  rpc::KeyValue* kv) {
  kv->set_key(r.key());
  kv->set_mod_revision(revision);
  if (r.deleted()) return;
  kv->set_value(r.value());
  kv->set_create_revision(r.create_revision());
  kv->set_version(r.version());
  kv->set_lease(r.lease());
}

// One Watch stream. Reads run on the node's read threads, one at a time,
// never under the hub's poke; one write in flight. A poke while a read or a
// write is under way is remembered and served after it.
class Watcher final : public grpc::ServerWriteReactor<rpc::WatchResponse> {
 public:
  Watcher(Node* node, grpc::CallbackServerContext* ctx, uint64_t group,
          const rpc::WatchRequest& req)
      : node_(node),
        ctx_(ctx),
        group_(group),
        key_(req.key()),
        end_(req.range_end()),
        prev_(req.prev_kv()),
        progress_(std::chrono::milliseconds(std::max(
            kMinProgressMs,
            req.progress_ms() == 0 ? kDefaultProgressMs : req.progress_ms()))) {
    start_ = req.start_revision();
    const StateMachine* sm = node_->Machine(group_);
    {
      absl::MutexLock l(&mu_);
      if (sm == nullptr) {
        Stop(node_->NotLeader(
            ctx_, group_,
            absl::UnavailableError(absl::StrCat(
                "this node holds no replica of group ", group_, " yet"))));
        return;
      }
      if (sm->watch().enabled()) {
        Begin(*sm);
        return;
      }
      reading_ = true;  // the stream is busy until Enabled
    }
    // The shard's first watch: the history is turned on through raft (here
    // if this node leads the shard, else the client is sent to the leader),
    // and the stream begins once that is applied.
    kvpb::Command cmd;
    cmd.mutable_watch_compact()->set_enable(true);
    node_->WriteAsync(group_, std::move(cmd),
                      [this](absl::StatusOr<kvpb::CommandResult> r) {
                        Enabled(std::move(r));
                      });
  }

  // Starts the stream: checks where it starts from, sends the created
  // answer and joins the hub.
  void Begin(const StateMachine& sm) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    after_ = start_ > 0 ? start_ - 1 : sm.revision();
    // A start already compacted is refused before the stream starts (a
    // read of no change).
    if (absl::StatusOr<WatchRead> none =
            sm.WatchChanges(after_, key_, end_, false, 0);
        !none.ok()) {
      return Refuse(none.status());
    }
    // The first answer says where the stream starts.
    resp_.set_created(true);
    FillHeader(after_);
    Write();
    // Under mu_, safely: the hub pokes a watcher under the hub's mutex, then
    // takes its mu_, but never this one before it is added.
    node_->watchers.Add(this, group_, [this](bool tick) { Poke(tick); });
  }

  // The history was turned on (or could not be).
  void Enabled(absl::StatusOr<kvpb::CommandResult> r) {
    bool remove = false;
    {
      absl::MutexLock l(&mu_);
      reading_ = false;
      const StateMachine* sm = node_->Machine(group_);
      if (done_) {
        remove = true;
      } else if (finished_ || stop_) {
      } else if (!r.ok()) {
        Stop(node_->Refuse(ctx_, group_, r.status()));
      } else if (r->error_code() != 0) {
        Stop(rpc::ToGrpc(
            absl::Status(static_cast<absl::StatusCode>(r->error_code()),
                         r->error_message()),
            ctx_));
      } else if (sm == nullptr) {
        Stop(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the group's replica is gone"));
      } else {
        Begin(*sm);
      }
    }
    if (remove) delete this;
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    if (!ok) {
      Stop(grpc::Status::CANCELLED);
    } else if (stop_) {
      Stop(*stop_);
    } else if (std::exchange(again_, false) || more_) {
      StartRead();
    }
  }
  void OnCancel() override {
    absl::MutexLock l(&mu_);
    Stop(grpc::Status::CANCELLED);
  }
  void OnDone() override {
    node_->watchers.Remove(this, group_);
    bool now;
    {
      absl::MutexLock l(&mu_);
      done_ = true;
      now = !reading_;
    }
    if (now) delete this;  // else the read in flight deletes it
  }

 private:
  // A change of the group's history, or the hub's tick: a tick reads only
  // when a progress answer is due or a read could not be started.
  void Poke(bool tick) {
    absl::MutexLock l(&mu_);
    if (finished_ || stop_) return;
    if (tick && CutOff()) {
      return Stop(node_->NotLeader(
          ctx_, group_,
          absl::UnavailableError(absl::StrCat(
              "this node has seen no leader of group ", group_,
              " for a while (cut off?): watch from another node"))));
    }
    if (reading_ || writing_) {
      again_ = again_ || !tick;
      return;
    }
    if (tick && !again_ && Clock::now() - last_sent_ < progress_) return;
    again_ = false;
    StartRead();
  }

  void StartRead() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    reading_ = true;
    more_ = false;
    if (!node_->reads->Post([this] { Read(); })) {
      reading_ = false;  // the read threads are full: the next tick retries
      again_ = true;
    }
  }

  void Read() {
    int64_t after;
    {
      absl::MutexLock l(&mu_);
      after = after_;
    }
    const StateMachine* sm = node_->Machine(group_);
    // Every key's changes, shared with the group's other streams.
    WatchReads::Result read =
        sm == nullptr
            ? std::make_shared<const absl::StatusOr<WatchRead>>(
                  absl::UnavailableError("the group's replica is gone"))
            : node_->watch_reads.Get(group_, *sm, after, prev_,
                                     kMaxChangesPerAnswer);
    bool remove = false;
    {
      absl::MutexLock l(&mu_);
      reading_ = false;
      if (done_) {
        remove = true;
      } else if (!finished_ && !stop_) {
        Serve(*read);
      }
    }
    if (remove) delete this;
  }

  void Serve(const absl::StatusOr<WatchRead>& read)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!read.ok()) return Refuse(read.status());
    const StateMachine* sm = node_->Machine(group_);
    more_ = sm != nullptr && read->through < sm->revision();
    const auto now = Clock::now();
    const bool progress_due = now - last_sent_ >= progress_;
    resp_.Clear();
    for (const WatchChange& c : read->changes) {
      if (!InWatchRange(c.record.key(), key_, end_)) continue;
      rpc::WatchEvent* e = resp_.add_events();
      e->set_type(c.record.deleted() ? rpc::WatchEvent::DELETE
                                     : rpc::WatchEvent::PUT);
      FillKeyValue(c.record, c.revision, e->mutable_kv());
      if (c.prev) FillKeyValue(*c.prev, c.prev_revision, e->mutable_prev_kv());
    }
    after_ = read->through;
    if (resp_.events().empty() && !progress_due) {
      if (more_) StartRead();
      return;
    }
    FillHeader(after_);
    Write();
  }

  // Whether this node has seen no leader of the group for longer than twice
  // the longest election timeout: the stream ends, so that the client moves
  // to a node that sees the changes rather than wait on one that cannot.
  bool CutOff() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    absl::StatusOr<raft::host::GroupInfo> g = node_->host->Group(group_);
    const auto now = Clock::now();
    if (g.ok() && g->leader != raft::kNoNode) {
      leader_seen_ = now;
      return false;
    }
    const auto timeout = std::chrono::milliseconds(
        4 * int64_t{node_->options.tick_ms} * node_->options.election_tick);
    return now - leader_seen_ > timeout;
  }

  // Ends the stream with `s`; a compacted start names the oldest revision
  // left in trailing metadata too.
  void Refuse(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const StateMachine* sm = node_->Machine(group_);
    if (absl::IsOutOfRange(s) && sm != nullptr) {
      // The compaction only grows: read now, it is at least as far.
      if (absl::StatusOr<int64_t> c =
              sm->watch().Compacted(*node_->data->GetSnapshot());
          c.ok()) {
        ctx_->AddTrailingMetadata("tally-oldest-revision",
                                  std::to_string(*c + 1));
      }
    }
    Stop(rpc::ToGrpc(s, ctx_));
  }

  void FillHeader(int64_t revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    rpc::ResponseHeader* h = resp_.mutable_header();
    h->set_revision(revision);
    h->set_group(group_);
    h->set_node(node_->id);
    h->set_read_mode(rpc::SERIALIZABLE);
  }

  void Write() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    writing_ = true;
    last_sent_ = Clock::now();
    StartWrite(&resp_);
  }

  // Finishes the stream, once its write in flight (if any) is done.
  void Stop(grpc::Status st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (writing_) {
      if (!stop_) stop_ = std::move(st);
      return;
    }
    finished_ = true;
    Finish(std::move(st));
  }

  Node* const node_;
  grpc::CallbackServerContext* const ctx_;
  const uint64_t group_;
  const std::string key_, end_;
  const bool prev_;
  int64_t start_ = 0;  // as asked (0: now)
  const Clock::duration progress_;
  absl::Mutex mu_;
  rpc::WatchResponse resp_ ABSL_GUARDED_BY(mu_);
  // Every change up to this revision was sent.
  int64_t after_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point last_sent_ ABSL_GUARDED_BY(mu_);
  Clock::time_point leader_seen_ ABSL_GUARDED_BY(mu_) = Clock::now();
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // Poked during a read or write; the last read stopped at its limit.
  bool again_ ABSL_GUARDED_BY(mu_) = false;
  bool more_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // OnDone ran
  std::optional<grpc::Status> stop_ ABSL_GUARDED_BY(mu_);
};

class WatchService final : public rpc::Watch::CallbackService {
 public:
  explicit WatchService(Node* node) : node_(node), calls_(node) {}

  grpc::ServerWriteReactor<rpc::WatchResponse>* Watch(
      grpc::CallbackServerContext* ctx, const rpc::WatchRequest* req) override {
    absl::StatusOr<uint64_t> group = Group(req->group(), req->key());
    grpc::Status st =
        group.ok() ? CheckRange(*req) : rpc::ToGrpc(group.status());
    if (st.ok() && req->start_revision() < 0) {
      st = Calls::Invalid("start_revision must not be negative");
    }
    if (st.ok()) {
      st = node_->auth.Check(*ctx, ToRead(kvpb::AuthPermission::KEY, req->key(),
                                          req->range_end()));
    }
    if (!st.ok()) {
      return RefusedStream<rpc::WatchResponse>(st);
    }
    return new Watcher(node_, ctx, *group, *req);
  }

  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* ctx,
                                    const rpc::CompactRequest* req,
                                    rpc::CompactResponse* resp) override {
    auto* reply =
        new Reply<rpc::CompactResponse>(ctx, resp, &node_->rpcs, "Compact");
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    absl::StatusOr<uint64_t> group = Group(req->group(), req->key());
    if (!group.ok()) {
      return Calls::Finish(reply, rpc::ToGrpc(group.status()));
    }
    if (req->revision() <= 0) {
      return Calls::Finish(reply,
                           Calls::Invalid("revision must be at least 1"));
    }
    kvpb::Command cmd;
    cmd.mutable_watch_compact()->set_revision(req->revision());
    calls_.Write(reply, *group, std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::CompactResponse* out) {
                   ToApi(r.watch_compact().header(), out->mutable_header());
                   out->set_compacted(r.watch_compact().compacted());
                 });
    return reply;
  }

 private:
  // The data group named, or the one holding `key`.
  absl::StatusOr<uint64_t> Group(uint64_t group, const std::string& key) const {
    if (group == 0) return node_->RangeFor(key).group();
    for (const rpc::RangeDescriptor& r : node_->layout.ranges()) {
      if (r.group() == group) return group;
    }
    return absl::NotFoundError(absl::StrCat(
        "group ", group, " is not a shard of this cluster (kvctl ranges)"));
  }
  grpc::Status CheckRange(const rpc::WatchRequest& req) const {
    if (req.range_end().empty() && req.key().empty()) {
      return Calls::Invalid("key must not be empty (or give a range end)");
    }
    if (req.key().size() > node_->options.max_key_bytes) {
      return Calls::Invalid(
          absl::StrCat("key of ", req.key().size(), " bytes exceeds the ",
                       node_->options.max_key_bytes, "-byte limit"));
    }
    if (!req.range_end().empty() && req.range_end() != std::string(1, '\0') &&
        req.range_end() <= req.key()) {
      return Calls::Invalid(
          "range end must be empty (the key alone), \"\\0\" (every key from "
          "the key on) or after the key");
    }
    return grpc::Status::OK;
  }

  Node* const node_;
  Calls calls_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewWatchService(Node* node) {
  return std::make_unique<WatchService>(node);
}

}  // namespace tally::kv::server
