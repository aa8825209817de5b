#ifndef TALLY_CMD_KVCTL_CRDT_COMMANDS_H_
#define TALLY_CMD_KVCTL_CRDT_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "client/client.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

// kvctl's CRDT table commands: `crdt create|alter|drop|tables` for schemas,
// `crdt incr|add|remove|set|enable|disable` to write a row on the node
// asked (even one cut off from the others), `crdt cas` for a row's
// cas_register columns (through raft), `crdt get` to read one,
// `crdt status` for each node's replication and garbage collection, and
// `crdt retire` for the replica of a node gone for good.
class CrdtCommands {
 public:
  // Adds the commands to `app`.
  explicit CrdtCommands(CLI::App& app);
  // Runs the command parsed, if it is one of these: its exit code.
  std::optional<int> Run(client::Client& c, const Output& out);

 private:
  int Update(client::Client& c, rpc::CrdtOp op, const Output& out);
  int Cas(client::Client& c, const Output& out);

  CLI::App *create_, *alter_, *drop_, *tables_, *incr_, *add_, *remove_, *set_,
      *enable_, *disable_, *get_, *status_, *retire_, *cas_;
  std::string table_, row_, column_, value_, context_;
  std::vector<std::string> columns_, elements_, keys_;
  // crdt cas.
  std::vector<std::string> sets_, expects_, expect_unset_, clears_;
  std::optional<uint64_t> version_;
  int64_t amount_ = 1;
  uint64_t node_ = 0;
  bool majority_ = false;
};

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_CRDT_COMMANDS_H_
