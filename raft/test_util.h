#ifndef TALLY_RAFT_TEST_UTIL_H_
#define TALLY_RAFT_TEST_UTIL_H_

#include <map>
#include <memory>
#include <set>
#include <utility>
#include <vector>

#include "raft/raft.h"
#include "raft/storage.h"
#include "util/random.h"

namespace tally::raft::testing {

// One raft node for tests, owning its storage and random source.
struct TestNode {
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<util::SeededRandom> random;
  std::unique_ptr<Raft> raft;
};

struct TestOptions {
  int election_tick = 10;
  int heartbeat_tick = 1;
  bool pre_vote = false;
  bool check_quorum = false;
  size_t max_inflight_msgs = 256;
  uint64_t max_inflight_bytes = 0;
  uint64_t max_size_per_msg = 1 << 20;
  uint64_t max_uncommitted_entries_size = 0;
  ReadOnlyOption read_only = ReadOnlyOption::kSafe;
  uint64_t seed = 1;
};

// A node of a group with `voters`, whose stored log holds `log` (entries
// with consecutive indexes from 1) and hard state `hs`.
TestNode MakeNode(NodeId id, std::vector<NodeId> voters,
                  const TestOptions& opts = {},
                  const std::vector<Entry>& log = {}, HardState hs = {});

// Entries with the given terms at indexes 1, 2, ...
std::vector<Entry> EntriesWithTerms(const std::vector<Term>& terms);

inline const std::vector<NodeId> kThree = {1, 2, 3};

// A message with just its type, ends and term set.
Message Msg(MessageType type, NodeId from, NodeId to, Term term);
// Steps `r` with `m` and returns the messages it sends in answer.
std::vector<Message> StepAndTake(Raft& r, const Message& m);

// A network of test nodes that delivers every queued message at once, in
// order, until none is left, dropping messages across cut links.
class TestNetwork {
 public:
  TestNetwork(std::vector<NodeId> ids, const TestOptions& opts = {});
  // Replaces node `id` (e.g. with a prepared log) before it is used.
  void Set(NodeId id, TestNode node);

  Raft& node(NodeId id) { return *nodes_.at(id).raft; }
  MemoryStorage& storage(NodeId id) { return *nodes_.at(id).storage; }
  // Moves a node's unstable snapshot and entries into its storage, as the
  // application does with a Ready. Deliver does it after every step.
  void Persist(NodeId id);
  // Delivers `msgs` and everything they cause, until the network is quiet.
  void Deliver(std::vector<Message> msgs);
  // Collects every node's queued messages and delivers them.
  void Stabilize();
  void Campaign(NodeId id);
  absl::StatusOr<Index> Propose(NodeId id, std::string data);
  void TickN(NodeId id, int n);

  void Cut(NodeId a, NodeId b);
  void Isolate(NodeId id);
  void Recover() { cut_.clear(); }
  // Drops every message of this type from now on.
  void DropType(MessageType type) { dropped_types_.insert(type); }

 private:
  std::vector<NodeId> ids_;
  std::map<NodeId, TestNode> nodes_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::set<MessageType> dropped_types_;
};

}  // namespace tally::raft::testing

#endif  // TALLY_RAFT_TEST_UTIL_H_
