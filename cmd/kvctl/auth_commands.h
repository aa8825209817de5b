#ifndef TALLY_CMD_KVCTL_AUTH_COMMANDS_H_
#define TALLY_CMD_KVCTL_AUTH_COMMANDS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

// kvctl's auth commands: `auth enable|disable|status`, `auth token
// issue|revoke|list`, `user add|del|list|grant-role|revoke-role` and
// `role add|del|list|grant|revoke`.
class AuthCommands {
 public:
  // Adds the commands to `app`.
  explicit AuthCommands(CLI::App& app);
  // Runs the command parsed, if it is one of these: its exit code.
  std::optional<int> Run(client::Client& c, const Output& out);

 private:
  // Sends one change; prints the new token if it made one.
  int Change(client::Client& c, const rpc::AuthChangeRequest& req,
             const Output& out);
  int Status(client::Client& c, const Output& out);

  CLI::App *enable_, *disable_, *status_, *token_issue_, *token_revoke_,
      *token_list_;
  CLI::App *user_add_, *user_del_, *user_list_, *user_grant_, *user_revoke_;
  CLI::App *role_add_, *role_del_, *role_list_, *role_grant_, *role_revoke_;
  std::string name_, role_, kind_, prefix_, access_ = "readwrite", ttl_ = "0",
                                            id_;
};

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_AUTH_COMMANDS_H_
