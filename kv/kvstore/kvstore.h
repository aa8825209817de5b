#ifndef TALLY_KV_KVSTORE_KVSTORE_H_
#define TALLY_KV_KVSTORE_KVSTORE_H_

#include <atomic>
#include <climits>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv/module.h"
#include "kv/storage/engine.h"
#include "kv/watch/history.h"

namespace tally::kv {

// The user's keys and values: puts, deletes (of a key, or of the keys of a
// range, a bounded number at once) and transactions (compare, then or else)
// within the shard, each write a new revision; and reads of what is
// applied. Key space 'd'.
//
// Fence floors (key space 'f'): a key prefix bound to a lock (FenceBind)
// takes only writes that carry a fence token (kvpb::Command.fence_token) no
// lower than the highest it has accepted; a write or transaction with a
// stale token or none is refused whole (FAILED_PRECONDITION, naming the
// token accepted). Tokens come from the lock module of the metadata group
// and grow across every lock, so a floor needs nothing but a comparison.
//
// Every change is recorded in the group's watch history (watch/history.h)
// in the same batch.
//
// Keys attached to a lease (key space 'g' indexes them by lease): leases
// live in the metadata group, so no entry here can see one end. The group's
// leader asks (Due) which of its keys' leases the metadata group has ended
// and proposes LeaseKeysEnd; the entry deletes the keys still attached to
// them. An ended lease never comes back, so a stale answer only delays.
//
// Thread safety: Apply on the apply thread; reads from any thread.
class KvStore final : public Module {
 public:
  // None is owned. Every change is recorded in `history` (if not null).
  KvStore(const storage::Engine* engine, const Keyspace* keys,
          WatchHistory* history = nullptr)
      : engine_(engine), keys_(keys), history_(history) {}

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Reloaded() override;
  void Committed() override;
  // LeaseKeysEnd of the leases of this group's keys that have ended, if any.
  std::vector<kvpb::Command> Due(int64_t now) const override;
  int64_t NextDue() const override {
    return attached_ == Attached::kNone ? INT64_MAX : INT64_MIN;
  }
  // Whether lease `id` has ended (the metadata group's applied state says
  // so; false when it cannot tell yet). REQUIRES: set before the first Due.
  using LeaseEnded = std::function<bool(uint64_t id)>;
  void set_lease_ended(LeaseEnded fn) { lease_ended_ = std::move(fn); }

  absl::StatusOr<std::optional<kvpb::KeyValue>> Get(
      const std::string& key) const;
  // The fence bound to exactly `prefix`, if any.
  absl::StatusOr<std::optional<kvpb::FenceRecord>> Fence(
      const std::string& prefix) const;
  // Keys in [start, end) (end empty: to the end), at most `limit`; `more` is
  // set when keys were left out. Read from `snap` when given (reads of one
  // point in several calls), else from what is applied now.
  absl::StatusOr<std::vector<kvpb::KeyValue>> Range(
      const std::string& start, const std::string& end, size_t limit,
      bool* more, const storage::Snapshot* snap = nullptr) const;

 private:
  std::optional<kvpb::StoredValue> Read(Batch& b, const std::string& key);
  void Put(ApplyContext& ctx, const kvpb::Put& req, int64_t revision,
           kvpb::PutResult* resp);
  void Delete(ApplyContext& ctx, const std::string& key, int64_t revision,
              kvpb::DeleteResult* resp);
  // The keys a range delete deletes, at most its limit; `resume`: the first
  // key left past the limit (empty when none).
  std::vector<std::string> KeysIn(Batch& b, const kvpb::Delete& req,
                                  std::string* resume);
  void Txn(ApplyContext& ctx, const kvpb::Txn& txn, bool ok, int64_t revision,
           kvpb::TxnResult* resp, bool* wrote);
  kvpb::CommandResult Bind(ApplyContext& ctx, const kvpb::FenceBind& req);
  kvpb::CommandResult EndLeaseKeys(ApplyContext& ctx,
                                   const kvpb::LeaseKeysEnd& req);
  std::string LeaseKey(uint64_t lease, const std::string& key) const;
  // A refusal if a fence of the written keys refuses `token` (0: none);
  // otherwise raises their floors to it.
  std::optional<kvpb::CommandResult> CheckFences(
      Batch& b, const std::vector<const std::string*>& writes, uint64_t token);

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  WatchHistory* const history_;
  // Whether the group has fences at all, so that writes to a group without
  // any skip the lookup (apply thread; unknown until a write looks).
  enum class Fences { kUnknown, kNone, kSome };
  Fences fences_ = Fences::kUnknown;
  // Whether any key is attached to a lease (read without the mutex by
  // NextDue). `attach_passes_` counts the committed passes that attached
  // keys (or replaced the state), so that a Due that found none can tell
  // whether one raced with it.
  enum class Attached { kUnknown, kNone, kSome };
  mutable absl::Mutex attach_mu_;
  mutable std::atomic<Attached> attached_ = Attached::kUnknown;
  uint64_t attach_passes_ ABSL_GUARDED_BY(attach_mu_) = 0;
  bool attached_in_pass_ = false;  // apply thread
  LeaseEnded lease_ended_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_KVSTORE_KVSTORE_H_
