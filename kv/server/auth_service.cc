// The Auth service: users, roles and tokens, written through the metadata
// group (kv/auth) and checked on every call (internal/auth.h).

#include "absl/strings/str_cat.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/auth.h"
#include "kv/server/internal/calls.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/auth.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace tally::kv::server {

namespace {

constexpr int64_t kDefaultTokenTtlMs = 24LL * 3600 * 1000;
constexpr int64_t kMaxTokenTtlMs = 366LL * 24 * 3600 * 1000;

kvpb::AuthPermission ToKv(const rpc::AuthPermission& p) {
  kvpb::AuthPermission out;
  out.set_kind(static_cast<kvpb::AuthPermission::Kind>(p.kind()));
  out.set_prefix(p.prefix());
  out.set_read(p.read());
  out.set_write(p.write());
  return out;
}

rpc::AuthPermission ToApi(const kvpb::AuthPermission& p) {
  rpc::AuthPermission out;
  out.set_kind(static_cast<rpc::AuthPermission::Kind>(p.kind()));
  out.set_prefix(p.prefix());
  out.set_read(p.read());
  out.set_write(p.write());
  return out;
}

rpc::AuthTokenInfo ToApi(const kvpb::AuthToken& t) {
  rpc::AuthTokenInfo out;
  out.set_id(t.id());
  out.set_user(t.user());
  out.set_issued_unix_ms(t.issued_unix_ms());
  out.set_expires_unix_ms(t.expires_unix_ms());
  return out;
}

absl::Status CheckTtl(int64_t ttl_ms) {
  if (ttl_ms < 0 || ttl_ms > kMaxTokenTtlMs) {
    return absl::InvalidArgumentError(
        absl::StrCat("a token's TTL of ", ttl_ms,
                     " ms is outside 0 (the default) to 366 days"));
  }
  return absl::OkStatus();
}

class AuthService final : public rpc::Auth::CallbackService {
 public:
  explicit AuthService(Node* node) : node_(node), calls_(node) {}

