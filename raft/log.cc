#include "raft/log.h"

#include <algorithm>
#include <limits>

#include "util/check.h"

namespace tally::raft {

RaftLog::RaftLog(const Storage* storage)
    : storage_(storage),
      unstable_offset_(storage->LastIndex() + 1),
      committed_(storage->FirstIndex() - 1),
      applied_(storage->FirstIndex() - 1) {}

Index RaftLog::FirstIndex() const {
  if (unstable_snapshot_) return unstable_snapshot_->metadata.index + 1;
  return storage_->FirstIndex();
}

Index RaftLog::LastIndex() const {
  if (!unstable_.empty()) return unstable_.back().index;
  if (unstable_snapshot_) return unstable_snapshot_->metadata.index;
  return storage_->LastIndex();
}

Term RaftLog::LastTerm() const {
  std::optional<Term> t = TermAt(LastIndex());
  TALLY_CHECK(t.has_value(), "last entry has no term");
  return *t;
}

std::optional<Term> RaftLog::TermAt(Index i) const {
  if (i > LastIndex()) return std::nullopt;
  if (i >= unstable_offset_ && !unstable_.empty()) {
    return unstable_[i - unstable_offset_].term;
  }
  if (unstable_snapshot_) {
    // Nothing of the stored log before the snapshot counts any more.
    if (i == unstable_snapshot_->metadata.index) {
      return unstable_snapshot_->metadata.term;
    }
    return std::nullopt;
  }
  if (i + 1 < storage_->FirstIndex()) return std::nullopt;
  absl::StatusOr<Term> t = storage_->TermAt(i);
  if (t.ok()) return *t;
  TALLY_CHECK(absl::IsOutOfRange(t.status()), "storage failed to read a term");
  return std::nullopt;
}

bool RaftLog::MatchTerm(Index i, Term t) const {
  std::optional<Term> term = TermAt(i);
  return term.has_value() && *term == t;
}

bool RaftLog::IsUpToDate(Index last_index, Term last_term) const {
  const Term our_term = LastTerm();
  return last_term > our_term ||
         (last_term == our_term && last_index >= LastIndex());
}

Index RaftLog::FindConflict(const std::vector<Entry>& entries) const {
  for (const Entry& e : entries) {
    if (!MatchTerm(e.index, e.term)) return e.index;
  }
  return 0;
}

Index RaftLog::FindConflictByTerm(Index index, Term term) const {
  index = std::min(index, LastIndex());
  for (; index > 0; --index) {
    std::optional<Term> t = TermAt(index);
    if (!t.has_value()) break;  // compacted: stop at the compaction point
    if (*t <= term) return index;
  }
  return index;
}

std::optional<Index> RaftLog::MaybeAppend(Index prev_index, Term prev_term,
                                          Index commit,
                                          const std::vector<Entry>& entries) {
  if (!MatchTerm(prev_index, prev_term)) return std::nullopt;
  const Index last_new = prev_index + entries.size();
  const Index conflict = FindConflict(entries);
  if (conflict != 0) {
    TALLY_CHECK(conflict > committed_, "conflict with a committed entry");
    std::vector<Entry> rest(entries.begin() + (conflict - prev_index - 1),
                            entries.end());
    Append(rest);
  }
  CommitTo(std::min(commit, last_new));
  return last_new;
}

Index RaftLog::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return LastIndex();
  TALLY_CHECK(entries.front().index > committed_,
              "append would overwrite a committed entry");
  TruncateAndAppend(entries);
  return LastIndex();
}

void RaftLog::TruncateAndAppend(const std::vector<Entry>& entries) {
  const Index after = entries.front().index;
  if (after == unstable_offset_ + unstable_.size()) {
    // Directly after the unstable tail (or the stable log if none).
  } else if (after <= unstable_offset_) {
    // Replaces part of the stable log: the new entries become the unstable
    // suffix starting at `after`.
    unstable_offset_ = after;
    unstable_.clear();
  } else {
    // Replaces part of the unstable tail.
    unstable_.resize(after - unstable_offset_);
  }
  unstable_.insert(unstable_.end(), entries.begin(), entries.end());
}

std::vector<Entry> RaftLog::Slice(Index lo, Index hi,
                                  uint64_t max_bytes) const {
  TALLY_CHECK(lo >= FirstIndex() && lo <= hi && hi <= LastIndex() + 1,
              "slice out of bounds");
  std::vector<Entry> out;
  if (lo == hi) return out;
  uint64_t bytes = 0;
  if (lo < unstable_offset_) {
    const Index stable_hi = std::min(hi, unstable_offset_);
    absl::StatusOr<std::vector<Entry>> stable =
        storage_->Entries(lo, stable_hi, max_bytes);
    TALLY_CHECK(stable.ok(), "storage failed to read entries");
    out = std::move(*stable);
    bytes = EntriesSize(out);
    if (out.size() < stable_hi - lo) return out;  // hit max_bytes
  }
  for (Index i = std::max(lo, unstable_offset_); i < hi; ++i) {
    const Entry& e = unstable_[i - unstable_offset_];
    bytes += EntrySize(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

void RaftLog::CommitTo(Index index) {
  if (index <= committed_) return;
  // Only a log that lost entries this node acknowledged (or persisted as
  // committed) ends before what is committed.
  TALLY_CHECK(index <= LastIndex(),
              "commit index past the end of the log: this node lost log "
              "entries it had acknowledged (its data dir wiped, damaged or "
              "restored from an older copy while it kept its node id); "
              "remove it from the cluster and add a new member with an empty "
              "data dir in its place");
  committed_ = index;
}

void RaftLog::AppliedTo(Index index) {
  TALLY_CHECK(index >= applied_ && index <= committed_,
              "applied index out of range");
  applied_ = index;
}

void RaftLog::StableTo(Index index, Term term) {
  if (unstable_.empty() || index < unstable_offset_) return;
  if (index > unstable_.back().index) return;
  if (unstable_[index - unstable_offset_].term != term) return;  // replaced
  unstable_.erase(unstable_.begin(),
                  unstable_.begin() + (index - unstable_offset_ + 1));
  unstable_offset_ = index + 1;
}

bool RaftLog::HasNextCommittedEntries() const {
  // Entries the snapshot covers are applied by restoring it.
  return committed_ > std::max(applied_, FirstIndex() - 1);
}

std::vector<Entry> RaftLog::NextCommittedEntries(uint64_t max_bytes) const {
  if (!HasNextCommittedEntries()) return {};
  return Slice(std::max(applied_ + 1, FirstIndex()), committed_ + 1, max_bytes);
}

void RaftLog::Restore(const Snapshot& snapshot) {
  const Index index = snapshot.metadata.index;
  TALLY_CHECK(index > committed_,
              "restoring a snapshot behind the commit index");
  unstable_snapshot_ = snapshot;
  unstable_.clear();
  unstable_offset_ = index + 1;
  committed_ = index;
}

void RaftLog::StableSnapTo(Index index) {
  if (unstable_snapshot_ && unstable_snapshot_->metadata.index == index) {
    unstable_snapshot_.reset();
    if (applied_ < index) applied_ = index;
  }
}

}  // namespace tally::raft
