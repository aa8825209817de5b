#include "raft/test_util.h"

#include <deque>

#include "raft/config.h"
#include "util/check.h"

namespace tally::raft::testing {

TestNode MakeNode(NodeId id, std::vector<NodeId> voters,
                  const TestOptions& opts, const std::vector<Entry>& log,
                  HardState hs) {
  TestNode n;
  n.storage =
      std::make_unique<MemoryStorage>(ConfState{.voters = std::move(voters)});
  n.storage->Append(log);
  n.storage->SetHardState(hs);
  n.random = std::make_unique<util::SeededRandom>(opts.seed * 1000 + id);
  Config c;
  c.id = id;
  c.election_tick = opts.election_tick;
  c.heartbeat_tick = opts.heartbeat_tick;
  c.pre_vote = opts.pre_vote;
  c.check_quorum = opts.check_quorum;
  c.max_inflight_msgs = opts.max_inflight_msgs;
  c.max_inflight_bytes = opts.max_inflight_bytes;
  c.max_size_per_msg = opts.max_size_per_msg;
  c.max_uncommitted_entries_size = opts.max_uncommitted_entries_size;
  c.read_only = opts.read_only;
  c.storage = n.storage.get();
  c.random = n.random.get();
  absl::StatusOr<std::unique_ptr<Raft>> r = Raft::Create(c);
  TALLY_CHECK(r.ok(), "test node config is invalid");
  n.raft = std::move(*r);
  return n;
}

std::vector<Entry> EntriesWithTerms(const std::vector<Term>& terms) {
  std::vector<Entry> out;
  for (size_t i = 0; i < terms.size(); ++i) {
    out.push_back(Entry{terms[i], i + 1, EntryType::kNormal, {}});
  }
  return out;
}

Message Msg(MessageType type, NodeId from, NodeId to, Term term) {
  Message m;
  m.type = type;
  m.from = from;
  m.to = to;
  m.term = term;
  return m;
}

std::vector<Message> StepAndTake(Raft& r, const Message& m) {
  r.Step(m);
  return r.TakeMessages();
}

TestNetwork::TestNetwork(std::vector<NodeId> ids, const TestOptions& opts)
    : ids_(std::move(ids)) {
  for (NodeId id : ids_) nodes_.emplace(id, MakeNode(id, ids_, opts));
}

void TestNetwork::Set(NodeId id, TestNode node) {
  nodes_[id] = std::move(node);
}

void TestNetwork::Deliver(std::vector<Message> msgs) {
  std::deque<Message> queue(msgs.begin(), msgs.end());
  while (!queue.empty()) {
    Message m = std::move(queue.front());
    queue.pop_front();
    if (cut_.count({m.from, m.to}) || dropped_types_.count(m.type) ||
        !nodes_.count(m.to)) {
      continue;
    }
    Raft& r = node(m.to);
    r.Step(m);
    Persist(m.to);
    for (Message& out : r.TakeMessages()) queue.push_back(std::move(out));
  }
}

void TestNetwork::Persist(NodeId id) {
  Raft& r = node(id);
  MemoryStorage& s = storage(id);
  RaftLog& log = r.mutable_log();
  if (const std::optional<Snapshot>& snap = log.UnstableSnapshot()) {
    s.ApplySnapshot(*snap);
    log.StableSnapTo(snap->metadata.index);
  }
  const std::vector<Entry> entries = log.UnstableEntries();
  if (!entries.empty()) {
    s.Append(entries);
    log.StableTo(entries.back().index, entries.back().term);
  }
}

void TestNetwork::Stabilize() {
  std::vector<Message> all;
  for (auto& [id, n] : nodes_) {
    for (Message& m : n.raft->TakeMessages()) all.push_back(std::move(m));
  }
  Deliver(std::move(all));
}

void TestNetwork::Campaign(NodeId id) {
  node(id).Campaign();
  Persist(id);
  Stabilize();
}

absl::StatusOr<Index> TestNetwork::Propose(NodeId id, std::string data) {
  absl::StatusOr<Index> index = node(id).Propose(std::move(data));
  Persist(id);
  Stabilize();
  return index;
}

void TestNetwork::TickN(NodeId id, int n) {
  for (int i = 0; i < n; ++i) node(id).Tick();
  Persist(id);
  Stabilize();
}

void TestNetwork::Cut(NodeId a, NodeId b) {
  cut_.insert({a, b});
  cut_.insert({b, a});
}

void TestNetwork::Isolate(NodeId id) {
  for (NodeId other : ids_) {
    if (other != id) Cut(id, other);
  }
}

}  // namespace tally::raft::testing