  grpc::ServerUnaryReactor* Change(grpc::CallbackServerContext* ctx,
                                   const rpc::AuthChangeRequest* req,
                                   rpc::AuthChangeResponse* resp) override {
    using Req = rpc::AuthChangeRequest;
    auto* reply = new Reply<rpc::AuthChangeResponse>(ctx, resp, &node_->rpcs,
                                                     "AuthChange");
    grpc::Status st = node_->auth.Admin(*ctx);
    if (!st.ok() && req->op_case() == Req::kTokenIssue) {
      // Users may issue tokens for themselves.
      absl::StatusOr<std::string> user = node_->auth.User(*ctx);
      if (user.ok() && *user == req->token_issue().user()) {
        st = grpc::Status::OK;
      }
    }
    if (!st.ok()) return Calls::Finish(reply, st);
    // For the log: who changed what (never a token's secret: the request
    // holds none).
    std::string who = node_->auth.User(*ctx).value_or("");
    if (who.empty()) who = "(auth disabled)";
    kvpb::Command cmd;
    kvpb::AuthChange& c = *cmd.mutable_auth();
    std::string token;  // a new one, for the caller
    auto issue = [&](const std::string& user, int64_t ttl_ms,
                     kvpb::AuthToken* out) {
      auto [record, text] = Authorizer::NewToken(user, ttl_ms);
      *out = std::move(record);
      token = std::move(text);
    };
    absl::Status check;
    auto grant = [&](const Req::Grant& g, kvpb::AuthChange::Grant* out) {
      out->set_name(g.name());
      out->set_role(g.role());
      out->set_revoke(g.revoke());
      if (g.has_permission()) *out->mutable_permission() = ToKv(g.permission());
    };
    switch (req->op_case()) {
      case Req::kEnable:
        check = CheckTtl(req->enable().token_ttl_ms());
        issue(std::string(kRootUser), req->enable().token_ttl_ms(),
              c.mutable_enable());
        break;
      case Req::kDisable:
        c.set_disable(true);
        break;
      case Req::kUserAdd:
        c.set_user_add(req->user_add());
        break;
      case Req::kUserDelete:
        c.set_user_delete(req->user_delete());
        break;
      case Req::kUserRole:
        grant(req->user_role(), c.mutable_user_role());
        break;
      case Req::kRoleAdd:
        c.set_role_add(req->role_add());
        break;
      case Req::kRoleDelete:
        c.set_role_delete(req->role_delete());
        break;
      case Req::kRolePermission: {
        const rpc::AuthPermission& p = req->role_permission().permission();
        if (!rpc::AuthPermission::Kind_IsValid(p.kind())) {
          check = absl::InvalidArgumentError("unknown permission kind");
        } else if (!p.read() && !p.write()) {
          check = absl::InvalidArgumentError(
              "a permission allows reading, writing or both");
        }
        grant(req->role_permission(), c.mutable_role_permission());
        break;
      }
      case Req::kTokenIssue: {
        const int64_t ttl = req->token_issue().ttl_ms() == 0
                                ? kDefaultTokenTtlMs
                                : req->token_issue().ttl_ms();
        check = CheckTtl(req->token_issue().ttl_ms());
        issue(req->token_issue().user(), ttl, c.mutable_token_issue());
        break;
      }
      case Req::kTokenRevoke:
        c.set_token_revoke(req->token_revoke());
        break;
      case Req::OP_NOT_SET:
        check = absl::InvalidArgumentError("empty auth change");
        break;
    }
    if (!check.ok()) return Calls::Finish(reply, rpc::ToGrpc(check));
    rpc::AuthTokenInfo info;
    if (c.has_enable()) info = ToApi(c.enable());
    if (c.has_token_issue()) info = ToApi(c.token_issue());
    calls_.Write(
        reply, kMetaGroup, std::move(cmd),
        [this, token, info, who, what = req->ShortDebugString()](
            kvpb::CommandResult& r, rpc::AuthChangeResponse* out) {
          spdlog::info(
              "[n={}] auth change by {}: {}{}", node_->id, who, what,
              token.empty() ? "" : absl::StrCat(" (token ", info.id(), ")"));
          server::ToApi(r.auth().header(), out->mutable_header());
          out->set_token(token);
          if (!token.empty()) *out->mutable_token_info() = info;
        });
    return reply;
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx,
                                const rpc::AuthGetRequest*,
                                rpc::AuthGetResponse* resp) override {
    auto* reply =
        new Reply<rpc::AuthGetResponse>(ctx, resp, &node_->rpcs, "AuthGet");
    if (grpc::Status st = node_->auth.Known(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    const std::string you = node_->auth.User(*ctx).value_or("");
    calls_.Read(reply, kMetaGroup, rpc::LINEARIZABLE, /*scan=*/false,
                [this, you](raft::Index, rpc::AuthGetResponse* out) {
                  absl::StatusOr<std::shared_ptr<const AuthView>> v =
                      node_->Machine(kMetaGroup)->auth().view();
                  if (!v.ok()) return rpc::ToGrpc(v.status());
                  const AuthView& view = **v;
                  // Whether the caller sees everyone's records, from the
                  // records the linearizable read saw (asking
                  // Authorizer::Admin would wait for a catch-up to refuse
                  // every caller that is not root).
                  const bool admin = !view.enabled || view.IsRoot(you);
                  out->set_enabled(view.enabled);
                  out->set_you(you);
                  out->set_node(node_->id);
                  for (const auto& [name, u] : view.users) {
                    if (!admin && name != you) continue;
                    rpc::AuthUser* o = out->add_users();
                    o->set_name(u.name());
                    *o->mutable_roles() = u.roles();
                  }
                  for (const auto& [name, r] : view.roles) {
                    if (!admin) continue;
                    rpc::AuthRole* o = out->add_roles();
                    o->set_name(r.name());
                    for (const kvpb::AuthPermission& p : r.permissions()) {
                      *o->add_permissions() = ToApi(p);
                    }
                  }
                  for (const auto& [id, t] : view.tokens) {
                    if (admin || t.user() == you) *out->add_tokens() = ToApi(t);
                  }
                  return grpc::Status::OK;
                });
    return reply;
  }

 private:
  Node* const node_;
  Calls calls_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewAuthService(Node* node) {
  return std::make_unique<AuthService>(node);
}

}  // namespace tally::kv::server
