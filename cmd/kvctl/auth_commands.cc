#include "cmd/kvctl/auth_commands.h"

#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cmd/kvctl/duration.h"

namespace tally::kvctl {
namespace {

using Req = rpc::AuthChangeRequest;

std::string When(int64_t unix_ms) {
  if (unix_ms == 0) return "never";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(unix_ms),
                          absl::UTCTimeZone());
}

// "key", "lock", ...: the enum's name in lower case.
std::string KindName(rpc::AuthPermission::Kind k) {
  return absl::AsciiStrToLower(rpc::AuthPermission::Kind_Name(k));
}

std::string Access(const rpc::AuthPermission& p) {
  return p.read() && p.write() ? "readwrite" : p.read() ? "read" : "write";
}

}  // namespace

AuthCommands::AuthCommands(CLI::App& app) {
  auto* auth = app.add_subcommand(
      "auth",
      "authentication: turn it on or off, see who you are, issue and revoke "
      "tokens");
  auth->require_subcommand(1);
  enable_ = auth->add_subcommand(
      "enable",
      "require a token (or a client certificate naming a user) on every "
      "call: creates user root and prints a token for it, once");
  enable_->add_option("--token-ttl", ttl_,
                      "how long root's token lasts (e.g. 24h; 0: until "
                      "revoked)");
  disable_ = auth->add_subcommand("disable", "let every call through again");
  status_ = auth->add_subcommand(
      "status", "whether auth is enabled, and the user you call as");
  auto* token = auth->add_subcommand("token", "bearer tokens");
  token->require_subcommand(1);
  token_issue_ = token->add_subcommand(
      "issue", "a new token for USER (root: any user; others: themselves)");
  token_issue_->add_option("user", name_)->required();
  token_issue_->add_option("--ttl", ttl_, "how long it lasts (0: 24h)");
  token_revoke_ =
      token->add_subcommand("revoke", "end token ID at once on every node");
  token_revoke_->add_option("id", id_)->required();
  token_list_ = token->add_subcommand(
      "list", "tokens: ID USER ISSUED EXPIRES (never their secrets)");

  auto* user = app.add_subcommand("user", "users");
  user->require_subcommand(1);
  user_add_ = user->add_subcommand("add", "add user NAME, with no roles");
  user_del_ =
      user->add_subcommand("del", "delete user NAME; its tokens stop working");
  user_list_ = user->add_subcommand("list", "users and their roles");
  user_grant_ = user->add_subcommand("grant-role", "give user NAME role ROLE");
  user_revoke_ =
      user->add_subcommand("revoke-role", "take role ROLE from user NAME");
  for (auto* c : {user_add_, user_del_, user_grant_, user_revoke_}) {
    c->add_option("name", name_)->required();
  }
  for (auto* c : {user_grant_, user_revoke_}) {
    c->add_option("role", role_, "a role, or root")->required();
  }

  auto* role = app.add_subcommand("role", "roles and their permissions");
  role->require_subcommand(1);
  role_add_ = role->add_subcommand("add", "add role NAME, allowing nothing");
  role_del_ =
      role->add_subcommand("del", "delete role NAME; its users lose it");
  role_list_ = role->add_subcommand("list", "roles and their permissions");
  role_grant_ = role->add_subcommand(
      "grant",
      "let role NAME read, write or both the names of KIND (key, lock, "
      "lease, idempotency, saga, table) that start with PREFIX (\"\": all)");
  role_revoke_ = role->add_subcommand(
      "revoke", "take role NAME's permission on KIND PREFIX away");
  for (auto* c : {role_add_, role_del_, role_grant_, role_revoke_}) {
    c->add_option("name", name_)->required();
  }
  for (auto* c : {role_grant_, role_revoke_}) {
    c->add_option("kind", kind_)
        ->required()
        ->check(CLI::IsMember(
            {"key", "lock", "lease", "idempotency", "saga", "table"}));
    c->add_option("prefix", prefix_, "names that start with it; \"\": all")
        ->required();
  }
  role_grant_->add_option("access", access_)
      ->check(CLI::IsMember({"read", "write", "readwrite"}));
}

