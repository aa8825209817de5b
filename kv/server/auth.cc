// Authentication and authorization of client calls (internal/auth.h).
// Uses OpenSSL for the token's random bytes and its SHA-256, which gRPC's
// TLS already links.

#include "kv/server/internal/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <chrono>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "kv/server/internal/node.h"

namespace tally::kv::server {

namespace {

constexpr std::string_view kTokenPrefix = "tly-";
constexpr size_t kIdBytes = 8;
constexpr size_t kSecretBytes = 32;

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  // RAND_bytes fails only without an entropy source, where no token can be
  // made safely.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()),
                 static_cast<int>(n)) != 1) {
    std::abort();
  }
  return out;
}

std::string Sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return std::string(reinterpret_cast<char*>(md), len);
}

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

grpc::Status Unauthenticated(std::string msg) {
  return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::move(msg));
}

// The token of the call's "authorization: Bearer ..." metadata; empty if
// there is none.
std::string BearerToken(const grpc::ServerContextBase& ctx) {
  auto it = ctx.client_metadata().find(grpc::string_ref(
      Authorizer::kMetadataKey.data(), Authorizer::kMetadataKey.size()));
  if (it == ctx.client_metadata().end()) return "";
  std::string_view v(it->second.data(), it->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (v.starts_with(kBearer)) v.remove_prefix(kBearer.size());
  return std::string(v);
}

// What a refused call needed, for its message: `write key "a"`, `read key
// range ["a", "b")`, `write leases`.
std::string Describe(const AuthNeed& n) {
  std::string what =
      absl::StrCat(n.write ? "write " : "read ", AuthKindName(n.kind), " ");
  if (n.kind == kvpb::AuthPermission::LEASE) {
    return n.write ? "write leases" : "read leases";
  }
  if (n.end.empty()) {
    return absl::StrCat(what, "\"", absl::CHexEscape(n.start), "\"");
  }
  return absl::StrCat(what, "range [\"", absl::CHexEscape(n.start), "\", ",
                      n.end == std::string(1, '\0')
                          ? "end)"
                          : absl::StrCat("\"", absl::CHexEscape(n.end), "\")"));
}

}  // namespace

std::pair<kvpb::AuthToken, std::string> Authorizer::NewToken(
    const std::string& user, int64_t ttl_ms) {
  const std::string id = absl::BytesToHexString(RandomBytes(kIdBytes));
  const std::string secret = absl::BytesToHexString(RandomBytes(kSecretBytes));
  kvpb::AuthToken t;
  t.set_id(id);
  t.set_user(user);
  t.set_secret_sha256(Sha256(secret));
  const int64_t now = NowUnixMs();
  t.set_issued_unix_ms(now);
  t.set_expires_unix_ms(ttl_ms == 0 ? 0 : now + ttl_ms);
  return {std::move(t),
          absl::StrCat(std::string(kTokenPrefix), id, "-", secret)};
}

absl::StatusOr<Authorizer::Caller> Authorizer::Identify(
    const grpc::ServerContextBase& ctx) const {
  StateMachine* meta = node_->Machine(kMetaGroup);
  if (meta == nullptr) {
    return absl::UnavailableError(
        "this node has no replica of the metadata group yet, so it cannot "
        "check who is calling; try another node");
  }
  if (meta->applied() == 0) {
    // A node that joined and has not received the group's state: it would
    // take an enabled cluster for one without auth.
    return absl::UnavailableError(
        "this node has not received the metadata group's state yet, so it "
        "cannot check who is calling; try another node");
  }
  absl::StatusOr<std::shared_ptr<const AuthView>> view = meta->auth().view();
  if (!view.ok()) return view.status();
  Caller c{*std::move(view), ""};
  if (!c.view->enabled) return c;
  const std::string token = BearerToken(ctx);
  if (!token.empty()) {
    // tly-<id>-<secret>
    std::string_view rest(token);
    const size_t dash = rest.find('-', kTokenPrefix.size());
    if (!rest.starts_with(kTokenPrefix) || dash == std::string_view::npos) {
      return absl::UnauthenticatedError(
          "the token is not one this cluster issues (tly-...)");
    }
    const std::string id(
        rest.substr(kTokenPrefix.size(), dash - kTokenPrefix.size()));
    auto t = c.view->tokens.find(id);
    const std::string hash = Sha256(rest.substr(dash + 1));
    if (t == c.view->tokens.end() ||
        t->second.secret_sha256().size() != hash.size() ||
        CRYPTO_memcmp(t->second.secret_sha256().data(), hash.data(),
                      hash.size()) != 0) {
      return absl::UnauthenticatedError(absl::StrCat(
          "token ", id, " is not valid here: revoked, or never issued"));
    }
    if (t->second.expires_unix_ms() != 0 &&
        NowUnixMs() >= t->second.expires_unix_ms()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "token ", id, " expired at ",
          absl::FormatTime(absl::FromUnixMillis(t->second.expires_unix_ms()),
                           absl::UTCTimeZone()),
          "; ask for a new one (kvctl auth token issue)"));
    }
    c.user = t->second.user();
    return c;
  }
  // A client certificate from the cluster's CA names its user.
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const grpc::string_ref& cn :
         auth->FindPropertyValues("x509_common_name")) {
      std::string name(cn.data(), cn.size());
      if (c.view->users.contains(name)) {
        c.user = std::move(name);
        return c;
      }
    }
  }
  return absl::UnauthenticatedError(
      "auth is enabled on this cluster: pass a token (kvctl --token or "
      "$TALLY_TOKEN; ClientOptions::token) or a client certificate whose "
      "common name is a user");
}

