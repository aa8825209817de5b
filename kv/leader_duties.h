#ifndef TALLY_KV_LEADER_DUTIES_H_
#define TALLY_KV_LEADER_DUTIES_H_

#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv/kvpb/kvpb.pb.h"
#include "kv/state_machine.h"
#include "raft/host/interfaces.h"
#include "raft/types.h"

namespace tally::kv {

// Proposes what the state machines of the groups a node leads find due
// (StateMachine::Due: leases that ended, ...), one proposal per group at a
// time. kvd's duties thread and the host simulation both run it.
//
// A proposal's answer may never come: the host does not answer one whose
// leader lost its term before the entry's fate was known, and a crash drops
// every answer. So a proposal counts as in flight only while this node still
// leads in the term it was made in; leading again, in a later term, the node
// looks afresh. Proposing a duty twice is harmless (each is checked again
// against the log when applied).
//
// Thread safety: Run from one thread at a time; the done callbacks given to
// Propose may run on any thread, before or after the LeaderDuties is gone.
class LeaderDuties {
 public:
  // Proposes `cmd` to `group` at the state machine's ProposalTimeMs, and
  // calls `done` once with whatever comes of it (or never).
  using Propose =
      std::function<void(raft::host::GroupId group, kvpb::Command cmd,
                         std::function<void()> done)>;
  explicit LeaderDuties(Propose propose);

  // One pass over `groups` (the node's, or those that may have duties).
  // Returns the groups found with nothing to do: not leading, or nothing
  // due now. A group whose proposal is in flight is in neither.
  std::vector<raft::host::GroupId> Run(
      const std::vector<std::pair<raft::host::GroupId, StateMachine*>>& groups);

 private:
  // Per group, the term of the proposal in flight. Shared with the done
  // callbacks, which may outlive this object.
  struct InFlight {
    absl::Mutex mu;
    std::map<raft::host::GroupId, raft::Term> term ABSL_GUARDED_BY(mu);
  };

  const Propose propose_;
  const std::shared_ptr<InFlight> in_flight_ = std::make_shared<InFlight>();
};

}  // namespace tally::kv

#endif  // TALLY_KV_LEADER_DUTIES_H_
