// Membership changes (dissertation §4), leadership transfer (§3.10) and the
// host's reports about snapshot delivery and reachability.

#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/raft.h"
#include "util/check.h"

namespace tally::raft {

absl::StatusOr<Index> Raft::ProposeConfChange(const ConfChange& cc) {
  if (absl::Status s = CheckCanPropose(); !s.ok()) return s;
  if (pending_conf_index_ > log_.applied()) {
    return absl::FailedPreconditionError(
        absl::StrCat("a membership change (entry ", pending_conf_index_,
                     ") is still being applied; retry once it is"));
  }
  // Reject now what would be rejected when applied.
  if (absl::StatusOr<ConfState> next = ApplyChange(conf_, cc); !next.ok()) {
    return next.status();
  }
  Entry e;
  e.type = EntryType::kConfChange;
  e.data = EncodeConfChange(cc);
  if (absl::Status s = AppendEntries({std::move(e)}); !s.ok()) return s;
  pending_conf_index_ = log_.LastIndex();
  BroadcastAppend();
  return pending_conf_index_;
}

absl::StatusOr<ConfState> Raft::ApplyConfChange(const ConfChange& cc) {
  absl::StatusOr<ConfState> next = ApplyChange(conf_, cc);
  if (!next.ok()) return next.status();
  SwitchToConfig(*next);
  if (!conf_.IsVoter(id_)) {
    if (role_ == Role::kLeader) {
      HandOver();
    } else if (role_ != Role::kFollower) {
      BecomeFollower(term_, kNoNode);  // no longer entitled to campaign
    }
  }
  return conf_;
}

void Raft::HandOver() {
  // A leader removed from the configuration keeps leading the group it is
  // no longer part of (dissertation §4.2.2), accepting no proposals, until
  // a voter takes over: stepping down at once could leave the voters unable
  // to learn that the change committed, waiting for this node's vote in a
  // joint configuration they have not left.
  NodeId best = kNoNode;
  Index best_match = 0;
  for (const auto& [id, pr] : progress_) {
    if (id != id_ && conf_.IsVoter(id) && pr.match() >= best_match) {
      best = id;
      best_match = pr.match();
    }
  }
  if (best == kNoNode) return;
  absl::Status s = TransferLeadership(best);
  TALLY_CHECK(s.ok(), "handing over to a voter failed");
}

void Raft::SwitchToConfig(const ConfState& cs) {
  conf_ = cs;
  if (role_ != Role::kLeader) return;
  const std::vector<NodeId> members = conf_.Members();
  for (auto it = progress_.begin(); it != progress_.end();) {
    if (!std::binary_search(members.begin(), members.end(), it->first)) {
      if (it->first == lead_transferee_) AbortLeaderTransfer();
      it = progress_.erase(it);
    } else {
      ++it;
    }
  }
  for (NodeId id : members) {
    if (!progress_.count(id)) {
      AddProgress(id);
      SendAppend(id);
    }
  }
  // A smaller quorum may commit more; a new voter may be the last vote a
  // read round needed.
  if (MaybeCommit()) BroadcastAppend();
  MaybeFinishReadRound();
}

absl::Status Raft::TransferLeadership(NodeId target) {
  if (role_ != Role::kLeader) {
    return absl::UnavailableError(
        absl::StrCat("node ", id_, " is not the leader"));
  }
  if (target == id_) {
    AbortLeaderTransfer();
    return absl::OkStatus();
  }
  if (!conf_.IsVoter(target)) {
    return absl::InvalidArgumentError(
        absl::StrCat("node ", target, " is not a voter of the group"));
  }
  if (lead_transferee_ == target) return absl::OkStatus();
  lead_transferee_ = target;
  election_elapsed_ = 0;  // the transfer times out after an election timeout
  if (progress_.at(target).match() == log_.LastIndex()) {
    SendTimeoutNow(target);
  } else {
    SendAppend(target);
  }
  return absl::OkStatus();
}

void Raft::SendTimeoutNow(NodeId to) {
  sent_timeout_now_ = true;
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  m.term = term_;
  Send(std::move(m));
}

void Raft::ReportSnapshot(NodeId id, bool success) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  if (pr.state() != Progress::State::kSnapshot) return;
  if (!success) {
    // Start over: probe from the match index, which leads to a new
    // snapshot if the entries are still compacted.
    pr.BecomeSnapshot(0);
    pr.BecomeProbe();
    return;
  }
  // Probe from just after the snapshot; the follower's answer moves it on.
  pr.BecomeProbe();
  SendAppend(id);
}

void Raft::ReportUnreachable(NodeId id) {
  if (role_ != Role::kLeader) return;
  auto it = progress_.find(id);
  if (it == progress_.end()) return;
  if (it->second.state() == Progress::State::kReplicate) {
    it->second.BecomeProbe();
  }
}

}  // namespace tally::raft
