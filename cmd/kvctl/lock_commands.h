#ifndef TALLY_CMD_KVCTL_LOCK_COMMANDS_H_
#define TALLY_CMD_KVCTL_LOCK_COMMANDS_H_

#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

// kvctl's lease, lock, election and fence commands.
class LockCommands {
 public:
  // Adds the commands to `app`.
  explicit LockCommands(CLI::App& app);
  // Runs the command parsed, if it is one of these: its exit code.
  std::optional<int> Run(client::Client& c, const Output& out);

 private:
  int RunLocked(client::Client& c);
  int RunElected(client::Client& c, const Output& out);
  int Listen(client::Client& c, const Output& out);

  CLI::App *lease_grant_, *lease_revoke_, *lease_keep_alive_, *lease_ttl_,
      *lease_list_;
  CLI::App *lock_, *lock_acquire_, *lock_release_, *lock_inspect_;
  CLI::App *fence_bind_, *fence_unbind_, *elect_;
  std::string ttl_ = "10s", wait_, name_, prefix_, lock_name_, value_;
  uint64_t lease_ = 0, token_ = 0;
  std::vector<uint64_t> leases_;
  bool try_ = false, once_ = false, listen_ = false;
  std::string kill_after_ = "5s";
  std::vector<std::string> command_;
};

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_LOCK_COMMANDS_H_
