#ifndef TALLY_CMD_KVCTL_SAGA_COMMANDS_H_
#define TALLY_CMD_KVCTL_SAGA_COMMANDS_H_

#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

// kvctl's saga commands, for operators: `saga list|show` to see sagas, and
// `saga retry|skip|mark-done ID` to resolve one stopped in an incident.
class SagaCommands {
 public:
  // Adds the commands to `app`.
  explicit SagaCommands(CLI::App& app);
  // Runs the command parsed, if it is one of these: its exit code.
  std::optional<int> Run(client::Client& c, const Output& out);

 private:
  int Resolve(client::Client& c, rpc::SagaAction action, const Output& out);

  CLI::App *list_, *show_, *retry_, *skip_, *mark_done_;
  std::string id_, idle_ = "0s", output_;
  std::vector<std::string> states_;
  size_t limit_ = 0;
};

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_SAGA_COMMANDS_H_
