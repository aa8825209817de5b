#ifndef TALLY_KV_WATCH_HISTORY_H_
#define TALLY_KV_WATCH_HISTORY_H_

#include <atomic>
#include <climits>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// How many revisions of history a group keeps by default; older ones are
// compacted by its leader (kvd --watch-history).
inline constexpr int64_t kDefaultWatchHistory = 100'000;

// One change read back from the history.
struct WatchChange {
  int64_t revision = 0;
  kvpb::WatchRecord record;
  // The key before the change, when asked for and still in the history.
  std::optional<kvpb::WatchRecord> prev;
  int64_t prev_revision = 0;
};

// What a watch reads at once.
struct WatchRead {
  // Every change of the range up to `through` is in `changes`, those after
  // the revision read from on (`through` is the group's revision, or the
  // last revision read when the read stopped at its limit).
  int64_t through = 0;
  std::vector<WatchChange> changes;
};

// Whether `key` is in a watch's [start, end): end empty means `start`
// alone, "\0" every key from `start` on.
bool InWatchRange(const std::string& key, const std::string& start,
                  const std::string& end);

// The revision-ordered feed of a data group's keys: every put and delete
// that KvStore applies is recorded here, in the same batch, under its
// revision and its place within the entry (key space 'n'), so that a watch
// can read every change after a revision it saw, in order, from any
// replica, and go on after a reconnect or a leader change with no gap and
// no duplicate. Snapshots carry the history like any other key space.
//
// A group records nothing until its history is turned on (WatchCompact
// with `enable`, proposed by the first watch of the shard): each change
// then costs a second record, so a shard nobody watches does not pay it.
// The history starts at the revision it was turned on at.
//
// Compaction (WatchCompact, key space 'p') forgets the history up to a
// revision: at once for readers (a watch from there is refused with
// OUT_OF_RANGE, naming the oldest revision left), and from the store a
// bounded number of records per entry, so that no apply pass holds a huge
// batch. The leader proposes what is left, and a compaction to keep the
// last `history` revisions once the history is a tenth longer than that.
//
// Thread safety: Apply, Record, Committed and Reloaded on the apply thread;
// Read, Due and NextDue from any thread.
class WatchHistory final : public Module {
 public:
  // Records deleted from the store per entry at most.
  static constexpr int kMaxDeletedPerEntry = 10'000;

  // Neither is owned. `history`: revisions kept (0: every one, until a
  // compaction is asked for).
  WatchHistory(const storage::Engine* engine, const Keyspace* keys,
               int64_t history = kDefaultWatchHistory);

  // REQUIRES: before the first Apply.
  void set_history(int64_t revisions) { history_ = revisions; }
  // Runs after an apply pass that recorded or compacted something (apply
  // thread). REQUIRES: before the first Apply.
  void set_changed(std::function<void()> fn) { changed_ = std::move(fn); }

  // Records a change of `key` at `revision`: `now` is the key after it
  // (nullptr: deleted), `prev` before it. Changes of one revision are kept
  // in the order recorded.
  void Record(ApplyContext& ctx, int64_t revision, const std::string& key,
              const kvpb::StoredValue* now,
              const std::optional<kvpb::StoredValue>& prev);

  bool Handles(const kvpb::Command& cmd) const override {
    return cmd.has_watch_compact();
  }
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override;
  void Reloaded() override;
  std::vector<kvpb::Command> Due(int64_t now) const override;
  int64_t NextDue() const override;

  // The changes of keys in [start, end) after revision `after`, read from
  // `snap` (applied state and history together): end empty means `start`
  // alone, "\0" every key from `start` on. Stops at the end of the first
  // revision that reaches `limit` changes read (of any key). OUT_OF_RANGE
  // when `after` is below the compaction: the message names the oldest
  // revision a watch may start from. FAILED_PRECONDITION while the history
  // is off.
  absl::StatusOr<WatchRead> Read(const storage::Snapshot& snap, int64_t after,
                                 const std::string& start,
                                 const std::string& end, bool prev,
                                 size_t limit) const;
  // The revision up to which the history is forgotten, in `snap`.
  absl::StatusOr<int64_t> Compacted(const storage::Snapshot& snap) const;
  // Whether changes are recorded, as written to the store here.
  bool enabled() const { return enabled_; }

 private:
  std::string RecordKey(int64_t revision, uint32_t n) const;
  // The stored state, or the empty one.
  static absl::StatusOr<kvpb::WatchHistoryState> State(
      const std::function<
          absl::StatusOr<std::optional<std::string>>(const std::string&)>& get,
      const std::string& key);
  // Loads the cached revision and state from the store (apply thread).
  void Load();
  // What a leader should propose now, from the cached state.
  std::optional<int64_t> Wanted() const;

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  int64_t history_;
  std::function<void()> changed_;

  // Apply thread: the last record's place, and whether this pass changed
  // anything.
  int64_t last_revision_ = 0;
  uint32_t last_n_ = 0;
  bool changed_in_pass_ = false;
  // Whether changes are recorded: in this pass (apply thread), and as
  // written to the store (what readers see).
  bool recording_ = false;
  std::atomic<bool> enabled_{false};
  // Cached for NextDue (-1: unknown).
  std::atomic<int64_t> revision_{-1};
  std::atomic<int64_t> compacted_{-1};
  std::atomic<int64_t> deleted_{-1};
};

}  // namespace tally::kv

#endif  // TALLY_KV_WATCH_HISTORY_H_
