#include "client/lock_session.h"

#include <algorithm>
#include <utility>

#include "absl/time/time.h"

namespace tally::client {

absl::StatusOr<std::unique_ptr<LockSession>> LockSession::Open(
    Client* client, Options options) {
  const Steady::time_point sent = Steady::now();
  absl::StatusOr<rpc::LeaseGrantResponse> lease =
      client->GrantLease(options.ttl);
  if (!lease.ok()) return lease.status();
  std::unique_ptr<LockSession> s(new LockSession(
      client, std::move(options), lease->id(), Steady::time_point{}));
  {
    absl::MutexLock l(&s->mu_);
    s->valid_until_ = s->ValidUntil(sent, lease->ttl_ms());
  }
  s->thread_ = std::thread([p = s.get()] { p->KeepAlive(); });
  return s;
}

LockSession::LockSession(Client* client, Options options, uint64_t lease,
                         Steady::time_point valid_until)
    : client_(client),
      options_(std::move(options)),
      lease_(lease),
      valid_until_(valid_until) {}

LockSession::~LockSession() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
  (void)client_->RevokeLease(lease_);
}

LockSession::Steady::time_point LockSession::ValidUntil(Steady::time_point sent,
                                                        int64_t ttl_ms) const {
  const auto ttl = std::chrono::milliseconds(ttl_ms);
  return sent +
         std::chrono::duration_cast<Steady::duration>(ttl *
                                                      (1 - options_.drift)) -
         options_.margin;
}

bool LockSession::lost() const {
  absl::MutexLock l(&mu_);
  return lost_ || Steady::now() >= valid_until_;
}

void LockSession::KeepAlive() {
  const auto every = options_.ttl / 3;
  // After a failed keep-alive, try again sooner.
  const auto retry = std::max(options_.ttl / 20, std::chrono::milliseconds(50));
  auto next = Steady::now() + every;
  while (true) {
    {
      absl::MutexLock l(&mu_);
      const auto wake = std::min(next, valid_until_);
      mu_.AwaitWithTimeout(absl::Condition(&stop_),
                           absl::FromChrono(wake - Steady::now()));
      if (stop_) return;
      if (Steady::now() >= valid_until_) break;
      if (Steady::now() < next) continue;
    }
    const Steady::time_point sent = Steady::now();
    absl::StatusOr<int64_t> ttl = client_->KeepAlive(lease_);
    if (ttl.ok() && *ttl == 0) break;  // the lease has ended
    if (ttl.ok()) {
      absl::MutexLock l(&mu_);
      valid_until_ = std::max(valid_until_, ValidUntil(sent, *ttl));
      next = sent + every;
    } else {
      next = Steady::now() + retry;
    }
  }
  {
    absl::MutexLock l(&mu_);
    lost_ = true;
  }
  if (options_.on_lost) options_.on_lost();
}

absl::StatusOr<rpc::AcquireResponse> LockSession::Acquire(
    const std::string& name, std::chrono::milliseconds wait) {
  return client_->Acquire(name, lease_, wait);
}

absl::Status LockSession::Release(const std::string& name, uint64_t token) {
  return client_->Release(name, token);
}

}  // namespace tally::client
