// Exactly-once sessions (Raft dissertation §6.3): a client opens a session
// through the log, numbers its requests, and a retried request is answered
// from the saved result instead of running again.
//
// Whether a session has ended is decided per entry, from that entry's log
// time, so every replica decides the same whatever its apply batches; the
// sweep only removes records that every later entry would find ended anyway.

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/internal/batch.h"
#include "kv/state_machine.h"
#include "kv/storage/leveldb_util.h"

namespace tally::kv {

namespace {

// Error reasons the client acts on (CommandResult.error_reason).
constexpr char kSessionExpired[] = "session-expired";
constexpr char kWrongGroup[] = "session-wrong-group";

rpc::CommandResult Refusal(absl::StatusCode code, std::string msg,
                           const char* reason = "") {
  rpc::CommandResult r;
  r.set_error_code(static_cast<int>(code));
  r.set_error_message(std::move(msg));
  r.set_error_reason(reason);
  return r;
}

int64_t Ttl(const rpc::SessionRecord& rec) {
  return rec.ttl_ms() > 0 ? rec.ttl_ms() : kSessionTtlMs;
}

bool Ended(const rpc::SessionRecord& rec, int64_t now) {
  return rec.last_active_ms() + Ttl(rec) < now;
}

void MarkReplayed(rpc::CommandResult& r) {
  if (r.has_put()) r.mutable_put()->mutable_header()->set_replayed(true);
  if (r.has_delete_()) {
    r.mutable_delete_()->mutable_header()->set_replayed(true);
  }
  if (r.has_txn()) r.mutable_txn()->mutable_header()->set_replayed(true);
}

}  // namespace

std::string StateMachine::SessionKey(uint64_t client_id) const {
  std::string id;
  storage::AppendBigEndian64(&id, client_id);
  return Key('s', id);
}

rpc::CommandResult StateMachine::OpenSession(Batch& b, const rpc::Command& cmd,
                                             raft::Index index,
                                             const rpc::AppliedState& st) {
  // The entry's index names the session: unique in the group, never reused.
  rpc::SessionRecord rec;
  rec.set_last_active_ms(st.log_time_ms());
  rec.set_ttl_ms(cmd.open_session().ttl_ms() > 0 ? cmd.open_session().ttl_ms()
                                                 : kSessionTtlMs);
  rec.set_first_incomplete(1);
  b.Put(SessionKey(index), rec.SerializeAsString());
  rpc::CommandResult r;
  rpc::OpenSessionResponse* out = r.mutable_open_session();
  out->set_client_id(index);
  out->set_ttl_ms(rec.ttl_ms());
  out->mutable_header()->set_revision(st.revision());
  out->mutable_header()->set_group(group_);
  out->mutable_header()->set_raft_index(index);
  return r;
}

rpc::CommandResult StateMachine::RunInSession(Batch& b, const rpc::Command& cmd,
                                              raft::Index index,
                                              rpc::AppliedState& st) {
  const rpc::Session& session = cmd.session();
  const uint64_t id = session.client_id();
  if (session.group() != group_) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("session ", id, " belongs to group ", session.group(),
                     ", not to group ", group_,
                     " that holds the key: the client's range map is out of "
                     "date; refresh it and use that group's session"),
        kWrongGroup);
  }
  const std::string key = SessionKey(id);
  std::optional<std::string> raw = b.Read(key);
  rpc::SessionRecord rec;
  if (raw && !rec.ParseFromString(*raw)) {
    b.Fail(absl::DataLossError(
        absl::StrCat("malformed session record ", id, " in group ", group_)));
    return {};
  }
  if (!raw || Ended(rec, st.log_time_ms())) {
    if (raw) b.Delete(key);
    return Refusal(absl::StatusCode::kFailedPrecondition,
                   absl::StrCat("session ", id, " of group ", group_,
                                " has ended (no request for its TTL) or never "
                                "existed; this request was not applied: open "
                                "a new session"),
                   kSessionExpired);
  }
  rec.set_last_active_ms(st.log_time_ms());
  auto saved = rec.results().find(session.sequence());
  if (saved != rec.results().end()) {
    auto fp = rec.fingerprints().find(session.sequence());
    const uint64_t was = fp == rec.fingerprints().end() ? 0 : fp->second;
    if (was != cmd.request_fingerprint()) {
      return Refusal(
          absl::StatusCode::kFailedPrecondition,
          absl::StrCat("sequence ", session.sequence(), " of session ", id,
                       " was used for a different request; this "
                       "one was not applied"));
    }
    rpc::CommandResult r = saved->second;
    MarkReplayed(r);  // the same answer as the first time, marked
    b.Put(key, rec.SerializeAsString());
    return r;
  }
  if (session.sequence() < rec.first_incomplete()) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("sequence ", session.sequence(), " of session ", id,
                     " was answered already and its result dropped"));
  }
  if (rec.results_size() >= static_cast<int>(kMaxResultsPerSession)) {
    return Refusal(absl::StatusCode::kFailedPrecondition,
                   absl::StrCat("session ", id, " has ", kMaxResultsPerSession,
                                " requests in flight; acknowledge some first"));
  }
  rpc::CommandResult r = Run(b, cmd, index, st);
  rec.set_first_incomplete(
      std::max(rec.first_incomplete(), session.first_incomplete()));
  (*rec.mutable_results())[session.sequence()] = r;
  (*rec.mutable_fingerprints())[session.sequence()] = cmd.request_fingerprint();
  for (auto it = rec.mutable_results()->begin();
       it != rec.mutable_results()->end();) {
    if (it->first >= rec.first_incomplete()) {
      ++it;
      continue;
    }
    rec.mutable_fingerprints()->erase(it->first);
    it = rec.mutable_results()->erase(it);
  }
  b.Put(key, rec.SerializeAsString());
  return r;
}

void StateMachine::SweepSessions(Batch& b, int64_t now) {
  std::vector<std::string> ended;
  b.ForEach(Key('s'), [&](const std::string& key, const std::string& raw) {
    rpc::SessionRecord rec;
    // A malformed record stays, for RunInSession to report.
    if (rec.ParseFromString(raw) && Ended(rec, now)) ended.push_back(key);
  });
  for (const std::string& key : ended) b.Delete(key);
}

}  // namespace tally::kv
