#ifndef TALLY_KV_LOCK_LOCK_H_
#define TALLY_KV_LOCK_LOCK_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/lease/lease.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// A lock's record, its queue included, is read and written whole by every
// request on it: a wait beyond either bound is refused with
// RESOURCE_EXHAUSTED (a try without waiting is still answered).
inline constexpr size_t kMaxLockWaiters = 1000;
inline constexpr size_t kMaxLockWaitingBytes = 4 << 20;  // waiters' values

// Locks held by leases, with fencing tokens. Key spaces 'k' (records), 'h'
// (the locks of each lease) and 'o' (the last token issued).
//
// A grant's token is unique across every lock of the group and only grows:
// the larger of the grant's raft index and the last token + 1. A lock is
// granted only to a lease live at the grant's log time; waiters queue in
// FIFO order and the lock passes to the first one still waiting with a live
// lease when the holder releases it or its lease ends. Requests carry an id:
// the same id again answers what the first attempt got, so a retry after a
// lost answer neither queues twice nor loses a grant.
//
// A holder may proclaim a value (given with Acquire, changed by Proclaim):
// leader election is a lock whose holder proclaims who it is.
//
// Thread safety: Apply and Committed on the apply thread; reads from any
// thread.
class Locks final : public Module {
 public:
  // Not owned; `leases` tells this module when a lease ends.
  Locks(const storage::Engine* engine, const Keyspace* keys, Leases* leases);

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override;

  // A lock given to a waiter, with its request id in `holder`.
  struct Grant {
    std::string name;
    kvpb::LockGrant holder;
  };
  // Called once an apply pass that granted locks to waiters is written.
  // REQUIRES: set before the first Apply.
  using Granted = std::function<void(const std::vector<Grant>&)>;
  void set_granted(Granted fn) { granted_ = std::move(fn); }
  // Called once an apply pass is written, with the locks whose records it
  // changed (holder, value or waiters). REQUIRES: set before the first Apply.
  using Changed = std::function<void(const std::set<std::string>&)>;
  void set_changed(Changed fn) { changed_fn_ = std::move(fn); }

  // Locks held, and waits queued, across every lock.
  struct Counts {
    size_t held = 0;
    size_t waiting = 0;
  };
  absl::StatusOr<Counts> Count() const;
  // Reads of applied state: the lock's record, if it was ever taken.
  // Read from `snapshot` of the store if given.
  absl::StatusOr<std::optional<kvpb::LockRecord>> Get(
      const std::string& name,
      const storage::Snapshot* snapshot = nullptr) const;

 private:
  std::optional<kvpb::LockRecord> Read(Batch& b, const std::string& name);
  void Write(Batch& b, const std::string& name, const kvpb::LockRecord& rec);
  kvpb::CommandResult Acquire(ApplyContext& ctx, const kvpb::LockAcquire& req);
  kvpb::CommandResult Release(ApplyContext& ctx, const kvpb::LockRelease& req);
  kvpb::CommandResult Proclaim(ApplyContext& ctx,
                               const kvpb::LockProclaim& req);
  // The lock's record if `token` holds it; otherwise nullopt and `refusal`.
  std::optional<kvpb::LockRecord> Held(Batch& b, const std::string& name,
                                       uint64_t token,
                                       kvpb::CommandResult* refusal);
  // Gives a free lock to `lease` under a new token.
  void Take(ApplyContext& ctx, const std::string& name, kvpb::LockRecord& rec,
            uint64_t lease, uint64_t request_id, const std::string& value);
  // Passes a free lock to its first waiter still waiting with a live lease.
  void PassOn(ApplyContext& ctx, const std::string& name,
              kvpb::LockRecord& rec);
  // Releases what `lease` holds and drops its waits.
  void LeaseEnded(ApplyContext& ctx, uint64_t lease);
  // Drops the waiters whose wait has run out (they would otherwise leave
  // only when the lock passes on); returns whether there were any.
  bool DropGivenUp(ApplyContext& ctx, const std::string& name,
                   kvpb::LockRecord& rec);
  std::string LeaseKey(uint64_t lease, const std::string& name) const;

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  Leases* const leases_;
  Granted granted_;
  Changed changed_fn_;
  // Grants to waiters, and locks changed, in the pass being applied.
  std::vector<Grant> pending_;
  std::set<std::string> changed_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_LOCK_LOCK_H_
