#ifndef TALLY_KV_DUE_INDEX_H_
#define TALLY_KV_DUE_INDEX_H_

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// A module's records by the log time at which something is due for them
// (a lease's end, a record's removal, a saga's timeout): keys `prefix`,
// the time (8 bytes, big-endian), then what names the record. Keeps the
// earliest such time known, so that Module::NextDue costs an atomic load
// and a group with nothing due reads nothing.
//
// Thread safety: Wrote, Committed and Reloaded on the apply thread; the
// rest from any thread.
class DueIndex {
 public:
  DueIndex(const storage::Engine* engine, std::string prefix)
      : engine_(engine), prefix_(std::move(prefix)) {}

  // The index key of the record named `name`, due at `at_ms`.
  std::string Key(int64_t at_ms, std::string_view name) const;
  // The pass being applied writes an entry due at `at_ms`.
  void Wrote(int64_t at_ms) { written_ = std::min(written_, at_ms); }
  // The pass's batch is written.
  void Committed();
  // The group's state was replaced: nothing is known.
  void Reloaded();
  // Nothing is due before this (INT64_MIN: unknown, INT64_MAX: nothing).
  int64_t next() const { return next_; }

  // The names of up to `max` entries due at `now`, in time order, and the
  // time of the first one after those (INT64_MAX: none).
  absl::Status Scan(int64_t now, size_t max, std::vector<std::string>* names,
                    int64_t* next) const;
  // Scan for the leader's duties: empty without reading when nothing can
  // be due, and when nothing is, learns when the next entry is (unless a
  // pass committed meanwhile). Empty on a read error.
  std::vector<std::string> Due(int64_t now, size_t max) const;

 private:
  const storage::Engine* const engine_;
  const std::string prefix_;
  // The earliest time written by the pass being applied.
  int64_t written_ = INT64_MAX;
  // `changed_`: a pass was committed since Due last looked. Both change
  // under the mutex; next_ is read without it.
  mutable absl::Mutex mu_;
  mutable std::atomic<int64_t> next_ = INT64_MIN;
  mutable bool changed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tally::kv

#endif  // TALLY_KV_DUE_INDEX_H_
