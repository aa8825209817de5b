// The node host over in-memory fakes of its seams: three (or four) hosts in
// one process, a transport that calls the peer host directly, a log store in
// memory, and a state machine that appends entries to a list.

#include "raft/host/node_host.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace tally::raft::host {
namespace {

using namespace std::chrono_literals;

class MemoryLog : public LogStore {
 public:
  absl::StatusOr<std::map<GroupId, PersistedGroup>> Load() override {
    absl::MutexLock l(&mu_);
    return groups_;
  }
  absl::Status Write(const std::vector<GroupWrite>& batch, bool) override {
    absl::MutexLock l(&mu_);
    writing_ = true;
    mu_.Await(absl::Condition(
        +[](bool* held) { return !*held; }, &held_));
    writing_ = false;
    ++batches_;
    for (const GroupWrite& w : batch) {
      PersistedGroup& g = groups_[w.group];
      if (w.snapshot) {
        g.snapshot = *w.snapshot;
        g.entries.clear();
      }
      if (w.compact) {
        g.snapshot = *w.compact;
        std::erase_if(g.entries,
                      [&](const Entry& e) { return e.index <= w.compact_to; });
      }
      if (w.hard_state) g.hard_state = *w.hard_state;
      if (!w.entries.empty()) {
        std::erase_if(g.entries, [&](const Entry& e) {
          return e.index >= w.entries[0].index;
        });
        g.entries.insert(g.entries.end(), w.entries.begin(), w.entries.end());
      }
    }
    return absl::OkStatus();
  }
  void Restore(std::map<GroupId, PersistedGroup> groups) {
    absl::MutexLock l(&mu_);
    groups_ = std::move(groups);
  }
  void Bootstrap(GroupId group, const std::vector<NodeId>& voters) {
    PersistedGroup& g = groups_[group];
    g.snapshot.metadata.index = 1;
    g.snapshot.metadata.term = 1;
    g.snapshot.metadata.conf_state.voters = voters;
    g.hard_state = {1, kNoNode, 1};
  }
  int batches() {
    absl::MutexLock l(&mu_);
    return batches_;
  }
  // While held, writes wait.
  void Hold(bool held) {
    absl::MutexLock l(&mu_);
    held_ = held;
  }
  // Returns once a write waits (REQUIRES: held).
  void AwaitHeldWrite() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](bool* writing) { return *writing; }, &writing_));
  }
  // The last index of `group`'s log written so far (snapshot included).
  Index LastWritten(GroupId group) {
    absl::MutexLock l(&mu_);
    const PersistedGroup& g = groups_[group];
    return g.entries.empty() ? g.snapshot.metadata.index
                             : g.entries.back().index;
  }

 private:
  absl::Mutex mu_;
  std::map<GroupId, PersistedGroup> groups_;
  int batches_ = 0;
  bool held_ = false;
  bool writing_ = false;
};

// The applies of one node's ListMachines, made at Commit.
class ListPass : public ApplyPass {
 public:
  explicit ListPass(std::atomic<int>* commits) : commits_(commits) {}
  absl::Status Commit() override {
    for (auto& apply : staged_) apply();
    ++*commits_;
    return absl::OkStatus();
  }
  std::vector<std::function<void()>> staged_;

 private:
  std::atomic<int>* const commits_;
};

// Applies entries to a list of strings; snapshots copy the list. Passes
// over several groups count their commits in `*passes`.
class ListMachine : public StateMachine {
 public:
  explicit ListMachine(std::atomic<int>* passes) : passes_(passes) {}
  std::unique_ptr<ApplyPass> NewPass() override {
    return std::make_unique<ListPass>(passes_);
  }
  bool Joins(const ApplyPass& pass) const override {
    return dynamic_cast<const ListPass*>(&pass) != nullptr;
  }
  absl::StatusOr<std::vector<std::string>> ApplyInto(
      ApplyPass& pass, const std::vector<Entry>& entries) override {
    ++applied_into_;
    static_cast<ListPass&>(pass).staged_.push_back(
        [this, entries] { Apply(entries).IgnoreError(); });
    std::vector<std::string> out;
    for (const Entry& e : entries)
      out.push_back(absl::StrCat("applied ", e.data));
    return out;
  }
  // Calls of ApplyInto.
  int applied_into() const { return applied_into_; }
  Index applied() const override {
    absl::MutexLock l(&mu_);
    return applied_;
  }
  absl::StatusOr<std::vector<std::string>> Apply(
      const std::vector<Entry>& entries) override {
    absl::MutexLock l(&mu_);
    ++waiting_;
    mu_.Await(absl::Condition(
        +[](bool* blocked) { return !*blocked; }, &blocked_));
    --waiting_;
    std::vector<std::string> out;
    for (const Entry& e : entries) {
      if (e.index <= applied_) {
        out.emplace_back();
        continue;
      }
      if (e.type == EntryType::kNormal && !e.data.empty()) {
        items_.push_back(e.data);
      }
      applied_ = e.index;
      out.push_back(absl::StrCat("applied ", e.data));
    }
    return out;
  }
  absl::StatusOr<Index> Sync() override { return applied(); }
  absl::Status Export(Index min_index, const ChunkSink& sink) override {
    SnapshotChunk c;
    {
      absl::MutexLock l(&mu_);
      if (applied_ < min_index) return absl::UnavailableError("behind");
      c.applied_index = applied_;
      for (const std::string& s : items_) c.kvs.emplace_back(s, "");
    }
    c.done = true;
    return sink(std::move(c));
  }
  absl::Status Import(const ChunkSource& source) override {
    absl::StatusOr<SnapshotChunk> c = source();
    if (!c.ok()) return c.status();
    absl::MutexLock l(&mu_);
    items_.clear();
    for (auto& [k, v] : c->kvs) items_.push_back(k);
    applied_ = c->applied_index;
    return absl::OkStatus();
  }
  std::vector<std::string> items() const {
    absl::MutexLock l(&mu_);
    return items_;
  }
  // While blocked, Apply waits.
  void Block(bool blocked) {
    absl::MutexLock l(&mu_);
    blocked_ = blocked;
  }
  // Waits (at most 5 s) until an Apply waits for Block(false).
  bool AwaitBlockedApply() {
    absl::MutexLock l(&mu_);
    return mu_.AwaitWithTimeout(
        absl::Condition(
            +[](int* waiting) { return *waiting > 0; }, &waiting_),
        absl::Seconds(5));
  }
  struct Told {
    Term term;
    bool leading;
    Index applied;  // when told
    bool operator==(const Told&) const = default;
  };
  void OnLeadership(Term term, bool leading) override {
    absl::MutexLock l(&mu_);
    told_.push_back({term, leading, applied_});
  }
  std::vector<Told> told() const {
    absl::MutexLock l(&mu_);
    return told_;
  }

