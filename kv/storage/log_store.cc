#include "kv/storage/log_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kv/storage/leveldb_engine.h"
#include "kv/storage/leveldb_util.h"
#include "rpc/raft_codec.h"

namespace tally::kv::storage {

namespace {

using raft::Index;
using raft::host::GroupId;

std::string GroupKey(char kind, GroupId group) {
  std::string k(1, kind);
  AppendBigEndian64(&k, group);
  return k;
}

std::string EntryKey(GroupId group, Index index) {
  std::string k = GroupKey('e', group);
  AppendBigEndian64(&k, index);
  return k;
}

std::string EncodeHardState(const raft::HardState& hs) {
  std::string out;
  AppendBigEndian64(&out, hs.term);
  AppendBigEndian64(&out, hs.vote);
  AppendBigEndian64(&out, hs.commit);
  return out;
}

absl::StatusOr<raft::HardState> DecodeHardState(std::string_view in) {
  if (in.size() != 24) return absl::DataLossError("malformed hard state");
  return raft::HardState{ReadBigEndian64(in), ReadBigEndian64(in.substr(8)),
                         ReadBigEndian64(in.substr(16))};
}

}  // namespace

absl::StatusOr<std::unique_ptr<LogStore>> LogStore::Open(
    const std::string& path) {
  absl::StatusOr<std::unique_ptr<LevelDBEngine>> engine =
      LevelDBEngine::Open(path);
  if (!engine.ok()) return engine.status();
  Engine* e = engine->get();
  return std::unique_ptr<LogStore>(new LogStore(std::move(*engine), e));
}

std::unique_ptr<LogStore> LogStore::Over(Engine* engine) {
  return std::unique_ptr<LogStore>(new LogStore(nullptr, engine));
}

absl::StatusOr<std::map<GroupId, raft::host::PersistedGroup>> LogStore::Load() {
  std::map<GroupId, raft::host::PersistedGroup> out;
  std::unique_ptr<Iterator> it = engine_->NewIterator();
  for (it->Seek(""); it->Valid(); it->Next()) {
    const std::string_view key = it->key();
    const std::string_view value = it->value();
    if (key.size() < 9 || key[0] == 'm') continue;
    const GroupId group = ReadBigEndian64(key.substr(1));
    raft::host::PersistedGroup& g = out[group];
    if (key[0] == 'h') {
      absl::StatusOr<raft::HardState> hs = DecodeHardState(value);
      if (!hs.ok()) return hs.status();
      g.hard_state = *hs;
    } else if (key[0] == 's') {
      rpc::RaftSnapshot s;
      if (!s.ParseFromArray(value.data(), value.size())) {
        return absl::DataLossError(
            absl::StrCat("malformed snapshot of group ", group));
      }
      g.snapshot = rpc::FromProto(s);
    } else if (key[0] == 'e') {
      rpc::RaftEntry e;
      if (!e.ParseFromArray(value.data(), value.size())) {
        return absl::DataLossError(
            absl::StrCat("malformed log entry of group ", group));
      }
      g.entries.push_back(rpc::FromProto(e));
    }
  }
  if (!it->status().ok()) return it->status();
  for (auto& [group, g] : out) {
    Span& span = spans_[group];
    if (!g.entries.empty()) {
      span = {g.entries.front().index, g.entries.back().index};
    }
    // Entries the snapshot covers were kept for slow followers; the log
    // starts after the snapshot.
    const Index snap = g.snapshot.metadata.index;
    std::erase_if(g.entries,
                  [&](const raft::Entry& e) { return e.index <= snap; });
    for (size_t i = 1; i < g.entries.size(); ++i) {
      if (g.entries[i].index != g.entries[i - 1].index + 1) {
        return absl::DataLossError(absl::StrCat("gap in the log of group ",
                                                group, " after index ",
                                                g.entries[i - 1].index));
      }
    }
  }
  return out;
}

absl::Status LogStore::Write(const std::vector<raft::host::GroupWrite>& batch,
                             bool sync) {
  WriteBatch wb;
  std::map<GroupId, Span> spans;
  for (const raft::host::GroupWrite& w : batch) {
    Span& span = spans.emplace(w.group, spans_[w.group]).first->second;
    auto delete_to = [&](Index to) {
      for (Index i = span.first; span.last != 0 && i <= std::min(to, span.last);
           ++i) {
        wb.Delete(EntryKey(w.group, i));
      }
      if (span.last != 0 && to >= span.first) span.first = to + 1;
      if (span.first > span.last) span = {};
    };
    for (const std::optional<raft::Snapshot>* s : {&w.snapshot, &w.compact}) {
      if (!s->has_value()) continue;
      rpc::RaftSnapshot p;
      rpc::ToProto(**s, &p);
      wb.Put(GroupKey('s', w.group), p.SerializeAsString());
    }
    if (w.snapshot) delete_to(UINT64_MAX - 1);
    if (w.compact) delete_to(w.compact_to);
    if (w.hard_state) {
      wb.Put(GroupKey('h', w.group), EncodeHardState(*w.hard_state));
    }
    if (!w.entries.empty()) {
      const Index first = w.entries.front().index;
      const Index last = w.entries.back().index;
      for (Index i = std::max(last + 1, span.first);
           span.last != 0 && i <= span.last; ++i) {
        wb.Delete(EntryKey(w.group, i));
      }
      rpc::RaftEntry p;
      for (const raft::Entry& e : w.entries) {
        rpc::ToProto(e, &p);
        wb.Put(EntryKey(w.group, e.index), p.SerializeAsString());
      }
      if (span.last == 0 || first < span.first) span.first = first;
      span.last = last;
    }
  }
  absl::Status st = engine_->Write(wb, sync);
  if (!st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("writing the raft log: ", st.message()));
  }
  for (auto& [group, span] : spans) spans_[group] = span;
  return absl::OkStatus();
}

absl::StatusOr<std::string> LogStore::GetMeta(const std::string& name) const {
  absl::StatusOr<std::optional<std::string>> value = engine_->Get("m" + name);
  if (!value.ok()) return value.status();
  if (!value->has_value()) {
    return absl::NotFoundError(absl::StrCat(name, " not found"));
  }
  return **value;
}

absl::Status LogStore::PutMeta(const std::string& name,
                               const std::string& value) {
  WriteBatch wb;
  wb.Put("m" + name, value);
  return engine_->Write(wb, /*sync=*/true);
}

}  // namespace tally::kv::storage
