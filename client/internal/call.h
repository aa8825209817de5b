#ifndef TALLY_CLIENT_INTERNAL_CALL_H_
#define TALLY_CLIENT_INTERNAL_CALL_H_

// Client::Call and Client::Write, for the files that implement Client's
// calls.

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "grpcpp/grpcpp.h"
#include "rpc/status.h"

namespace tally::client {

namespace internal {

using Clock = std::chrono::system_clock;
inline constexpr auto kAttemptTimeout = std::chrono::milliseconds(1500);

// The wait an overloaded node asked for, if any (0).
template <typename Metadata>
std::chrono::milliseconds RetryAfter(const Metadata& md) {
  auto it = md.find(rpc::kRetryAfterKey);
  int64_t ms = 0;
  if (it == md.end() ||
      !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()),
                        &ms)) {
    return std::chrono::milliseconds(0);
  }
  return std::chrono::milliseconds(std::clamp<int64_t>(ms, 0, 5000));
}

inline bool Retryable(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE ||
         c == grpc::StatusCode::DEADLINE_EXCEEDED ||
         c == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

}  // namespace internal

template <typename Fn>
absl::Status Client::Call(uint64_t group, bool idempotent, Fn fn,
                          std::chrono::milliseconds timeout,
                          std::chrono::milliseconds attempt_timeout,
                          bool critical) {
  if (timeout.count() == 0) timeout = options_.timeout;
  if (attempt_timeout.count() == 0) attempt_timeout = internal::kAttemptTimeout;
  const auto deadline =
      std::min(internal::Clock::now() + timeout, ScopedDeadline::Current());
  if (deadline <= internal::Clock::now()) {
    return absl::DeadlineExceededError(
        "the caller's deadline has passed; the call was not sent");
  }
  static thread_local std::mt19937_64 rng(std::random_device{}());
  {
    const auto now = internal::SteadyClock::now();
    absl::MutexLock l(&mu_);
    ++stats_.calls;
    retry_budget_.Called(now);
    if (options_.throttle > 0 && !critical) {
      const double p = throttle_.RefuseProbability(now);
      if (p > 0 && std::uniform_real_distribution<double>(0, 1)(rng) < p) {
        // Counted as a call the cluster did not accept, as it would not.
        throttle_.Answered(now, false);
        ++stats_.throttled;
        return absl::ResourceExhaustedError(absl::StrCat(
            "the cluster is overloaded: this client refuses ",
            static_cast<int>(p * 100),
            "% of its calls itself for now (it refused this one without "
            "sending it); retry later"));
      }
    }
  }
  std::string last_error = "no attempt made";
  bool redirected = false;
  // A node that did not answer in time: this call's next attempt goes
  // elsewhere (a node that knows better redirects it back).
  std::string slow;
  for (int attempt = 0;; ++attempt) {
    const std::string target = Target(group, slow);
    if (target.empty()) {
      absl::MutexLock l(&mu_);
      ++stats_.breaker_refusals;
      return absl::UnavailableError(absl::StrCat(
          "no node to send the call to: every node failed several calls in "
          "a row and is skipped for a while (last error: ",
          last_error, ")"));
    }
    internal::CallGate* gate = Gate(target, critical);
    std::optional<uint64_t> place;
    if (gate != nullptr && !(place = gate->Enter(deadline))) {
      absl::MutexLock l(&mu_);
      ++stats_.held;
      return absl::ResourceExhaustedError(absl::StrCat(
          "not sent: this client already has ",
          static_cast<int>(gate->state().limit), " calls in flight to ", target,
          ", as many as that node takes now, and no place came free for "
          "this call in time; retry later"));
    }
    grpc::ClientContext ctx;
    const auto sent = internal::Clock::now();
    ctx.set_deadline(std::min(deadline, sent + attempt_timeout));
    {
      absl::MutexLock l(&mu_);
      ++stats_.attempts;
    }
    grpc::Status st = fn(Channel(target, critical), ctx);
    const auto& md = ctx.GetServerTrailingMetadata();
    // What an overloaded node asks of its callers (0: nothing).
    const std::chrono::milliseconds retry_after = internal::RetryAfter(md);
    if (gate != nullptr) {
      // Congestion: refused as overloaded.
      gate->Leave(*place, retry_after.count() > 0,
                  std::chrono::duration_cast<std::chrono::microseconds>(
                      internal::Clock::now() - sent));
    }
    // An answer that names its reason is the cluster's decision, not a
    // failure to reach it: RESOURCE_EXHAUSTED for a full lock queue is not
    // overload, DEADLINE_EXCEEDED for a lock wait that ran out is a known
    // outcome. Asked again, the cluster would answer the same.
    auto reason = md.find(rpc::kReasonKey);
    const bool decided =
        reason != md.end() && reason->second != rpc::kOutcomeUnknown;
    // A node that says why it cannot serve was reached.
    Report(
        target,
        st.error_code() != grpc::StatusCode::UNAVAILABLE ||
            md.count(rpc::kNodeKey) > 0,
        decided || (st.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED &&
                    st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED));
    if (st.ok()) {
      absl::MutexLock l(&mu_);
      leader_[group] = target;
      return absl::OkStatus();
    }
    last_error = absl::StrCat(target, ": ", st.error_message());
    if (!options_.tls.enabled() &&
        absl::StrContains(st.error_message(), "Socket closed")) {
      // What a plaintext client sees of a node that speaks TLS.
      absl::StrAppend(&last_error,
                      "; if the cluster runs with TLS, give the client its "
                      "CA (kvctl --tls-ca)");
    }
    // An unknown outcome is retried only when a retry cannot apply twice.
    if (!internal::Retryable(st.error_code()) || decided ||
        (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
         !idempotent)) {
      return rpc::FromGrpc(st, &ctx);
    }
    auto hint = md.find(rpc::kLeaderKey);
    // One redirect to the leader a node named is free; other retries draw
    // on the budget.
    const bool redirect = hint != md.end() && !redirected;
    redirected |= redirect;
    {
      absl::MutexLock l(&mu_);
      if (hint != md.end()) {
        leader_[group] = std::string(hint->second.data(), hint->second.size());
      } else if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
        // Unreachable, or it knows no leader: try the next node. One that
        // is slow or overloaded stays the one other calls go to.
        leader_.erase(group);
        ++next_endpoint_;
      }
      slow =
          st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ? target : "";
      if (!redirect && !critical && options_.retry_budget >= 0 &&
          !retry_budget_.Withdraw(internal::SteadyClock::now())) {
        ++stats_.retries_refused;
        const std::string msg =
            absl::StrCat(last_error,
                         "; not retried: this client's retries are at their "
                         "budget (ClientOptions::retry_budget)");
        if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
          return rpc::OutcomeUnknown(msg);
        }
        return absl::Status(rpc::FromGrpc(st, &ctx).code(), msg);
      }
    }
    if (internal::Clock::now() >= deadline) break;
    // Full jitter: a random wait up to an exponentially growing cap; at
    // least what an overloaded node asked for, spread over twice that.
    const auto cap = std::min<std::chrono::milliseconds>(
        options_.backoff_max,
        options_.backoff_base * (1 << std::min(attempt, 10)));
    std::uniform_int_distribution<int64_t> wait(0, cap.count());
    auto sleep = std::chrono::milliseconds(wait(rng));
    if (retry_after.count() > 0) {
      std::uniform_int_distribution<int64_t> spread(retry_after.count(),
                                                    2 * retry_after.count());
      sleep = std::max(sleep, std::chrono::milliseconds(spread(rng)));
    }
    if (internal::Clock::now() + sleep >= deadline) break;
    std::this_thread::sleep_for(sleep);
  }
  return rpc::OutcomeUnknown(absl::StrCat(
      "no answer within ", timeout.count(),
      " ms; if it was a write, its outcome is unknown (last error: ",
      last_error, ")"));
}

