#include "kv/watch/history.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/storage/leveldb_util.h"

namespace tally::kv {

namespace {

void AppendBigEndian32(std::string* out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

}  // namespace

bool InWatchRange(const std::string& key, const std::string& start,
                  const std::string& end) {
  if (end.empty()) return key == start;
  if (key < start) return false;
  return end == std::string(1, '\0') || key < end;
}

WatchHistory::WatchHistory(const storage::Engine* engine, const Keyspace* keys,
                           int64_t history)
    : engine_(engine), keys_(keys), history_(history) {
  Load();
}

std::string WatchHistory::RecordKey(int64_t revision, uint32_t n) const {
  std::string k = keys_->IdKey(Space::kWatchRecord, revision);
  AppendBigEndian32(&k, n);
  return k;
}

absl::StatusOr<kvpb::WatchHistoryState> WatchHistory::State(
    const std::function<
        absl::StatusOr<std::optional<std::string>>(const std::string&)>& get,
    const std::string& key) {
  absl::StatusOr<std::optional<std::string>> raw = get(key);
  if (!raw.ok()) return raw.status();
  kvpb::WatchHistoryState st;
  if (*raw && !st.ParseFromString(**raw)) {
    return absl::DataLossError("malformed watch history state");
  }
  return st;
}

void WatchHistory::Load() {
  revision_ = compacted_ = deleted_ = -1;
  absl::StatusOr<std::optional<std::string>> applied =
      engine_->Get(keys_->Key(Space::kApplied));
  kvpb::AppliedState a;
  if (!applied.ok() || (*applied && !a.ParseFromString(**applied))) return;
  absl::StatusOr<kvpb::WatchHistoryState> st =
      State([&](const std::string& k) { return engine_->Get(k); },
            keys_->Key(Space::kWatchHistory));
  if (!st.ok()) return;
  revision_ = a.revision();
  compacted_ = st->compacted();
  deleted_ = st->deleted();
  enabled_ = recording_ = st->enabled();
}

void WatchHistory::Record(ApplyContext& ctx, int64_t revision,
                          const std::string& key, const kvpb::StoredValue* now,
                          const std::optional<kvpb::StoredValue>& prev) {
  if (!recording_) return;
  if (revision != last_revision_) {
    last_revision_ = revision;
    last_n_ = 0;
  }
  kvpb::WatchRecord r;
  r.set_key(key);
  if (now == nullptr) {
    r.set_deleted(true);
  } else {
    r.set_value(now->value());
    r.set_create_revision(now->create_revision());
    r.set_version(now->version());
    r.set_lease(now->lease());
  }
  if (prev) r.set_prev_revision(prev->mod_revision());
  ctx.batch.Put(RecordKey(revision, last_n_++), r.SerializeAsString());
  revision_ = revision;
  changed_in_pass_ = true;
}

kvpb::CommandResult WatchHistory::Apply(ApplyContext& ctx,
                                        const kvpb::Command& cmd) {
  const std::string state_key = keys_->Key(Space::kWatchHistory);
  absl::StatusOr<kvpb::WatchHistoryState> st = State(
      [&](const std::string& k) -> absl::StatusOr<std::optional<std::string>> {
        return ctx.batch.Read(k);
      },
      state_key);
  if (!st.ok()) {
    ctx.batch.Fail(st.status());
    return Refusal(absl::StatusCode::kDataLoss,
                   std::string(st.status().message()));
  }
  if (cmd.watch_compact().enable() && !st->enabled()) {
    // On from here: nothing before this revision was recorded.
    st->set_enabled(true);
    st->set_compacted(std::max(st->compacted(), ctx.state.revision()));
    st->set_deleted(st->compacted());
    recording_ = true;  // enabled_ once the pass is written
  }
  const int64_t target =
      std::min(cmd.watch_compact().revision(), ctx.state.revision());
  st->set_compacted(std::max(st->compacted(), target));
  // Delete what is forgotten, a bounded number of records per entry; the
  // leader proposes the rest.
  const std::string prefix = keys_->Key(Space::kWatchRecord);
  int deleted = 0;
  int64_t stopped_in = 0;  // the revision the limit stopped in
  ctx.batch.Scan(prefix, keys_->IdKey(Space::kWatchRecord, st->deleted() + 1),
                 [&](const std::string& k, const std::string&) {
                   const int64_t rev =
                       static_cast<int64_t>(storage::ReadBigEndian64(
                           std::string_view(k).substr(prefix.size())));
                   if (rev > st->compacted()) return false;
                   if (deleted == kMaxDeletedPerEntry) {
                     stopped_in = rev;
                     return false;
                   }
                   ctx.batch.Delete(k);
                   ++deleted;
                   return true;
                 });
  st->set_deleted(stopped_in != 0 ? stopped_in - 1 : st->compacted());
  ctx.batch.Put(state_key, st->SerializeAsString());
  compacted_ = st->compacted();
  deleted_ = st->deleted();
  changed_in_pass_ = true;
  kvpb::CommandResult r;
  r.mutable_watch_compact()->set_compacted(st->compacted());
  ctx.Header(r.mutable_watch_compact()->mutable_header());
  return r;
}

void WatchHistory::Committed() {
  enabled_ = recording_;
  if (!std::exchange(changed_in_pass_, false)) return;
  if (changed_) changed_();
}

void WatchHistory::Reloaded() {
  Load();
  last_revision_ = 0;
  last_n_ = 0;
  if (changed_) changed_();
}

std::optional<int64_t> WatchHistory::Wanted() const {
  const int64_t revision = revision_, compacted = compacted_,
                deleted = deleted_;
  if (revision < 0 || compacted < 0 || deleted < 0) return std::nullopt;
  if (!enabled_) return std::nullopt;
  if (deleted < compacted) return compacted;
  if (history_ > 0 && revision - compacted > history_ + history_ / 10) {
    return revision - history_;
  }
  return std::nullopt;
}

int64_t WatchHistory::NextDue() const {
  if (!enabled_) return INT64_MAX;
  if (revision_ < 0 || compacted_ < 0 || deleted_ < 0) return INT64_MIN;
  return Wanted() ? INT64_MIN : INT64_MAX;
}

std::vector<kvpb::Command> WatchHistory::Due(int64_t now) const {
  (void)now;
  std::optional<int64_t> wanted = Wanted();
  if (!wanted) return {};
  kvpb::Command cmd;
  cmd.mutable_watch_compact()->set_revision(*wanted);
  return {std::move(cmd)};
}

absl::StatusOr<int64_t> WatchHistory::Compacted(
    const storage::Snapshot& snap) const {
  absl::StatusOr<kvpb::WatchHistoryState> st =
      State([&](const std::string& k) { return snap.Get(k); },
            keys_->Key(Space::kWatchHistory));
  if (!st.ok()) return st.status();
  return st->compacted();
}

absl::StatusOr<WatchRead> WatchHistory::Read(const storage::Snapshot& snap,
                                             int64_t after,
                                             const std::string& start,
                                             const std::string& end, bool prev,
                                             size_t limit) const {
  absl::StatusOr<std::optional<std::string>> applied =
      snap.Get(keys_->Key(Space::kApplied));
  if (!applied.ok()) return applied.status();
  kvpb::AppliedState a;
  if (*applied && !a.ParseFromString(**applied)) {
    return absl::DataLossError("malformed applied state");
  }
  absl::StatusOr<kvpb::WatchHistoryState> st =
      State([&](const std::string& k) { return snap.Get(k); },
            keys_->Key(Space::kWatchHistory));
  if (!st.ok()) return st.status();
  if (!st->enabled()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the watch history of group ", keys_->group(), " is off"));
  }
  const int64_t compacted = st->compacted();
  if (after < compacted) {
    return absl::OutOfRangeError(absl::StrCat(
        "revision ", after + 1, " of group ", keys_->group(),
        " is compacted; the oldest revision a watch may start from is ",
        compacted + 1));
  }
  WatchRead out;
  // A replica behind the revision asked for has nothing to add yet; it
  // never takes the reader back.
  out.through = std::max(a.revision(), after);
  const std::string prefix = keys_->Key(Space::kWatchRecord);
  std::unique_ptr<storage::Iterator> it = snap.NewIterator();
  size_t read = 0;
  int64_t last = after;
  for (it->Seek(keys_->IdKey(Space::kWatchRecord, after + 1));
       it->Valid() && it->key().starts_with(prefix); it->Next()) {
    const int64_t rev = static_cast<int64_t>(
        storage::ReadBigEndian64(it->key().substr(prefix.size())));
    if (rev > a.revision()) break;
    if (read >= limit && rev != last) {
      // The limit is reached and the last revision read is whole.
      out.through = last;
      break;
    }
    last = rev;
    ++read;
    kvpb::WatchRecord r;
    if (!r.ParseFromArray(it->value().data(), it->value().size())) {
      return absl::DataLossError(
          absl::StrCat("malformed watch record at revision ", rev));
    }
    if (!InWatchRange(r.key(), start, end)) continue;
    WatchChange c;
    c.revision = rev;
    c.record = std::move(r);
    out.changes.push_back(std::move(c));
  }
  if (!it->status().ok()) return it->status();
  if (!prev) return out;
  for (WatchChange& c : out.changes) {
    const int64_t p = c.record.prev_revision();
    if (p <= compacted) continue;  // forgotten (or none)
    // The key's last record of revision p.
    const std::string rev_prefix = keys_->IdKey(Space::kWatchRecord, p);
    std::unique_ptr<storage::Iterator> pit = snap.NewIterator();
    for (pit->Seek(rev_prefix);
         pit->Valid() && pit->key().starts_with(rev_prefix); pit->Next()) {
      kvpb::WatchRecord r;
      if (!r.ParseFromArray(pit->value().data(), pit->value().size())) {
        return absl::DataLossError(
            absl::StrCat("malformed watch record at revision ", p));
      }
      if (r.key() == c.record.key()) {
        c.prev = std::move(r);
        c.prev_revision = p;
      }
    }
    if (!pit->status().ok()) return pit->status();
  }
  return out;
}

}  // namespace tally::kv
