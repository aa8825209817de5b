#ifndef TALLY_KV_SERVER_INTERNAL_CALLS_H_
#define TALLY_KV_SERVER_INTERNAL_CALLS_H_

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/kv.pb.h"
#include "rpc/status.h"

namespace tally::kv::server {

// How the client services answer a unary call: a read of a group in a read
// mode, or a write proposed to a group, each bounded by the call's deadline.
//
// Thread safety: thread-safe.
class Calls {
 public:
  using Clock = std::chrono::system_clock;
  // The longest a call waits for its operation when its deadline is later.
  static constexpr auto kDefaultTimeout = std::chrono::seconds(5);

  explicit Calls(Node* node) : node_(node) {}

  static grpc::Status Invalid(const std::string& msg) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
  }
  template <typename Resp>
  static grpc::ServerUnaryReactor* Finish(Reply<Resp>* reply, grpc::Status st) {
    Reply<Resp>::Answer(reply->shared(), std::move(st));
    return reply;
  }

  // A transaction within kvd --max-txn-ops and --max-txn-bytes.
  grpc::Status CheckTxnSize(const rpc::TxnRequest& req) const {
    const size_t most = node_->options.max_txn_ops;
    for (auto [what, n] :
         {std::pair{"compares", req.compare_size()},
          std::pair{"operations if it succeeds", req.success_size()},
          std::pair{"operations if it fails", req.failure_size()}}) {
      if (static_cast<size_t>(n) > most) {
        return Invalid(absl::StrCat("a transaction of ", n, " ", what,
                                    " exceeds the limit of ", most,
                                    " (kvd --max-txn-ops)"));
      }
    }
    size_t bytes = 0;
    for (const auto* ops : {&req.success(), &req.failure()}) {
      for (const rpc::TxnOp& op : *ops) {
        if (op.has_put())
          bytes += op.put().key().size() + op.put().value().size();
      }
    }
    if (bytes > node_->options.max_txn_bytes) {
      return Invalid(absl::StrCat("a transaction putting ", bytes,
                                  " bytes of keys and values exceeds the "
                                  "limit of ",
                                  node_->options.max_txn_bytes,
                                  " (kvd --max-txn-bytes)"));
    }
    return grpc::Status::OK;
  }

  // The header of a read of `group` at `index`.
  void Header(uint64_t group, raft::Index index, rpc::ReadMode mode,
              rpc::ResponseHeader* h) const {
    h->set_group(group);
    h->set_raft_index(index);
    h->set_node(node_->id);
    h->set_read_mode(mode);
    h->set_revision(node_->Machine(group)->revision());
  }

  // Answers DEADLINE_EXCEEDED if the call is still open at its deadline (at
  // most kDefaultTimeout away).
  template <typename Resp>
  void Expire(Reply<Resp>* reply, const char* what) {
    auto s = reply->shared();
    const auto fallback = Clock::now() + kDefaultTimeout;
    const auto d = s->ctx->deadline();
    const Deadlines::Timer timer = deadlines_.At(
        d < fallback ? d : fallback, [weak = std::weak_ptr(s), what] {
          if (auto s = weak.lock()) {
            Reply<Resp>::Answer(std::move(s), [what](auto* ctx, Resp*) {
              return rpc::ToGrpc(
                  rpc::OutcomeUnknown(absl::StrCat(
                      what,
                      " did not finish in time; the outcome is unknown "
                      "(retry with the same session to find out)")),
                  ctx);
            });
          }
        });
    absl::MutexLock l(&s->mu);
    if (s->answered) {
      deadlines_.Cancel(timer);
      return;
    }
    s->timers = &deadlines_;
    s->timer = timer;
  }

  // Takes a place for the call in its class (Admission), or answers it at
  // once: RESOURCE_EXHAUSTED with a retry hint (rpc::kRetryAfterKey) when the
  // class is full, DEADLINE_EXCEEDED when the call's deadline has passed.
  // False when it answered.
  template <typename Resp>
  bool Admit(Reply<Resp>* reply, bool write, bool scan) {
    auto s = reply->shared();
    const Priority p = PriorityOf(s->method, write, scan);
    Admission* admission = node_->admission.get();
    absl::Status st = admission->Admit(p, s->ctx->deadline());
    if (st.ok()) {
      absl::MutexLock l(&s->mu);
      if (!s->answered) {
        s->admission = admission;
        s->priority = p;
        return true;
      }
      // Cancelled meanwhile.
      admission->Release(p, 0);
      return false;
    }
    Reply<Resp>::Answer(s, [&](grpc::CallbackServerContext* ctx, Resp*) {
      if (absl::IsResourceExhausted(st)) {
        ctx->AddTrailingMetadata(
            rpc::kRetryAfterKey,
            absl::StrCat(admission->RetryAfter(p).count()));
      }
      return rpc::ToGrpc(st);
    });
    return false;
  }