absl::StatusOr<std::string> Authorizer::User(
    const grpc::ServerContextBase& ctx) const {
  absl::StatusOr<Caller> c = Identify(ctx);
  if (!c.ok()) return c.status();
  return c->user;
}

grpc::Status Authorizer::WithCatchUp(
    const grpc::ServerContextBase& ctx,
    const std::function<grpc::Status()>& check) const {
  grpc::Status st = check();
  if (st.error_code() != grpc::StatusCode::UNAUTHENTICATED &&
      st.error_code() != grpc::StatusCode::PERMISSION_DENIED) {
    return st;
  }
  node_->CatchUpWithMeta(ctx.deadline(), [&] {
    st = check();
    return st.ok();
  });
  return st;
}

grpc::Status Authorizer::Check(const grpc::ServerContextBase& ctx,
                               const std::vector<AuthNeed>& needs) const {
  return WithCatchUp(ctx, [&] { return CheckOnce(ctx, needs); });
}

grpc::Status Authorizer::Admin(const grpc::ServerContextBase& ctx) const {
  return WithCatchUp(ctx, [&] { return AdminOnce(ctx); });
}

grpc::Status Authorizer::Known(const grpc::ServerContextBase& ctx) const {
  return WithCatchUp(ctx, [&] { return KnownOnce(ctx); });
}

grpc::Status Authorizer::CheckOnce(const grpc::ServerContextBase& ctx,
                                   const std::vector<AuthNeed>& needs) const {
  absl::StatusOr<Caller> c = Identify(ctx);
  if (!c.ok()) return rpc::ToGrpc(c.status());
  if (!c->view->enabled) return grpc::Status::OK;
  if (!c->view->users.contains(c->user)) {
    return Unauthenticated(absl::StrCat("user ", c->user, " was deleted"));
  }
  for (const AuthNeed& n : needs) {
    if (!c->view->Allows(c->user, n)) {
      return grpc::Status(
          grpc::StatusCode::PERMISSION_DENIED,
          absl::StrCat("user ", c->user, " may not ", Describe(n),
                       " (kvctl role grant gives a role the "
                       "permission)"));
    }
  }
  return grpc::Status::OK;
}

grpc::Status Authorizer::AdminOnce(const grpc::ServerContextBase& ctx) const {
  absl::StatusOr<Caller> c = Identify(ctx);
  if (!c.ok()) return rpc::ToGrpc(c.status());
  if (!c->view->enabled || c->view->IsRoot(c->user)) return grpc::Status::OK;
  return grpc::Status(
      grpc::StatusCode::PERMISSION_DENIED,
      absl::StrCat("user ", c->user,
                   " may not administer the cluster (that takes role root)"));
}

grpc::Status Authorizer::KnownOnce(const grpc::ServerContextBase& ctx) const {
  absl::StatusOr<Caller> c = Identify(ctx);
  if (!c.ok()) return rpc::ToGrpc(c.status());
  if (c->view->enabled && !c->view->users.contains(c->user)) {
    return Unauthenticated(absl::StrCat("user ", c->user, " was deleted"));
  }
  return grpc::Status::OK;
}

void ForwardCredentials(const grpc::ServerContextBase& from,
                        grpc::ClientContext* to) {
  const std::string token = BearerToken(from);
  if (!token.empty()) {
    to->AddMetadata(std::string(Authorizer::kMetadataKey),
                    absl::StrCat("Bearer ", token));
  }
}

}  // namespace tally::kv::server
