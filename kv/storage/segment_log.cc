#include "kv/storage/segment_log.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kv/storage/internal/log_record.h"
#include "spdlog/spdlog.h"
#include "util/status_macros.h"

namespace tally::kv::storage {

namespace {

using internal::RecordKind;
using raft::Index;
using raft::host::GroupId;
using raft::host::GroupWrite;
using raft::host::PersistedGroup;

constexpr char kMetaPrefix[] = "meta.";

// "0000000000000003.log" -> 3.
std::optional<uint64_t> ParseSegmentName(const std::string& name) {
  uint64_t seq;
  char rest;
  if (name.size() != 20 || name.substr(16) != ".log" ||
      std::sscanf(name.c_str(), "%16" SCNx64 ".lo%c", &seq, &rest) != 2) {
    return std::nullopt;
  }
  return seq;
}

// One group while the segments are read back.
struct Replayed {
  PersistedGroup g;
  // Entries below this index were lost, not compacted: DATA_LOSS unless a
  // snapshot covers them by the end.
  Index missing_below = 0;
};

void Replay(const GroupWrite& w, Replayed* r) {
  std::vector<raft::Entry>& entries = r->g.entries;
  if (w.snapshot) {
    r->g.snapshot = *w.snapshot;
    entries.clear();
  }
  if (w.compact) {
    r->g.snapshot = *w.compact;
    std::erase_if(
        entries, [&](const raft::Entry& e) { return e.index <= w.compact_to; });
  }
  if (w.hard_state) r->g.hard_state = *w.hard_state;
  if (w.entries.empty()) return;
  const Index first = w.entries.front().index;
  while (!entries.empty() && entries.back().index >= first) entries.pop_back();
  if (!entries.empty() && entries.back().index + 1 != first) entries.clear();
  if (entries.empty()) r->missing_below = first;
  entries.insert(entries.end(), w.entries.begin(), w.entries.end());
}

}  // namespace

absl::StatusOr<std::unique_ptr<SegmentLog>> SegmentLog::Open(
    const std::string& dir, const Options& options) {
  std::unique_ptr<SegmentLog> log(new SegmentLog(dir, options));
  RETURN_IF_ERROR(log->Recover());
  return log;
}

std::string SegmentLog::SegmentPath(uint64_t seq) const {
  return absl::StrFormat("%s/%016x.log", dir_, seq);
}

absl::Status SegmentLog::Recover() {
  FileSystem* fs = options_.fs;
  RETURN_IF_ERROR(fs->CreateDir(dir_));
  ASSIGN_OR_RETURN(std::vector<std::string> names, fs->List(dir_));
  std::vector<uint64_t> seqs;
  for (const std::string& name : names) {
    if (std::optional<uint64_t> seq = ParseSegmentName(name)) {
      seqs.push_back(*seq);
    }
  }
  std::sort(seqs.begin(), seqs.end());
  uint64_t end = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const std::string path = SegmentPath(seqs[i]);
    const bool last = i + 1 == seqs.size();
    ASSIGN_OR_RETURN(std::string data, fs->Read(path));
    absl::StatusOr<internal::SegmentScan> scan =
        internal::ScanSegment(data, /*keep_entries=*/false);
    if (!scan.ok()) {
      return absl::DataLossError(
          absl::StrCat(path, ": ", scan.status().message()));
    }
    if (scan->damaged && (!last || scan->synced_damage)) {
      return absl::DataLossError(absl::StrCat(
          "the raft log is damaged: the record at offset ", scan->end, " of ",
          path, " fails its checksum and ",
          last ? "records synced after it follow it"
               : "it is not in the last segment",
          ". This node's log cannot be trusted; remove its data directory "
          "and add it back to the cluster as a new member"));
    }
    const bool begins_well =
        !scan->records.empty() &&
        scan->records.front().kind == RecordKind::kCheckpoint &&
        scan->records.front().seq == seqs[i];
    if (!begins_well) {
      if (last && scan->records.empty()) {
        // A crash while the segment was being started: nothing in it was
        // synced, and the one before it, if any, was synced in full.
        spdlog::warn("raft log: removing {}, started but never written", path);
        RETURN_IF_ERROR(fs->Remove(path));
        RETURN_IF_ERROR(fs->SyncDir(dir_));
        break;
      }
      return absl::DataLossError(
          absl::StrCat("the raft log is damaged: ", path,
                       " does not begin with its checkpoint record"));
    }
    if (scan->damaged) {
      spdlog::warn(
          "raft log: cutting {} bytes torn by a crash at offset {} of {}",
          data.find_last_not_of('\0') + 1 - scan->end, scan->end, path);
    }
    segments_.push_back({seqs[i], {}});
    for (const internal::Record& rec : scan->records) {
      for (const GroupWrite& w : rec.writes) {
        Track(w, rec.kind == RecordKind::kRewrite);
      }
    }
    end = scan->end;
  }
  if (segments_.empty()) return StartSegment(1);
  ASSIGN_OR_RETURN(file_, fs->OpenAt(SegmentPath(segments_.back().seq), end,
                                     options_.segment_size));
  RETURN_IF_ERROR(file_->Sync());
  synced_ = end;
  batches_in_segment_ = true;
  return ReleaseSegments();
}

