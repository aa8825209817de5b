#ifndef TALLY_KV_MODULE_H_
#define TALLY_KV_MODULE_H_

#include <climits>
#include <cstdint>
#include <limits>
#include <vector>

#include "kv/batch.h"
#include "kv/keyspace.h"
#include "kv/kvpb/kvpb.pb.h"
#include "raft/types.h"

namespace tally::kv {

// What a module sees of the entry being applied.
struct ApplyContext {
  // The writes of this apply pass; reads see what earlier entries wrote.
  Batch& batch;
  const Keyspace& keys;
  // The entry's index.
  raft::Index index;
  // Applied so far, this entry's log time included. A module that changes
  // user-visible data sets the revision (state.revision() + 1).
  kvpb::AppliedState& state;

  // Fills a result's header: the revision, group and index it was applied
  // at.
  void Header(kvpb::Applied* h) const {
    h->set_revision(state.revision());
    h->set_group(keys.group());
    h->set_raft_index(index);
  }
};

// One feature of the replicated state machine: the commands it runs and
// the key spaces (keyspace.h) it keeps them in. The dispatcher
// (StateMachine) owns the applied index, the revision and the write batch,
// hands each command to the module that handles it, and wraps any module in
// exactly-once sessions when the command carries one. Snapshots carry the
// whole group's key space, every module's included.
//
// Everything Apply and OnLogTime do must be a function of the commands, the
// context and the stored state: every replica must end up with the same
// results and the same data, whatever the apply batches.
//
// Thread safety: Apply, OnLogTime, Committed, Reloaded and OnLeadership run
// on the apply thread; Due on any.
class Module {
 public:
  virtual ~Module() = default;
  // Whether `cmd` is this module's to run.
  virtual bool Handles(const kvpb::Command& cmd) const = 0;
  virtual kvpb::CommandResult Apply(ApplyContext& ctx,
                                    const kvpb::Command& cmd) = 0;
  // Log time moved from `before` to `ctx.state.log_time_ms()`, before the
  // entry's command runs: work decided by log time (expiries, cleanup).
  virtual void OnLogTime(ApplyContext& ctx, int64_t before) {
    (void)ctx;
    (void)before;
  }
  // The apply pass's batch is written: notify what watches the module.
  virtual void Committed() {}
  // The group's whole state was replaced (a snapshot installed): forget
  // anything derived from the stored state. Apply thread.
  virtual void Reloaded() {}
  // Commands the group's leader should propose at log time `now`, such as
  // the expiry of leases that are due. Apply decides again from the entry's
  // own log time, so a stale or repeated proposal changes nothing. Reads
  // applied state; any thread.
  virtual std::vector<kvpb::Command> Due(int64_t now) const {
    (void)now;
    return {};
  }
  // The log time before which Due has nothing (INT64_MAX: nothing pending,
  // INT64_MIN: unknown, ask). Asked of every group a node leads, ten times a
  // second: must cost no more than an atomic load.
  virtual int64_t NextDue() const { return INT64_MAX; }
  // This node leads the group in `term` with every earlier term's entries
  // applied (`leading`), or no longer does
  // (raft::host::StateMachine::OnLeadership). The hook for work only a
  // leader does, such as proposing expiries: what it proposes is a command
  // like any other, decided by the log, never by a follower's clock.
  virtual void OnLeadership(raft::Term term, bool leading) {
    (void)term;
    (void)leading;
  }
};

// t + d milliseconds, saturating at the ends of int64: the times and
// durations in commands come from the log, and a damaged entry (or a fuzzer)
// can hold any value.
inline int64_t AddMs(int64_t t, int64_t d) {
  int64_t out;
  if (__builtin_add_overflow(t, d, &out)) {
    return d > 0 ? std::numeric_limits<int64_t>::max()
                 : std::numeric_limits<int64_t>::min();
  }
  return out;
}

// A refusal as a command result: nothing was applied.
kvpb::CommandResult Refusal(absl::StatusCode code, std::string message,
                            const char* reason = "");

}  // namespace tally::kv

#endif  // TALLY_KV_MODULE_H_
