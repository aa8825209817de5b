#ifndef TALLY_KV_SERVER_INTERNAL_AUTH_H_
#define TALLY_KV_SERVER_INTERNAL_AUTH_H_

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "kv/auth/auth.h"

namespace tally::kv::server {

struct Node;

// Who may make each client call, checked against the metadata group's auth
// records (kv/auth) as this node applied them. While auth is disabled every
// call passes. Enabled, a call names its user by a bearer token
// ("authorization: Bearer tly-..." metadata) or, over TLS, by the common
// name of a client certificate issued by the cluster's CA; the user's roles
// must allow what the call reads or writes (root may do everything).
//
// A call refused by what this node has applied is checked again once the
// node has caught up with the metadata group (Node::CatchUpWithMeta), so
// that an auth change acknowledged before a call was sent (a token just
// issued, a role just granted, auth disabled) counts for it on every node.
//
// Thread safety: thread-safe.
class Authorizer {
 public:
  // The metadata key of the bearer token.
  static constexpr std::string_view kMetadataKey = "authorization";

  explicit Authorizer(Node* node) : node_(node) {}

  // OK when the caller may do all of `needs`; UNAUTHENTICATED (no, a
  // wrong, an expired or a revoked token), PERMISSION_DENIED naming the
  // user and what it lacks, or UNAVAILABLE (no replica of the metadata
  // group here yet).
  grpc::Status Check(const grpc::ServerContextBase& ctx,
                     const std::vector<AuthNeed>& needs) const;
  grpc::Status Check(const grpc::ServerContextBase& ctx,
                     const AuthNeed& need) const {
    return Check(ctx, std::vector<AuthNeed>{need});
  }
  // Administration (membership, compaction, backup, users and roles):
  // role root.
  grpc::Status Admin(const grpc::ServerContextBase& ctx) const;
  // Any user (or anyone while auth is disabled).
  grpc::Status Known(const grpc::ServerContextBase& ctx) const;
  // The caller's user name ("" while auth is disabled).
  absl::StatusOr<std::string> User(const grpc::ServerContextBase& ctx) const;

  // A new bearer token for `user` that lasts `ttl_ms` (0: until revoked):
  // the record to store (its secret's hash) and the text for the user,
  // shown once.
  static std::pair<kvpb::AuthToken, std::string> NewToken(
      const std::string& user, int64_t ttl_ms);

 private:
  // The caller's user and the records it was found in.
  struct Caller {
    std::shared_ptr<const AuthView> view;
    std::string user;
  };
  absl::StatusOr<Caller> Identify(const grpc::ServerContextBase& ctx) const;
  // `check()`, and again once this node has caught up with the metadata
  // group if it refused as UNAUTHENTICATED or PERMISSION_DENIED.
  grpc::Status WithCatchUp(const grpc::ServerContextBase& ctx,
                           const std::function<grpc::Status()>& check) const;
  grpc::Status CheckOnce(const grpc::ServerContextBase& ctx,
                         const std::vector<AuthNeed>& needs) const;
  grpc::Status AdminOnce(const grpc::ServerContextBase& ctx) const;
  grpc::Status KnownOnce(const grpc::ServerContextBase& ctx) const;

  Node* const node_;
};

// Copies the caller's token onto a call this node makes on its behalf
// (a membership change forwarded to another group's leader).
void ForwardCredentials(const grpc::ServerContextBase& from,
                        grpc::ClientContext* to);

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_AUTH_H_
