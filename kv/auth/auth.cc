#include "kv/auth/auth.h"

#include <algorithm>
#include <vector>

#include "absl/strings/str_cat.h"

namespace tally::kv {

namespace {

constexpr char kUser = 'u';
constexpr char kRole = 'r';
constexpr char kToken = 't';
constexpr char kSettings = 's';
constexpr size_t kMaxNameBytes = 64;

// The first name after every name that starts with `prefix` ("" when there
// is none: a prefix of 0xff bytes, or the empty one).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(prefix.back());
    if (last != 0xff) {
      ++last;
      return prefix;
    }
    prefix.pop_back();
  }
  return "";
}

// Whether the names [start, end) (AuthNeed) all start with `prefix`.
bool Covers(const std::string& prefix, const AuthNeed& need) {
  if (prefix.empty()) return true;
  if (!need.start.starts_with(prefix)) return false;
  if (need.end.empty()) return true;                   // the name alone
  if (need.end == std::string(1, '\0')) return false;  // no bound
  const std::string limit = PrefixEnd(prefix);
  return limit.empty() || need.end <= limit;
}

kvpb::CommandResult Done(ApplyContext& ctx) {
  kvpb::CommandResult r;
  ctx.Header(r.mutable_auth()->mutable_header());
  return r;
}

bool SamePermission(const kvpb::AuthPermission& a,
                    const kvpb::AuthPermission& b) {
  return a.kind() == b.kind() && a.prefix() == b.prefix();
}

}  // namespace

bool AuthView::IsRoot(std::string_view user) const {
  auto u = users.find(user);
  if (u == users.end()) return false;
  const auto& roles = u->second.roles();
  return std::find(roles.begin(), roles.end(), kRootRole) != roles.end();
}

bool AuthView::Allows(std::string_view user, const AuthNeed& need) const {
  auto u = users.find(user);
  if (u == users.end()) return false;
  for (const std::string& name : u->second.roles()) {
    if (name == kRootRole) return true;
    auto r = roles.find(name);
    if (r == roles.end()) continue;
    for (const kvpb::AuthPermission& p : r->second.permissions()) {
      if (p.kind() != need.kind) continue;
      if (!(need.write ? p.write() : p.read())) continue;
      if (need.kind == kvpb::AuthPermission::LEASE || Covers(p.prefix(), need))
        return true;
    }
  }
  return false;
}

absl::Status AuthStore::CheckName(std::string_view what_view,
                                  std::string_view name_view) {
  const std::string what(what_view), name(name_view);
  if (name.empty() || name.size() > kMaxNameBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a ", what, " name must have 1 to ", kMaxNameBytes, " bytes"));
  }
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' ||
          c == '.' || c == '@')) {
      return absl::InvalidArgumentError(
          absl::StrCat("a ", what, " name may hold only letters, digits and ",
                       "_ - . @; \"", name, "\" does not"));
    }
  }
  return absl::OkStatus();
}

std::string AuthStore::Key(char kind, std::string_view name) const {
  return keys_->Key(Space::kAuth, std::string(1, kind) + std::string(name));
}

