#include "raft/raft.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "util/check.h"

namespace tally::raft {

absl::StatusOr<std::unique_ptr<Raft>> Raft::Create(const Config& config) {
  if (absl::Status s = config.Validate(); !s.ok()) return s;
  absl::StatusOr<InitialState> state = config.storage->GetInitialState();
  if (!state.ok()) return state.status();
  if (state->conf_state.voters.empty()) {
    return absl::InvalidArgumentError("storage holds no voters for the group");
  }
  std::unique_ptr<Raft> r(new Raft(config));
  const HardState& hs = state->hard_state;
  if (hs.commit > r->log_.LastIndex()) {
    return absl::InvalidArgumentError(
        absl::StrCat("stored commit index ", hs.commit,
                     " is past the last log index ", r->log_.LastIndex()));
  }
  r->log_.CommitTo(hs.commit);
  if (config.applied > r->log_.committed()) {
    return absl::InvalidArgumentError(
        absl::StrCat("applied index ", config.applied,
                     " is past the commit index ", r->log_.committed()));
  }
  if (config.applied > r->log_.applied()) r->log_.AppliedTo(config.applied);
  r->voters_ = state->conf_state.voters;
  std::sort(r->voters_.begin(), r->voters_.end());
  r->BecomeFollower(hs.term, kNoNode);
  r->vote_ = hs.vote;
  return r;
}

Raft::Raft(const Config& c)
    : id_(c.id),
      election_timeout_(c.election_tick),
      heartbeat_timeout_(c.heartbeat_tick),
      pre_vote_(c.pre_vote),
      check_quorum_(c.check_quorum),
      max_size_per_msg_(c.max_size_per_msg),
      max_inflight_msgs_(c.max_inflight_msgs),
      max_inflight_bytes_(c.max_inflight_bytes),
      max_uncommitted_size_(c.max_uncommitted_entries_size),
      random_(c.random),
      log_(c.storage) {}

// ---------------------------------------------------------------------------
// Roles

void Raft::Reset(Term term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
  }
  lead_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  votes_.clear();
  progress_.clear();
  uncommitted_size_ = 0;
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      election_timeout_ + static_cast<int>(random_->Uniform(election_timeout_));
}

void Raft::BecomeFollower(Term term, NodeId lead) {
  Reset(term);
  lead_ = lead;
  role_ = Role::kFollower;
}

void Raft::BecomePreCandidate() {
  TALLY_CHECK(role_ != Role::kLeader, "leader cannot become pre-candidate");
  // Neither the term nor the vote changes: a pre-vote disturbs nobody.
  votes_.clear();
  progress_.clear();
  lead_ = kNoNode;
  role_ = Role::kPreCandidate;
}

void Raft::BecomeCandidate() {
  TALLY_CHECK(role_ != Role::kLeader, "leader cannot become candidate");
  Reset(term_ + 1);
  vote_ = id_;
  role_ = Role::kCandidate;
}

void Raft::BecomeLeader() {
  TALLY_CHECK(role_ == Role::kCandidate, "only a candidate becomes leader");
  Reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  const Index last = log_.LastIndex();
  for (NodeId v : voters_) {
    Progress& pr =
        progress_
            .try_emplace(v, last + 1, max_inflight_msgs_, max_inflight_bytes_)
            .first->second;
    if (v == id_) {
      pr.MaybeUpdate(last);
      pr.BecomeReplicate();
      pr.set_recent_active(true);
    }
  }
  // §5.4.2: entries of earlier terms commit only once an entry of this term
  // does, so start the term with an empty entry.
  absl::Status s = AppendEntries({Entry{}});
  TALLY_CHECK(s.ok(), "appending the leader's no-op failed");
}

// ---------------------------------------------------------------------------
// Time

