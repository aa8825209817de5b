// Log replication (§5.3) and commitment (§5.4.2): the leader's side and the
// follower's side of AppendEntries, and proposals.

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/raft.h"
#include "util/check.h"

namespace tally::raft {

void Raft::HandleAppendEntries(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  resp.term = term_;
  if (m.index < log_.committed()) {
    // Everything up to commit already matches any leader of this term.
    resp.index = log_.committed();
    Send(std::move(resp));
    return;
  }
  if (std::optional<Index> last_new =
          log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries)) {
    resp.index = *last_new;
    Send(std::move(resp));
    return;
  }
  // Reject, with a hint that lets the leader skip a whole term of
  // mismatching entries per round trip instead of one entry.
  const Index hint =
      log_.FindConflictByTerm(std::min(m.index, log_.LastIndex()), m.log_term);
  resp.reject = true;
  resp.index = m.index;
  resp.reject_hint = hint;
  resp.log_term = log_.TermAt(hint).value_or(0);
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResponse;
  resp.to = m.from;
  resp.term = term_;
  Send(std::move(resp));
}

void Raft::HandleAppendResponse(const Message& m, Progress& pr) {
  if (m.reject) {
    Index hint = m.reject_hint;
    if (m.log_term > 0) hint = log_.FindConflictByTerm(hint, m.log_term);
    if (pr.MaybeDecreaseTo(m.index, hint)) {
      if (pr.state() == Progress::State::kReplicate) pr.BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  const bool was_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index)) return;
  if (pr.state() == Progress::State::kProbe) pr.BecomeReplicate();
  if (MaybeCommit()) {
    BroadcastAppend();  // tell everyone the new commit index
  } else if (was_paused) {
    SendAppend(m.from);
  }
  // Stream whatever else the window allows.
  while (SendAppend(m.from, /*send_if_empty=*/false)) {
  }
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.OnHeartbeatResponse();
  if (pr.match() < log_.LastIndex()) SendAppend(m.from);
}

bool Raft::SendAppend(NodeId to, bool send_if_empty) {
  Progress& pr = progress_.at(to);
  if (pr.IsPaused()) return false;
  const Index prev = pr.next() - 1;
  std::optional<Term> prev_term = log_.TermAt(prev);
  // The log is never compacted past what a follower needs: storage offers
  // no compaction, so every follower can be caught up with entries.
  TALLY_CHECK(prev_term.has_value(), "follower's next entry is not in the log");
  std::vector<Entry> entries;
  if (pr.next() <= log_.LastIndex()) {
    entries = log_.Slice(pr.next(), log_.LastIndex() + 1, max_size_per_msg_);
  }
  if (entries.empty() && !send_if_empty) return false;
  const uint64_t bytes = EntriesSize(entries);
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.term = term_;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  m.entries = std::move(entries);
  pr.SentEntries(prev + m.entries.size(), bytes);
  Send(std::move(m));
  return true;
}

void Raft::BroadcastAppend() {
  for (NodeId v : voters_) {
    if (v != id_) SendAppend(v);
  }
}

void Raft::BroadcastHeartbeat() {
  for (NodeId v : voters_) {
    if (v == id_) continue;
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = v;
    m.term = term_;
    // Never tell a follower to commit entries it may not have.
    m.commit = std::min(progress_.at(v).match(), log_.committed());
    Send(std::move(m));
  }
}

void Raft::Send(Message m) {
  m.from = id_;
  msgs_.push_back(std::move(m));
}

absl::Status Raft::AppendEntries(std::vector<Entry> entries) {
  uint64_t payload = 0;
  for (const Entry& e : entries) payload += e.data.size();
  if (max_uncommitted_size_ > 0 && uncommitted_size_ > 0 &&
      uncommitted_size_ + payload > max_uncommitted_size_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "too many uncommitted bytes at the leader (", uncommitted_size_, " + ",
        payload, " > ", max_uncommitted_size_, "); retry later"));
  }
  uncommitted_size_ += payload;
  Index index = log_.LastIndex();
  for (Entry& e : entries) {
    e.term = term_;
    e.index = ++index;
  }
  const Index last = log_.Append(entries);
  progress_.at(id_).MaybeUpdate(last);
  MaybeCommit();
  return absl::OkStatus();
}

absl::StatusOr<Index> Raft::Propose(std::string data) {
  if (role_ != Role::kLeader) {
    if (lead_ == kNoNode) {
      return absl::UnavailableError(absl::StrCat(
          "node ", id_, " is not the leader and knows of no leader (term ",
          term_, "); retry after an election"));
    }
    return absl::UnavailableError(absl::StrCat(
        "node ", id_, " is not the leader; leader is node ", lead_));
  }
  Entry e;
  e.data = std::move(data);
  if (absl::Status s = AppendEntries({std::move(e)}); !s.ok()) return s;
  const Index index = log_.LastIndex();
  BroadcastAppend();
  return index;
}

bool Raft::MaybeCommit() {
  std::vector<Index> matches;
  matches.reserve(voters_.size());
  for (NodeId v : voters_) matches.push_back(progress_.at(v).match());
  std::sort(matches.begin(), matches.end(), std::greater<Index>());
  const Index quorum_index = matches[Quorum() - 1];
  if (quorum_index <= log_.committed()) return false;
  // §5.4.2: never commit an entry of an earlier term by counting replicas.
  if (log_.TermAt(quorum_index) != term_) return false;
  log_.CommitTo(quorum_index);
  return true;
}

}  // namespace tally::raft
