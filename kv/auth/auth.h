#ifndef TALLY_KV_AUTH_AUTH_H_
#define TALLY_KV_AUTH_AUTH_H_

#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// The role that may do everything, administration included.
inline constexpr std::string_view kRootRole = "root";
inline constexpr std::string_view kRootUser = "root";

// What one call needs: to read or write the names of a kind in
// [start, end). An empty `end` means the name `start` alone; "\0" alone
// means no bound.
struct AuthNeed {
  kvpb::AuthPermission::Kind kind = kvpb::AuthPermission::KEY;
  std::string start;
  std::string end;
  bool write = false;
};

// AuthNeed::end of a range with no end.
inline std::string AuthNoBound() { return std::string(1, '\0'); }

inline AuthNeed ToRead(kvpb::AuthPermission::Kind kind, std::string start,
                       std::string end = "") {
  return AuthNeed{kind, std::move(start), std::move(end), false};
}
inline AuthNeed ToWrite(kvpb::AuthPermission::Kind kind, std::string start,
                        std::string end = "") {
  return AuthNeed{kind, std::move(start), std::move(end), true};
}

// The auth records as of one apply pass, for the checks of every call.
// Immutable: a new one replaces it after each change.
struct AuthView {
  bool enabled = false;
  std::map<std::string, kvpb::AuthUser, std::less<>> users;
  std::map<std::string, kvpb::AuthRole, std::less<>> roles;
  std::map<std::string, kvpb::AuthToken, std::less<>> tokens;

  // Whether `user` has role root.
  bool IsRoot(std::string_view user) const;
  // Whether one role of `user` allows all of `need` (root allows all).
  bool Allows(std::string_view user, const AuthNeed& need) const;
};

// Users, roles with permissions on name prefixes, and bearer tokens, kept
// in the metadata group (key space 'x'): every node checks each call
// against the same records, and a change (a revoked token, a role taken
// away) takes effect on a node as soon as it applies it.
//
// Thread safety: Apply, Committed and Reloaded on the apply thread; view()
// from any thread.
class AuthStore final : public Module {
 public:
  // Neither is owned.
  AuthStore(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine), keys_(keys) {}

  bool Handles(const kvpb::Command& cmd) const override {
    return cmd.has_auth();
  }
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override;
  void Reloaded() override;

  // The records as applied; DATA_LOSS if one is malformed.
  absl::StatusOr<std::shared_ptr<const AuthView>> view() const;

  // INVALID_ARGUMENT naming what is wrong with a user or role name: 1 to
  // 64 bytes of [A-Za-z0-9_.@-].
  static absl::Status CheckName(std::string_view what, std::string_view name);

 private:
  std::string Key(char kind, std::string_view name) const;
  absl::StatusOr<std::shared_ptr<const AuthView>> Load() const;

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  bool changed_ = false;  // by the apply pass in progress
  mutable absl::Mutex mu_;
  mutable std::shared_ptr<const AuthView> view_ ABSL_GUARDED_BY(mu_);
};

// "key", "lock", "lease", "idempotency", "saga", "table"; the inverse
// returns false for an unknown name.
const char* AuthKindName(kvpb::AuthPermission::Kind kind);
bool ParseAuthKind(std::string_view name, kvpb::AuthPermission::Kind* kind);

}  // namespace tally::kv

#endif  // TALLY_KV_AUTH_AUTH_H_
