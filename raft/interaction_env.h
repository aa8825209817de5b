#ifndef TALLY_RAFT_INTERACTION_ENV_H_
#define TALLY_RAFT_INTERACTION_ENV_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "util/random.h"

namespace tally::raft::testing {

// Runs the commands of the data-driven interaction tests (testdata/*.txt)
// against real RawNodes that persist to MemoryStorage, and prints what
// happens. Processing a Ready persists it, applies committed entries
// (membership changes through ApplyConfChange) and installs snapshots. Commands
// (ids are node ids, "all" or none means every node):
//   add-nodes N [pre-vote=B] [check-quorum=B] [election=T] [heartbeat=T]
//             [voters=1,2,3] [read-only=safe|lease]
//                               nodes 1..N, all starting from the bootstrap
//                               configuration `voters` (default: all)
//   campaign ID                 start an election at node ID
//   propose ID DATA             propose an entry; prints its index or error
//   tick ID [N]                 tick node ID N times (default 1)
//   tick-election ID            tick until node ID's election timer fires
//   process-ready [ID...]       persist, send and apply each node's Ready
//   deliver-msgs [ID...]        step each node with the messages sent to it
//   stabilize [ID...]           process-ready and deliver-msgs until quiet
//   partition A,B C,...         drop messages between the groups given
//   heal                        remove every partition
//   status [ID...]              role, term, leader, commit, config, progress
//   propose-conf-change ID [joint] v4 l5 r2
//                               add voter 4, learner 5, remove 2 (nothing:
//                               leave the joint configuration)
//   snapshot ID                 snapshot at the applied index and compact
//   transfer-leadership ID TARGET
//   read-index ID CTX           ask for a linearizable read
//   log ID                      the persisted log and applied entries
//
// Thread safety: not thread-safe.
class InteractionEnv {
 public:
  // Runs one command; returns its output (without trailing newline), or
  // "error: ..." for a malformed command.
  std::string Run(const std::string& command,
                  const std::vector<std::string>& args);

 private:
  struct Node {
    std::unique_ptr<MemoryStorage> storage;
    std::unique_ptr<util::SeededRandom> random;
    std::unique_ptr<RawNode> raw;
    std::vector<Entry> applied;
  };

  absl::StatusOr<std::string> Dispatch(const std::string& command,
                                       const std::vector<std::string>& args);
  absl::StatusOr<std::string> AddNodes(const std::vector<std::string>& args);
  std::string ProcessReady(NodeId id);
  std::string DeliverMsgs(NodeId id);
  std::string Stabilize(const std::vector<NodeId>& ids);
  absl::StatusOr<std::string> Partition(const std::vector<std::string>& args);
  absl::StatusOr<std::string> ProposeConfChange(
      RawNode& raw, const std::vector<std::string>& args);
  // Snapshots node ID at its applied index and compacts its log there.
  absl::StatusOr<std::string> TakeSnapshot(NodeId id);
  std::string Status(NodeId id) const;
  std::string Log(NodeId id) const;
  // Parses node ids; an empty list or "all" means every node.
  absl::StatusOr<std::vector<NodeId>> Ids(
      const std::vector<std::string>& args) const;

  std::map<NodeId, Node> nodes_;
  std::map<NodeId, std::vector<Message>> inbox_;
  std::set<std::pair<NodeId, NodeId>> cut_;
};

}  // namespace tally::raft::testing

#endif  // TALLY_RAFT_INTERACTION_ENV_H_
