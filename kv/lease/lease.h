#ifndef TALLY_KV_LEASE_LEASE_H_
#define TALLY_KV_LEASE_LEASE_H_

#include <climits>
#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/due_index.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// Leases: a TTL in log time (state_machine.h), restarted by renewals, ended
// by revocation or expiry. Key spaces 'l' (records) and 'e' (by end time).
//
// Nothing ends on a replica's own clock. The group's leader finds the leases
// due at its proposal time (Due) and proposes LeaseExpire; the entry ends a
// lease only if it is due at the entry's log time, so a renewal that got in
// first keeps it. A renewal or lock request that finds its lease due ends it
// on the spot, which every replica does alike at the same entry.
//
// A lease's end is absolute log time, replicated with the lease, and log time
// is carried by every entry: a new leader continues the old leader's clock
// (projected by its own monotonic clock from the last entry it applied), so
// failover neither restarts a TTL nor cuts it short (docs/guarantees.md has
// the bound).
//
// Thread safety: Apply on the apply thread; reads from any thread.
// Leases expired by one command at most.
inline constexpr size_t kMaxExpiredPerCommand = 1000;

class Leases final : public Module {
 public:
  // Neither is owned.
  Leases(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine),
        keys_(keys),
        ends_(engine, keys->Key(Space::kLeaseExpiry)) {}

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;

  // Called during the apply of the entry that ends lease `id`, before its
  // record is gone. REQUIRES: set before the first Apply.
  using Ended = std::function<void(ApplyContext& ctx, uint64_t id)>;
  void set_ended(Ended fn) { ended_ = std::move(fn); }

  // The lease if it lives at the entry's log time; one that is due ends here.
  std::optional<kvpb::LeaseRecord> Live(ApplyContext& ctx, uint64_t id);

  // Whether the lease lives at the entry's log time, ending nothing (for
  // callers that are inside an Ended callback or hold records it changes).
  bool IsLive(ApplyContext& ctx, uint64_t id);

  // Reads of applied state.
  absl::StatusOr<std::optional<kvpb::LeaseRecord>> Get(uint64_t id) const;
  // Every lease, by id, at most `limit`.
  absl::StatusOr<std::vector<std::pair<uint64_t, kvpb::LeaseRecord>>> List(
      size_t limit) const;
  // How many leases live (or are due and not yet ended).
  absl::StatusOr<size_t> Count() const;
  // Up to `limit` leases that end at or before log time `now`.
  absl::StatusOr<std::vector<uint64_t>> Ending(int64_t now, size_t limit) const;
  // A LeaseExpire of the leases due at `now`, if any. Reads the store only
  // when a lease may be due: a group without leases costs nothing here.
  std::vector<kvpb::Command> Due(int64_t now) const override;
  int64_t NextDue() const override { return ends_.next(); }
  void Committed() override { ends_.Committed(); }
  void Reloaded() override { ends_.Reloaded(); }

 private:
  std::optional<kvpb::LeaseRecord> Read(Batch& b, uint64_t id);
  void Write(Batch& b, uint64_t id, const kvpb::LeaseRecord& rec);
  void End(ApplyContext& ctx, uint64_t id, const kvpb::LeaseRecord& rec);
  std::string ExpiryKey(int64_t expires_ms, uint64_t id) const;

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  Ended ended_;
  // Leases by when they end ('e').
  DueIndex ends_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_LEASE_LEASE_H_
