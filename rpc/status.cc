#include "rpc/status.h"

#include "absl/strings/cord.h"

namespace tally::rpc {

absl::Status WithReason(absl::Status s, const char* reason) {
  if (!s.ok()) s.SetPayload(kReasonKey, absl::Cord(reason));
  return s;
}

bool HasReason(const absl::Status& s, const char* reason) {
  auto r = s.GetPayload(kReasonKey);
  return r && *r == reason;
}

absl::Status OutcomeUnknown(const std::string& message) {
  return WithReason(absl::DeadlineExceededError(message), kOutcomeUnknown);
}

bool IsOutcomeUnknown(const absl::Status& s) {
  // A deadline passed on the client is as unknown as one the server named.
  return absl::IsDeadlineExceeded(s);
}

grpc::Status ToGrpc(const absl::Status& s, grpc::ServerContextBase* ctx) {
  if (s.ok()) return grpc::Status::OK;
  if (ctx != nullptr) {
    if (auto reason = s.GetPayload(kReasonKey)) {
      ctx->AddTrailingMetadata(kReasonKey, std::string(*reason));
    }
  }
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s, const grpc::ClientContext* ctx) {
  if (s.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(s.error_code()),
                   s.error_message());
  if (ctx != nullptr) {
    const auto& md = ctx->GetServerTrailingMetadata();
    auto reason = md.find(kReasonKey);
    if (reason != md.end()) {
      out.SetPayload(kReasonKey,
                     absl::Cord(std::string(reason->second.data(),
                                            reason->second.size())));
    }
  }
  return out;
}

}  // namespace tally::rpc
