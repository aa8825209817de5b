#ifndef TALLY_KV_SERVER_INTERNAL_REPLY_H_
#define TALLY_KV_SERVER_INTERNAL_REPLY_H_

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "kv/server/internal/admission.h"
#include "kv/server/internal/rpc_stats.h"
#include "util/thread_name.h"
#include "util/waker.h"

namespace tally::kv::server {

// Answers calls whose operation is still running at their deadline with
// DEADLINE_EXCEEDED: one thread for all the calls of a service (each
// service has its own). A call answered before its deadline cancels its
// timer (Reply::Answer), so that the thread no longer wakes once for every
// call, long after it was answered.
class Deadlines {
  using Steady = std::chrono::steady_clock;

 public:
  // One timer, to cancel it.
  struct Timer {
    Steady::time_point when;
    uint64_t id = 0;
  };

  Deadlines()
      : thread_([this] {
          util::NameThisThread("call-timers");
          Run();
        }) {}
  ~Deadlines() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    thread_.join();
  }

  // Runs `expire` at `at` unless cancelled by then. `at` is a wall-clock
  // time, as gRPC gives deadlines, but it counts from now by the steady
  // clock: a wall clock stepped afterwards moves no timer.
  Timer At(std::chrono::system_clock::time_point at,
           std::function<void()> expire) {
    const Steady::time_point when = util::SteadyAt(at);
    std::lock_guard<std::mutex> l(mu_);
    const Key key{when, ++last_id_};
    const bool first = timers_.empty() || key < timers_.begin()->first;
    timers_.emplace(key, std::move(expire));
    if (first) cv_.notify_one();
    return Timer{key.first, key.second};
  }
  // Drops timer `t` unless it ran already (or is running).
  void Cancel(const Timer& t) {
    std::lock_guard<std::mutex> l(mu_);
    timers_.erase(Key{t.when, t.id});
  }
  // Timers not yet run or cancelled.
  size_t pending() const {
    std::lock_guard<std::mutex> l(mu_);
    return timers_.size();
  }

 private:
  // When, then the order of arrival.
  using Key = std::pair<Steady::time_point, uint64_t>;

  void Run() {
    std::unique_lock<std::mutex> l(mu_);
    while (!stop_) {
      if (timers_.empty()) {
        cv_.wait(l);
        continue;
      }
      const auto at = timers_.begin()->first.first;
      if (Steady::now() < at) {
        cv_.wait_until(l, at);
        continue;
      }
      std::function<void()> expire = std::move(timers_.begin()->second);
      timers_.erase(timers_.begin());
      l.unlock();
      expire();
      l.lock();
    }
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t last_id_ = 0;
  std::map<Key, std::function<void()>> timers_;
  std::thread thread_;
};

// The answer to one unary call of the callback API, given once: by the
// operation's completion (on whichever thread finishes it: the raft loop,
// the apply thread), by the client's cancellation, or by the server's
// deadline, whichever comes first. Later attempts are dropped, so a
// completion that arrives after the call is gone touches nothing.
//
// Hand `Answer` copies of shared() to the completions; the reactor deletes
// itself when gRPC is done with the call.
template <typename Resp>
class Reply final : public grpc::ServerUnaryReactor {
 public:
  struct State {
    absl::Mutex mu;
    bool answered ABSL_GUARDED_BY(mu) = false;
    grpc::CallbackServerContext* ctx = nullptr;
    Resp* resp = nullptr;
    Reply* reactor = nullptr;
    // Where the answer is counted, as `method`.
    RpcStats* stats = nullptr;
    const char* method = "";
    std::chrono::steady_clock::time_point arrived;
    // The admission whose place this call holds (Calls::Admit), given back
    // when it is answered.
    Admission* admission ABSL_GUARDED_BY(mu) = nullptr;
    Priority priority ABSL_GUARDED_BY(mu) = Priority::kRead;
    // Run once gRPC is done with the call (its answer sent or dropped).
    std::function<void()> done ABSL_GUARDED_BY(mu);
    // The call's deadline timer (Calls::Expire), cancelled when it is
    // answered.
    Deadlines* timers ABSL_GUARDED_BY(mu) = nullptr;
    Deadlines::Timer timer ABSL_GUARDED_BY(mu);
  };
  using Fill = std::function<grpc::Status(grpc::CallbackServerContext*, Resp*)>;

  // The answer is counted in `stats` (if not null) under `method`.
  Reply(grpc::CallbackServerContext* ctx, Resp* resp, RpcStats* stats,
        const char* method)
      : state_(std::make_shared<State>()) {
    state_->ctx = ctx;
    state_->resp = resp;
    state_->reactor = this;
    state_->stats = stats;
    state_->method = method;
    state_->arrived = std::chrono::steady_clock::now();
  }

  std::shared_ptr<State> shared() const { return state_; }

  // Answers with fill(ctx, resp)'s status, unless the call was answered.
  static void Answer(std::shared_ptr<State> s, const Fill& fill) {
    absl::MutexLock l(&s->mu);
    if (s->answered) return;
    s->answered = true;
    if (s->timers != nullptr) s->timers->Cancel(s->timer);
    grpc::Status st = fill(s->ctx, s->resp);
    const double seconds = std::chrono::duration<double>(
                               std::chrono::steady_clock::now() - s->arrived)
                               .count();
    if (s->stats != nullptr) {
      s->stats->Record(s->method, st.error_code(), seconds);
    }
    if (s->admission != nullptr) s->admission->Release(s->priority, seconds);
    s->reactor->Finish(std::move(st));
  }
  static void Answer(std::shared_ptr<State> s, grpc::Status st) {
    Answer(std::move(s), [&](auto*, auto*) { return st; });
  }

  // The client gave up or its deadline passed: it sees its own status, not
  // this one, but the call must still be finished.
  void OnCancel() override {
    Answer(state_, grpc::Status(grpc::StatusCode::CANCELLED,
                                "the client cancelled the call"));
  }
  void OnDone() override {
    std::function<void()> done;
    {
      absl::MutexLock l(&state_->mu);
      done = std::move(state_->done);
    }
    if (done) done();
    delete this;
  }

 private:
  std::shared_ptr<State> state_;
};

// Waits until `f` is ready (true) or the deadline `at` comes (false),
// counted by the steady clock (util::SteadyAt).
template <typename T>
bool WaitUntil(const std::future<T>& f,
               std::chrono::system_clock::time_point at) {
  return f.wait_until(util::SteadyAt(at)) == std::future_status::ready;
}

// A server stream refused before it starts: it ends at once with `st`.
template <typename Resp>
grpc::ServerWriteReactor<Resp>* RefusedStream(grpc::Status st) {
  struct Refused : grpc::ServerWriteReactor<Resp> {
    explicit Refused(grpc::Status st) { this->Finish(std::move(st)); }
    void OnDone() override { delete this; }
  };
  return new Refused(std::move(st));
}

// A bidirectional stream refused before it starts.
template <typename Req, typename Resp>
grpc::ServerBidiReactor<Req, Resp>* RefusedBidiStream(grpc::Status st) {
  struct Refused : grpc::ServerBidiReactor<Req, Resp> {
    explicit Refused(grpc::Status st) { this->Finish(std::move(st)); }
    void OnDone() override { delete this; }
  };
  return new Refused(std::move(st));
}

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_REPLY_H_
