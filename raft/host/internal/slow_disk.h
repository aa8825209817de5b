#ifndef TALLY_RAFT_HOST_INTERNAL_SLOW_DISK_H_
#define TALLY_RAFT_HOST_INTERNAL_SLOW_DISK_H_

#include <chrono>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "raft/host/interfaces.h"
#include "raft/types.h"

namespace tally::raft::host {

// Whether this node's raft log is the slow part of replication: its own
// synced log writes take several times as long as a follower's whole round
// trip for an append (the network both ways, the follower's own write and
// sync, the answer). Every write and every linearizable read of a group
// waits for its leader's raft loop, which waits for the leader's syncs; a
// leader so slowed hands its groups to followers (NodeHost). The measure is
// relative to the followers, not a fixed time: on a machine whose disks are
// all slow, or all share one disk, nothing moves.
//
// Slow: over `windows` windows in a row, the median of this node's syncs is
// above `floor` and above `factor` times the median round trip of its
// fastest follower. No longer slow: a window whose median sync is below
// both again (against the last follower round trip known, since a node that
// handed its groups off hears no more answers to appends).
//
// Thread safety: not thread-safe (the raft loop thread).
class SlowDiskDetector {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;
  struct Options {
    // 0: never slow.
    double factor = 4;
    Duration floor = std::chrono::milliseconds(20);
    Duration window = std::chrono::seconds(1);
    int windows = 3;
    // Fewer syncs or round trips than this in a window decide nothing.
    size_t min_samples = 5;
  };
  explicit SlowDiskDetector(Options options) : options_(options) {}

  // A synced write of the raft log took `took`.
  void Synced(Duration took);
  // This node, leading `group`, sent `peer` entries up to `last` at `at`
  // (before writing them itself).
  void AppendSent(GroupId group, NodeId peer, Index last, TimePoint at);
  // `peer` accepted entries of `group` up to `index`; the answer arrived
  // at `at`.
  void AppendAcked(GroupId group, NodeId peer, Index index, TimePoint at);

  enum class Change { kNone, kSlow, kRecovered };
  // Closes the window if it is over (call it often); what changed.
  Change Check(TimePoint now);
  bool slow() const { return slow_; }
  // The follower with the fastest round trips in the last window that had
  // any, or kNoNode.
  NodeId fastest_peer() const { return fastest_peer_; }
  // The medians behind the last verdict, for a log line.
  std::string Describe() const;

 private:
  static Duration Median(std::vector<Duration>* v);

  const Options options_;
  TimePoint window_start_{};
  std::vector<Duration> syncs_;
  std::map<NodeId, std::vector<Duration>> round_trips_;
  // Appends sent and not yet answered, oldest first, a bounded number.
  std::map<std::pair<GroupId, NodeId>, std::deque<std::pair<Index, TimePoint>>>
      sent_;
  int slow_windows_ = 0;
  bool slow_ = false;
  NodeId fastest_peer_ = kNoNode;
  Duration peer_round_trip_{};  // the fastest follower's, last known
  Duration own_sync_{};         // this node's, last window
};

}  // namespace tally::raft::host

#endif  // TALLY_RAFT_HOST_INTERNAL_SLOW_DISK_H_
