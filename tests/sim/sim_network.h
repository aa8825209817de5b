#ifndef TALLY_TESTS_SIM_SIM_NETWORK_H_
#define TALLY_TESTS_SIM_SIM_NETWORK_H_

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "raft/message.h"
#include "util/random.h"

namespace tally::sim {

// Fault rates of one run, drawn from its seed (swarm testing: each run
// stresses a different mix).
struct NetworkFaults {
  double drop = 0;       // probability a message is lost
  double duplicate = 0;  // probability a message is delivered twice
  int max_delay = 1;     // delay in ticks, uniform in [1, max_delay]
};

// A simulated network: messages wait a random delay, may be lost or
// duplicated, are delivered in random order among those due, and never cross
// a cut link. Links can be cut one way only.
//
// Thread safety: not thread-safe.
class SimNetwork {
 public:
  SimNetwork(util::SeededRandom* random, NetworkFaults faults)
      : random_(random), faults_(faults) {}

  // Queues `m`. Unless `reliable` (a stream whose failure the sender learns
  // of), it may be lost or duplicated.
  void Send(const raft::Message& m, uint64_t now, bool reliable = false);
  // A message due for delivery; `cut` if its link is cut now, so it is lost.
  struct Due {
    raft::Message msg;
    bool cut;
  };
  // Removes and returns the messages due at `now`, in a random order.
  std::vector<Due> TakeDue(uint64_t now);

  void Cut(raft::NodeId from, raft::NodeId to) { cut_.insert({from, to}); }
  void Heal() { cut_.clear(); }
  bool has_cuts() const { return !cut_.empty(); }
  // Stop injecting drops, duplicates and long delays (the liveness phase).
  void SetReliable() { faults_ = NetworkFaults{}; }
  size_t in_flight() const { return heap_.size(); }

 private:
  struct InFlight {
    uint64_t deliver_at;
    uint64_t order;  // random tie-break among messages due together
    // Behind a pointer: heap operations then move 24 bytes, not a message.
    std::unique_ptr<raft::Message> msg;
    // Orders the heap so that the earliest message is at the front.
    bool operator<(const InFlight& o) const {
      return deliver_at != o.deliver_at ? deliver_at > o.deliver_at
                                        : order > o.order;
    }
  };

  util::SeededRandom* random_;
  NetworkFaults faults_;
  std::vector<InFlight> heap_;  // std::push_heap / std::pop_heap
  std::set<std::pair<raft::NodeId, raft::NodeId>> cut_;
};

}  // namespace tally::sim

#endif  // TALLY_TESTS_SIM_SIM_NETWORK_H_