template <typename Resp, typename Service, typename Req, typename Rpc>
absl::StatusOr<Resp> Client::Write(const std::string& key, Req& req, Rpc rpc) {
  for (int round = 0;; ++round) {
    // Each shard keeps its own session table: sequences count per group.
    absl::StatusOr<uint64_t> group = GroupFor(key);
    if (!group.ok()) return group.status();
    absl::StatusOr<rpc::Session> session = NextSession(*group);
    if (!session.ok()) return session.status();
    *req.mutable_session() = *session;
    Resp resp;
    int attempts = 0;
    absl::Status st = Call(*group, true, [&](auto ch, auto& ctx) {
      ++attempts;
      return rpc(*Service::NewStub(ch), &ctx, req, &resp);
    });
    // Whatever the outcome, this sequence is not sent again.
    Done(*session);
    if (st.ok()) return resp;
    const bool expired = rpc::HasReason(st, rpc::kSessionExpired);
    const bool moved = rpc::HasReason(st, rpc::kSessionWrongGroup);
    if (!expired && !moved) return st;
    if (expired) ForgetSession(*group, session->client_id());
    if (moved) Refresh().IgnoreError();
    // The refusal proves this attempt was not applied; an earlier attempt
    // whose answer was lost may have been, before the session ended.
    if (attempts > 1) {
      return rpc::OutcomeUnknown(absl::StrCat(
          "the write's outcome is unknown: it was retried and then refused (",
          st.message(), ")"));
    }
    if (round > 0) return st;  // refused twice: certainly not applied
  }
}

}  // namespace tally::client

#endif  // TALLY_CLIENT_INTERNAL_CALL_H_
