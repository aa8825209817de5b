#ifndef TALLY_KV_CRDT_TABLE_REPLICA_H_
#define TALLY_KV_CRDT_TABLE_REPLICA_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "clocks/clock.h"
#include "clocks/hybrid_logical_clock.h"
#include "crdt/causal.h"
#include "crdt/dot_context.h"
#include "kv/crdt_table/entry_cache.h"
#include "kv/crdt_table/members.h"
#include "kv/kvpb/kvpb.pb.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// Limits on what a client writes into a CRDT table.
inline constexpr size_t kMaxCrdtRowBytes = 1024;
inline constexpr size_t kMaxCrdtElementBytes = 4096;
inline constexpr size_t kMaxCrdtValueBytes = 64 * 1024;
inline constexpr size_t kMaxCrdtOpElements = 1000;
// Rows are spread over this many digest buckets per table (anti-entropy
// compares buckets, then sends the rows of those that differ).
inline constexpr uint32_t kCrdtBuckets = 1024;

// One operation on one column of a row.
struct CrdtOp {
  enum Kind { kIncrement, kSet, kEnable, kDisable, kAdd, kRemove };
  Kind kind = kIncrement;
  std::string column;
  // kIncrement: a g_counter's must be positive; a pn_counter's not zero.
  int64_t amount = 0;
  // kSet: the register's new value.
  std::string value;
  // kSet on an mv_register: the context the writer read (CrdtValue::context);
  // the write replaces exactly the siblings it names. Empty: a blind write,
  // which adds a sibling.
  std::string context;
  // kAdd, kRemove: elements of a set; kRemove on a map: its keys.
  std::vector<std::string> elements;
  // On a map: the keys, one per level, leading to the value operated on. As
  // deep as the map: its value (kSet of a register, `context` the one read
  // for it; kEnable, kDisable of a flag; kAdd, kRemove of a set's
  // elements). Shallower: a map inside, whose keys kRemove removes.
  std::vector<std::string> path;
};

// What a row holds in one column, as read.
struct CrdtValue {
  std::string column;
  kvpb::CrdtColumnType type = kvpb::CRDT_UNKNOWN;
  // Counters.
  int64_t count = 0;
  // lww_register: its value (none if never set); mv_register: the siblings,
  // in dot order; set: the elements, in byte order.
  std::vector<std::string> values;
  // flag.
  bool enabled = false;
  // lww_register: the winning write's hybrid timestamp (packed) and replica.
  uint64_t timestamp = 0;
  uint64_t writer = 0;
  // mv_register: the causal context to pass back with the next write.
  std::string context;
  // map: its keys, in byte order, with what each holds (as the map's value
  // type says): a register's siblings and context, a flag (enabled: a
  // disabled one is not listed), a set's elements, or a map's keys.
  struct Entry {
    std::string key;
    std::vector<std::string> values;
    std::string context;
    bool enabled = false;
    std::vector<std::string> elements;
    std::vector<Entry> entries;
  };
  std::vector<Entry> entries;
};

// A change of one row as it travels between replicas: stored entries,
// keyed within the row (a column's state, one element of a set, or one
// value of a map), each a crdt/ encoding (flags and set elements:
// crdt_table/causal_entry.h). A
// delta (full = false) carries what an update changed; a full state
// (anti-entropy) every entry of the row, so that what the sender removed
// is removed here too.
struct CrdtRowChange {
  uint64_t table = 0;
  std::string row;
  bool full = false;
  std::vector<std::pair<std::string, std::string>> entries;

  size_t bytes() const;
};

// One node's replica of every CRDT table (crdt_table/schema.h has their
// schemas), in an engine of its own. Updates are applied here and made
// durable before they return, without a consensus round: a node cut off
// from the others keeps accepting writes, and replicas converge by
// merging each other's changes (Merge) in any order, any number of times.
//
// Storage: every column of a row is one key, except that a set keeps each
// element at a key of its own, as an enable-wins flag (the dots that added
// it, and those it has seen removed): adding or removing an element reads
// and writes that element, never the whole set. A map keeps each value
// (a register, a flag, or a set's element) at a key of its own too, under
// the map keys that lead to it. Keys are the table id, a
// digest bucket (a hash of the row), the row and the column, so
// anti-entropy reads the rows of one bucket with one scan.
//
// Dots: one counter per replica across every table, so that "every dot of
// replica r up to n" means one thing everywhere. What this replica has seen
// (Seen) grows with each complete pull from a peer (RecordPull); raft
// commits the stability cut every active replica has seen
// (crdt_table/members.h), and Collect takes it as this replica's floor:
// every dot at or below the floor counts as seen without being stored, so
// the dots a removal leaves behind (tombstones) and the causal metadata
// below it go. A full state from a peer is joined with that peer's floor
// (Incoming::floor): what it no longer holds below its floor, it removed.
//
// Durability: a commit thread writes what concurrent updates and merges
// staged as one engine write, synced if it holds an update (group commit);
// an update is acknowledged once on disk. Merges are written unsynced: the
// sender holds the change durably, and anti-entropy brings back whatever
// a crash here loses; what RecordPull records is synced, with everything
// merged before it.
//
// Thread safety: thread-safe.
class CrdtReplica {
 public:
  // `engine` and `clock` are not owned. A new engine gets a new random
  // replica id: a node whose disk was wiped comes back as a new replica.
  // `cache_bytes`: the memory for values of keys used lately (0: none;
  // a node's is kvd's --crdt-cache-mb).
  static absl::StatusOr<std::unique_ptr<CrdtReplica>> Open(
      storage::Engine* engine, const clocks::Clock* clock, size_t cache_bytes);

