#include "client/election.h"

#include "absl/strings/str_cat.h"

namespace tally::client {

absl::StatusOr<uint64_t> Election::Campaign(const std::string& value,
                                            std::chrono::milliseconds wait) {
  if (wait.count() <= 0) {
    return absl::InvalidArgumentError("a campaign needs a positive wait");
  }
  absl::StatusOr<rpc::AcquireResponse> r =
      client_->Acquire(name_, session_->lease(), wait, value);
  if (!r.ok()) return r.status();
  if (!r->acquired()) {
    return absl::DeadlineExceededError(absl::StrCat(
        "not elected in \"", name_, "\" within ", wait.count(), " ms"));
  }
  token_ = r->holder().token();
  return token_;
}

absl::Status Election::Proclaim(const std::string& value) {
  if (token_ == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("not the leader of \"", name_, "\": campaign first"));
  }
  return client_->Proclaim(name_, token_, value);
}

absl::Status Election::Resign() {
  if (token_ == 0) return absl::OkStatus();
  absl::Status st = client_->Release(name_, token_);
  token_ = 0;
  return st;
}

absl::StatusOr<std::optional<rpc::LockHolder>> Election::Leader() {
  absl::StatusOr<rpc::InspectResponse> r = client_->Inspect(name_);
  if (!r.ok()) return r.status();
  if (!r->has_holder()) return std::optional<rpc::LockHolder>();
  return std::optional<rpc::LockHolder>(r->holder());
}

absl::Status Election::Observe(
    const std::function<bool(const rpc::ObserveResponse&)>& fn) {
  return client_->Observe(name_, fn);
}

}  // namespace tally::client
