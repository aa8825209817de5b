#include <string>

#include "gtest/gtest.h"
#include "kv/state_machine_testing.h"

namespace tally::kv {
namespace {

using Change = kvpb::AuthChange;
using Kind = kvpb::AuthPermission;

kvpb::Command AuthCmd(Change c) {
  kvpb::Command cmd;
  *cmd.mutable_auth() = std::move(c);
  return cmd;
}

kvpb::AuthToken Token(const std::string& id, const std::string& user) {
  kvpb::AuthToken t;
  t.set_id(id);
  t.set_user(user);
  t.set_secret_sha256("hash-of-" + id);
  t.set_expires_unix_ms(1000);
  return t;
}

kvpb::AuthPermission Perm(Kind::Kind kind, const std::string& prefix, bool read,
                          bool write) {
  kvpb::AuthPermission p;
  p.set_kind(kind);
  p.set_prefix(prefix);
  p.set_read(read);
  p.set_write(write);
  return p;
}

AuthNeed Need(Kind::Kind kind, const std::string& start, const std::string& end,
              bool write) {
  return AuthNeed{kind, start, end, write};
}

class AuthTest : public ModuleTest {
 protected:
  absl::StatusCode Run(Change c) {
    kvpb::CommandResult r = Apply(AuthCmd(std::move(c)), ++t_);
    return static_cast<absl::StatusCode>(r.error_code());
  }
  std::shared_ptr<const AuthView> View() {
    auto v = sm_->auth().view();
    EXPECT_TRUE(v.ok()) << v.status();
    return *v;
  }
  void AddUserWithRole(const std::string& user, const std::string& role,
                       kvpb::AuthPermission p) {
    Change c;
    c.set_user_add(user);
    ASSERT_EQ(Run(c), absl::StatusCode::kOk);
    c.set_role_add(role);
    ASSERT_EQ(Run(c), absl::StatusCode::kOk);
    c.mutable_role_permission()->set_name(role);
    *c.mutable_role_permission()->mutable_permission() = std::move(p);
    ASSERT_EQ(Run(c), absl::StatusCode::kOk);
    c.mutable_user_role()->set_name(user);
    c.mutable_user_role()->set_role(role);
    ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  }
  int64_t t_ = 0;
};

TEST_F(AuthTest, EnableCreatesRootWithItsTokenInOneStep) {
  EXPECT_FALSE(View()->enabled);
  Change c;
  *c.mutable_enable() = Token("t1", "ignored");
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  auto v = View();
  EXPECT_TRUE(v->enabled);
  EXPECT_TRUE(v->IsRoot("root"));
  ASSERT_EQ(v->tokens.count("t1"), 1u);
  EXPECT_EQ(v->tokens.at("t1").user(), "root");
  // Again: refused, and the second token is not stored.
  *c.mutable_enable() = Token("t2", "root");
  EXPECT_EQ(Run(c), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(View()->tokens.count("t2"), 0u);
}

TEST_F(AuthTest, RootCannotBeLockedOutWhileEnabled) {
  Change c;
  *c.mutable_enable() = Token("t1", "root");
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  c.set_user_delete("root");
  EXPECT_EQ(Run(c), absl::StatusCode::kFailedPrecondition);
  c.mutable_user_role()->set_name("root");
  c.mutable_user_role()->set_role("root");
  c.mutable_user_role()->set_revoke(true);
  EXPECT_EQ(Run(c), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(View()->IsRoot("root"));
  c.set_disable(true);
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  c.set_user_delete("root");
  EXPECT_EQ(Run(c), absl::StatusCode::kOk);
  EXPECT_TRUE(View()->tokens.empty());
}

TEST_F(AuthTest, PermissionsCoverTheirPrefixOnly) {
  AddUserWithRole("alice", "app", Perm(Kind::KEY, "app/", true, false));
  auto v = View();
  EXPECT_TRUE(v->Allows("alice", Need(Kind::KEY, "app/x", "", false)));
  EXPECT_FALSE(v->Allows("alice", Need(Kind::KEY, "app/x", "", true)));
  EXPECT_FALSE(v->Allows("alice", Need(Kind::KEY, "ap", "", false)));
  EXPECT_FALSE(v->Allows("alice", Need(Kind::LOCK, "app/x", "", false)));
  // Ranges: inside the prefix, or reaching past it.
  EXPECT_TRUE(v->Allows("alice", Need(Kind::KEY, "app/", "app0", false)));
  EXPECT_TRUE(v->Allows("alice", Need(Kind::KEY, "app/a", "app/b", false)));
  EXPECT_FALSE(v->Allows("alice", Need(Kind::KEY, "app/a", "b", false)));
  EXPECT_FALSE(v->Allows(
      "alice", Need(Kind::KEY, "app/a", std::string(1, '\0'), false)));
  EXPECT_FALSE(v->Allows("bob", Need(Kind::KEY, "app/x", "", false)));
}

TEST_F(AuthTest, AnEmptyPrefixCoversEverythingAndGrantsAdd) {
  AddUserWithRole("ops", "all", Perm(Kind::KEY, "", true, false));
  Change c;
  c.mutable_role_permission()->set_name("all");
  *c.mutable_role_permission()->mutable_permission() =
      Perm(Kind::KEY, "", false, true);
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  auto v = View();
  ASSERT_EQ(v->roles.at("all").permissions_size(), 1);
  EXPECT_TRUE(
      v->Allows("ops", Need(Kind::KEY, "", std::string(1, '\0'), false)));
  EXPECT_TRUE(v->Allows("ops", Need(Kind::KEY, "z", "", true)));
  // Revoked: gone.
  c.mutable_role_permission()->set_revoke(true);
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  EXPECT_FALSE(View()->Allows("ops", Need(Kind::KEY, "z", "", false)));
}

TEST_F(AuthTest, DeletingARoleOrAUserTakesWhatHungOnIt) {
  AddUserWithRole("alice", "app", Perm(Kind::LOCK, "jobs/", true, true));
  Change c;
  *c.mutable_token_issue() = Token("ta", "alice");
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  c.set_role_delete("app");
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  EXPECT_TRUE(View()->users.at("alice").roles().empty());
  // A role made again under the name has no users.
  c.set_role_add("app");
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  EXPECT_FALSE(View()->Allows("alice", Need(Kind::LOCK, "jobs/a", "", false)));
  c.set_user_delete("alice");
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  EXPECT_EQ(View()->tokens.count("ta"), 0u);
}

TEST_F(AuthTest, BadChangesAreRefusedWithTheirReason) {
  Change c;
  c.set_user_add("no spaces");
  EXPECT_EQ(Run(c), absl::StatusCode::kInvalidArgument);
  c.set_user_add("alice");
  ASSERT_EQ(Run(c), absl::StatusCode::kOk);
  EXPECT_EQ(Run(c), absl::StatusCode::kAlreadyExists);
  c.set_role_add("root");
  EXPECT_EQ(Run(c), absl::StatusCode::kAlreadyExists);
  c.mutable_user_role()->set_name("alice");
  c.mutable_user_role()->set_role("nope");
  EXPECT_EQ(Run(c), absl::StatusCode::kNotFound);
  *c.mutable_token_issue() = Token("tx", "nobody");
  EXPECT_EQ(Run(c), absl::StatusCode::kNotFound);
  c.set_token_revoke("tx");
  EXPECT_EQ(Run(c), absl::StatusCode::kNotFound);
  EXPECT_TRUE(View()->tokens.empty());
}

TEST_F(AuthTest, TheViewSurvivesAReopen) {
  AddUserWithRole("alice", "app", Perm(Kind::SAGA, "orders-", true, true));
  auto reopened = StateMachine::Open(&db_, 2);
  ASSERT_TRUE(reopened.ok());
  auto v = (*reopened)->auth().view();
  ASSERT_TRUE(v.ok());
  EXPECT_TRUE((*v)->Allows("alice", Need(Kind::SAGA, "orders-1", "", true)));
}

}  // namespace
}  // namespace tally::kv