kvpb::CommandResult AuthStore::Apply(ApplyContext& ctx,
                                     const kvpb::Command& cmd) {
  using Change = kvpb::AuthChange;
  const Change& c = cmd.auth();
  Batch& b = ctx.batch;
  auto refuse = [](absl::StatusCode code, std::string msg) {
    return Refusal(code, std::move(msg));
  };
  kvpb::AuthSettings settings;
  if (auto v = b.Read(Key(kSettings, ""))) settings.ParseFromString(*v);
  auto read_user = [&](const std::string& name) {
    std::optional<kvpb::AuthUser> u;
    if (auto v = b.Read(Key(kUser, name))) u.emplace().ParseFromString(*v);
    return u;
  };
  auto read_role = [&](const std::string& name) {
    std::optional<kvpb::AuthRole> r;
    if (auto v = b.Read(Key(kRole, name))) r.emplace().ParseFromString(*v);
    return r;
  };
  auto drop_tokens_of = [&](const std::string& user) {
    std::vector<std::string> gone;
    b.ForEach(Key(kToken, ""), [&](const std::string& k, const std::string& v) {
      kvpb::AuthToken t;
      if (t.ParseFromString(v) && t.user() == user) gone.push_back(k);
    });
    for (const std::string& k : gone) b.Delete(k);
  };

  switch (c.op_case()) {
    case Change::kEnable: {
      if (settings.enabled()) {
        return refuse(absl::StatusCode::kFailedPrecondition,
                      "auth is already enabled");
      }
      kvpb::AuthUser root =
          read_user(std::string(kRootUser)).value_or(kvpb::AuthUser());
      root.set_name(std::string(kRootUser));
      if (std::find(root.roles().begin(), root.roles().end(), kRootRole) ==
          root.roles().end()) {
        root.add_roles(std::string(kRootRole));
        std::sort(root.mutable_roles()->begin(), root.mutable_roles()->end());
      }
      b.Put(Key(kUser, root.name()), root.SerializeAsString());
      kvpb::AuthToken t = c.enable();
      t.set_user(root.name());
      b.Put(Key(kToken, t.id()), t.SerializeAsString());
      settings.set_enabled(true);
      b.Put(Key(kSettings, ""), settings.SerializeAsString());
      break;
    }
    case Change::kDisable:
      settings.set_enabled(false);
      b.Put(Key(kSettings, ""), settings.SerializeAsString());
      break;
    case Change::kUserAdd: {
      if (absl::Status s = CheckName("user", c.user_add()); !s.ok()) {
        return refuse(s.code(), std::string(s.message()));
      }
      if (read_user(c.user_add())) {
        return refuse(absl::StatusCode::kAlreadyExists,
                      absl::StrCat("user ", c.user_add(), " already exists"));
      }
      kvpb::AuthUser u;
      u.set_name(c.user_add());
      b.Put(Key(kUser, u.name()), u.SerializeAsString());
      break;
    }
    case Change::kUserDelete: {
      const std::string& name = c.user_delete();
      if (!read_user(name)) {
        return refuse(absl::StatusCode::kNotFound,
                      absl::StrCat("no user ", name));
      }
      if (name == kRootUser && settings.enabled()) {
        return refuse(absl::StatusCode::kFailedPrecondition,
                      "user root cannot be deleted while auth is enabled "
                      "(kvctl auth disable first)");
      }
      b.Delete(Key(kUser, name));
      drop_tokens_of(name);
      break;
    }
    case Change::kUserRole: {
      const Change::Grant& g = c.user_role();
      std::optional<kvpb::AuthUser> u = read_user(g.name());
      if (!u) {
        return refuse(absl::StatusCode::kNotFound,
                      absl::StrCat("no user ", g.name()));
      }
      if (g.role() != kRootRole && !read_role(g.role())) {
        return refuse(absl::StatusCode::kNotFound,
                      absl::StrCat("no role ", g.role()));
      }
      auto* roles = u->mutable_roles();
      auto at = std::find(roles->begin(), roles->end(), g.role());
      if (g.revoke()) {
        if (at == roles->end()) {
          return refuse(
              absl::StatusCode::kNotFound,
              absl::StrCat("user ", g.name(), " has no role ", g.role()));
        }
        if (g.name() == kRootUser && g.role() == kRootRole &&
            settings.enabled()) {
          return refuse(absl::StatusCode::kFailedPrecondition,
                        "user root keeps role root while auth is enabled");
        }
        roles->erase(at);
      } else if (at == roles->end()) {
        roles->Add(std::string(g.role()));
        std::sort(roles->begin(), roles->end());
      }
      b.Put(Key(kUser, g.name()), u->SerializeAsString());
      break;
    }
    case Change::kRoleAdd: {
      if (absl::Status s = CheckName("role", c.role_add()); !s.ok()) {
        return refuse(s.code(), std::string(s.message()));
      }
      if (c.role_add() == kRootRole || read_role(c.role_add())) {
        return refuse(absl::StatusCode::kAlreadyExists,
                      absl::StrCat("role ", c.role_add(), " already exists"));
      }
      kvpb::AuthRole r;
      r.set_name(c.role_add());
      b.Put(Key(kRole, r.name()), r.SerializeAsString());
      break;
    }
    case Change::kRoleDelete: {
      const std::string& name = c.role_delete();
      if (!read_role(name)) {
        return refuse(absl::StatusCode::kNotFound,
                      absl::StrCat("no role ", name,
                                   name == kRootRole ? " to delete (root is "
                                                       "built in)"
                                                     : ""));
      }
      b.Delete(Key(kRole, name));
      // Users lose it too: a role created again under the name starts
      // with no users.
      std::vector<kvpb::AuthUser> changed;
      b.ForEach(Key(kUser, ""), [&](const std::string&, const std::string& v) {
        kvpb::AuthUser u;
        if (!u.ParseFromString(v)) return;
        auto* roles = u.mutable_roles();
        auto at = std::find(roles->begin(), roles->end(), name);
        if (at == roles->end()) return;
        roles->erase(at);
        changed.push_back(std::move(u));
      });
      for (const kvpb::AuthUser& u : changed) {
        b.Put(Key(kUser, u.name()), u.SerializeAsString());
      }
      break;
    }
    case Change::kRolePermission: {
      const Change::Grant& g = c.role_permission();
      std::optional<kvpb::AuthRole> r = read_role(g.name());
      if (!r) {
        return refuse(absl::StatusCode::kNotFound,
                      absl::StrCat("no role ", g.name()));
      }
      auto* perms = r->mutable_permissions();
      auto at = std::find_if(perms->begin(), perms->end(), [&](const auto& p) {
        return SamePermission(p, g.permission());
      });
      if (g.revoke()) {
        if (at == perms->end()) {
          return refuse(
              absl::StatusCode::kNotFound,
              absl::StrCat("role ", g.name(), " has no permission on ",
                           AuthKindName(g.permission().kind()), " prefix \"",
                           g.permission().prefix(), "\""));
        }
        perms->erase(at);
      } else if (at != perms->end()) {
        // Granting read to a role that may write keeps both.
        at->set_read(at->read() || g.permission().read());
        at->set_write(at->write() || g.permission().write());
      } else {
        *perms->Add() = g.permission();
      }
      b.Put(Key(kRole, g.name()), r->SerializeAsString());
      break;
    }
    case Change::kTokenIssue: {
      if (!read_user(c.token_issue().user())) {
        return refuse(absl::StatusCode::kNotFound,
                      absl::StrCat("no user ", c.token_issue().user()));
      }
      b.Put(Key(kToken, c.token_issue().id()),
            c.token_issue().SerializeAsString());
      break;
    }
    case Change::kTokenRevoke: {
      const std::string k = Key(kToken, c.token_revoke());
      if (!b.Read(k)) {
        return refuse(absl::StatusCode::kNotFound,
                      absl::StrCat("no token ", c.token_revoke()));
      }
      b.Delete(k);
      break;
    }
    case Change::OP_NOT_SET:
      return refuse(absl::StatusCode::kInvalidArgument, "empty auth change");
  }
  changed_ = true;
  return Done(ctx);
}