 private:
  std::atomic<int>* const passes_;
  std::atomic<int> applied_into_{0};
  mutable absl::Mutex mu_;
  Index applied_ = 0;
  std::vector<std::string> items_;
  bool blocked_ = false;
  int waiting_ = 0;  // Applies waiting for Block(false)
  std::vector<Told> told_;
};

class Cluster;

class LoopTransport : public Transport {
 public:
  LoopTransport(Cluster* c, NodeId self) : cluster_(c), self_(self) {}
  void Send(NodeId to, std::vector<GroupMessage> msgs) override;
  absl::Status FetchSnapshot(NodeId from, GroupId group, Index min_index,
                             const ChunkSink& sink) override;
  void CancelFetches() override {}

 private:
  Cluster* cluster_;
  NodeId self_;
};

struct TestNode {
  MemoryLog log;
  std::unique_ptr<LoopTransport> transport;
  std::unique_ptr<NodeHost> host;
  // Apply passes committed.
  std::atomic<int> passes{0};

  // The group's state machine, or null: the host opens them on its raft
  // loop while the test reads them.
  ListMachine* machine(GroupId g) {
    absl::MutexLock l(&mu);
    auto it = machines.find(g);
    return it == machines.end() ? nullptr : it->second.get();
  }
  ListMachine* GetOrOpen(GroupId g) {
    absl::MutexLock l(&mu);
    auto& m = machines[g];
    if (!m) m = std::make_unique<ListMachine>(&passes);
    return m.get();
  }

 private:
  absl::Mutex mu;
  std::map<GroupId, std::unique_ptr<ListMachine>> machines ABSL_GUARDED_BY(mu);
};

class Cluster {
 public:
  explicit Cluster(HostOptions base) : base_(base) {}
  ~Cluster() {
    for (auto& [id, n] : nodes_) n->host->Stop();
  }
  TestNode& Add(NodeId id, const std::vector<NodeId>& voters,
                const std::vector<GroupId>& groups) {
    auto n = std::make_unique<TestNode>();
    for (GroupId g : groups) {
      if (!voters.empty()) n->log.Bootstrap(g, voters);
    }
    return Start(id, std::move(n));
  }
  // Kills node `id` and starts it again on what its log store holds; its
  // state machines start empty.
  TestNode& Restart(NodeId id) {
    std::unique_ptr<TestNode> old;
    {
      absl::MutexLock l(&mu_);
      old = std::move(nodes_.at(id));
      nodes_.erase(id);
    }
    old->host->Stop();
    auto n = std::make_unique<TestNode>();
    absl::StatusOr<std::map<GroupId, PersistedGroup>> groups = old->log.Load();
    EXPECT_TRUE(groups.ok());
    n->log.Restore(*groups);
    return Start(id, std::move(n));
  }

 private:
  TestNode& Start(NodeId id, std::unique_ptr<TestNode> n) {
    n->transport = std::make_unique<LoopTransport>(this, id);
    HostOptions o = base_;
    o.id = id;
    TestNode* raw = n.get();
    n->host = std::make_unique<NodeHost>(
        o, &n->log, n->transport.get(),
        [raw](GroupId g) -> absl::StatusOr<StateMachine*> {
          return raw->GetOrOpen(g);
        });
    {
      absl::MutexLock l(&mu_);
      nodes_[id] = std::move(n);
    }
    start_status = raw->host->Start();
    EXPECT_TRUE(start_status.ok()) << start_status;
    return *raw;
  }