void Raft::Tick() {
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (IsVoter(id_) && election_elapsed_ >= randomized_election_timeout_) {
    election_elapsed_ = 0;
    Campaign();
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= election_timeout_) {
    election_elapsed_ = 0;
    if (check_quorum_) {
      if (!QuorumActive()) {
        BecomeFollower(term_, kNoNode);
        return;
      }
      for (auto& [id, pr] : progress_) pr.set_recent_active(id == id_);
    }
  }
  if (heartbeat_elapsed_ >= heartbeat_timeout_) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

// ---------------------------------------------------------------------------
// Elections (§5.2, dissertation §9.6)

void Raft::Campaign() {
  if (role_ == Role::kLeader) return;
  StartElection(pre_vote_);
}

void Raft::StartElection(bool pre_vote) {
  MessageType type;
  Term term;
  if (pre_vote) {
    BecomePreCandidate();
    type = MessageType::kPreVote;
    term = term_ + 1;  // the term we would campaign in
  } else {
    BecomeCandidate();
    type = MessageType::kVote;
    term = term_;
  }
  if (Poll(id_, true) == VoteResult::kWon) {
    // A single-node group wins at once.
    if (pre_vote) {
      StartElection(false);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId v : voters_) {
    if (v == id_) continue;
    Message m;
    m.type = type;
    m.to = v;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    Send(std::move(m));
  }
}

Raft::VoteResult Raft::Poll(NodeId from, bool granted) {
  votes_.try_emplace(from, granted);
  size_t yes = 0, no = 0;
  for (const auto& [id, vote] : votes_) (vote ? yes : no)++;
  if (yes >= Quorum()) return VoteResult::kWon;
  if (no > voters_.size() - Quorum()) return VoteResult::kLost;
  return VoteResult::kPending;
}

void Raft::HandleVoteRequest(const Message& m) {
  const bool pre = m.type == MessageType::kPreVote;
  // §5.2: one vote per term, first come first served. A pre-vote for a
  // higher term is granted on the log test alone.
  const bool can_vote = vote_ == m.from ||
                        (vote_ == kNoNode && lead_ == kNoNode) ||
                        (pre && m.term > term_);
  Message resp;
  resp.type = pre ? MessageType::kPreVoteResponse : MessageType::kVoteResponse;
  resp.to = m.from;
  // §5.4.1: only for a candidate whose log is at least as up-to-date.
  if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
    resp.term = m.term;
    if (!pre) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    resp.term = term_;
    resp.reject = true;
  }
  Send(std::move(resp));
}

void Raft::HandleVoteResponse(const Message& m) {
  const MessageType expected = role_ == Role::kPreCandidate
                                   ? MessageType::kPreVoteResponse
                                   : MessageType::kVoteResponse;
  if (m.type != expected || !IsVoter(m.from)) return;
  switch (Poll(m.from, !m.reject)) {
    case VoteResult::kWon:
      if (role_ == Role::kPreCandidate) {
        StartElection(false);
      } else {
        BecomeLeader();
        BroadcastAppend();
      }
      break;
    case VoteResult::kLost:
      BecomeFollower(term_, kNoNode);
      break;
    case VoteResult::kPending:
      break;
  }
}

// ---------------------------------------------------------------------------
// Messages

void Raft::Step(const Message& m) {
  if (!StepTerm(m)) return;
  switch (m.type) {
    case MessageType::kVote:
    case MessageType::kPreVote:
      HandleVoteRequest(m);
      return;
    default:
      break;
  }
  switch (role_) {
    case Role::kLeader:
      StepLeader(m);
      break;
    case Role::kPreCandidate:
    case Role::kCandidate:
      StepCandidate(m);
      break;
    case Role::kFollower:
      StepFollower(m);
      break;
  }
}

bool Raft::StepTerm(const Message& m) {
  const bool is_vote_request =
      m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  if (m.term > term_) {
    if (is_vote_request && check_quorum_ && lead_ != kNoNode &&
        election_elapsed_ < election_timeout_) {
      // Heard from a live leader within the election timeout: a vote request
      // now comes from a node that was partitioned away; ignore it so it
      // cannot depose a working leader (dissertation §4.2.3).
      return false;
    }
    if (m.type == MessageType::kPreVote) return true;  // term unchanged
    if (m.type == MessageType::kPreVoteResponse && !m.reject) {
      return true;  // our own future term, granted
    }
    const bool from_leader =
        m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat;
    BecomeFollower(m.term, from_leader ? m.from : kNoNode);
    return true;
  }
  if (m.term < term_) {
    if ((check_quorum_ || pre_vote_) &&
        (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat)) {
      // A stale leader, perhaps back from a partition. With pre-vote or
      // check-quorum it may never learn the new term from a vote request,
      // so tell it.
      Message resp;
      resp.type = MessageType::kAppendResponse;
      resp.to = m.from;
      resp.term = term_;
      Send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResponse;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    return false;
  }
  return true;
}

void Raft::StepLeader(const Message& m) {
  auto it = progress_.find(m.from);
  if (it == progress_.end()) return;
  Progress& pr = it->second;
  pr.set_recent_active(true);
  switch (m.type) {
    case MessageType::kAppendResponse:
      HandleAppendResponse(m, pr);
      break;
    case MessageType::kHeartbeatResponse:
      HandleHeartbeatResponse(m, pr);
      break;
    default:
      break;  // vote responses from a finished election, etc.
  }
}

void Raft::StepCandidate(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      BecomeFollower(m.term, m.from);  // §5.2: a leader of our term exists
      HandleAppendEntries(m);
      break;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kVoteResponse:
    case MessageType::kPreVoteResponse:
      HandleVoteResponse(m);
      break;
    default:
      break;
  }
}

void Raft::StepFollower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppendEntries(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      break;
    default:
      break;
  }
}

bool Raft::QuorumActive() const {
  size_t active = 0;
  for (const auto& [id, pr] : progress_) {
    if (id == id_ || pr.recent_active()) ++active;
  }
  return active >= Quorum();
}

bool Raft::IsVoter(NodeId id) const {
  return std::binary_search(voters_.begin(), voters_.end(), id);
}

const Progress* Raft::progress(NodeId id) const {
  if (role_ != Role::kLeader) return nullptr;
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

std::vector<Message> Raft::TakeMessages() { return std::exchange(msgs_, {}); }

void Raft::ReduceUncommittedSize(const std::vector<Entry>& applied) {
  if (role_ != Role::kLeader) return;
  uint64_t payload = 0;
  for (const Entry& e : applied) payload += e.data.size();
  uncommitted_size_ =
      payload > uncommitted_size_ ? 0 : uncommitted_size_ - payload;
}

}  // namespace tally::raft
