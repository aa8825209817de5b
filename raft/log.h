#ifndef TALLY_RAFT_LOG_H_
#define TALLY_RAFT_LOG_H_

#include <optional>
#include <vector>

#include "raft/storage.h"
#include "raft/types.h"

namespace tally::raft {

// One node's view of the log: entries already persisted (read through
// Storage) followed by entries not yet handed out for persistence or not yet
// acknowledged as persisted ("unstable"). A snapshot received from the
// leader is unstable too until persisted; it then replaces the whole log up
// to its index. Tracks the commit and apply indexes.
//
// Invariant: applied <= committed <= LastIndex().
//
// Thread safety: not thread-safe.
class RaftLog {
 public:
  // Starts with committed = applied = the storage's compaction point.
  explicit RaftLog(const Storage* storage);

  Index FirstIndex() const;
  Index LastIndex() const;
  Term LastTerm() const;
  // Term of entry i, or nullopt if i is past the end or compacted away.
  std::optional<Term> TermAt(Index i) const;
  bool MatchTerm(Index i, Term t) const;

  // §5.4.1: a candidate's log (last index and term) is at least as
  // up-to-date as ours.
  bool IsUpToDate(Index last_index, Term last_term) const;

  // Handles the entries of an AppendEntries whose previous entry is
  // (prev_index, prev_term): on a match, appends what is new (truncating any
  // conflicting suffix, §5.3), advances commit to min(commit, last new index)
  // and returns the last new index. Returns nullopt if the previous entry does
  // not match.
  std::optional<Index> MaybeAppend(Index prev_index, Term prev_term,
                                   Index commit,
                                   const std::vector<Entry>& entries);
  // Appends entries at the end, truncating any unstable suffix they replace.
  // Returns the new last index.
  Index Append(const std::vector<Entry>& entries);

  // The first index in `entries` whose term differs from ours or that we do
  // not have; 0 if all match.
  Index FindConflict(const std::vector<Entry>& entries) const;
  // The largest index <= index whose term is <= term (used for the fast
  // back-off of nextIndex). Returns the compaction point if none is retained.
  Index FindConflictByTerm(Index index, Term term) const;

  // Entries in [lo, hi), at most max_bytes (but at least one if lo < hi).
  // REQUIRES: FirstIndex() <= lo <= hi <= LastIndex() + 1.
  std::vector<Entry> Slice(Index lo, Index hi, uint64_t max_bytes) const;

  Index committed() const { return committed_; }
  Index applied() const { return applied_; }
  // Raises commit. REQUIRES: index <= LastIndex() (fatal otherwise).
  void CommitTo(Index index);
  // REQUIRES: applied() <= index <= committed().
  void AppliedTo(Index index);

  // Unstable entries not yet handed out for persistence.
  const std::vector<Entry>& UnstableEntries() const { return unstable_; }
  bool HasUnstableEntries() const { return !unstable_.empty(); }
  // The application persisted unstable entries up to (index, term). Ignored
  // if that entry has since been replaced.
  void StableTo(Index index, Term term);

  // Committed entries not yet applied, at most max_bytes (at least one).
  std::vector<Entry> NextCommittedEntries(uint64_t max_bytes) const;
  bool HasNextCommittedEntries() const;

  // Replaces the log with `snapshot` (to be persisted), committed up to its
  // index. REQUIRES: snapshot index > committed().
  void Restore(const Snapshot& snapshot);
  const std::optional<Snapshot>& UnstableSnapshot() const {
    return unstable_snapshot_;
  }
  // The application persisted the snapshot at `index` and restored its
  // state machine from it.
  void StableSnapTo(Index index);

 private:
  void TruncateAndAppend(const std::vector<Entry>& entries);

  const Storage* storage_;
  std::optional<Snapshot> unstable_snapshot_;
  // unstable_[0].index == unstable_offset_ when non-empty.
  std::vector<Entry> unstable_;
  Index unstable_offset_;
  Index committed_;
  Index applied_;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_LOG_H_
