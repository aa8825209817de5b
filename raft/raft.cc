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
  // No voters is allowed only for a new replica without a log: it waits for
  // a leader to send it a snapshot, which brings the configuration. It may
  // have a term and vote already (it heard from the leader, then
  // restarted before the snapshot came).
  const bool empty_replica = config.storage->LastIndex() == 0;
  if (state->conf_state.voters.empty() && !empty_replica) {
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
  r->conf_ = state->conf_state;
  r->BecomeFollower(hs.term, kNoNode);
  r->vote_ = hs.vote;
  r->startup_quiet_ = config.read_only == ReadOnlyOption::kLeaseBased;
  return r;
}

Raft::Raft(const Config& c)
    : id_(c.id),
      election_timeout_(c.election_tick),
      heartbeat_timeout_(c.heartbeat_tick),
      pre_vote_(c.pre_vote),
      check_quorum_(c.check_quorum),
      read_only_(c.read_only),
      lease_ticks_(c.election_tick - 1 - c.lease_drift_margin),
      max_size_per_msg_(c.max_size_per_msg),
      max_inflight_msgs_(c.max_inflight_msgs),
      max_inflight_bytes_(c.max_inflight_bytes),
      max_uncommitted_size_(c.max_uncommitted_entries_size),
      storage_(c.storage),
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
  AbortLeaderTransfer();
  sent_timeout_now_ = false;
  votes_.clear();
  progress_.clear();
  uncommitted_size_ = 0;
  reads_awaiting_commit_.clear();
  reads_queued_.clear();
  reads_in_round_.clear();
  read_round_seq_ = 0;
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
  TALLY_CHECK(conf_.IsVoter(id_), "only a voter becomes leader");
  Reset(term_);
  lead_ = id_;
  role_ = Role::kLeader;
  for (NodeId id : conf_.Members()) AddProgress(id);
  // Conservatively, any entry in the log may be a membership change: no new
  // change until everything up to here is applied.
  pending_conf_index_ = log_.LastIndex();
  // §5.4.2: entries of earlier terms commit only once an entry of this term
  // does, so start the term with an empty entry.
  absl::Status s = AppendEntries({Entry{}});
  TALLY_CHECK(s.ok(), "appending the leader's no-op failed");
}

void Raft::AddProgress(NodeId id) {
  const Index last = log_.LastIndex();
  auto [it, inserted] = progress_.try_emplace(id, last + 1, max_inflight_msgs_,
                                              max_inflight_bytes_);
  if (inserted && id == id_) {
    it->second.MaybeUpdate(last);
    it->second.BecomeReplicate();
    it->second.set_recent_active(true);
  }
}

// ---------------------------------------------------------------------------
// Time

void Raft::Tick() {
  ++ticks_;
  if (role_ == Role::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

void Raft::TickElection() {
  ++election_elapsed_;
  if (election_elapsed_ >= election_timeout_) startup_quiet_ = false;
  if (conf_.IsVoter(id_) && election_elapsed_ >= randomized_election_timeout_) {
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
    // A transfer that has not happened within an election timeout failed;
    // a removed leader tries again.
    AbortLeaderTransfer();
    if (!conf_.IsVoter(id_)) HandOver();
  }
  if (heartbeat_elapsed_ >= heartbeat_timeout_) {
    heartbeat_elapsed_ = 0;
    BroadcastHeartbeat();
  }
}

// ---------------------------------------------------------------------------
// Elections (§5.2, dissertation §9.6)

void Raft::Campaign() {
  if (role_ == Role::kLeader || !conf_.IsVoter(id_)) return;
  StartElection(pre_vote_, /*transfer=*/false);
}

void Raft::StartElection(bool pre_vote, bool transfer) {
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
    // A single-voter group wins at once.
    if (pre_vote) {
      StartElection(false, transfer);
    } else {
      BecomeLeader();
      BroadcastAppend();
    }
    return;
  }
  for (NodeId v : conf_.Members()) {
    if (v == id_ || !conf_.IsVoter(v)) continue;
    Message m;
    m.type = type;
    m.to = v;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    m.transfer = transfer;
    Send(std::move(m));
  }
}

VoteResult Raft::Poll(NodeId from, bool granted) {
  votes_.try_emplace(from, granted);
  return JointConfig(conf_).Vote(votes_);
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
  resp.commit = log_.committed();
  resp.log_term = log_.TermAt(resp.commit).value_or(0);
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
  if (m.type != expected) return;
  switch (Poll(m.from, !m.reject)) {
    case VoteResult::kWon:
      if (role_ == Role::kPreCandidate) {
        StartElection(false, /*transfer=*/false);
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
  if (IsVoteResponse(m.type)) LearnCommit(m.commit, m.log_term);
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
    if (is_vote_request && check_quorum_ && !m.transfer &&
        (lead_ != kNoNode || startup_quiet_) &&
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
    const bool from_leader = m.type == MessageType::kAppend ||
                             m.type == MessageType::kHeartbeat ||
                             m.type == MessageType::kSnapshot;
    BecomeFollower(m.term, from_leader ? m.from : kNoNode);
    return true;
  }
  if (m.term < term_) {
    if (m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat) {
      // §5.1: answer a stale leader with our term, so that it steps down.
      // It may be back from a partition, or removed from the group and
      // never contacted by the new leader; with pre-vote or check-quorum it
      // would not learn the term from a vote request either.
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
  if (m.type == MessageType::kReadIndex) {
    HandleReadRequest(m.from, m.context, /*allow_lease=*/true);
    return;
  }
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
    case MessageType::kSnapshot:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
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
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Leadership transfer: campaign at once, skipping the pre-vote; the
      // leader vouches that we are up to date.
      if (conf_.IsVoter(id_)) StartElection(false, /*transfer=*/true);
      break;
    case MessageType::kReadIndexResponse:
      read_states_.push_back(ReadState{m.index, m.context});
      break;
    default:
      break;
  }
}

void Raft::LearnCommit(Index index, Term term) {
  // Another node knows entry (index, term) is committed. If our log holds
  // that entry, it holds the same log up to there (Log Matching), all of it
  // committed. A candidate learns this way that a membership change it waits
  // on has committed, when the leader that committed it is gone.
  if (index > log_.committed() && log_.MatchTerm(index, term)) {
    log_.CommitTo(index);
  }
}

bool Raft::QuorumActive() const {
  std::map<NodeId, bool> active;
  for (const auto& [id, pr] : progress_) {
    active[id] = id == id_ || pr.recent_active();
  }
  return JointConfig(conf_).Vote(active) == VoteResult::kWon;
}

const Progress* Raft::progress(NodeId id) const {
  if (role_ != Role::kLeader) return nullptr;
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

std::vector<Message> Raft::TakeMessages() { return std::exchange(msgs_, {}); }

std::vector<ReadState> Raft::TakeReadStates() {
  return std::exchange(read_states_, {});
}

void Raft::Send(Message m) {
  m.from = id_;
  msgs_.push_back(std::move(m));
}

}  // namespace tally::raft