std::optional<int> AuthCommands::Run(client::Client& c, const Output& out) {
  Req req;
  auto ttl = [&]() -> absl::StatusOr<int64_t> {
    absl::StatusOr<std::chrono::milliseconds> d = ParseDuration(ttl_);
    if (!d.ok()) return d.status();
    return d->count();
  };
  auto grant = [&](Req::Grant* g, bool revoke) {
    g->set_name(name_);
    g->set_role(role_);
    g->set_revoke(revoke);
  };
  auto permission = [&](Req::Grant* g, bool revoke) {
    grant(g, revoke);
    rpc::AuthPermission::Kind kind = rpc::AuthPermission::KEY;
    rpc::AuthPermission::Kind_Parse(absl::AsciiStrToUpper(kind_), &kind);
    rpc::AuthPermission* p = g->mutable_permission();
    p->set_kind(kind);
    p->set_prefix(prefix_);
    p->set_read(access_ != "write");
    p->set_write(access_ != "read");
  };
  if (*enable_) {
    absl::StatusOr<int64_t> ms = ttl();
    if (!ms.ok()) return Fail(ms.status());
    req.mutable_enable()->set_token_ttl_ms(*ms);
  } else if (*disable_) {
    req.set_disable(true);
  } else if (*status_ || *token_list_ || *user_list_ || *role_list_) {
    return Status(c, out);
  } else if (*token_issue_) {
    absl::StatusOr<int64_t> ms = ttl();
    if (!ms.ok()) return Fail(ms.status());
    req.mutable_token_issue()->set_user(name_);
    req.mutable_token_issue()->set_ttl_ms(*ms);
  } else if (*token_revoke_) {
    req.set_token_revoke(id_);
  } else if (*user_add_) {
    req.set_user_add(name_);
  } else if (*user_del_) {
    req.set_user_delete(name_);
  } else if (*user_grant_ || *user_revoke_) {
    grant(req.mutable_user_role(), user_revoke_->parsed());
  } else if (*role_add_) {
    req.set_role_add(name_);
  } else if (*role_del_) {
    req.set_role_delete(name_);
  } else if (*role_grant_ || *role_revoke_) {
    permission(req.mutable_role_permission(), role_revoke_->parsed());
  } else {
    return std::nullopt;
  }
  return Change(c, req, out);
}

int AuthCommands::Change(client::Client& c, const Req& req, const Output& out) {
  absl::StatusOr<rpc::AuthChangeResponse> r = c.AuthChange(req);
  if (!r.ok()) return Fail(r.status());
  if (out.json()) {
    out.Print(*r);
    return kExitOk;
  }
  if (r->token().empty()) {
    std::cout << "OK\n";
    return kExitOk;
  }
  if (req.has_enable()) std::cout << "auth enabled. ";
  const rpc::AuthTokenInfo& t = r->token_info();
  std::cout << "token " << t.id() << " for " << t.user() << ", expires "
            << When(t.expires_unix_ms())
            << " (shown once; pass it as --token or $KVCTL_TOKEN):\n"
            << r->token() << "\n";
  return kExitOk;
}

int AuthCommands::Status(client::Client& c, const Output& out) {
  absl::StatusOr<rpc::AuthGetResponse> r = c.AuthGet();
  if (!r.ok()) return Fail(r.status());
  if (out.json()) {
    out.Print(*r);
    return kExitOk;
  }
  if (*status_) {
    std::cout << "auth " << (r->enabled() ? "enabled" : "disabled");
    if (r->enabled()) std::cout << "; you are " << r->you();
    std::cout << "\n";
  } else if (*token_list_) {
    Table t({"ID", "USER", "ISSUED", "EXPIRES"});
    for (const rpc::AuthTokenInfo& k : r->tokens()) {
      t.Add({k.id(), k.user(), When(k.issued_unix_ms()),
             When(k.expires_unix_ms())});
    }
    t.Print(std::cout);
  } else if (*user_list_) {
    Table t({"USER", "ROLES"});
    for (const rpc::AuthUser& u : r->users()) {
      t.Add({u.name(), absl::StrJoin(u.roles(), ",")});
    }
    t.Print(std::cout);
  } else {
    Table t({"ROLE", "KIND", "PREFIX", "ACCESS"});
    for (const rpc::AuthRole& role : r->roles()) {
      if (role.permissions().empty()) t.Add({role.name(), "-", "-", "-"});
      for (const rpc::AuthPermission& p : role.permissions()) {
        t.Add({role.name(), KindName(p.kind()),
               p.prefix().empty() ? "(all)" : out.Bytes(p.prefix()),
               Access(p)});
      }
    }
    t.Print(std::cout);
  }
  return kExitOk;
}

}  // namespace tally::kvctl