  clocks::ReplicaId id() const {
    absl::MutexLock l(&mu_);
    return id_;
  }

  // Applies `ops` to `row` of `table`, all or none; durable on return. The
  // delta to send to the other replicas. INVALID_ARGUMENT (nothing applied)
  // for an operation that does not fit its column's type or the limits,
  // NOT_FOUND for an unknown column.
  absl::StatusOr<CrdtRowChange> Update(const kvpb::CrdtTable& table,
                                       const std::string& row,
                                       const std::vector<CrdtOp>& ops);
  // Update, answered through `done` (on the commit thread once durable,
  // or on the caller's at once when refused).
  using UpdateDone = std::function<void(absl::StatusOr<CrdtRowChange>)>;
  void UpdateAsync(const kvpb::CrdtTable& table, const std::string& row,
                   const std::vector<CrdtOp>& ops, UpdateDone done);
  ~CrdtReplica();
  // Writes what is staged, answers every waiting update and merge, and
  // stops the commit thread; nothing may be called after it.
  void Close();
  // Merges another replica's change; durable on return. INVALID_ARGUMENT
  // (nothing merged) for an entry that does not decode, or whose column is
  // unknown or of another type.
  absl::Status Merge(const kvpb::CrdtTable& table, const CrdtRowChange& change);
  // Several changes, each merged or refused on its own, made durable by
  // one synced write; the status of each, in order.
  struct Incoming {
    const kvpb::CrdtTable* table;
    const CrdtRowChange* change;
    // For a full state: the sender's floor (none: an empty one).
    const CrdtVector* floor = nullptr;
  };
  std::vector<absl::Status> MergeAll(const std::vector<Incoming>& changes);

  // The row's columns that hold something.
  absl::StatusOr<std::vector<CrdtValue>> Read(const kvpb::CrdtTable& table,
                                              const std::string& row) const;

  // Digests of a table: per bucket, a hash of every entry in it (zero for
  // an empty bucket); equal replicas have equal digests.
  std::vector<uint64_t> Digest(uint64_t table) const;
  // One hash of a table's digest: equal replicas have equal roots.
  uint64_t Root(uint64_t table) const;
  // The tables this replica holds rows of.
  std::vector<uint64_t> Tables() const;
  // Per row of `buckets` of `table`: a hash of its entries (equal rows,
  // equal hashes).
  absl::StatusOr<std::vector<std::pair<std::string, uint64_t>>> RowHashes(
      uint64_t table, const std::vector<uint32_t>& buckets) const;
  // The full state of every row of `buckets` whose hash (as RowHashes
  // gives it) is not in `have`: what differs from the replica that has
  // those hashes.
  absl::StatusOr<std::vector<CrdtRowChange>> RowsNotIn(
      uint64_t table, const std::vector<uint32_t>& buckets,
      const std::unordered_set<uint64_t>& have) const;
  // The full state of each of `rows` that holds something.
  absl::StatusOr<std::vector<CrdtRowChange>> RowStates(
      uint64_t table, const std::vector<std::string>& rows) const;

  // Per origin replica, the counter up to which this replica has every dot
  // (its own: every dot it issued that is durable).
  CrdtVector Seen() const;
  // The stability cut this replica collected below.
  CrdtVector floor() const;
  // A pull of every table from a peer completed and was merged, so
  // everything the peer had seen (`peer_seen`, its Seen() when the pull
  // began) is seen here too. Durable on return.
  absl::Status RecordPull(const CrdtVector& peer_seen);
  // Takes the committed stability cut as the floor and collects what is
  // below it; the entries removed. FAILED_PRECONDITION (nothing changed)
  // if the cut is above what this replica has seen: it was not among the
  // replicas the cut was computed from.
  absl::StatusOr<uint64_t> Collect(const CrdtVector& cut);
  // Forgets every row, what was seen and the floor, and takes a new
  // replica id: the full resync of a replica that was retired. Durable on
  // return.
  absl::Status Reset();
  // Refuses every update from now on with `why` (not OK), until
  // ResumeUpdates(); returns once every update staged before is durable.
  absl::Status StopUpdates(absl::Status why);
  void ResumeUpdates();
  // Returns once everything staged or merged so far is on disk (synced).
  absl::Status Sync() { return Flush(/*sync=*/true); }