absl::Status SegmentLog::StartSegment(uint64_t seq) {
  if (file_ != nullptr && synced_ < file_->offset()) {
    RETURN_IF_ERROR(file_->Sync());
  }
  std::vector<GroupWrite> state;
  for (const auto& [group, g] : groups_) {
    GroupWrite& w = state.emplace_back();
    w.group = group;
    w.hard_state = g.hard_state;
    w.compact = g.snapshot;
    if (g.snapshot) w.compact_to = g.compacted;
  }
  std::string record;
  internal::AppendRecord(RecordKind::kCheckpoint, 0, state, seq, &record);
  ASSIGN_OR_RETURN(
      file_, options_.fs->OpenAt(SegmentPath(seq), 0, options_.segment_size));
  synced_ = 0;
  batches_in_segment_ = false;
  segments_.push_back({seq, {}});
  RETURN_IF_ERROR(file_->Append(record));
  // The segment's name must survive a crash before anything synced in it
  // is relied on.
  return options_.fs->SyncDir(dir_);
}

absl::Status SegmentLog::Write(const std::vector<GroupWrite>& batch,
                               bool sync) {
  buffer_.clear();
  internal::AppendRecord(RecordKind::kBatch, synced_, batch, 0, &buffer_);
  if (file_->offset() + buffer_.size() > options_.segment_size &&
      batches_in_segment_) {
    RETURN_IF_ERROR(StartSegment(segments_.back().seq + 1));
    if (segments_.size() > options_.segments_kept) {
      RETURN_IF_ERROR(RewriteOldest());
    }
    buffer_.clear();
    internal::AppendRecord(RecordKind::kBatch, synced_, batch, 0, &buffer_);
  }
  absl::Status st = file_->Append(buffer_);
  batches_in_segment_ = true;
  if (st.ok() && sync) {
    st = file_->Sync();
    if (st.ok()) synced_ = file_->offset();
  }
  if (!st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("writing the raft log: ", st.message()));
  }
  for (const GroupWrite& w : batch) {
    Track(w);
    release_pending_ = release_pending_ || w.snapshot || w.compact;
  }
  // Only a synced compaction may let segments go: unlinking is durable at
  // once, and a crash must not find the entries gone but not the record
  // that dropped them.
  if (!sync || !release_pending_) return absl::OkStatus();
  release_pending_ = false;
  return ReleaseSegments();
}

void SegmentLog::Track(const GroupWrite& w, bool rewrite) {
  GroupState& g = groups_[w.group];
  Segment& current = segments_.back();
  if (rewrite) g.reset_seq = current.seq;
  if (w.snapshot) {
    g.snapshot = *w.snapshot;
    g.compacted = std::max(g.compacted, w.snapshot->metadata.index);
    g.reset_seq = current.seq;
    current.last_index.erase(w.group);
  }
  if (w.compact) {
    g.snapshot = *w.compact;
    g.compacted = std::max(g.compacted, w.compact_to);
  }
  if (w.hard_state) g.hard_state = *w.hard_state;
  if (!w.entries.empty()) {
    Index& last = current.last_index[w.group];
    last = std::max(last, w.entries.back().index);
  }
}

bool SegmentLog::Dead(const Segment& s, GroupId group, Index last) {
  const GroupState& g = groups_[group];
  return s.seq < g.reset_seq || last <= g.compacted;
}

