#include "raft/message.h"

#include "absl/strings/str_cat.h"
#include "raft/conf_change.h"

namespace tally::raft {

uint64_t EntriesSize(const std::vector<Entry>& entries) {
  uint64_t total = 0;
  for (const Entry& e : entries) total += EntrySize(e);
  return total;
}

const char* RoleName(Role role) {
  switch (role) {
    case Role::kFollower:
      return "Follower";
    case Role::kPreCandidate:
      return "PreCandidate";
    case Role::kCandidate:
      return "Candidate";
    case Role::kLeader:
      return "Leader";
  }
  return "?";
}

const char* MessageTypeName(MessageType type) {
  switch (type) {
    case MessageType::kAppend:
      return "Append";
    case MessageType::kAppendResponse:
      return "AppendResp";
    case MessageType::kVote:
      return "Vote";
    case MessageType::kVoteResponse:
      return "VoteResp";
    case MessageType::kPreVote:
      return "PreVote";
    case MessageType::kPreVoteResponse:
      return "PreVoteResp";
    case MessageType::kHeartbeat:
      return "Heartbeat";
    case MessageType::kHeartbeatResponse:
      return "HeartbeatResp";
    case MessageType::kSnapshot:
      return "Snapshot";
    case MessageType::kTimeoutNow:
      return "TimeoutNow";
    case MessageType::kReadIndex:
      return "ReadIndex";
    case MessageType::kReadIndexResponse:
      return "ReadIndexResp";
  }
  return "?";
}

bool IsVoteResponse(MessageType type) {
  return type == MessageType::kVoteResponse ||
         type == MessageType::kPreVoteResponse;
}

std::string Describe(const Entry& e) {
  std::string out = absl::StrCat(e.index, "/", e.term);
  if (!e.data.empty()) absl::StrAppend(&out, " ", e.data);
  return out;
}

std::string Describe(const Message& m) {
  std::string out = absl::StrCat(m.from, "->", m.to, " ",
                                 MessageTypeName(m.type), " t=", m.term);
  switch (m.type) {
    case MessageType::kAppend:
      absl::StrAppend(&out, " prev=", m.index, "/", m.log_term,
                      " commit=", m.commit);
      if (!m.entries.empty()) {
        absl::StrAppend(&out, " entries=[");
        for (size_t i = 0; i < m.entries.size(); ++i) {
          absl::StrAppend(&out, i ? ", " : "", Describe(m.entries[i]));
        }
        absl::StrAppend(&out, "]");
      }
      break;
    case MessageType::kAppendResponse:
      if (m.reject) {
        absl::StrAppend(&out, " reject index=", m.index,
                        " hint=", m.reject_hint, "/", m.log_term);
      } else {
        absl::StrAppend(&out, " index=", m.index);
      }
      break;
    case MessageType::kVote:
    case MessageType::kPreVote:
      absl::StrAppend(&out, " last=", m.index, "/", m.log_term,
                      m.transfer ? " transfer" : "");
      break;
    case MessageType::kVoteResponse:
    case MessageType::kPreVoteResponse:
      absl::StrAppend(&out, m.reject ? " reject" : " grant");
      break;
    case MessageType::kHeartbeat:
      absl::StrAppend(&out, " commit=", m.commit);
      if (m.context) absl::StrAppend(&out, " seq=", m.context);
      break;
    case MessageType::kHeartbeatResponse:
      if (m.context) absl::StrAppend(&out, " seq=", m.context);
      break;
    case MessageType::kSnapshot:
      absl::StrAppend(&out, " snap=", m.snapshot.metadata.index, "/",
                      m.snapshot.metadata.term, " ",
                      Describe(m.snapshot.metadata.conf_state));
      break;
    case MessageType::kTimeoutNow:
      break;
    case MessageType::kReadIndex:
      absl::StrAppend(&out, " ctx=", m.context);
      break;
    case MessageType::kReadIndexResponse:
      absl::StrAppend(&out, " index=", m.index, " ctx=", m.context);
      break;
  }
  return out;
}

}  // namespace tally::raft
