#ifndef TALLY_RAFT_HOST_INTERNAL_GROUP_STATE_H_
#define TALLY_RAFT_HOST_INTERNAL_GROUP_STATE_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "raft/host/node_host.h"
#include "raft/raw_node.h"
#include "raft/storage.h"
#include "util/random.h"

namespace tally::raft::host {

// One raft group as the raft loop thread sees it (owned by that thread).
struct NodeHost::GroupState {
  GroupId id = 0;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<util::SeededRandom> random;
  std::unique_ptr<RawNode> raw;
  StateMachine* sm = nullptr;
  struct Pending {
    Term term;
    ProposeCallback done;
  };
  // Proposals by the index they were appended at, until applied.
  std::map<Index, Pending> pending;
  // Proposals that arrived during this raft pass, appended together at its
  // end (NodeHost::ProposeArrived), so that followers get one append
  // message for all of them instead of one each.
  std::vector<std::pair<std::string, ProposeCallback>> arrived;
  // Reads by context, until the leader answers.
  std::map<uint64_t, ReadCallback> reads;
  // The configuration after each applied change (and at the snapshot), to
  // name the configuration a compaction snapshot covers.
  std::vector<std::pair<Index, ConfState>> conf_history;
  bool fetching_snapshot = false;
  struct Transfer {
    NodeId target;
    int ticks_left;
    std::function<void(absl::Status)> done;
  };
  std::vector<Transfer> transfers;
  bool quiet = false;
  // Whether the status last published (NodeHost::PublishInfo) was quiet: a
  // quiet group's status does not change, so it is not published again.
  bool published_quiet = false;
  // Quiet, and found with no Ready by a pass that nothing has changed
  // since: passes after a tick alone skip it (NodeHost::ProcessReadies).
  bool idle_checked = false;
  // In NodeHost::attention_.
  bool attended = false;
  // When it went quiet: on waking, the time asleep counts against its lease.
  Clock::TimePoint quiet_since;
  // Leader: ticks in a row with nothing to do.
  int idle_ticks = 0;
  // The role and leader last logged (NodeHost::LogRoleChange).
  SoftState logged_role;
  // Leader: the term it leads and the index of its first entry in that
  // term; the state machine hears of the leadership once that entry is
  // handed to it (NodeHost::TellLeadership).
  Term leading_term = 0;
  Index leading_from = 0;
  // The term the state machine was told it leads in, 0 if none.
  Term told_leading = 0;
  // Leader: ticks each follower has waited in snapshot state without
  // fetching the snapshot.
  std::map<NodeId, int> snapshot_wait;
};

struct NodeHost::ApplyTask {
  GroupId group = 0;
  StateMachine* sm = nullptr;
  std::vector<Entry> entries;
  std::vector<ProposeCallback> callbacks;  // one per entry, may be empty
  // Instead of entries: work to run in apply order (snapshot install).
  std::function<void()> run;
};

}  // namespace tally::raft::host

#endif  // TALLY_RAFT_HOST_INTERNAL_GROUP_STATE_H_