  // Serves a read in `mode`: at once from what this node applied
  // (serializable), else once a ReadIndex (or lease) check passes and this
  // node applied its index; `serve(index, resp)` fills the response. A
  // `scan` runs on the scan threads, whatever its mode.
  template <typename Resp, typename Serve>
  void Read(Reply<Resp>* reply, uint64_t group, rpc::ReadMode mode, bool scan,
            Serve serve) {
    if (!Admit(reply, /*write=*/false, scan)) return;
    auto s = reply->shared();
    if (node_->Machine(group) == nullptr) {
      Reply<Resp>::Answer(s, [&](auto* ctx, auto*) {
        return node_->NotLeader(ctx, group,
                                absl::UnavailableError("no replica here yet"));
      });
      return;
    }
    util::ThreadPool* pool = scan ? node_->scans.get() : node_->reads.get();
    ScanGate* gate = scan ? node_->scan_gate.get() : nullptr;
    // Runs the read at `index` on `pool`, or refuses it if the pool is full.
    auto post = [s, serve, pool, gate](raft::Index index) {
      bool posted = pool->Post([s, serve, index, gate] {
        if (gate != nullptr && !HoldScanPlace<Resp>(s, gate)) return;
        Reply<Resp>::Answer(
            s, [&](auto*, Resp* out) { return serve(index, out); });
      });
      if (!posted) {
        Reply<Resp>::Answer(s, [](auto*, Resp*) {
          return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "too many reads waiting; back off and retry");
        });
      }
    };
    if (mode == rpc::SERIALIZABLE) {
      const raft::Index applied = node_->Machine(group)->applied();
      if (scan) {
        post(applied);
        return;
      }
      Reply<Resp>::Answer(
          s, [&](auto*, Resp* out) { return serve(applied, out); });
      return;
    }
    Expire(reply, "read");
    // Called on the raft loop or the apply thread: the read itself (a scan
    // of up to 10,000 keys) runs on the read or scan threads.
    node_->ReadAsync(group, mode == rpc::LEASE,
                     [this, s, group, post](absl::StatusOr<raft::Index> i) {
                       if (i.ok()) {
                         post(*i);
                         return;
                       }
                       Reply<Resp>::Answer(s, [&](auto* ctx, Resp*) {
                         return node_->Refuse(ctx, group, i.status());
                       });
                     });
  }

  // Takes a place in `gate` for the scan of call `s`, given back once gRPC is
  // done with its answer; false (and no place taken) if it was answered
  // meanwhile (cancelled, or its deadline passed).
  template <typename Resp>
  static bool HoldScanPlace(
      const std::shared_ptr<typename Reply<Resp>::State>& s, ScanGate* gate) {
    gate->Enter();
    absl::MutexLock l(&s->mu);
    if (s->answered) {
      gate->Leave();
      return false;
    }
    s->done = [gate] { gate->Leave(); };
    return true;
  }

  // Proposes `cmd` to `group`; `fill(result, resp)` turns the applied
  // result into the response.
  template <typename Resp, typename Fill>
  void Write(Reply<Resp>* reply, uint64_t group, kvpb::Command cmd, Fill fill) {
    if (!Admit(reply, /*write=*/true, /*scan=*/false)) return;
    auto s = reply->shared();
    Expire(reply, "write");
    node_->WriteAsync(
        group, std::move(cmd),
        [this, s, group, fill](absl::StatusOr<kvpb::CommandResult> r) {
          Reply<Resp>::Answer(s, [&](auto* ctx, Resp* out) {
            if (!r.ok()) return node_->Refuse(ctx, group, r.status());
            fill(*r, out);
            out->mutable_header()->set_node(node_->id);
            return grpc::Status::OK;
          });
        });
  }

  // Runs `fn` at `at` (on the timer thread).
  void At(Clock::time_point at, std::function<void()> fn) {
    deadlines_.At(at, std::move(fn));
  }

 private:
  Node* const node_;
  Deadlines deadlines_;
};

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_CALLS_H_
