#include "client/lock_session.h"

#include <algorithm>
#include <utility>

namespace tally::client {

absl::StatusOr<std::unique_ptr<LockSession>> LockSession::Open(
    Client* client, Options options) {
  const Steady::time_point sent = Steady::now();
  absl::StatusOr<rpc::LeaseGrantResponse> lease =
      client->GrantLease(options.ttl);
  if (!lease.ok()) return lease.status();
  std::unique_ptr<LockSession> s(new LockSession(
      client, std::move(options), lease->id(), Steady::time_point{}));
  Steady::time_point valid_until;
  {
    absl::MutexLock l(&s->mu_);
    valid_until = s->valid_until_ = s->ValidUntil(sent, lease->ttl_ms());
  }
  if (s->options_.keeper == nullptr) {
    s->own_keeper_ = std::make_unique<LeaseKeeper>(client);
  }
  s->keeper_ = s->own_keeper_ ? s->own_keeper_.get() : s->options_.keeper;
  LockSession* p = s.get();
  s->keeper_->Add(p->lease_, p->options_.ttl, sent, valid_until,
                  {.renewed =
                       [p](Steady::time_point sent, int64_t ttl_ms) {
                         absl::MutexLock l(&p->mu_);
                         p->valid_until_ = std::max(
                             p->valid_until_, p->ValidUntil(sent, ttl_ms));
                         return p->valid_until_;
                       },
                   .lost =
                       [p] {
                         {
                           absl::MutexLock l(&p->mu_);
                           p->lost_ = true;
                         }
                         if (p->options_.on_lost) p->options_.on_lost();
                       }});
  return s;
}

LockSession::LockSession(Client* client, Options options, uint64_t lease,
                         Steady::time_point valid_until)
    : client_(client),
      options_(std::move(options)),
      lease_(lease),
      valid_until_(valid_until) {}

LockSession::~LockSession() {
  keeper_->Remove(lease_);
  own_keeper_.reset();
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

absl::StatusOr<rpc::AcquireResponse> LockSession::Acquire(
    const std::string& name, std::chrono::milliseconds wait) {
  return client_->Acquire(name, lease_, wait);
}

absl::Status LockSession::Release(const std::string& name, uint64_t token) {
  return client_->Release(name, token);
}

}  // namespace tally::client
