#ifndef TALLY_CMD_KVCTL_IDEM_COMMANDS_H_
#define TALLY_CMD_KVCTL_IDEM_COMMANDS_H_

#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

// kvctl's idempotency-key commands: `idem run SCOPE KEY -- CMD` runs CMD at
// most once per key and replays its output; `idem get|list|purge`.
class IdemCommands {
 public:
  // Adds the commands to `app`.
  explicit IdemCommands(CLI::App& app);
  // Runs the command parsed, if it is one of these: its exit code.
  std::optional<int> Run(client::Client& c, const Output& out);

 private:
  int RunOnce(client::Client& c);

  CLI::App *run_, *get_, *list_, *purge_;
  std::string scope_, key_, fingerprint_, prefix_;
  size_t limit_ = 0;
  std::string claim_ttl_ = "30s", retention_ = "24h", kill_after_ = "5s";
  bool cache_failure_ = false;
  std::vector<std::string> command_;
};

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_IDEM_COMMANDS_H_
