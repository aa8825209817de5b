#include "kv/session/session.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "kv/encode.h"
#include "rpc/reasons.h"

namespace tally::kv {

namespace {

int64_t Ttl(const kvpb::SessionRecord& rec) {
  return rec.ttl_ms() > 0 ? rec.ttl_ms() : kSessionTtlMs;
}

bool Ended(const kvpb::SessionRecord& rec, int64_t now) {
  return AddMs(rec.last_active_ms(), Ttl(rec)) < now;
}

// Sets header.replayed in whichever result the command result holds: every
// module's results carry a kvpb::Applied named `header`.
void MarkReplayed(kvpb::CommandResult& r) {
  const google::protobuf::Reflection* refl = r.GetReflection();
  const google::protobuf::OneofDescriptor* oneof =
      r.GetDescriptor()->FindOneofByName("result");
  const google::protobuf::FieldDescriptor* set =
      refl->GetOneofFieldDescriptor(r, oneof);
  if (set == nullptr ||
      set->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
    return;
  }
  google::protobuf::Message* resp = refl->MutableMessage(&r, set);
  const google::protobuf::FieldDescriptor* header =
      resp->GetDescriptor()->FindFieldByName("header");
  if (header == nullptr ||
      header->message_type() != kvpb::Applied::descriptor()) {
    return;
  }
  static_cast<kvpb::Applied*>(
      resp->GetReflection()->MutableMessage(resp, header))
      ->set_replayed(true);
}

}  // namespace

bool Sessions::Handles(const kvpb::Command& cmd) const {
  return cmd.has_open_session();
}

kvpb::CommandResult Sessions::Apply(ApplyContext& ctx,
                                    const kvpb::Command& cmd) {
  // The entry's index names the session: unique in the group, never reused.
  kvpb::SessionRecord rec;
  rec.set_last_active_ms(ctx.state.log_time_ms());
  rec.set_ttl_ms(cmd.open_session().ttl_ms() > 0 ? cmd.open_session().ttl_ms()
                                                 : kSessionTtlMs);
  rec.set_first_incomplete(1);
  ctx.batch.Put(keys_->IdKey(Space::kSession, ctx.index),
                EncodeDeterministic(rec));
  kvpb::CommandResult r;
  kvpb::OpenSessionResult* out = r.mutable_open_session();
  out->set_client_id(ctx.index);
  out->set_ttl_ms(rec.ttl_ms());
  ctx.Header(out->mutable_header());
  return r;
}

kvpb::CommandResult Sessions::RunOnce(
    ApplyContext& ctx, const kvpb::Command& cmd,
    const std::function<kvpb::CommandResult()>& run) {
  Batch& b = ctx.batch;
  const kvpb::Session& session = cmd.session();
  const uint64_t id = session.client_id();
  const uint64_t group = keys_->group();
  if (session.group() != group) {
    return Refusal(
        absl::StatusCode::kFailedPrecondition,
        absl::StrCat("session ", id, " belongs to group ", session.group(),
                     ", not to group ", group,
                     " that holds the key: the client's range map is out of "
                     "date; refresh it and use that group's session"),
        rpc::kSessionWrongGroup);
  }
  const std::string key = keys_->IdKey(Space::kSession, id);
  std::optional<std::string> raw = b.Read(key);
  kvpb::SessionRecord rec;
  if (raw && !rec.ParseFromString(*raw)) {
    b.Fail(absl::DataLossError(
        absl::StrCat("malformed session record ", id, " in group ", group)));
    return {};
  }
  const int64_t now = ctx.state.log_time_ms();
  if (!raw || Ended(rec, now)) {
    if (raw) b.Delete(key);
    return Refusal(absl::StatusCode::kFailedPrecondition,
                   absl::StrCat("session ", id, " of group ", group,
                                " has ended (no request for its TTL) or never "
                                "existed; this request was not applied: open "
                                "a new session"),
                   rpc::kSessionExpired);
  }
  rec.set_last_active_ms(now);
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
    kvpb::CommandResult r = saved->second;
    MarkReplayed(r);  // the same answer as the first time, marked
    b.Put(key, EncodeDeterministic(rec));
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
  kvpb::CommandResult r = run();
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
  b.Put(key, EncodeDeterministic(rec));
  return r;
}

void Sessions::OnLogTime(ApplyContext& ctx, int64_t before) {
  const int64_t now = ctx.state.log_time_ms();
  if (now / kSessionSweepMs == before / kSessionSweepMs) return;
  std::vector<std::string> ended;
  ctx.batch.ForEach(keys_->Key(Space::kSession),
                    [&](const std::string& key, const std::string& raw) {
                      kvpb::SessionRecord rec;
                      // A malformed record stays, for RunOnce to report.
                      if (rec.ParseFromString(raw) && Ended(rec, now))
                        ended.push_back(key);
                    });
  for (const std::string& key : ended) ctx.batch.Delete(key);
}

}  // namespace tally::kv
