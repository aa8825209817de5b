#ifndef TALLY_TESTS_HOSTSIM_INTERNAL_WORLD_H_
#define TALLY_TESTS_HOSTSIM_INTERNAL_WORLD_H_

// The host simulation's internals, shared by host_simulation.cc (nodes,
// network, faults, membership, the run) and host_sim_clients.cc (clients,
// their history, the checks at the end).

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kv/leader_duties.h"
#include "kv/state_machine.h"
#include "kv/storage/memory_engine.h"
#include "kv/storage/memory_file_system.h"
#include "kv/storage/segment_log.h"
#include "raft/host/node_host.h"
#include "tests/hostsim/host_simulation.h"
#include "util/linearizability.h"
#include "util/random.h"

namespace tally::hostsim::internal {

using raft::Index;
using raft::NodeId;
using raft::host::GroupId;
using raft::host::GroupMessage;

inline constexpr int kTickMs = 10;
// Each tick is cut into steps: messages and work interleave within a tick.
inline constexpr int kStepsPerTick = 5;
inline constexpr int64_t kStepUs = kTickMs * 1000 / kStepsPerTick;
inline constexpr int kElectionTick = 10;
// Two groups: one pass of a host persists and sends for both at once.
inline constexpr GroupId kGroups[] = {1, 2};
inline constexpr int kKeys = 4;
inline constexpr int kClients = 4;
// A client gives up on an operation after this many ticks (outcome unknown).
inline constexpr uint64_t kOpTimeoutTicks = 60;
// Once faults stop, every group must have applied a new write everywhere
// within this many ticks.
inline constexpr uint64_t kLivenessTicks = 600;
// Replicas that agree for this many ticks have caught up.
inline constexpr uint64_t kStableTicks = 3 * kElectionTick;
// More messages in flight than this is a storm (messages begetting more
// messages faster than they are delivered): reported, not simulated on.
inline constexpr size_t kMaxInFlight = 200'000;
// The bound on the linearizability search per key.
inline constexpr size_t kMaxSearchStates = 2'000'000;

// Lock clients (host_sim_locks.cc): each keeps a lease of its own alive and
// now and then holds the lock kLockName of group kLockGroup, pausing at
// times past its lease.
inline constexpr int kLockClients = 3;
inline constexpr GroupId kLockGroup = kGroups[0];
inline constexpr char kLockName[] = "lock";
// Holders write kFencedKey with their token; its prefix is bound to the lock
// in another group than the lock's.
inline constexpr GroupId kFenceGroup = kGroups[1];
inline constexpr char kFencePrefix[] = "f/";
inline constexpr char kFencedKey[] = "f/x";
inline constexpr int64_t kLeaseTtlMs = 1000;
// The holder's reckoning of its lease, as client::LockSession's defaults:
// valid until the send time of the last confirmed keep-alive + TTL x (1 -
// drift) - margin.
inline constexpr double kHolderDrift = 0.02;
inline constexpr int64_t kHolderMarginMs = 100;
// Idempotency clients (host_sim_idem.cc): each retries Begin on one of
// kIdemKeys keys of kIdemGroup (new ones every kIdemKeyEpochMs); an owner
// renews its claim, completes with an effect, and pauses at times past the
// claim.
inline constexpr int kIdemClients = 3;
inline constexpr int kIdemKeys = 3;
inline constexpr GroupId kIdemGroup = kGroups[1];
inline constexpr char kIdemScope[] = "s/";
inline constexpr int64_t kIdemClaimMs = 1000;
// Keys change every this often (3 at a time).
inline constexpr int64_t kIdemKeyEpochMs = 3000;

// Once faults stop, the lock clients go quiet: every lease must have ended
// within this many ticks (the TTL, a failover's extension by up to an
// election timeout, the duties' period, and margin).
inline constexpr uint64_t kLeasesEndTicks = kLeaseTtlMs / kTickMs + 100;
// How often a leader proposes the commands its state machines find due
// (leases ended), as kv/server's leader duties do.
inline constexpr uint64_t kDutiesEveryTicks = 10;

inline GroupId GroupOf(int key) { return kGroups[key % 2]; }
inline std::string KeyName(int key) { return absl::StrCat("k", key); }

// Fault rates of one run, drawn from its seed (swarm testing).
struct Plan {
  int nodes = 3;
  double drop = 0;
  double duplicate = 0;
  int max_delay_steps = 1;
  double crash = 0;      // per tick, that a live node crashes
  double partition = 0;  // per tick, that a partition starts
  double pause = 0;      // per tick, that a live node stops running
  double client = 0.3;   // per tick and idle client, that it starts an op
  int apply_rate = 4;    // apply tasks a node runs per step, at most
  double drift = 0;      // clock rates in [1 - drift, 1 + drift]
  // Nodes 1..voters start as the voters of every group; the others start
  // empty, for membership changes to add.
  int voters = 3;
  double conf_change = 0;  // per tick, that a group's leader changes members
  double transfer = 0;     // per tick, that a group's leader hands over
  double lock_pause = 0;   // per tick, that a lock client stops running