 public:
  absl::Status start_status;
  NodeHost* host(NodeId id) {
    absl::MutexLock l(&mu_);
    auto it = nodes_.find(id);
    return it == nodes_.end() ? nullptr : it->second->host.get();
  }
  MemoryLog* log(NodeId id) {
    absl::MutexLock l(&mu_);
    auto it = nodes_.find(id);
    return it == nodes_.end() ? nullptr : &it->second->log;
  }
  // Messages that carried a commit index past what their sender had
  // written to its log when it sent them.
  std::atomic<int> early_commits{0};
  // Append messages carrying entries, by sender.
  std::atomic<int> appends_from[8] = {};
  // Append responses, by sender.
  std::atomic<int> append_responses_from[8] = {};
  // While held, snapshot fetches wait (at most 10 s) before they start.
  void HoldFetches(bool hold) {
    absl::MutexLock l(&mu_);
    hold_fetches_ = hold;
  }
  void WaitFetchGate() {
    absl::MutexLock l(&mu_);
    mu_.AwaitWithTimeout(
        absl::Condition(
            +[](bool* held) { return !*held; }, &hold_fetches_),
        absl::Seconds(10));
  }
  std::atomic<int> fetches_started{0};
  // An isolated node sends and receives nothing.
  void Isolate(NodeId id, bool isolated) {
    absl::MutexLock l(&mu_);
    if (isolated) {
      isolated_.insert(id);
    } else {
      isolated_.erase(id);
    }
  }
  bool Isolated(NodeId id) {
    absl::MutexLock l(&mu_);
    return isolated_.count(id) > 0;
  }
  // This many snapshot messages are lost in the network.
  std::atomic<int> snapshots_to_lose{0};
  TestNode& node(NodeId id) { return *nodes_.at(id); }
  // Waits until some node leads `group`; returns it (0 after the timeout).
  NodeId WaitLeader(GroupId group) {
    for (int i = 0; i < 400; ++i) {
      for (auto& [id, n] : nodes_) {
        absl::StatusOr<GroupInfo> info = n->host->Group(group);
        if (info.ok() && info->role == Role::kLeader) return id;
      }
      std::this_thread::sleep_for(10ms);
    }
    return kNoNode;
  }

 private:
  HostOptions base_;
  absl::Mutex mu_;
  std::map<NodeId, std::unique_ptr<TestNode>> nodes_;
  bool hold_fetches_ = false;
  std::set<NodeId> isolated_;
};

void LoopTransport::Send(NodeId to, std::vector<GroupMessage> msgs) {
  if (cluster_->Isolated(self_) || cluster_->Isolated(to)) return;
  std::erase_if(msgs, [&](const GroupMessage& gm) {
    return gm.msg.type == MessageType::kSnapshot &&
           cluster_->snapshots_to_lose.fetch_sub(1) > 0;
  });
  for (const GroupMessage& gm : msgs) {
    if (gm.msg.type == MessageType::kAppend && !gm.msg.entries.empty()) {
      ++cluster_->appends_from[self_];
    }
    if (gm.msg.type == MessageType::kAppendResponse) {
      ++cluster_->append_responses_from[self_];
    }
  }
  if (MemoryLog* log = cluster_->log(self_)) {
    for (const GroupMessage& gm : msgs) {
      if (gm.msg.commit > log->LastWritten(gm.group)) ++cluster_->early_commits;
    }
  }
  if (NodeHost* h = cluster_->host(to)) h->Deliver(std::move(msgs));
}

absl::Status LoopTransport::FetchSnapshot(NodeId from, GroupId group,
                                          Index min_index,
                                          const ChunkSink& sink) {
  ++cluster_->fetches_started;
  cluster_->WaitFetchGate();
  NodeHost* h = cluster_->host(from);
  if (h == nullptr) return absl::UnavailableError("no such node");
  return h->ExportSnapshot(group, self_, min_index, sink);
}

absl::StatusOr<Applied> ProposeAndWait(NodeHost* h, GroupId g,
                                       std::string data) {
  auto p = std::make_shared<std::promise<absl::StatusOr<Applied>>>();
  auto f = p->get_future();
  h->Propose(g, std::move(data),
             [p](absl::StatusOr<Applied> r) { p->set_value(std::move(r)); });
  if (f.wait_for(5s) != std::future_status::ready) {
    return absl::DeadlineExceededError("no answer");
  }
  return f.get();
}

absl::StatusOr<Applied> ChangeAndWait(NodeHost* h, GroupId g,
                                      ConfChangeSingle::Type type, NodeId id) {
  ConfChange cc;
  cc.changes.push_back({type, id});
  auto p = std::make_shared<std::promise<absl::StatusOr<Applied>>>();
  auto f = p->get_future();
  h->ProposeConfChange(
      g, cc, [p](absl::StatusOr<Applied> r) { p->set_value(std::move(r)); });
  if (f.wait_for(5s) != std::future_status::ready) {
    return absl::DeadlineExceededError("no answer");
  }
  return f.get();
}

