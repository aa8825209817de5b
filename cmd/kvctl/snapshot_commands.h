#ifndef TALLY_CMD_KVCTL_SNAPSHOT_COMMANDS_H_
#define TALLY_CMD_KVCTL_SNAPSHOT_COMMANDS_H_

#include <optional>
#include <string>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

// kvctl snapshot save|restore|status: a backup of every range's keys and
// values in one file, checked by its SHA-256, and its loading into a new,
// empty cluster with the same ranges.
//
// The file: cmd/kvctl/snapshot_file.h.
class SnapshotCommands {
 public:
  // Adds the commands to `app`.
  explicit SnapshotCommands(CLI::App& app);
  // `snapshot status` (reads only the file): its exit code, if it is the
  // command parsed.
  std::optional<int> RunOffline(const Output& out);
  // The others, which need the cluster.
  std::optional<int> Run(client::Client& c, const Output& out);

 private:
  int Save(client::Client& c, const Output& out);
  int Restore(client::Client& c, const Output& out);

  CLI::App *save_, *restore_, *status_;
  std::string file_;
  int64_t timeout_s_ = 600;
};

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_SNAPSHOT_COMMANDS_H_
