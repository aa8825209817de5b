// Linearizable reads without log entries (dissertation §6.4): ReadIndex with
// a quorum round of heartbeats, or a leader lease.

#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/raft.h"

namespace tally::raft {

absl::Status Raft::ReadIndex(uint64_t context, bool allow_lease) {
  if (role_ == Role::kLeader) {
    HandleReadRequest(id_, context, allow_lease);
    return absl::OkStatus();
  }
  if (lead_ == kNoNode) {
    return absl::UnavailableError(absl::StrCat(
        "node ", id_, " knows of no leader to confirm a read; retry"));
  }
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = lead_;
  m.term = term_;
  m.context = context;
  Send(std::move(m));
  return absl::OkStatus();
}

void Raft::HandleReadRequest(NodeId from, uint64_t context, bool allow_lease) {
  PendingRead read{from, context, log_.committed(), allow_lease};
  if (!CommittedInCurrentTerm()) {
    // The commit index of a new leader may be behind what earlier leaders
    // committed; it is known once an entry of this term commits.
    reads_awaiting_commit_.push_back(read);
    return;
  }
  if (JointConfig(conf_).Vote({{id_, true}}) == VoteResult::kWon) {
    AnswerRead(read, read.index);  // a single voter is its own quorum
    return;
  }
  if (allow_lease && read_only_ == ReadOnlyOption::kLeaseBased &&
      !sent_timeout_now_ && LeaseValid()) {
    AnswerRead(read, read.index);
    return;
  }
  reads_queued_.push_back(read);
  if (read_round_seq_ == 0) StartReadRound();
}

void Raft::StartReadRound() {
  reads_in_round_ = std::exchange(reads_queued_, {});
  BroadcastHeartbeat();
  read_round_seq_ = heartbeat_seq_;
  heartbeat_elapsed_ = 0;
}

void Raft::MaybeFinishReadRound() {
  if (read_round_seq_ == 0) return;
  std::map<NodeId, bool> acks;
  for (const auto& [id, pr] : progress_) {
    acks[id] = id == id_ || pr.acked_heartbeat_seq() >= read_round_seq_;
  }
  if (JointConfig(conf_).Vote(acks) != VoteResult::kWon) return;
  // A quorum still followed us after every read of the round arrived.
  for (const PendingRead& r : std::exchange(reads_in_round_, {})) {
    AnswerRead(r, r.index);
  }
  read_round_seq_ = 0;
  if (!reads_queued_.empty()) StartReadRound();
}

void Raft::AnswerRead(const PendingRead& read, Index index) {
  if (read.from == id_) {
    read_states_.push_back(ReadState{index, read.context});
    return;
  }
  Message m;
  m.type = MessageType::kReadIndexResponse;
  m.to = read.from;
  m.term = term_;
  m.index = index;
  m.context = read.context;
  Send(std::move(m));
}

bool Raft::LeaseValid() const {
  // The lease starts when the heartbeat that a quorum acknowledged was sent:
  // each of those followers reset its election timer after that moment, and
  // with check-quorum ignores votes for an election timeout of its clock.
  const uint64_t lease_start =
      JointConfig(conf_).CommittedIndex([&](NodeId id) -> uint64_t {
        if (id == id_) return ticks_;
        auto it = progress_.find(id);
        return it == progress_.end() ? 0 : it->second.acked_heartbeat_tick();
      });
  return lease_start > 0 &&
         ticks_ - lease_start < static_cast<uint64_t>(lease_ticks_);
}

}  // namespace tally::raft