bool Eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 500; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return cond();
}

// Nodes 1-3 with group 1, and `first` applied; returns the leader.
NodeId StartThreeWith(Cluster& c, const std::string& first) {
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  EXPECT_NE(leader, kNoNode);
  if (leader != kNoNode) {
    EXPECT_TRUE(ProposeAndWait(c.host(leader), 1, first).ok());
  }
  return leader;
}

// The last item node `id` applied to `group`, "" if none.
std::string LastItem(Cluster& c, NodeId id, GroupId group) {
  ListMachine* m = c.node(id).machine(group);
  if (m == nullptr) return "";
  std::vector<std::string> items = m->items();
  return items.empty() ? "" : items.back();
}

std::string DescribeNewMember(Cluster& c) {
  absl::StatusOr<GroupInfo> i = c.host(4)->Group(1);
  if (!i.ok()) return i.status().ToString();
  return absl::StrCat("term=", i->term, " lead=", i->leader,
                      " commit=", i->commit, " applied=", i->applied,
                      " first=", i->first_index, " last=", i->last_index,
                      " conf=", Describe(i->conf));
}

HostOptions FastOptions() {
  HostOptions o;
  o.tick_ms = 5;
  return o;
}

// Options under which a group snapshots and compacts its log every 20
// applied entries, keeping 5.
HostOptions CompactingOptions() {
  HostOptions o = FastOptions();
  o.snapshot_every = 20;
  o.compaction_lag = 5;
  return o;
}

TEST(NodeHostTest, ReplicatesProposalsOfSeveralGroupsToEveryNode) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1, 2});
  for (GroupId g : {1, 2}) {
    const NodeId leader = c.WaitLeader(g);
    ASSERT_NE(leader, kNoNode);
    for (int i = 0; i < 5; ++i) {
      absl::StatusOr<Applied> r =
          ProposeAndWait(c.host(leader), g, absl::StrCat("g", g, "-", i));
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_EQ(r->result, absl::StrCat("applied g", g, "-", i));
    }
    for (NodeId id : {1, 2, 3}) {
      EXPECT_TRUE(Eventually([&] {
        return c.node(id).machine(g)->items().size() == 5;
      })) << "node "
          << id << " group " << g;
    }
  }
  // The counters behind the metrics saw it.
  HostStats total;
  for (NodeId id : {1, 2, 3}) {
    const HostStats s = c.host(id)->Stats();
    total.leaderships_won += s.leaderships_won;
    total.proposals += s.proposals;
    total.entries_applied += s.entries_applied;
    EXPECT_GT(s.log_writes, 0u);
    EXPECT_GT(s.log_syncs, 0u);
  }
  EXPECT_GE(total.leaderships_won, 2u);  // one per group at least
  EXPECT_EQ(total.proposals, 10u);
  EXPECT_GE(total.entries_applied, 3u * 10u);
}

// What health asks: one group's status, and the status of the group whose
// applies trail its commits the furthest, while one does.
TEST(NodeHostTest, GroupAndFurthestBehindNamesAGroupWhoseAppliesTrail) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1, 2});
  const NodeId leader = c.WaitLeader(2);
  ASSERT_NE(leader, kNoNode);
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 2, "a").ok());
  const NodeId slow = leader == 1 ? 2 : 1;
  auto groups = [&] {
    std::vector<GroupId> out;
    for (const GroupInfo& i : c.host(slow)->GroupAndFurthestBehind(1)) {
      out.push_back(i.group);
    }
    return out;
  };
  ASSERT_TRUE(Eventually([&] { return groups() == std::vector<GroupId>{1}; }));
  c.node(slow).machine(2)->Block(true);
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 2, "b").ok());  // without it
  EXPECT_TRUE(Eventually([&] {
    return groups() == std::vector<GroupId>{1, 2};
  }));
  c.node(slow).machine(2)->Block(false);
  EXPECT_TRUE(Eventually([&] { return groups() == std::vector<GroupId>{1}; }));
}

TEST(NodeHostTest, FollowerRefusesProposalsAndNamesNoSuchGroup) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  ASSERT_NE(leader, kNoNode);
  const NodeId follower = leader == 1 ? 2 : 1;
  absl::StatusOr<Applied> r = ProposeAndWait(c.host(follower), 1, "x");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  r = ProposeAndWait(c.host(leader), 9, "x");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
}

TEST(NodeHostTest, ReadIndexWaitsForTheAppliedIndex) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  ASSERT_NE(leader, kNoNode);
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, "a").ok());
  for (bool lease : {false, true}) {
    auto p = std::make_shared<std::promise<absl::StatusOr<Index>>>();
    auto f = p->get_future();
    c.host(leader)->ReadIndex(
        1, lease, [p](absl::StatusOr<Index> i) { p->set_value(i); });
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    absl::StatusOr<Index> index = f.get();
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_GE(c.node(leader).machine(1)->applied(), *index);
    EXPECT_GE(*index, 3u);  // bootstrap 1, no-op 2, "a" 3
  }
}