  std::string Describe() const {
    return absl::StrCat(
        "nodes=", nodes, " voters=", voters, " drop=", drop, " dup=", duplicate,
        " delay<=", max_delay_steps, "steps crash=", crash,
        " partition=", partition, " pause=", pause, " client=", client,
        " apply<=", apply_rate, " drift=", drift, " confchange=", conf_change,
        " transfer=", transfer, " lockpause=", lock_pause);
  }
};

// The fault rates of one run, from its seed; `o.nodes` 0 lets it choose.
Plan DrawPlan(util::SeededRandom& r, const HostSimOptions& o);

// A node's steady clock: the world's time at the node's rate.
class SimClock final : public raft::host::Clock {
 public:
  SimClock(const int64_t* world_us, double rate)
      : world_us_(world_us), rate_(rate) {}
  TimePoint Now() const override {
    return TimePoint(std::chrono::microseconds(
        static_cast<int64_t>(static_cast<double>(*world_us_) * rate_)));
  }
  int64_t NowMs() const {
    return static_cast<int64_t>(static_cast<double>(*world_us_) * rate_) / 1000;
  }

 private:
  const int64_t* const world_us_;
  const double rate_;
};

// The snapshot fetches a host posts, run by the simulation one at a time.
class FetchQueue final : public raft::host::Executor {
 public:
  bool Post(std::function<void()> fn) override {
    queue.push_back(std::move(fn));
    return true;
  }
  std::deque<std::function<void()>> queue;
};

class World;

class SimTransport final : public raft::host::Transport {
 public:
  SimTransport(World* world, NodeId self) : world_(world), self_(self) {}
  void Send(NodeId to, std::vector<GroupMessage> msgs) override;
  absl::Status FetchSnapshot(NodeId from, GroupId group, Index min_index,
                             const raft::host::ChunkSink& sink) override;
  void CancelFetches() override {}

 private:
  World* const world_;
  const NodeId self_;
};

// Between a host and a kv state machine: tells the world what the machine
// applies and hears of leadership, and with --trace prints it.
class WatchedMachine final : public raft::host::StateMachine {
 public:
  WatchedMachine(World* world, raft::host::StateMachine* m, NodeId node,
                 GroupId group)
      : world_(world), m_(m), node_(node), group_(group) {}
  Index applied() const override { return m_->applied(); }
  absl::StatusOr<std::vector<std::string>> Apply(
      const std::vector<raft::Entry>& entries) override;
  std::unique_ptr<raft::host::ApplyPass> NewPass() override {
    return m_->NewPass();
  }
  bool Joins(const raft::host::ApplyPass& pass) const override {
    return m_->Joins(pass);
  }
  absl::StatusOr<std::vector<std::string>> ApplyInto(
      raft::host::ApplyPass& pass,
      const std::vector<raft::Entry>& entries) override;
  absl::StatusOr<Index> Sync() override { return m_->Sync(); }
  absl::Status Export(Index min_index,
                      const raft::host::ChunkSink& sink) override {
    return m_->Export(min_index, sink);
  }
  absl::Status Import(const raft::host::ChunkSource& source) override {
    return m_->Import(source);
  }
  void OnLeadership(raft::Term term, bool leading) override;

 private:
  // Tells the world what is applied (entries applied before a restart
  // are skipped).
  void Tell(const std::vector<raft::Entry>& entries);

