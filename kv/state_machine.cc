#include "kv/state_machine.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/internal/batch.h"
#include "kv/storage/leveldb_util.h"
#include "leveldb/write_batch.h"
#include "util/status_macros.h"

namespace tally::kv {

namespace {

using storage::FromLevelDB;

rpc::KeyValue ToKeyValue(const std::string& key, const rpc::StoredValue& v) {
  rpc::KeyValue kv;
  kv.set_key(key);
  kv.set_value(v.value());
  kv.set_create_revision(v.create_revision());
  kv.set_mod_revision(v.mod_revision());
  kv.set_version(v.version());
  return kv;
}

bool Holds(const rpc::Compare& c, const std::optional<rpc::StoredValue>& v) {
  int cmp = 0;
  switch (c.target()) {
    case rpc::Compare::VERSION: {
      const int64_t have = v ? v->version() : 0;
      cmp = have < c.version() ? -1 : have > c.version();
      break;
    }
    case rpc::Compare::MOD_REVISION: {
      const int64_t have = v ? v->mod_revision() : 0;
      cmp = have < c.mod_revision() ? -1 : have > c.mod_revision();
      break;
    }
    case rpc::Compare::VALUE:
      if (!v) return c.op() == rpc::Compare::NOT_EQUAL;
      cmp = v->value().compare(c.value());
      cmp = cmp < 0 ? -1 : cmp > 0;
      break;
    default:
      return false;
  }
  switch (c.op()) {
    case rpc::Compare::EQUAL:
      return cmp == 0;
    case rpc::Compare::NOT_EQUAL:
      return cmp != 0;
    case rpc::Compare::LESS:
      return cmp < 0;
    case rpc::Compare::GREATER:
      return cmp > 0;
    default:
      return false;
  }
}

}  // namespace

StateMachine::StateMachine(leveldb::DB* db, raft::host::GroupId group,
                           MonotonicClock clock)
    : db_(db), group_(group), clock_(std::move(clock)) {}

std::string StateMachine::Key(char kind, std::string_view rest) const {
  std::string k;
  storage::AppendBigEndian64(&k, group_);
  k.push_back(kind);
  k.append(rest);
  return k;
}

absl::StatusOr<std::unique_ptr<StateMachine>> StateMachine::Open(
    leveldb::DB* db, raft::host::GroupId group, MonotonicClock clock) {
  if (!clock) {
    clock = [] {
      return std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
          .count();
    };
  }
  std::unique_ptr<StateMachine> sm(
      new StateMachine(db, group, std::move(clock)));
  std::string v;
  leveldb::Status s = db->Get(leveldb::ReadOptions(), sm->Key('a'), &v);
  if (!s.ok() && !s.IsNotFound()) return FromLevelDB(s, "reading state");
  absl::MutexLock l(&sm->mu_);
  if (s.ok() && !sm->state_.ParseFromString(v)) {
    return absl::DataLossError(
        absl::StrCat("malformed applied state of group ", group));
  }
  sm->base_log_ms_ = sm->state_.log_time_ms();
  sm->base_clock_ms_ = sm->clock_();
  return sm;
}

int64_t StateMachine::ProposalTimeMs() const {
  absl::MutexLock l(&mu_);
  return base_log_ms_ + (clock_() - base_clock_ms_);
}

int64_t StateMachine::log_time_ms() const {
  absl::MutexLock l(&mu_);
  return state_.log_time_ms();
}

void StateMachine::Rebase(int64_t log_time) {
  // Only forward: a leader's own proposals never move the base (they carry
  // this very projection), so its log time advances at its clock's rate and
  // loses nothing to commit latency. Another proposer ahead of the
  // projection (a previous leader) moves it.
  const int64_t now = clock_();
  if (log_time > base_log_ms_ + (now - base_clock_ms_)) {
    base_log_ms_ = log_time;
    base_clock_ms_ = now;
  }
}

raft::Index StateMachine::applied() const {
  absl::MutexLock l(&mu_);
  return state_.index();
}

int64_t StateMachine::revision() const {
  absl::MutexLock l(&mu_);
  return state_.revision();
}

absl::Status StateMachine::Bootstrap(
    raft::Index index, const std::vector<rpc::Member>& members,
    const std::vector<rpc::RangeDescriptor>& ranges) {
  Batch b(db_);
  for (const rpc::RangeDescriptor& r : ranges) {
    b.Put(Key('r', r.start()), r.SerializeAsString());
  }
  for (const rpc::Member& m : members) {
    std::string id;
    storage::AppendBigEndian64(&id, m.id());
    b.Put(Key('m', id), m.SerializeAsString());
  }
  rpc::AppliedState st;
  st.set_index(index);
  b.Put(Key('a'), st.SerializeAsString());
  leveldb::WriteOptions opts;
  opts.sync = true;
  absl::Status s = FromLevelDB(db_->Write(opts, b.batch()), "bootstrap");
  if (!s.ok()) return s;
  absl::MutexLock l(&mu_);
  state_ = st;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> StateMachine::Apply(
    const std::vector<raft::Entry>& entries) {
  rpc::AppliedState st;
  {
    absl::MutexLock l(&mu_);
    st = state_;
  }
  Batch b(db_);
  std::vector<std::string> results;
  results.reserve(entries.size());
  bool members = false;
  for (const raft::Entry& e : entries) {
    if (e.index <= st.index()) {
      results.emplace_back();  // already applied (before a restart)
      continue;
    }
    st.set_index(e.index);
    if (e.type != raft::EntryType::kNormal || e.data.empty()) {
      results.emplace_back();
      continue;
    }
    rpc::Command cmd;
    if (!cmd.ParseFromString(e.data)) {
      return absl::DataLossError(absl::StrCat("undecodable command at index ",
                                              e.index, " of group ", group_));
    }
    members = members || cmd.has_set_member() || cmd.has_remove_member();
    const int64_t before = st.log_time_ms();
    st.set_log_time_ms(std::max(before, cmd.time_ms()));
    if (st.log_time_ms() / kSessionSweepMs != before / kSessionSweepMs) {
      SweepSessions(b, st.log_time_ms());
    }
    results.push_back(Execute(b, cmd, e.index, st).SerializeAsString());
  }
  if (!b.status().ok()) return b.status();
  b.Put(Key('a'), st.SerializeAsString());
  absl::Status s =
      FromLevelDB(db_->Write(leveldb::WriteOptions(), b.batch()), "applying");
  if (!s.ok()) return s;
  {
    absl::MutexLock l(&mu_);
    state_ = st;
    Rebase(st.log_time_ms());
  }
  if (members && members_changed_) members_changed_();
  return results;
}

rpc::CommandResult StateMachine::Execute(Batch& b, const rpc::Command& cmd,
                                         raft::Index index,
                                         rpc::AppliedState& st) {
  if (cmd.has_open_session()) return OpenSession(b, cmd, index, st);
  if (cmd.session().client_id() != 0) return RunInSession(b, cmd, index, st);
  return Run(b, cmd, index, st);
}

std::optional<rpc::StoredValue> StateMachine::Read(Batch& b,
                                                   const std::string& key) {
  std::optional<std::string> raw = b.Read(Key('d', key));
  if (!raw) return std::nullopt;
  rpc::StoredValue v;
  v.ParseFromString(*raw);
  return v;
}

void StateMachine::Put(Batch& b, const rpc::PutRequest& req, int64_t revision,
                       rpc::PutResponse* resp) {
  std::optional<rpc::StoredValue> prev = Read(b, req.key());
  rpc::StoredValue v;
  v.set_value(req.value());
  v.set_create_revision(prev ? prev->create_revision() : revision);
  v.set_mod_revision(revision);
  v.set_version(prev ? prev->version() + 1 : 1);
  if (prev) {
    resp->set_had_prev(true);
    *resp->mutable_prev() = ToKeyValue(req.key(), *prev);
  }
  b.Put(Key('d', req.key()), v.SerializeAsString());
}

void StateMachine::Delete(Batch& b, const rpc::DeleteRequest& req,
                          rpc::DeleteResponse* resp) {
  if (!Read(b, req.key())) return;
  resp->set_deleted(true);
  b.Delete(Key('d', req.key()));
}

rpc::CommandResult StateMachine::Run(Batch& b, const rpc::Command& cmd,
                                     raft::Index index, rpc::AppliedState& st) {
  rpc::CommandResult r;
  const int64_t rev = st.revision() + 1;
  auto header = [&](rpc::ResponseHeader* h) {
    h->set_revision(st.revision());
    h->set_group(group_);
    h->set_raft_index(index);
  };
  switch (cmd.op_case()) {
    case rpc::Command::kPut:
      Put(b, cmd.put(), rev, r.mutable_put());
      st.set_revision(rev);
      header(r.mutable_put()->mutable_header());
      break;
    case rpc::Command::kDelete:
      Delete(b, cmd.delete_(), r.mutable_delete_());
      if (r.delete_().deleted()) st.set_revision(rev);
      header(r.mutable_delete_()->mutable_header());
      break;
    case rpc::Command::kTxn: {
      const rpc::TxnRequest& txn = cmd.txn();
      bool ok = true;
      for (const rpc::Compare& c : txn.compare()) {
        ok = ok && Holds(c, Read(b, c.key()));
      }
      rpc::TxnResponse* resp = r.mutable_txn();
      resp->set_succeeded(ok);
      bool wrote = false;
      for (const rpc::TxnOp& op : ok ? txn.success() : txn.failure()) {
        rpc::TxnOpResult* out = resp->add_results();
        if (op.has_put()) {
          Put(b, op.put(), rev, out->mutable_put());
          wrote = true;
        } else if (op.has_delete_()) {
          Delete(b, op.delete_(), out->mutable_delete_());
          wrote = wrote || out->delete_().deleted();
        } else if (op.has_get()) {
          rpc::GetResponse* g = out->mutable_get();
          if (std::optional<rpc::StoredValue> v = Read(b, op.get().key())) {
            g->set_found(true);
            *g->mutable_kv() = ToKeyValue(op.get().key(), *v);
          }
        }
      }
      if (wrote) st.set_revision(rev);
      header(resp->mutable_header());
      break;
    }
    case rpc::Command::kSetMember: {
      std::string id;
      storage::AppendBigEndian64(&id, cmd.set_member().id());
      if (b.Read(Key('t', id))) {
        // Messages meant for the removed node may still be on their way;
        // a new node under its id would take them for its own.
        r.set_error_code(
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
        r.set_error_message(absl::StrCat(
            "n", cmd.set_member().id(),
            " was removed from the cluster and its id cannot be used again; "
            "add the node under a new name"));
        break;
      }
      b.Put(Key('m', id), cmd.set_member().SerializeAsString());
      break;
    }
    case rpc::Command::kRemoveMember: {
      std::string id;
      storage::AppendBigEndian64(&id, cmd.remove_member());
      b.Delete(Key('m', id));
      b.Put(Key('t', id), "");
      break;
    }
    default:
      r.set_error_code(static_cast<int>(absl::StatusCode::kInvalidArgument));
      r.set_error_message("empty command");
  }
  return r;
}

absl::StatusOr<raft::Index> StateMachine::Sync() {
  rpc::AppliedState st;
  {
    absl::MutexLock l(&mu_);
    st = state_;
  }
  leveldb::WriteOptions opts;
  opts.sync = true;
  absl::Status s =
      FromLevelDB(db_->Put(opts, Key('a'), st.SerializeAsString()), "sync");
  if (!s.ok()) return s;
  return st.index();
}

absl::StatusOr<std::optional<rpc::KeyValue>> StateMachine::Get(
    const std::string& key) const {
  std::string raw;
  leveldb::Status s = db_->Get(leveldb::ReadOptions(), Key('d', key), &raw);
  if (s.IsNotFound()) return std::optional<rpc::KeyValue>();
  if (!s.ok()) return FromLevelDB(s, "reading");
  rpc::StoredValue v;
  if (!v.ParseFromString(raw)) return absl::DataLossError("malformed value");
  return std::optional<rpc::KeyValue>(ToKeyValue(key, v));
}

absl::StatusOr<std::vector<rpc::KeyValue>> StateMachine::Range(
    const std::string& start, const std::string& end, size_t limit,
    bool* more) const {
  std::vector<rpc::KeyValue> out;
  *more = false;
  const std::string prefix = Key('d');
  std::unique_ptr<leveldb::Iterator> it(
      db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix + start); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    std::string key = it->key().ToString().substr(prefix.size());
    if (!end.empty() && key >= end) break;
    if (out.size() == limit) {
      *more = true;
      break;
    }
    rpc::StoredValue v;
    if (!v.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError("malformed value");
    }
    out.push_back(ToKeyValue(key, v));
  }
  if (!it->status().ok()) return FromLevelDB(it->status(), "scanning");
  return out;
}

bool StateMachine::WasRemoved(uint64_t member) const {
  std::string id, unused;
  storage::AppendBigEndian64(&id, member);
  return db_->Get(leveldb::ReadOptions(), Key('t', id), &unused).ok();
}

template <typename Record>
absl::StatusOr<std::vector<Record>> StateMachine::Scan(char kind) const {
  std::vector<Record> out;
  const std::string prefix = Key(kind);
  std::unique_ptr<leveldb::Iterator> it(
      db_->NewIterator(leveldb::ReadOptions()));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    Record r;
    if (!r.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError(
          absl::StrCat("malformed '", std::string(1, kind), "' record"));
    }
    out.push_back(std::move(r));
  }
  if (!it->status().ok()) return FromLevelDB(it->status(), "scanning");
  return out;
}

absl::StatusOr<std::vector<rpc::Member>> StateMachine::Members() const {
  return Scan<rpc::Member>('m');
}

absl::StatusOr<std::vector<rpc::RangeDescriptor>> StateMachine::Ranges() const {
  return Scan<rpc::RangeDescriptor>('r');
}

}  // namespace tally::kv