TEST(NodeHostTest, StateMachineHearsOfLeadershipOnceEarlierTermsAreApplied) {
  Cluster c(FastOptions());
  const NodeId first = StartThreeWith(c, "a");
  ASSERT_NE(first, kNoNode);
  ListMachine* was = c.node(first).machine(1);
  ASSERT_TRUE(Eventually([&] { return !was->told().empty(); }));
  const ListMachine::Told t1 = was->told()[0];
  EXPECT_TRUE(t1.leading);
  EXPECT_GE(t1.applied, 2u);  // bootstrap 1, the leader's own entry 2

  // The next leader has "b" committed but cannot apply it yet: it must not
  // hear that it leads before it has.
  const NodeId next = first == 1 ? 2 : 1;
  ListMachine* will = c.node(next).machine(1);
  will->Block(true);
  absl::StatusOr<Applied> b = ProposeAndWait(c.host(first), 1, "b");
  ASSERT_TRUE(b.ok()) << b.status();
  auto moved = std::make_shared<std::promise<absl::Status>>();
  c.host(first)->TransferLeadership(
      1, next, [moved](absl::Status st) { moved->set_value(st); });
  std::future<absl::Status> f = moved->get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  ASSERT_TRUE(f.get().ok());
  EXPECT_TRUE(Eventually([&] { return was->told().size() == 2; }));
  EXPECT_EQ(was->told(),
            (std::vector<ListMachine::Told>{
                t1, {t1.term, false, was->told().back().applied}}));
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(will->told().empty());

  will->Block(false);
  ASSERT_TRUE(Eventually([&] { return !will->told().empty(); }));
  const ListMachine::Told t2 = will->told()[0];
  EXPECT_TRUE(t2.leading);
  EXPECT_GT(t2.term, t1.term);
  EXPECT_GT(t2.applied, b->index);
}

TEST(NodeHostTest, NewMemberCatchesUpBySnapshotAfterCompaction) {
  Cluster c(CompactingOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  ASSERT_NE(leader, kNoNode);
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, absl::StrCat(i)).ok());
  }
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<GroupInfo> info = c.host(leader)->Group(1);
    return info.ok() && info->first_index > 2;
  })) << "the leader never compacted its log";
  // A fourth node starts empty and is added as a learner.
  c.Add(4, {}, {});
  ASSERT_TRUE(
      ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddLearner, 4)
          .ok());
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, "after").ok());
  ASSERT_TRUE(Eventually([&] {
    ListMachine* m = c.node(4).machine(1);
    return m != nullptr && m->items().size() == 61;
  })) << DescribeNewMember(c);
  EXPECT_EQ(c.node(4).machine(1)->items().back(), "after");
}

// An idle group stops ticking on every node; a proposal wakes it, and a
// lost leader wakes its followers, who elect another.
TEST(NodeHostTest, IdleGroupsGoQuietAndWake) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  ASSERT_NE(leader, kNoNode);
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, "a").ok());
  auto all_quiet = [&] {
    for (NodeId id : {1, 2, 3}) {
      absl::StatusOr<GroupInfo> i = c.host(id)->Group(1);
      if (!i.ok() || !i->quiet) return false;
    }
    return true;
  };
  auto describe = [&] {
    std::string out;
    for (NodeId id : {1, 2, 3}) {
      absl::StatusOr<GroupInfo> i = c.host(id)->Group(1);
      if (i.ok()) {
        absl::StrAppend(&out, id, ": quiet=", i->quiet,
                        " role=", RoleName(i->role), " commit=", i->commit,
                        " applied=", i->applied, " last=", i->last_index,
                        " term=", i->term, "; ");
      }
    }
    for (const auto& item : c.node(leader).machine(1)->items()) {
      absl::StrAppend(&out, item, ",");
    }
    return out;
  };
  ASSERT_TRUE(Eventually(all_quiet)) << describe();
  const Term term = c.host(leader)->Group(1)->term;
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, "b").ok());
  EXPECT_EQ(c.host(leader)->Group(1)->term, term);
  ASSERT_TRUE(Eventually(all_quiet));
  // The leader dies while the group is quiet.
  c.host(leader)->Stop();
  for (NodeId id : {1, 2, 3}) {
    if (id != leader) c.host(id)->ReportUnreachable(leader);
  }
  ASSERT_TRUE(Eventually([&] {
    for (NodeId id : {1, 2, 3}) {
      absl::StatusOr<GroupInfo> i = c.host(id)->Group(1);
      if (id != leader && i.ok() && i->role == Role::kLeader) return true;
    }
    return false;
  })) << "no new leader after the quiet leader died";
}

