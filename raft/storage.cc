#include "raft/storage.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "util/check.h"
#include "util/status_macros.h"

namespace tally::raft {

MemoryStorage::MemoryStorage() : entries_(1) {}

MemoryStorage::MemoryStorage(ConfState conf)
    : conf_state_(std::move(conf)), entries_(1) {}

absl::StatusOr<InitialState> MemoryStorage::GetInitialState() const {
  return InitialState{hard_state_, conf_state_};
}

Index MemoryStorage::FirstIndex() const { return entries_[0].index + 1; }

Index MemoryStorage::LastIndex() const {
  return entries_[0].index + entries_.size() - 1;
}

absl::StatusOr<Term> MemoryStorage::TermAt(Index i) const {
  const Index offset = entries_[0].index;
  if (i < offset) {
    return absl::OutOfRangeError(absl::StrCat(
        "entry ", i, " is compacted (first kept: ", offset + 1, ")"));
  }
  if (i > LastIndex()) {
    return absl::InvalidArgumentError(
        absl::StrCat("entry ", i, " is past the last index ", LastIndex()));
  }
  return entries_[i - offset].term;
}

absl::StatusOr<std::vector<Entry>> MemoryStorage::Entries(
    Index lo, Index hi, uint64_t max_bytes) const {
  const Index offset = entries_[0].index;
  if (lo <= offset) {
    return absl::OutOfRangeError(absl::StrCat(
        "entry ", lo, " is compacted (first kept: ", offset + 1, ")"));
  }
  if (hi > LastIndex() + 1 || lo > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("entries [", lo, ", ", hi, ") out of bounds, last index ",
                     LastIndex()));
  }
  std::vector<Entry> out;
  uint64_t bytes = 0;
  for (Index i = lo; i < hi; ++i) {
    const Entry& e = entries_[i - offset];
    bytes += EntrySize(e);
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(e);
  }
  return out;
}

absl::StatusOr<Snapshot> MemoryStorage::GetSnapshot() const {
  return snapshot_;
}

absl::Status MemoryStorage::CreateSnapshot(Index index, const ConfState& conf,
                                           std::string data_ref) {
  if (index <= snapshot_.metadata.index) {
    return absl::OutOfRangeError(absl::StrCat("snapshot at ", index,
                                              " is not newer than the one at ",
                                              snapshot_.metadata.index));
  }
  if (index > LastIndex()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "snapshot at ", index, " is past the last index ", LastIndex()));
  }
  ASSIGN_OR_RETURN(const Term term, TermAt(index));
  snapshot_.metadata = SnapshotMetadata{index, term, conf};
  snapshot_.data_ref = std::move(data_ref);
  return absl::OkStatus();
}

absl::Status MemoryStorage::Compact(Index index) {
  const Index offset = entries_[0].index;
  if (index <= offset) {
    return absl::OutOfRangeError(
        absl::StrCat("entry ", index, " is already compacted"));
  }
  if (index > snapshot_.metadata.index) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot compact past the snapshot at ", snapshot_.metadata.index));
  }
  entries_.erase(entries_.begin(), entries_.begin() + (index - offset));
  entries_[0].data.clear();  // the placeholder keeps index and term only
  entries_[0].type = EntryType::kNormal;
  return absl::OkStatus();
}

void MemoryStorage::ApplySnapshot(const Snapshot& snapshot) {
  snapshot_ = snapshot;
  conf_state_ = snapshot.metadata.conf_state;
  entries_.assign(1, Entry{snapshot.metadata.term,
                           snapshot.metadata.index,
                           EntryType::kNormal,
                           {}});
  if (hard_state_.commit < snapshot.metadata.index) {
    hard_state_.commit = snapshot.metadata.index;
  }
}

void MemoryStorage::Append(const std::vector<Entry>& entries) {
  if (entries.empty()) return;
  const Index offset = entries_[0].index;
  const Index first = entries.front().index;
  TALLY_CHECK(first > offset, "append below the compaction point");
  TALLY_CHECK(first <= LastIndex() + 1, "append leaves a gap in the log");
  entries_.resize(first - offset);
  entries_.insert(entries_.end(), entries.begin(), entries.end());
}

}  // namespace tally::raft
