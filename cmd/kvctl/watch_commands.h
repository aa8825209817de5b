#ifndef TALLY_CMD_KVCTL_WATCH_COMMANDS_H_
#define TALLY_CMD_KVCTL_WATCH_COMMANDS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

// kvctl watch and compact.
class WatchCommands {
 public:
  // Adds the commands to `app`.
  explicit WatchCommands(CLI::App& app);
  // Runs the command parsed, if it is one of these: its exit code.
  std::optional<int> Run(client::Client& c, const Output& out);

 private:
  int Watch(client::Client& c, const Output& out);

  CLI::App *watch_, *compact_;
  std::string key_, range_end_;
  bool prefix_ = false, prev_kv_ = false;
  int64_t rev_ = 0;
  uint64_t count_ = 0;
  uint32_t progress_ms_ = 0;
  std::optional<std::string> compact_key_;
};

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_WATCH_COMMANDS_H_