absl::Status SegmentLog::ReleaseSegments() {
  auto dead = [&](const Segment& s) {
    return std::all_of(
        s.last_index.begin(), s.last_index.end(),
        [&](const auto& gi) { return Dead(s, gi.first, gi.second); });
  };
  while (segments_.size() > 1 && dead(segments_.front())) {
    RETURN_IF_ERROR(options_.fs->Remove(SegmentPath(segments_.front().seq)));
    segments_.pop_front();
  }
  return absl::OkStatus();
}

absl::Status SegmentLog::RewriteOldest() {
  std::set<GroupId> holding;
  for (const auto& [group, last] : segments_.front().last_index) {
    if (!Dead(segments_.front(), group, last)) holding.insert(group);
  }
  if (holding.empty()) return absl::OkStatus();
  // Their logs as the segments hold them (the current one has only its
  // checkpoint so far).
  std::map<GroupId, Replayed> replayed;
  for (size_t i = 0; i + 1 < segments_.size(); ++i) {
    const Segment& s = segments_[i];
    if (std::none_of(holding.begin(), holding.end(), [&](GroupId g) {
          return s.last_index.count(g) && s.seq >= groups_[g].reset_seq;
        })) {
      continue;
    }
    const std::string path = SegmentPath(s.seq);
    ASSIGN_OR_RETURN(std::string data, options_.fs->Read(path));
    ASSIGN_OR_RETURN(internal::SegmentScan scan,
                     internal::ScanSegment(data, /*keep_entries=*/true));
    for (const internal::Record& rec : scan.records) {
      for (const GroupWrite& w : rec.writes) {
        if (holding.count(w.group) && s.seq >= groups_[w.group].reset_seq) {
          Replay(w, &replayed[w.group]);
        }
      }
    }
  }
  std::vector<GroupWrite> copies;
  for (GroupId group : holding) {
    std::vector<raft::Entry>& entries = replayed[group].g.entries;
    const Index compacted = groups_[group].compacted;
    std::erase_if(entries,
                  [&](const raft::Entry& e) { return e.index <= compacted; });
    if (entries.empty()) continue;
    GroupWrite& w = copies.emplace_back();
    w.group = group;
    w.entries = std::move(entries);
  }
  std::string record;
  internal::AppendRecord(RecordKind::kRewrite, synced_, copies, 0, &record);
  RETURN_IF_ERROR(file_->Append(record));
  for (const GroupWrite& w : copies) Track(w, /*rewrite=*/true);
  // Whatever held the oldest segment is now copied; it goes once synced.
  for (GroupId group : holding) groups_[group].reset_seq = segments_.back().seq;
  release_pending_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::map<GroupId, PersistedGroup>> SegmentLog::Load() {
  std::map<GroupId, Replayed> replayed;
  for (const Segment& s : segments_) {
    const std::string path = SegmentPath(s.seq);
    ASSIGN_OR_RETURN(std::string data, options_.fs->Read(path));
    absl::StatusOr<internal::SegmentScan> scan =
        internal::ScanSegment(data, /*keep_entries=*/true);
    if (!scan.ok()) {
      return absl::DataLossError(
          absl::StrCat(path, ": ", scan.status().message()));
    }
    for (const internal::Record& rec : scan->records) {
      for (const GroupWrite& w : rec.writes) Replay(w, &replayed[w.group]);
    }
  }
  std::map<GroupId, PersistedGroup> out;
  for (auto& [group, r] : replayed) {
    // Entries the snapshot covers were kept for slow followers; the log
    // starts after the snapshot.
    const Index snap = r.g.snapshot.metadata.index;
    std::erase_if(r.g.entries,
                  [&](const raft::Entry& e) { return e.index <= snap; });
    if (r.missing_below > snap + 1 && !r.g.entries.empty()) {
      return absl::DataLossError(absl::StrCat("the raft log of group ", group,
                                              " is missing entries ", snap + 1,
                                              " to ", r.missing_below - 1));
    }
    out.emplace(group, std::move(r.g));
  }
  return out;
}

absl::StatusOr<std::string> SegmentLog::GetMeta(const std::string& name) const {
  absl::StatusOr<std::string> value =
      options_.fs->Read(absl::StrCat(dir_, "/", kMetaPrefix, name));
  if (absl::IsNotFound(value.status())) {
    return absl::NotFoundError(absl::StrCat(name, " not found"));
  }
  return value;
}

absl::Status SegmentLog::PutMeta(const std::string& name,
                                 const std::string& value) {
  return WriteFileAtomically(options_.fs, dir_, kMetaPrefix + name, value);
}

}  // namespace tally::kv::storage