// Load shedding: when the apply thread falls behind, proposals are refused
// at once instead of piling up.
// A quiet leader does not tick, so check-quorum never ran: cut off from
// its followers, it went on believing it led (and its node's health said
// SERVING) until a message came. Losing touch with a follower (the
// transport's report) now wakes it, and it steps down.
TEST(NodeHostTest, QuietLeaderCutOffFromItsFollowersStepsDown) {
  Cluster c(FastOptions());
  const NodeId leader = StartThreeWith(c, "a");
  ASSERT_NE(leader, kNoNode);
  auto info = [&] { return c.host(leader)->Group(1); };
  ASSERT_TRUE(Eventually([&] { return info().ok() && info()->quiet; }));
  c.Isolate(leader, true);
  for (NodeId id : {1, 2, 3}) {
    if (id != leader) c.host(leader)->ReportUnreachable(id);
  }
  EXPECT_TRUE(Eventually([&] {
    return info().ok() && info()->role != Role::kLeader;
  })) << "still "
      << RoleName(info()->role);
}

// A quiet group still answers what it is sent, though nothing wakes it: a
// heartbeat from a leader of an earlier term (back from a partition, say)
// gets the current term back, so that the stale leader steps down.
TEST(NodeHostTest, QuietLeaderAnswersAStaleLeader) {
  Cluster c(FastOptions());
  const NodeId leader = StartThreeWith(c, "a");
  ASSERT_NE(leader, kNoNode);
  auto info = [&] { return c.host(leader)->Group(1); };
  ASSERT_TRUE(Eventually([&] { return info().ok() && info()->quiet; }));
  const Term term = info()->term;
  ASSERT_GT(term, 1u);
  const int answered = c.append_responses_from[leader].load();
  GroupMessage stale;
  stale.group = 1;
  stale.msg.type = MessageType::kHeartbeat;
  stale.msg.from = leader == 1 ? 2 : 1;
  stale.msg.to = leader;
  stale.msg.term = term - 1;
  c.host(leader)->Deliver({stale});
  EXPECT_TRUE(Eventually([&] {
    return c.append_responses_from[leader].load() > answered;
  })) << "the quiet leader never answered a heartbeat of term "
      << term - 1;
  EXPECT_TRUE(info()->quiet);
  EXPECT_EQ(info()->term, term);
}

TEST(NodeHostTest, SlowApplyShedsProposals) {
  HostOptions o = FastOptions();
  o.max_apply_backlog = 5;
  Cluster c(o);
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  ASSERT_NE(leader, kNoNode);
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, "warm").ok());
  c.node(leader).machine(1)->Block(true);
  std::vector<std::shared_ptr<std::promise<absl::Status>>> results;
  for (int i = 0; i < 40; ++i) {
    auto p = std::make_shared<std::promise<absl::Status>>();
    results.push_back(p);
    c.host(leader)->Propose(1, absl::StrCat(i), [p](absl::StatusOr<Applied> r) {
      p->set_value(r.status());
    });
    std::this_thread::sleep_for(2ms);
  }
  c.node(leader).machine(1)->Block(false);
  int shed = 0, applied = 0;
  for (auto& p : results) {
    auto f = p->get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    absl::Status st = f.get();
    shed += st.code() == absl::StatusCode::kResourceExhausted;
    applied += st.ok();
  }
  EXPECT_GT(shed, 0);
  EXPECT_GT(applied, 0);
  EXPECT_EQ(shed + applied, 40);
}

TEST(NodeHostTest, ConcurrentProposalsShareStorageBatches) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1, 2, 3, 4});
  std::vector<NodeId> leaders;
  for (GroupId g : {1, 2, 3, 4}) leaders.push_back(c.WaitLeader(g));
  const int before = c.node(1).log.batches();
  std::vector<std::shared_ptr<std::promise<bool>>> done;
  for (int i = 0; i < 200; ++i) {
    const GroupId g = 1 + i % 4;
    auto p = std::make_shared<std::promise<bool>>();
    done.push_back(p);
    c.host(leaders[g - 1])
        ->Propose(g, absl::StrCat(i),
                  [p](absl::StatusOr<Applied> r) { p->set_value(r.ok()); });
  }
  for (auto& p : done) {
    auto f = p->get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_TRUE(f.get());
  }
  // 200 proposals over 4 groups, each written by node 1 as leader or
  // follower: far fewer storage batches than entries.
  EXPECT_LT(c.node(1).log.batches() - before, 150);
}

