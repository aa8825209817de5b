// Log replication (§5.3), snapshots (§7) and commitment (§5.4.2): the
// leader's side and the follower's side of AppendEntries, and proposals.

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
  resp.context = m.context;
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  const SnapshotMetadata& meta = m.snapshot.metadata;
  Message resp;
  resp.type = MessageType::kAppendResponse;
  resp.to = m.from;
  resp.term = term_;
  if (meta.index <= log_.committed()) {
    resp.index = log_.committed();  // already have all of it
  } else if (log_.MatchTerm(meta.index, meta.term)) {
    // Our log already holds the snapshot's last entry: everything up to it
    // matches, so just commit it.
    log_.CommitTo(meta.index);
    resp.index = log_.committed();
  } else {
    log_.Restore(m.snapshot);
    SwitchToConfig(meta.conf_state);
    resp.index = log_.LastIndex();
  }
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
  if (pr.state() == Progress::State::kProbe) {
    pr.BecomeReplicate();
  } else if (pr.state() == Progress::State::kSnapshot &&
             pr.match() >= pr.pending_snapshot()) {
    // The follower installed the snapshot (or caught up without it).
    pr.BecomeProbe();
    pr.BecomeReplicate();
  }
  if (MaybeCommit()) {
    BroadcastAppend();  // tell everyone the new commit index
  } else if (was_paused) {
    SendAppend(m.from);
  }
  // Stream whatever else the window allows.
  while (SendAppend(m.from, /*send_if_empty=*/false)) {
  }
  if (m.from == lead_transferee_ && pr.match() == log_.LastIndex()) {
    SendTimeoutNow(m.from);
  }
}

void Raft::HandleHeartbeatResponse(const Message& m, Progress& pr) {
  pr.OnHeartbeatResponse();
  if (m.context != 0 && m.context <= heartbeat_seq_ &&
      heartbeat_seq_ - m.context < heartbeat_sent_tick_.size()) {
    pr.OnHeartbeatAck(
        m.context,
        heartbeat_sent_tick_[m.context % heartbeat_sent_tick_.size()]);
    MaybeFinishReadRound();
  }
  if (pr.match() < log_.LastIndex()) SendAppend(m.from);
}

