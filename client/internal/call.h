#ifndef TALLY_CLIENT_INTERNAL_CALL_H_
#define TALLY_CLIENT_INTERNAL_CALL_H_

// Client::Call and Client::Write, for the files that implement Client's
// calls.

#include <algorithm>
#include <chrono>
#include <random>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "grpcpp/grpcpp.h"
#include "rpc/status.h"

namespace tally::client {

namespace internal {

using Clock = std::chrono::system_clock;
inline constexpr auto kAttemptTimeout = std::chrono::milliseconds(1500);

inline bool Retryable(grpc::StatusCode c) {
  return c == grpc::StatusCode::UNAVAILABLE ||
         c == grpc::StatusCode::DEADLINE_EXCEEDED ||
         c == grpc::StatusCode::RESOURCE_EXHAUSTED;
}

}  // namespace internal

template <typename Fn>
absl::Status Client::Call(uint64_t group, bool idempotent, Fn fn,
                          std::chrono::milliseconds timeout,
                          std::chrono::milliseconds attempt_timeout) {
  if (timeout.count() == 0) timeout = options_.timeout;
  if (attempt_timeout.count() == 0) attempt_timeout = internal::kAttemptTimeout;
  const auto deadline = internal::Clock::now() + timeout;
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::string last_error = "no attempt made";
  for (int attempt = 0;; ++attempt) {
    const std::string target = Target(group);
    grpc::ClientContext ctx;
    ctx.set_deadline(
        std::min(deadline, internal::Clock::now() + attempt_timeout));
    grpc::Status st = fn(Channel(target), ctx);
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
    if (!internal::Retryable(st.error_code()) ||
        (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
         !idempotent)) {
      return rpc::FromGrpc(st, &ctx);
    }
    {
      absl::MutexLock l(&mu_);
      const auto& md = ctx.GetServerTrailingMetadata();
      auto hint = md.find("tally-leader");
      if (hint != md.end()) {
        leader_[group] = std::string(hint->second.data(), hint->second.size());
      } else {
        leader_.erase(group);
        ++next_endpoint_;
      }
    }
    if (internal::Clock::now() >= deadline) break;
    // Full jitter: a random wait up to an exponentially growing cap.
    const auto cap = std::min<std::chrono::milliseconds>(
        options_.backoff_max,
        options_.backoff_base * (1 << std::min(attempt, 10)));
    std::uniform_int_distribution<int64_t> wait(0, cap.count());
    auto sleep = std::chrono::milliseconds(wait(rng));
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
