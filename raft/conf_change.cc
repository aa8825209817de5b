#include "raft/conf_change.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace tally::raft {
namespace {

bool Contains(const std::vector<NodeId>& v, NodeId id) {
  return std::binary_search(v.begin(), v.end(), id);
}

void Insert(std::vector<NodeId>& v, NodeId id) {
  auto it = std::lower_bound(v.begin(), v.end(), id);
  if (it == v.end() || *it != id) v.insert(it, id);
}

void Erase(std::vector<NodeId>& v, NodeId id) {
  auto it = std::lower_bound(v.begin(), v.end(), id);
  if (it != v.end() && *it == id) v.erase(it);
}

char TypeCode(ConfChangeSingle::Type t) {
  switch (t) {
    case ConfChangeSingle::Type::kAddVoter:
      return 'v';
    case ConfChangeSingle::Type::kAddLearner:
      return 'l';
    case ConfChangeSingle::Type::kRemoveNode:
      return 'r';
  }
  return '?';
}

// How many nodes are voters in one configuration and not the other.
size_t VoterDifference(const std::vector<NodeId>& a,
                       const std::vector<NodeId>& b) {
  std::vector<NodeId> diff;
  std::set_symmetric_difference(a.begin(), a.end(), b.begin(), b.end(),
                                std::back_inserter(diff));
  return diff.size();
}

}  // namespace

bool ConfState::IsVoter(NodeId id) const {
  return Contains(voters, id) || Contains(voters_outgoing, id);
}

bool ConfState::IsLearner(NodeId id) const { return Contains(learners, id); }

std::vector<NodeId> ConfState::Members() const {
  std::vector<NodeId> all = voters;
  for (NodeId id : voters_outgoing) Insert(all, id);
  for (NodeId id : learners) Insert(all, id);
  return all;
}

std::string Describe(const ConfState& cs) {
  std::string out =
      absl::StrCat("voters=(", absl::StrJoin(cs.voters, " "), ")");
  if (cs.IsJoint()) {
    absl::StrAppend(&out, "&&(", absl::StrJoin(cs.voters_outgoing, " "), ")");
  }
  if (!cs.learners.empty()) {
    absl::StrAppend(&out, " learners=(", absl::StrJoin(cs.learners, " "), ")");
  }
  if (cs.auto_leave) absl::StrAppend(&out, " autoleave");
  return out;
}

// Format: "cc1 <auto|joint> <code><id> ...", e.g. "cc1 auto v4 r2".
std::string EncodeConfChange(const ConfChange& cc) {
  std::string out = absl::StrCat(
      "cc1 ",
      cc.transition == ConfChange::Transition::kAuto ? "auto" : "joint");
  for (const ConfChangeSingle& c : cc.changes) {
    absl::StrAppend(&out, " ", std::string(1, TypeCode(c.type)), c.node);
  }
  return out;
}

absl::StatusOr<ConfChange> DecodeConfChange(const std::string& data) {
  std::vector<std::string> f = absl::StrSplit(data, ' ', absl::SkipEmpty());
  if (f.size() < 2 || f[0] != "cc1") {
    return absl::InvalidArgumentError(
        absl::StrCat("not an encoded configuration change: '", data, "'"));
  }
  ConfChange cc;
  if (f[1] == "auto") {
    cc.transition = ConfChange::Transition::kAuto;
  } else if (f[1] == "joint") {
    cc.transition = ConfChange::Transition::kJoint;
  } else {
    return absl::InvalidArgumentError("unknown transition '" + f[1] + "'");
  }
  for (size_t i = 2; i < f.size(); ++i) {
    ConfChangeSingle c;
    switch (f[i][0]) {
      case 'v':
        c.type = ConfChangeSingle::Type::kAddVoter;
        break;
      case 'l':
        c.type = ConfChangeSingle::Type::kAddLearner;
        break;
      case 'r':
        c.type = ConfChangeSingle::Type::kRemoveNode;
        break;
      default:
        return absl::InvalidArgumentError("unknown change '" + f[i] + "'");
    }
    if (!absl::SimpleAtoi(f[i].substr(1), &c.node) || c.node == kNoNode) {
      return absl::InvalidArgumentError("bad node id in '" + f[i] + "'");
    }
    cc.changes.push_back(c);
  }
  return cc;
}

std::string Describe(const ConfChange& cc) {
  if (cc.IsLeaveJoint()) return "leave-joint";
  std::vector<std::string> parts;
  for (const ConfChangeSingle& c : cc.changes) {
    parts.push_back(absl::StrCat(std::string(1, TypeCode(c.type)), c.node));
  }
  return absl::StrCat(
      cc.transition == ConfChange::Transition::kJoint ? "joint " : "",
      absl::StrJoin(parts, " "));
}

absl::StatusOr<ConfState> ApplyChange(const ConfState& cs,
                                      const ConfChange& cc) {
  if (cc.IsLeaveJoint()) {
    if (!cs.IsJoint()) {
      return absl::FailedPreconditionError(
          "cannot leave a joint configuration: not in one");
    }
    ConfState next = cs;
    next.voters_outgoing.clear();
    next.auto_leave = false;
    return next;
  }
  if (cs.IsJoint()) {
    return absl::FailedPreconditionError(
        "configuration is joint; leave it before another change");
  }
  ConfState next = cs;
  for (const ConfChangeSingle& c : cc.changes) {
    if (c.node == kNoNode) return absl::InvalidArgumentError("node id 0");
    switch (c.type) {
      case ConfChangeSingle::Type::kAddVoter:
        Erase(next.learners, c.node);
        Insert(next.voters, c.node);
        break;
      case ConfChangeSingle::Type::kAddLearner:
        if (Contains(next.voters, c.node)) {
          return absl::InvalidArgumentError(absl::StrCat(
              "node ", c.node,
              " is a voter; remove it before adding it back as a learner"));
        }
        Insert(next.learners, c.node);
        break;
      case ConfChangeSingle::Type::kRemoveNode:
        Erase(next.voters, c.node);
        Erase(next.learners, c.node);
        break;
    }
  }
  if (next.voters.empty()) {
    return absl::InvalidArgumentError("the change would leave no voters");
  }
  const bool joint = cc.transition == ConfChange::Transition::kJoint ||
                     VoterDifference(cs.voters, next.voters) > 1;
  if (joint) {
    next.voters_outgoing = cs.voters;
    next.auto_leave = cc.transition == ConfChange::Transition::kAuto;
  }
  return next;
}

}  // namespace tally::raft
