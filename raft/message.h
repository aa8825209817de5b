#ifndef TALLY_RAFT_MESSAGE_H_
#define TALLY_RAFT_MESSAGE_H_

#include <string>
#include <vector>

#include "raft/types.h"

namespace tally::raft {

enum class MessageType : uint8_t {
  kAppend,  // AppendEntries RPC (§5.3)
  kAppendResponse,
  kVote,  // RequestVote RPC (§5.2)
  kVoteResponse,
  kPreVote,  // PreVote (dissertation §9.6)
  kPreVoteResponse,
  kHeartbeat,  // empty AppendEntries, sent on the heartbeat timer
  kHeartbeatResponse,
  kSnapshot,    // InstallSnapshot (§7): names the snapshot to fetch
  kTimeoutNow,  // leadership transfer: campaign now (§3.10)
  kReadIndex,   // a follower asks the leader for a read index (§6.4)
  kReadIndexResponse,
};
const char* MessageTypeName(MessageType type);

// A message between the raft nodes of one group. Which fields carry meaning
// depends on `type`:
//   kAppend:            index/log_term = the entry preceding `entries`,
//                       commit = leader's commit index.
//   kAppendResponse:    accept: index = last index now matching the leader.
//                       reject: index = the rejected `index`, reject_hint =
//                       a guess at the follower's last matching index and
//                       log_term = the term at reject_hint (§5.3 back-off).
//   kVote / kPreVote:   index/log_term = candidate's last entry.
//   k*VoteResponse:     reject = whether the vote was refused; commit = the
//                       sender's commit index and log_term = that entry's
//                       term, which the candidate may commit if it has it.
//   kHeartbeat:         commit = min(leader commit, follower's match),
//                       context = heartbeat sequence number, echoed back.
//   kVote / kPreVote:   transfer = sent on a leader's TimeoutNow, so
//                       receivers grant it even while they hear a leader.
//   kSnapshot:          snapshot = metadata and data reference.
//   kReadIndex:         context = the requester's read id.
//   kReadIndexResponse: index = read index, context = the read id.
struct Message {
  MessageType type = MessageType::kAppend;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  Term term = 0;
  Term log_term = 0;
  Index index = 0;
  std::vector<Entry> entries;
  Index commit = 0;
  bool reject = false;
  Index reject_hint = 0;
  uint64_t context = 0;
  bool transfer = false;
  Snapshot snapshot;

  bool operator==(const Message&) const = default;
};

// Whether `type` is the response to a vote or pre-vote request.
bool IsVoteResponse(MessageType type);

// A short human-readable form, used by tests and the simulator's traces:
//   "1->2 Append t=3 prev=5/2 commit=4 entries=[6/3 7/3]"
std::string Describe(const Message& m);
std::string Describe(const Entry& e);

}  // namespace tally::raft

#endif  // TALLY_RAFT_MESSAGE_H_