  World* const world_;
  raft::host::StateMachine* const m_;
  const NodeId node_;
  const GroupId group_;
};

struct Node {
  NodeId id = 0;
  bool up = false;
  uint64_t restart_at = 0;    // step, when down
  uint64_t paused_until = 0;  // step
  // What survives a crash: the raft log's files and the state machines.
  kv::storage::MemoryFileSystem log_files;
  kv::storage::MemoryEngine data_engine;
  std::unique_ptr<SimClock> clock;
  std::unique_ptr<SimTransport> transport;
  // One incarnation's.
  std::unique_ptr<kv::storage::SegmentLog> log;
  std::map<GroupId, std::unique_ptr<kv::StateMachine>> machines;
  // The host sees the machines through these.
  std::map<GroupId, std::unique_ptr<WatchedMachine>> watched;
  FetchQueue fetches;
  std::unique_ptr<raft::host::NodeHost> host;
  std::unique_ptr<kv::LeaderDuties> duties;
  // Each state machine's applied index, as last seen in this incarnation.
  std::map<GroupId, Index> last_applied;
  // Messages that arrived while paused, delivered on waking.
  std::vector<std::vector<GroupMessage>> held;
};

struct OpRecord {
  int client = 0;
  int key = 0;
  bool write = false;
  // A write the node said was not applied, or a read that failed: not part
  // of the history.
  bool failed = false;
  bool done = false;
  uint64_t deadline_step = 0;
  RegisterOp reg;
};

struct Client {
  bool busy = false;
  uint64_t op = 0;
  NodeId target = 1;
};

// A lock client, as a service holding a lock through client::LockSession.
struct LockClient {
  NodeId target = 1;
  // One request at a time; `request` numbers them, and an answer to one the
  // client gave up on is ignored.
  bool busy = false;
  uint64_t request = 0;
  uint64_t give_up_step = 0;
  int64_t paused_until_us = 0;
  uint64_t lease = 0;  // 0: none
  // The holder's reckoning: the lease is valid until then (world time).
  int64_t valid_until_us = 0;
  int64_t renew_at_us = 0;
  // The Acquire being tried: its request id is kept across retries.
  uint64_t acquire_id = 0;
  uint64_t token = 0;  // held, 0: not
  size_t hold = 0;     // its entry in the holds, while held
  int64_t release_at_us = 0;
  // A release sent and not yet answered (sent again after a timeout).
  uint64_t releasing = 0;
  // The token of a hold lost (lease no longer valid): a paused holder may
  // still finish the fenced write it was making with it.
  uint64_t stale = 0;
};

struct IdemClient {
  NodeId target = 1;
  bool busy = false;
  uint64_t request = 0;
  uint64_t give_up_step = 0;
  int64_t paused_until_us = 0;
  std::string key;     // the key it begins or owns
  uint64_t token = 0;  // owned under, 0: not an owner
  int64_t renew_at_us = 0;
  int64_t finish_at_us = 0;
};

// A fenced write the store accepted, at its raft index in kFenceGroup.
struct FencedWrite {
  int client = 0;
  uint64_t token = 0;
  raft::Index index = 0;
};

// A time a client believed it held the lock: from the grant's answer until
// its release was sent or its lease ceased to be valid by its reckoning.
struct Hold {
  int client = 0;
  uint64_t token = 0;
  int64_t from_us = 0;
  int64_t until_us = INT64_MAX;  // open
};

struct Packet {
  NodeId from = 0;
  NodeId to = 0;
  std::vector<GroupMessage> msgs;
};

class World {
 public:
  explicit World(const HostSimOptions& o)
      : options_(o), random_(o.seed), plan_(DrawPlan(random_, o)) {}

  HostSimResult Run();

  void Send(NodeId from, NodeId to, std::vector<GroupMessage> msgs);
  absl::Status Fetch(NodeId self, NodeId from, GroupId group, Index min_index,
                     const raft::host::ChunkSink& sink);
  // From the watched machines.
  void Applied(NodeId n, GroupId g, const raft::Entry& e, bool skipped);
  void Told(NodeId n, GroupId g, raft::Term term, bool leading, Index applied);

 private:
  Node& node(NodeId id) { return *nodes_[id - 1]; }
  bool Linked(NodeId a, NodeId b) const { return !cut_.count({a, b}); }
  bool Running(const Node& n) const { return n.up && step_ >= n.paused_until; }
  void Trace(const std::string& line);
  void Fail(std::string what);
  // Whether the leader of `g` in `term`, told it leads at applied index
  // `at`, missed the entry `index` of an earlier term `earlier`.
  void CheckLeaderHas(GroupId g, raft::Term term, NodeId leader, Index at,
                      raft::Term earlier, Index index);