bool Raft::SendAppend(NodeId to, bool send_if_empty) {
  Progress& pr = progress_.at(to);
  if (pr.IsPaused()) return false;
  const Index prev = pr.next() - 1;
  std::optional<Term> prev_term = log_.TermAt(prev);
  if (!prev_term.has_value() || pr.next() < log_.FirstIndex()) {
    return SendSnapshot(to, pr);  // the entries it needs are compacted
  }
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

bool Raft::SendSnapshot(NodeId to, Progress& pr) {
  absl::StatusOr<Snapshot> snap = storage_->GetSnapshot();
  if (!snap.ok()) {
    TALLY_CHECK(absl::IsUnavailable(snap.status()),
                "storage failed to provide a snapshot");
    return false;  // being prepared; the next heartbeat response retries
  }
  TALLY_CHECK(!snap->IsEmpty(), "log compacted without a snapshot");
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.term = term_;
  m.snapshot = *snap;
  pr.BecomeSnapshot(snap->metadata.index);
  Send(std::move(m));
  return true;
}

void Raft::BroadcastAppend() {
  for (auto& [id, pr] : progress_) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BroadcastHeartbeat() {
  ++heartbeat_seq_;
  heartbeat_sent_tick_[heartbeat_seq_ % heartbeat_sent_tick_.size()] = ticks_;
  for (auto& [id, pr] : progress_) {
    if (id == id_) continue;
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = id;
    m.term = term_;
    // Never tell a follower to commit entries it may not have.
    m.commit = std::min(pr.match(), log_.committed());
    m.context = heartbeat_seq_;
    Send(std::move(m));
  }
}

absl::Status Raft::CheckCanPropose() const {
  if (role_ != Role::kLeader) {
    if (lead_ == kNoNode) {
      return absl::UnavailableError(absl::StrCat(
          "node ", id_, " is not the leader and knows of no leader (term ",
          term_, "); retry after an election"));
    }
    return absl::UnavailableError(absl::StrCat(
        "node ", id_, " is not the leader; leader is node ", lead_));
  }
  if (!conf_.IsVoter(id_)) {
    return absl::UnavailableError(
        absl::StrCat("node ", id_,
                     " was removed from the group and is handing over; "
                     "retry at the new leader"));
  }
  if (lead_transferee_ != kNoNode) {
    return absl::UnavailableError(
        absl::StrCat("leadership is being transferred to node ",
                     lead_transferee_, "; retry there"));
  }
  return absl::OkStatus();
}

absl::Status Raft::CheckUncommitted(uint64_t pending, uint64_t bytes) const {
  const uint64_t before = uncommitted_size_ + pending;
  // One entry is always admitted when nothing is uncommitted.
  if (max_uncommitted_size_ == 0 || before == 0 ||
      before + bytes <= max_uncommitted_size_) {
    return absl::OkStatus();
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("too many uncommitted bytes at the leader (", before, " + ",
                   bytes, " > ", max_uncommitted_size_, "); retry later"));
}

absl::Status Raft::AppendEntries(std::vector<Entry> entries) {
  uint64_t payload = 0;
  for (const Entry& e : entries) payload += e.data.size();
  if (absl::Status s = CheckUncommitted(0, payload); !s.ok()) return s;
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
  std::vector<std::string> one;
  one.push_back(std::move(data));
  absl::StatusOr<Proposed> p = ProposeAll(std::move(one));
  if (!p.ok()) return p.status();
  return p->first;
}

absl::StatusOr<Raft::Proposed> Raft::ProposeAll(std::vector<std::string> data) {
  TALLY_CHECK(!data.empty(), "ProposeAll of no entries");
  if (absl::Status s = CheckCanPropose(); !s.ok()) return s;
  Proposed out;
  std::vector<Entry> entries;
  entries.reserve(data.size());
  uint64_t payload = 0;
  for (std::string& d : data) {
    out.rest = CheckUncommitted(payload, d.size());
    if (!out.rest.ok()) break;
    payload += d.size();
    entries.emplace_back().data = std::move(d);
  }
  if (entries.empty()) return out.rest;
  out.first = log_.LastIndex() + 1;
  out.count = entries.size();
  absl::Status appended = AppendEntries(std::move(entries));
  TALLY_CHECK(appended.ok(), "entries the cap admitted were refused");
  BroadcastAppend();
  return out;
}

bool Raft::MaybeCommit() {
  const Index quorum_index = JointConfig(conf_).CommittedIndex([&](NodeId id) {
    auto it = progress_.find(id);
    return it == progress_.end() ? Index{0} : it->second.match();
  });
  if (quorum_index <= log_.committed()) return false;
  // §5.4.2: never commit an entry of an earlier term by counting replicas.
  if (log_.TermAt(quorum_index) != term_) return false;
  const bool first_in_term = !CommittedInCurrentTerm();
  log_.CommitTo(quorum_index);
  if (first_in_term) {
    // Reads held back until the leader knew the commit index serve now.
    for (const PendingRead& r : std::exchange(reads_awaiting_commit_, {})) {
      HandleReadRequest(r.from, r.context, r.allow_lease);
    }
  }
  return true;
}

bool Raft::CommittedInCurrentTerm() const {
  return log_.TermAt(log_.committed()) == term_;
}

void Raft::OnApplied(Index index, const std::vector<Entry>& applied) {
  if (index > log_.applied()) log_.AppliedTo(index);
  if (role_ != Role::kLeader) return;
  uint64_t payload = 0;
  for (const Entry& e : applied) payload += e.data.size();
  uncommitted_size_ =
      payload > uncommitted_size_ ? 0 : uncommitted_size_ - payload;
  // A joint configuration marked auto_leave is left as soon as it applies.
  if (conf_.IsJoint() && conf_.auto_leave && pending_conf_index_ <= index) {
    Entry leave;
    leave.type = EntryType::kConfChange;
    leave.data = EncodeConfChange(ConfChange{});
    if (AppendEntries({std::move(leave)}).ok()) {
      pending_conf_index_ = log_.LastIndex();
      BroadcastAppend();
    }
  }
}

}  // namespace tally::raft