TEST(NodeHostTest, GroupsQueuedForApplyShareOnePass) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1, 2, 3, 4});
  std::vector<NodeId> leaders;
  for (GroupId g : {1, 2, 3, 4}) {
    leaders.push_back(c.WaitLeader(g));
    ASSERT_TRUE(ProposeAndWait(c.host(leaders.back()), g, "warm").ok());
  }
  auto caught_up = [&](GroupId g) {
    absl::StatusOr<GroupInfo> info = c.host(1)->Group(g);
    return info.ok() && c.node(1).machine(g) != nullptr &&
           c.node(1).machine(g)->applied() >= info->commit;
  };
  for (GroupId g : {1, 2, 3, 4}) {
    for (int i = 0; i < 500 && !caught_up(g); ++i)
      std::this_thread::sleep_for(10ms);
  }
  // Node 1's apply thread waits in group 1's apply while the other groups
  // commit entries on it and queue them for apply.
  c.node(1).machine(1)->Block(true);
  std::vector<std::shared_ptr<std::promise<bool>>> done;
  auto propose = [&](GroupId g, std::string data) {
    auto p = std::make_shared<std::promise<bool>>();
    done.push_back(p);
    c.host(leaders[g - 1])
        ->Propose(g, std::move(data),
                  [p](absl::StatusOr<Applied> r) { p->set_value(r.ok()); });
  };
  std::map<GroupId, Index> target;
  for (GroupId g : {2, 3, 4}) {
    absl::StatusOr<GroupInfo> info = c.host(1)->Group(g);
    ASSERT_TRUE(info.ok());
    target[g] = info->commit + 10;
  }
  propose(1, "slow");
  ASSERT_TRUE(c.node(1).machine(1)->AwaitBlockedApply());
  for (int i = 0; i < 30; ++i) propose(2 + i % 3, absl::StrCat(i));
  auto committed_on_1 = [&] {
    for (GroupId g : {2, 3, 4}) {
      absl::StatusOr<GroupInfo> info = c.host(1)->Group(g);
      if (!info.ok() || info->commit < target[g]) return false;
    }
    return true;
  };
  for (int i = 0; i < 500 && !committed_on_1(); ++i)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(committed_on_1());
  std::this_thread::sleep_for(50ms);  // the raft loop hands them over
  int into = 0;
  for (GroupId g : {2, 3, 4}) into -= c.node(1).machine(g)->applied_into();
  const int passes = c.node(1).passes;
  c.node(1).machine(1)->Block(false);
  for (auto& p : done) {
    auto f = p->get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_TRUE(f.get());
  }
  for (GroupId g : {2, 3, 4}) {
    for (int i = 0; i < 500 && !caught_up(g); ++i)
      std::this_thread::sleep_for(10ms);
    into += c.node(1).machine(g)->applied_into();
  }
  // The pass group 1 held, then one for everything queued behind it.
  EXPECT_GE(into, 3);
  EXPECT_LE(c.node(1).passes - passes, 2);
}

TEST(NodeHostTest, ProposalsOfOnePassGoToEachFollowerInOneAppend) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, "first").ok());
  // The leader's raft loop waits in a log write while 100 proposals arrive.
  std::vector<std::shared_ptr<std::promise<bool>>> done;
  auto propose = [&](int i) {
    auto p = std::make_shared<std::promise<bool>>();
    done.push_back(p);
    c.host(leader)->Propose(1, absl::StrCat(i), [p](absl::StatusOr<Applied> r) {
      p->set_value(r.ok());
    });
  };
  c.node(leader).log.Hold(true);
  propose(0);
  c.node(leader).log.AwaitHeldWrite();
  const int before = c.appends_from[leader].load();
  for (int i = 1; i <= 100; ++i) propose(i);
  c.node(leader).log.Hold(false);
  for (auto& p : done) {
    auto f = p->get_future();
    ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
    EXPECT_TRUE(f.get());
  }
  // One append to each of the two followers for the 100 (and a few more
  // if a heartbeat's answer asks again), not one per proposal.
  EXPECT_LE(c.appends_from[leader].load() - before, 6);
}

// Issue: with one voter, the leader counts its own copy toward commit on
// append, and the appends sent before its write carried that commit index
// to the learners: a crash in the sync window left a learner with an entry
// the voter never kept.
TEST(NodeHostTest, NoMessageCarriesACommitIndexItsSenderHasNotWritten) {
  Cluster c(FastOptions());
  c.Add(1, {1}, {1});
  ASSERT_EQ(c.WaitLeader(1), 1u);
  c.Add(4, {}, {});
  ASSERT_TRUE(
      ChangeAndWait(c.host(1), 1, ConfChangeSingle::Type::kAddLearner, 4).ok());
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(ProposeAndWait(c.host(1), 1, absl::StrCat("x", i)).ok());
  }
  EXPECT_TRUE(Eventually([&] {
    absl::StatusOr<GroupInfo> i = c.host(4)->Group(1);
    return i.ok() && i->commit == c.host(1)->Group(1)->commit;
  }));
  EXPECT_EQ(c.early_commits.load(), 0);
}

// Issue: a snapshot fetch ran on the only apply thread, so one slow fetch
// stopped every group of the node from applying.
TEST(NodeHostTest, SlowSnapshotFetchDoesNotStopOtherGroups) {
  Cluster c(FastOptions());
  const NodeId leader = StartThreeWith(c, "before");
  ASSERT_NE(leader, kNoNode);
  // Node 4 leads a group of its own and joins group 1, whose snapshot it
  // fetches slowly.
  c.Add(4, {4}, {2});
  ASSERT_EQ(c.WaitLeader(2), 4u);
  c.HoldFetches(true);
  ASSERT_TRUE(
      ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddLearner, 4)
          .ok());
  ASSERT_TRUE(Eventually([&] { return c.fetches_started.load() > 0; }));
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<Applied> r =
        ProposeAndWait(c.host(4), 2, absl::StrCat("while-fetching-", i));
    ASSERT_TRUE(r.ok()) << r.status();
  }
  c.HoldFetches(false);
  EXPECT_TRUE(Eventually([&] { return LastItem(c, 4, 1) == "before"; }))
      << DescribeNewMember(c);
}