  // The raft log as kvd keeps it, in small segments so that they turn over
  // and quiet groups' entries are copied forward often.
  static absl::StatusOr<std::unique_ptr<kv::storage::SegmentLog>> OpenLog(
      Node& n);
  absl::Status Boot(Node& n);
  void Crash(Node& n);
  void FaultsForTick();
  void StartPartition();
  void Heal();
  void DeliverDue();
  void RunNodes();
  // The node that leads `g` in the highest term, and what it publishes.
  Node* Leader(GroupId g, raft::host::GroupInfo* info);
  void ChangeMembership(Node& leader, const raft::host::GroupInfo& info);
  void Transfer(Node& leader, const raft::host::GroupInfo& info);
  void ClientsAct();
  void Invoke(int c);
  void Finish(uint64_t id, absl::Status st, uint64_t read_value);
  void TimeOutOps();
  // Faults off: every node up, every group applies a new write everywhere.
  void Settle();
  void CheckHistory();
  // The leader of `g` and the other members of its configuration; empty
  // without a leader.
  std::vector<Node*> Members(GroupId g);
  void CheckReplicasAgree();
  // The leases live at kLockGroup's leader; nullopt without a leader.
  std::optional<std::vector<uint64_t>> LiveLeases();

  // host_sim_locks.cc.
  void LeaderDuties();
  void LockClientsAct();
  // Sends `cmd` for group `g` to the client's node; the answer goes to
  // LockAnswered.
  void LockInvoke(int c, GroupId g, kvpb::Command cmd);
  void LockAnswered(int c, const kvpb::Command& cmd, int64_t sent_us,
                    const absl::StatusOr<kvpb::CommandResult>& r);
  void EndHold(LockClient& lc, int64_t at_us);
  // No two clients believed they held the lock at once; tokens grew.
  void CheckHolds();
  // The fenced writes accepted, in log order, carry tokens that never go
  // down.
  void CheckFencedWrites();

  // host_sim_idem.cc.
  void IdemClientsAct();
  void IdemInvoke(int c, kvpb::Command cmd);
  // `r`: null when the command was not applied (or its outcome is unknown).
  void IdemAnswered(int c, const kvpb::Command& cmd, int64_t sent_us,
                    const kvpb::CommandResult* r);
  // Per key: one owner's completion at most; the stored response and the
  // single effect are that owner's; every replay returned the response.
  void CheckIdempotency();

  const HostSimOptions options_;
  util::SeededRandom random_;
  const Plan plan_;
  HostSimResult result_;

  int64_t now_us_ = 0;
  uint64_t step_ = 0;
  bool faults_on_ = true;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::multimap<std::pair<uint64_t, uint64_t>, Packet> in_flight_;
  size_t in_flight_msgs_ = 0;
  std::set<std::pair<NodeId, NodeId>> cut_;
  uint64_t heal_at_ = 0;

  std::vector<Client> clients_;
  std::vector<OpRecord> ops_;
  uint64_t events_ = 0;  // logical time of invocations and answers
  // Per group: until this step, a membership change is in flight.
  uint64_t changing_until_[std::size(kGroups)] = {};
  uint64_t next_value_ = 0;
  // Per group: the highest index applied anywhere of each term, and each
  // term's leader as its state machine was told, with its applied index
  // then.
  struct Ledger {
    std::map<raft::Term, Index> max_applied;
    std::map<raft::Term, std::pair<NodeId, Index>> leaders;
  };
  std::map<GroupId, Ledger> ledger_;

  std::vector<LockClient> lock_clients_;
  std::vector<IdemClient> idem_clients_;
  // Completions accepted (key, token) and responses replayed (key, response).
  std::set<std::string> idem_keys_;  // every key begun
  std::set<std::pair<std::string, uint64_t>> idem_completed_;
  std::vector<std::pair<std::string, std::string>> idem_replays_;
  std::vector<Hold> holds_;
  std::vector<FencedWrite> fenced_;
  bool fence_bound_ = false;
  uint64_t next_request_id_ = 0;
};

}  // namespace tally::hostsim::internal

#endif  // TALLY_TESTS_HOSTSIM_INTERNAL_WORLD_H_
