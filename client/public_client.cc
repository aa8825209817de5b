// tally::Client (tally/client.h): the installed API over the library's own
// client, with plain types in place of the generated ones.

#include <utility>

#include "client/client.h"
#include "client/internal/writes.h"
#include "tally/client.h"

namespace tally {

ScopedDeadline::ScopedDeadline(std::chrono::system_clock::time_point deadline)
    : impl_(std::make_unique<client::ScopedDeadline>(deadline)) {}
ScopedDeadline::~ScopedDeadline() = default;

Client::Client(std::unique_ptr<client::Client> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  client::ClientOptions o;
  o.endpoints = std::move(options.endpoints);
  o.timeout = options.timeout;
  o.tls = {std::move(options.tls_ca), std::move(options.tls_cert),
           std::move(options.tls_key)};
  o.token = std::move(options.token);
  o.retry_budget = options.retry_budget;
  o.throttle = options.throttle;
  o.breaker_failures = options.breaker_failures;
  o.limit_in_flight = options.limit_in_flight;
  absl::StatusOr<std::unique_ptr<client::Client>> c =
      client::Client::Connect(std::move(o));
  if (!c.ok()) return c.status();
  return std::unique_ptr<Client>(new Client(*std::move(c)));
}

absl::StatusOr<std::optional<std::string>> Client::Get(const std::string& key) {
  absl::StatusOr<rpc::GetResponse> r = impl_->Get(key);
  if (!r.ok()) return r.status();
  if (!r->found()) return std::optional<std::string>();
  return std::optional<std::string>(r->kv().value());
}

absl::Status Client::Put(const std::string& key, const std::string& value,
                         uint64_t fence_token, uint64_t lease) {
  return impl_->Put(key, value, fence_token, lease).status();
}

absl::Status Client::Delete(const std::string& key, uint64_t fence_token) {
  return impl_->Delete(key, fence_token).status();
}

absl::StatusOr<uint64_t> Client::GrantLease(std::chrono::milliseconds ttl) {
  absl::StatusOr<rpc::LeaseGrantResponse> r = impl_->GrantLease(ttl);
  if (!r.ok()) return r.status();
  return r->id();
}

absl::StatusOr<std::chrono::milliseconds> Client::KeepAlive(uint64_t lease) {
  absl::StatusOr<int64_t> r = impl_->KeepAlive(lease);
  if (!r.ok()) return r.status();
  return std::chrono::milliseconds(*r);
}

absl::Status Client::RevokeLease(uint64_t lease) {
  return impl_->RevokeLease(lease);
}

absl::StatusOr<LockGrant> Client::Acquire(const std::string& name,
                                          uint64_t lease,
                                          std::chrono::milliseconds wait) {
  absl::StatusOr<rpc::AcquireResponse> r = impl_->Acquire(name, lease, wait);
  if (!r.ok()) return r.status();
  return LockGrant{r->acquired(), r->holder().token(),
                   r->holder().generation()};
}

absl::Status Client::Release(const std::string& name, uint64_t token) {
  return impl_->Release(name, token);
}

absl::StatusOr<IdemBegun> Client::IdemBegin(
    const std::string& scope, const std::string& key,
    const std::string& fingerprint, std::chrono::milliseconds claim_ttl) {
  rpc::IdemBeginRequest req;
  req.set_scope(scope);
  req.set_key(key);
  req.set_fingerprint(fingerprint);
  req.set_claim_ttl_ms(claim_ttl.count());
  absl::StatusOr<rpc::IdemBeginResponse> r = impl_->IdemBegin(std::move(req));
  if (!r.ok()) return r.status();
  IdemBegun out;
  switch (r->outcome()) {
    case rpc::IdemBeginResponse::STARTED:
      out.outcome = IdemOutcome::kStarted;
      out.token = r->token();
      break;
    case rpc::IdemBeginResponse::IN_PROGRESS:
      out.outcome = IdemOutcome::kInProgress;
      out.retry_after = std::chrono::milliseconds(r->retry_after_ms());
      break;
    case rpc::IdemBeginResponse::FINISHED:
      out.outcome = IdemOutcome::kFinished;
      out.response = r->record().response();
      out.failed = r->record().state() == rpc::IDEM_FAILED;
      break;
    default:
      out.outcome = IdemOutcome::kMismatch;
  }
  return out;
}

absl::Status Client::IdemComplete(const std::string& scope,
                                  const std::string& key, uint64_t token,
                                  const std::string& response,
                                  const std::vector<Write>& effects) {
  return impl_
      ->IdemComplete(scope, key, token, response,
                     client::internal::ToTxnOps(effects))
      .status();
}

absl::Status Client::IdemFail(const std::string& scope, const std::string& key,
                              uint64_t token, bool retryable,
                              const std::string& response) {
  return impl_->IdemFail(scope, key, token, retryable, response).status();
}

}  // namespace tally