// Issue: a leader whose snapshot message was lost waited in snapshot state
// for that follower forever.
TEST(NodeHostTest, LostSnapshotMessageIsSentAgain) {
  Cluster c(FastOptions());
  const NodeId leader = StartThreeWith(c, "before");
  ASSERT_NE(leader, kNoNode);
  c.Add(4, {}, {});
  c.snapshots_to_lose = 1;
  ASSERT_TRUE(
      ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddLearner, 4)
          .ok());
  EXPECT_TRUE(Eventually([&] { return LastItem(c, 4, 1) == "before"; }))
      << DescribeNewMember(c);
  EXPECT_LT(c.snapshots_to_lose.load(), 0) << "no snapshot was lost";
}

// Issue: a node added to a running cluster and killed before its first
// snapshot arrived had a term on disk and no configuration, and the whole
// node refused to start.
TEST(NodeHostTest, JoiningNodeKilledBeforeItsSnapshotStartsAndCatchesUp) {
  Cluster c(FastOptions());
  const NodeId leader = StartThreeWith(c, "before");
  ASSERT_NE(leader, kNoNode);
  c.Add(4, {}, {});
  c.HoldFetches(true);
  ASSERT_TRUE(
      ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddLearner, 4)
          .ok());
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<std::map<GroupId, PersistedGroup>> g = c.log(4)->Load();
    return c.fetches_started.load() > 0 && g.ok() && g->count(1) &&
           g->at(1).hard_state.term > 0;
  })) << "node 4 never wrote the group's term before fetching";
  c.HoldFetches(false);  // the killed node's fetch ends; the new one runs
  c.Restart(4);
  ASSERT_TRUE(c.start_status.ok()) << c.start_status;
  EXPECT_TRUE(Eventually([&] { return LastItem(c, 4, 1) == "before"; }))
      << DescribeNewMember(c);
}

// Issue: a proposal whose index a snapshot then covered was never answered
// (its entry is never handed out), and kept its group from going quiet.
TEST(NodeHostTest, ProposalOvertakenBySnapshotIsAnswered) {
  Cluster c(CompactingOptions());
  const NodeId old_leader = StartThreeWith(c, "warm");
  ASSERT_NE(old_leader, kNoNode);
  c.Isolate(old_leader, true);
  auto p = std::make_shared<std::promise<absl::Status>>();
  auto f = p->get_future();
  c.host(old_leader)->Propose(1, "cut-off", [p](absl::StatusOr<Applied> r) {
    p->set_value(r.status());
  });
  NodeId leader = kNoNode;
  ASSERT_TRUE(Eventually([&] {
    for (NodeId id : {1, 2, 3}) {
      absl::StatusOr<GroupInfo> i = c.host(id)->Group(1);
      if (id != old_leader && i.ok() && i->role == Role::kLeader) leader = id;
    }
    return leader != kNoNode;
  }));
  for (int i = 0; i < 60; ++i) {
    ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, absl::StrCat(i)).ok());
  }
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<GroupInfo> info = c.host(leader)->Group(1);
    return info.ok() && info->first_index > 10;
  })) << "the new leader never compacted its log";
  c.Isolate(old_leader, false);
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready)
      << "the cut-off proposal was never answered";
  EXPECT_FALSE(f.get().ok());
  EXPECT_TRUE(Eventually(
      [&] { return c.node(old_leader).machine(1)->items().size() == 61; }));
}

// Issue: a learner far behind could be promoted, and then held up commits
// (or, with two such, the quorum) while it caught up.
TEST(NodeHostTest, PromotingALearnerThatHasNotCaughtUpIsRefused) {
  Cluster c(FastOptions());
  for (NodeId id : {1, 2, 3}) c.Add(id, {1, 2, 3}, {1});
  const NodeId leader = c.WaitLeader(1);
  ASSERT_NE(leader, kNoNode);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(ProposeAndWait(c.host(leader), 1, absl::StrCat(i)).ok());
  }
  c.Add(4, {}, {});
  c.HoldFetches(true);
  ASSERT_TRUE(
      ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddLearner, 4)
          .ok());
  absl::StatusOr<Applied> early =
      ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddVoter, 4);
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition)
      << early.status();
  EXPECT_TRUE(
      Eventually([&] { return c.host(leader)->Group(1)->conf.IsLearner(4); }));
  c.HoldFetches(false);
  EXPECT_TRUE(Eventually([&] {
    return ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddVoter,
                         4)
        .ok();
  }));
  EXPECT_TRUE(Eventually([&] {
    const ConfState conf = c.host(leader)->Group(1)->conf;
    return !conf.IsLearner(4) &&
           std::count(conf.voters.begin(), conf.voters.end(), 4) == 1;
  }));
  // Asked again, the change is in effect: nothing is proposed.
  absl::StatusOr<Applied> again =
      ChangeAndWait(c.host(leader), 1, ConfChangeSingle::Type::kAddVoter, 4);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->index, 0u);
}

}  // namespace
}  // namespace tally::raft::host