  struct Stats {
    // Stored entries and their bytes (keys and values).
    uint64_t entries = 0;
    uint64_t bytes = 0;
    // Set elements present, and the bytes of the elements themselves.
    uint64_t elements = 0;
    uint64_t element_bytes = 0;
    // Entries holding dots seen removed (tombstones) above the floor, and
    // entries collected since the replica opened.
    uint64_t tombstones = 0;
    uint64_t collected = 0;
  };
  Stats stats() const;

  static uint32_t BucketOf(const std::string& row);

 private:
  CrdtReplica(storage::Engine* engine, const clocks::Clock* clock,
              size_t cache_bytes);
  struct Staging;

  absl::Status Load();
  // Reads a key as staged (not yet durable), cached or stored.
  absl::StatusOr<std::optional<std::string>> ReadLocked(
      const std::string& key) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Every staged or stored key under `prefix`, with its value.
  absl::StatusOr<std::map<std::string, std::string>> ScanLocked(
      const std::string& prefix) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The entries (within the row at `prefix`) that `op`, checked, writes in
  // a keyed column `col`: a set's elements; a map's value (a set's
  // elements in it); or each key removed from a map inside, with every
  // entry below it.
  absl::StatusOr<std::vector<std::string>> EntriesOfLocked(
      const std::string& prefix, const kvpb::CrdtColumn& col,
      const CrdtOp& op) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks and stages an update; on success `done` (moved from) is called
  // once it is durable.
  absl::StatusOr<CrdtRowChange> StageUpdate(const kvpb::CrdtTable& table,
                                            const std::string& row,
                                            const std::vector<CrdtOp>& ops,
                                            UpdateDone& done);
  // Stages a write (nullopt: a delete) for the next group commit;
  // `tombstone`: the new value holds dots seen removed (Collect looks at
  // it again).
  void StageLocked(const std::string& key, std::optional<std::string> value,
                   const std::optional<std::string>& old,
                   bool tombstone = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stages a causal entry's new state, its context cut down to what the
  // floor does not imply; deleted when nothing is left.
  template <typename S>
  void StageCausalLocked(const std::string& key, crdt::Causal<S>& state,
                         const std::optional<std::string>& old)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The dot of a new event of this replica, raising the persisted counter
  // limit when needed.
  crdt::Dot NextDotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  CrdtVector SeenLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Enqueues a write of what is staged and waits for it, outside the lock.
  absl::Status Flush(bool sync) ABSL_LOCKS_EXCLUDED(mu_);
  // Calls `done` (on the commit thread) once everything staged so far is
  // written, with the write's status.
  void EnqueueLocked(std::function<void(absl::Status)> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The commit thread: writes what was staged, then answers its waiters.
  void CommitLoop();
  // A hybrid timestamp for an LWW write, raising the persisted limit when
  // needed.
  absl::StatusOr<clocks::HlcTimestamp> NowLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MergeLocked(const kvpb::CrdtTable& table,
                           const CrdtRowChange& change,
                           const CrdtVector* sender_floor)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Engine* const engine_;
  const clocks::Clock* const clock_;

  mutable absl::Mutex mu_;
  clocks::ReplicaId id_ ABSL_GUARDED_BY(mu_) = 0;
  // The last dot counter issued, the persisted limit it may reach, and the
  // last one durable (as of the last engine write).
  uint64_t counter_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t counter_limit_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t durable_counter_ ABSL_GUARDED_BY(mu_) = 0;
  CrdtVector seen_ ABSL_GUARDED_BY(mu_);
  CrdtVector floor_ ABSL_GUARDED_BY(mu_);
  // The floor, raised to every committed cut Collect was given, taken or
  // not: below it a delta's dots are old news (MergeLocked).
  CrdtVector delta_floor_ ABSL_GUARDED_BY(mu_);
  // Keys of entries with tombstones: what Collect looks at.
  std::set<std::string> tombstones_ ABSL_GUARDED_BY(mu_);
  clocks::HybridLogicalClock hlc_ ABSL_GUARDED_BY(mu_);
  // Writes staged and not yet durable: the sequence of the commit that
  // staged each, and its value (nullopt: deleted).
  std::map<std::string, std::pair<uint64_t, std::optional<std::string>>>
      overlay_ ABSL_GUARDED_BY(mu_);
  // Values of keys as the store holds them (committed), the recently read
  // or written: most updates read a key they or a peer wrote lately.
  mutable EntryCache cache_ ABSL_GUARDED_BY(mu_);
  storage::WriteBatch pending_ ABSL_GUARDED_BY(mu_);
  uint64_t staged_ ABSL_GUARDED_BY(mu_) = 0;
  // Whether the next write must be synced (it holds an update).
  bool need_sync_ ABSL_GUARDED_BY(mu_) = false;
  // Why updates are refused (StopUpdates), OK while they are taken.
  absl::Status stopped_ ABSL_GUARDED_BY(mu_);
  struct Waiter {
    uint64_t seq;
    std::function<void(absl::Status)> done;
  };
  std::deque<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread committer_;
  // A failed engine write: the replica refuses everything after it (the
  // digests and staged state no longer match the disk; restart the node).
  absl::Status broken_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::vector<uint64_t>> digests_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::kv

#endif  // TALLY_KV_CRDT_TABLE_REPLICA_H_
