#ifndef TALLY_RAFT_CONF_CHANGE_H_
#define TALLY_RAFT_CONF_CHANGE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/types.h"

namespace tally::raft {

// One membership change of one node.
struct ConfChangeSingle {
  enum class Type : uint8_t { kAddVoter, kAddLearner, kRemoveNode };
  Type type = Type::kAddVoter;
  NodeId node = kNoNode;

  bool operator==(const ConfChangeSingle&) const = default;
};

// A membership change, carried in a kConfChange log entry and applied by
// every node when the entry is applied (ApplyConfChange).
//
// With Transition::kAuto, a change that alters at most one voter is applied
// in one step (dissertation §4.1); anything larger goes through a joint
// configuration (§4.3) that the leader leaves automatically once it is
// committed. kJoint always enters a joint configuration and waits for an
// explicit leave: a ConfChange with no changes.
struct ConfChange {
  enum class Transition : uint8_t { kAuto, kJoint };
  std::vector<ConfChangeSingle> changes;
  Transition transition = Transition::kAuto;

  bool operator==(const ConfChange&) const = default;
  bool IsLeaveJoint() const { return changes.empty(); }
};

std::string EncodeConfChange(const ConfChange& cc);
// INVALID_ARGUMENT naming what is malformed.
absl::StatusOr<ConfChange> DecodeConfChange(const std::string& data);
std::string Describe(const ConfChange& cc);

// The configuration `cc` turns `cs` into. Errors (INVALID_ARGUMENT or
// FAILED_PRECONDITION, nothing changed): a leave outside a joint
// configuration, a change while joint, a step that alters more than one
// voter without a joint configuration, demoting a voter to learner, a
// configuration left without voters, node id 0.
absl::StatusOr<ConfState> ApplyChange(const ConfState& cs,
                                      const ConfChange& cc);

}  // namespace tally::raft

#endif  // TALLY_RAFT_CONF_CHANGE_H_
