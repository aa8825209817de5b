#ifndef TALLY_RPC_STATUS_H_
#define TALLY_RPC_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "grpcpp/grpcpp.h"
#include "rpc/reasons.h"

// The one conversion between absl::Status and gRPC status, for servers and
// clients, carrying the error reason (rpc/reasons.h).
namespace tally::rpc {

// The code of every "the write may or may not have been applied" answer,
// whatever the path (a timeout, a shutdown, a leader change, a snapshot
// that overtook the entry): DEADLINE_EXCEEDED with reason outcome-unknown.
absl::Status OutcomeUnknown(const std::string& message);
bool IsOutcomeUnknown(const absl::Status& s);

absl::Status WithReason(absl::Status s, const char* reason);
bool HasReason(const absl::Status& s, const char* reason);

// Server side: `s` as a gRPC status; its reason, if any, goes into `ctx`'s
// trailing metadata (when `ctx` is given).
grpc::Status ToGrpc(const absl::Status& s,
                    grpc::ServerContextBase* ctx = nullptr);
// Client side: a gRPC status (and the reason in `ctx`'s trailing metadata,
// when given) as an absl::Status.
absl::Status FromGrpc(const grpc::Status& s,
                      const grpc::ClientContext* ctx = nullptr);

}  // namespace tally::rpc

#endif  // TALLY_RPC_STATUS_H_
