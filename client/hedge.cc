// Client::HedgedGet: a serializable read sent to a second node when the
// first is slower than the client's recent reads (ClientOptions::hedge_reads).

#include <array>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "client/internal/call.h"
#include "util/waker.h"

namespace tally::client {

namespace {

// The attempts of one hedged read; shared with their completions, which may
// run after the caller has its answer.
struct Race {
  rpc::GetRequest req;
  struct Attempt {
    std::string target;
    std::unique_ptr<rpc::KV::Stub> stub;
    grpc::ClientContext ctx;
    rpc::GetResponse resp;
    grpc::Status status;
    bool done = false;
  };
  absl::Mutex mu;
  std::array<Attempt, 2> attempts;
  int sent = 0;
  int done ABSL_GUARDED_BY(mu) = 0;
  // The first attempt answered, or refused for good (not retryable).
  int winner ABSL_GUARDED_BY(mu) = -1;
  // Woken by each attempt's end: the hedge's delay is timed by the steady
  // clock, as a wall clock stepped back must not hold the second read.
  util::Waker ended;
};

}  // namespace

std::optional<absl::StatusOr<rpc::GetResponse>> Client::HedgedGet(
    const rpc::GetRequest& req) {
  const auto start = internal::SteadyClock::now();
  const auto deadline =
      std::min(internal::Clock::now() + options_.timeout,
               std::min(ScopedDeadline::Current(),
                        internal::Clock::now() + internal::kAttemptTimeout));
  std::chrono::microseconds delay;
  {
    absl::MutexLock l(&mu_);
    delay = read_latency_.Get();
    // Overloaded: no second requests (Call decides whether to send one).
    if (options_.throttle > 0 && throttle_.RefuseProbability(start) > 0) {
      return std::nullopt;
    }
  }
  const std::string first = Target(kAnyNode);
  if (delay.count() == 0 || endpoints_.size() < 2 || first.empty() ||
      deadline <= internal::Clock::now()) {
    return std::nullopt;
  }
  auto race = std::make_shared<Race>();
  race->req = req;
  auto send = [&](const std::string& target) {
    const int i = race->sent++;
    Race::Attempt& a = race->attempts[i];
    a.target = target;
    a.stub = rpc::KV::NewStub(Channel(target));
    a.ctx.set_deadline(deadline);
    {
      absl::MutexLock l(&mu_);
      ++stats_.attempts;
    }
    a.stub->async()->Get(
        &a.ctx, &race->req, &a.resp, [race, i](grpc::Status st) {
          absl::MutexLock l(&race->mu);
          Race::Attempt& a = race->attempts[i];
          a.status = std::move(st);
          a.done = true;
          ++race->done;
          // Decided: an answer, or an error that
          // another node would give as well.
          if (race->winner < 0 &&
              (a.status.ok() || !internal::Retryable(a.status.error_code()))) {
            race->winner = i;
          }
          race->ended.Wake();
        });
  };
  {
    absl::MutexLock l(&mu_);
    ++stats_.calls;
    retry_budget_.Called(start);
  }
  send(first);
  race->ended.SleepFor(delay);
  // No answer yet (or a failed one): the same read from another node,
  // within the retry budget.
  bool won = false;
  {
    absl::MutexLock l(&race->mu);
    won = race->winner >= 0;
  }
  if (!won) {
    const std::string second = Target(kAnyNode, first);
    bool hedge = !second.empty() && second != first;
    if (hedge) {
      absl::MutexLock l(&mu_);
      hedge = options_.retry_budget < 0 ||
              retry_budget_.Withdraw(internal::SteadyClock::now());
      if (hedge) ++stats_.hedged;
    }
    if (hedge) send(second);
  }
  int winner = -1;
  {
    // An answer, or every attempt over.
    struct Until {
      Race* race;
      int sent;
    } until{race.get(), race->sent};
    absl::MutexLock l(&race->mu);
    race->mu.Await(absl::Condition(
        +[](Until* u) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return u->race->winner >= 0 || u->race->done == u->sent;
        },
        &until));
    winner = race->winner;
  }
  // The slower attempt is not needed any more.
  for (int i = 0; i < race->sent; ++i) {
    if (i != winner) race->attempts[i].ctx.TryCancel();
  }
  std::vector<std::pair<std::string, grpc::StatusCode>> reports;
  {
    absl::MutexLock l(&race->mu);
    for (int i = 0; i < race->sent; ++i) {
      const Race::Attempt& a = race->attempts[i];
      if (a.done && (i == winner || winner < 0)) {
        reports.emplace_back(a.target, a.status.error_code());
      }
    }
  }
  for (const auto& [target, code] : reports) {
    Report(target, code != grpc::StatusCode::UNAVAILABLE,
           code != grpc::StatusCode::RESOURCE_EXHAUSTED &&
               code != grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  if (winner < 0) return std::nullopt;  // every attempt failed: Call retries
  Race::Attempt& w = race->attempts[winner];
  if (!w.status.ok()) {
    return absl::StatusOr<rpc::GetResponse>(rpc::FromGrpc(w.status, &w.ctx));
  }
  absl::MutexLock l(&mu_);
  leader_[kAnyNode] = w.target;
  if (winner == 1) ++stats_.hedges_won;
  read_latency_.Add(std::chrono::duration_cast<std::chrono::microseconds>(
      internal::SteadyClock::now() - start));
  absl::MutexLock rl(&race->mu);
  return absl::StatusOr<rpc::GetResponse>(std::move(w.resp));
}

}  // namespace tally::client
