#include "rpc/raft_codec.h"

#include "absl/strings/str_cat.h"

namespace tally::rpc {

namespace {

constexpr uint32_t kMaxMessageType =
    static_cast<uint32_t>(raft::MessageType::kReadIndexResponse);

void ToProto(const raft::ConfState& cs, RaftConfState* out) {
  out->mutable_voters()->Add(cs.voters.begin(), cs.voters.end());
  out->mutable_voters_outgoing()->Add(cs.voters_outgoing.begin(),
                                      cs.voters_outgoing.end());
  out->mutable_learners()->Add(cs.learners.begin(), cs.learners.end());
  out->set_auto_leave(cs.auto_leave);
}

raft::ConfState FromProto(const RaftConfState& cs) {
  raft::ConfState out;
  out.voters.assign(cs.voters().begin(), cs.voters().end());
  out.voters_outgoing.assign(cs.voters_outgoing().begin(),
                             cs.voters_outgoing().end());
  out.learners.assign(cs.learners().begin(), cs.learners().end());
  out.auto_leave = cs.auto_leave();
  return out;
}

}  // namespace

void ToProto(const raft::Entry& e, RaftEntry* out) {
  out->set_term(e.term);
  out->set_index(e.index);
  out->set_type(static_cast<uint32_t>(e.type));
  out->set_data(e.data);
}

raft::Entry FromProto(const RaftEntry& e) {
  return raft::Entry{
      e.term(), e.index(),
      e.type() == 1 ? raft::EntryType::kConfChange : raft::EntryType::kNormal,
      e.data()};
}

void ToProto(const raft::Snapshot& s, RaftSnapshot* out) {
  out->set_index(s.metadata.index);
  out->set_term(s.metadata.term);
  ToProto(s.metadata.conf_state, out->mutable_conf_state());
  out->set_data_ref(s.data_ref);
}

raft::Snapshot FromProto(const RaftSnapshot& s) {
  raft::Snapshot out;
  out.metadata.index = s.index();
  out.metadata.term = s.term();
  out.metadata.conf_state = FromProto(s.conf_state());
  out.data_ref = s.data_ref();
  return out;
}

void ToProto(const raft::host::GroupMessage& gm, RaftMessage* out) {
  const raft::Message& m = gm.msg;
  out->set_group(gm.group);
  out->set_quiesce(gm.quiesce);
  out->set_type(static_cast<uint32_t>(m.type));
  out->set_from(m.from);
  out->set_to(m.to);
  out->set_term(m.term);
  out->set_log_term(m.log_term);
  out->set_index(m.index);
  for (const raft::Entry& e : m.entries) ToProto(e, out->add_entries());
  out->set_commit(m.commit);
  out->set_reject(m.reject);
  out->set_reject_hint(m.reject_hint);
  out->set_context(m.context);
  out->set_transfer(m.transfer);
  if (!m.snapshot.IsEmpty()) ToProto(m.snapshot, out->mutable_snapshot());
}

absl::StatusOr<raft::host::GroupMessage> FromProto(const RaftMessage& m) {
  if (m.type() > kMaxMessageType) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown raft message type ", m.type()));
  }
  raft::host::GroupMessage gm;
  gm.group = m.group();
  gm.quiesce = m.quiesce();
  raft::Message& out = gm.msg;
  out.type = static_cast<raft::MessageType>(m.type());
  out.from = m.from();
  out.to = m.to();
  out.term = m.term();
  out.log_term = m.log_term();
  out.index = m.index();
  out.entries.reserve(m.entries_size());
  for (const RaftEntry& e : m.entries()) {
    if (e.type() > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown raft entry type ", e.type()));
    }
    out.entries.push_back(FromProto(e));
  }
  out.commit = m.commit();
  out.reject = m.reject();
  out.reject_hint = m.reject_hint();
  out.context = m.context();
  out.transfer = m.transfer();
  // A snapshot at index 0 is none (Snapshot::IsEmpty), whatever else it says.
  if (m.snapshot().index() != 0) out.snapshot = FromProto(m.snapshot());
  return gm;
}

}  // namespace tally::rpc