void AuthStore::Committed() {
  if (!std::exchange(changed_, false)) return;
  Reloaded();
}

void AuthStore::Reloaded() {
  absl::MutexLock l(&mu_);
  view_.reset();  // loaded again on the next view()
}

absl::StatusOr<std::shared_ptr<const AuthView>> AuthStore::view() const {
  absl::MutexLock l(&mu_);
  if (view_ == nullptr) {
    absl::StatusOr<std::shared_ptr<const AuthView>> v = Load();
    if (!v.ok()) return v.status();
    view_ = *std::move(v);
  }
  return view_;
}

absl::StatusOr<std::shared_ptr<const AuthView>> AuthStore::Load() const {
  auto view = std::make_shared<AuthView>();
  const std::string prefix = keys_->Key(Space::kAuth);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    std::string_view rest = it->key().substr(prefix.size());
    const std::string value(it->value());
    const char kind = rest.empty() ? '\0' : rest[0];
    bool ok = false;
    if (kind == kUser) {
      kvpb::AuthUser u;
      ok = u.ParseFromString(value);
      view->users.emplace(u.name(), std::move(u));
    } else if (kind == kRole) {
      kvpb::AuthRole r;
      ok = r.ParseFromString(value);
      view->roles.emplace(r.name(), std::move(r));
    } else if (kind == kToken) {
      kvpb::AuthToken t;
      ok = t.ParseFromString(value);
      view->tokens.emplace(t.id(), std::move(t));
    } else if (kind == kSettings) {
      kvpb::AuthSettings s;
      ok = s.ParseFromString(value);
      view->enabled = s.enabled();
    }
    if (!ok) {
      return absl::DataLossError(
          absl::StrCat("malformed auth record of group ", keys_->group()));
    }
  }
  if (!it->status().ok()) return it->status();
  return view;
}

const char* AuthKindName(kvpb::AuthPermission::Kind kind) {
  switch (kind) {
    case kvpb::AuthPermission::KEY:
      return "key";
    case kvpb::AuthPermission::LOCK:
      return "lock";
    case kvpb::AuthPermission::LEASE:
      return "lease";
    case kvpb::AuthPermission::IDEMPOTENCY:
      return "idempotency";
    case kvpb::AuthPermission::SAGA:
      return "saga";
    case kvpb::AuthPermission::TABLE:
      return "table";
    default:
      return "unknown";
  }
}

bool ParseAuthKind(std::string_view name, kvpb::AuthPermission::Kind* kind) {
  for (int k = kvpb::AuthPermission::Kind_MIN;
       k <= kvpb::AuthPermission::Kind_MAX; ++k) {
    auto candidate = static_cast<kvpb::AuthPermission::Kind>(k);
    if (name == AuthKindName(candidate)) {
      *kind = candidate;
      return true;
    }
  }
  return false;
}

}  // namespace tally::kv
