#include "raft/storage.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "util/check.h"

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
