#ifndef TALLY_TESTS_SIM_INTERNAL_SIMULATION_IMPL_H_
#define TALLY_TESTS_SIM_INTERNAL_SIMULATION_IMPL_H_

// The simulation's internals, shared by simulation.cc (nodes, faults, the
// Ready loop), sim_clients.cc (client operations and their history) and
// sim_features.cc (snapshots, membership changes, transfers).

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "raft/raw_node.h"
#include "raft/storage.h"
#include "tests/sim/checker.h"
#include "tests/sim/sim_disk.h"
#include "tests/sim/sim_network.h"
#include "tests/sim/simulation.h"
#include "util/linearizability.h"
#include "util/random.h"

namespace tally::sim::internal {

inline constexpr int kElectionTick = 10;
inline constexpr int kHeartbeatTick = 2;
inline constexpr int kLeaseDriftMargin = 2;
// Clients: three, or five when the features are on (spread over more
// nodes, they expose more of what each node believes).
inline constexpr int kClients = 3;
inline constexpr int kClientsWithFeatures = 5;
inline constexpr int kKeys = 3;
// A client gives up on an operation after this many ticks (outcome unknown)
// and tries another node.
inline constexpr uint64_t kOpTimeout = 60;
// Once faults stop, a leader must commit a new write within this many ticks.
inline constexpr uint64_t kLivenessBound = uint64_t{40} * kElectionTick;

// How a client operation reaches the state machine.
enum class OpPath : uint8_t { kLog, kReadIndex };

struct PendingOp {
  Op op;
  int client;
  raft::Index index;  // log ops: the entry; ReadIndex reads: the read index
  raft::Term term;    // log ops: the term proposed in
};

// The state a snapshot captured, kept by the simulated host and fetched by
// reference when a follower installs it.
struct SnapshotData {
  std::map<int, uint64_t> registers;
};

struct Node {
  raft::NodeId id;
  bool up = true;
  SimDisk disk;
  std::unique_ptr<raft::MemoryStorage> storage;
  std::unique_ptr<util::SeededRandom> random;
  std::unique_ptr<raft::RawNode> raw;
  std::map<int, uint64_t> registers;
  // Log ops proposed through this incarnation, by log index.
  std::map<raft::Index, PendingOp> proposed;
  // ReadIndex reads asked of this incarnation, by context (op id), and
  // those whose read index is known, waiting for it to be applied.
  std::map<uint64_t, PendingOp> reads_asked;
  std::vector<PendingOp> reads_ready;
  // Snapshot streams that failed while a Ready was being handled, reported
  // to the node once it has advanced (the Ready contract allows no calls
  // in between).
  std::vector<raft::NodeId> failed_snapshots;
  uint64_t restart_at = 0;
  double clock_rate = 1.0;
  double clock_carry = 0;

  Node(raft::NodeId node_id, bool faulty) : id(node_id), disk(faulty) {}
  raft::Index applied() const { return raw->raft().log().applied(); }
  // A register's value (0 if never written), without touching the map.
  uint64_t Read(int key) const {
    auto it = registers.find(key);
    return it == registers.end() ? 0 : it->second;
  }
};

struct Client {
  bool busy = false;
  uint64_t op_id = 0;  // the op in progress, when busy
  uint64_t invoked_at = 0;
  raft::NodeId target = 1;
};

class Simulation {
 public:
  explicit Simulation(const SimOptions& options);
  SimResult Run();

 private:
  // simulation.cc
  void Boot(Node& n);
  void Crash(Node& n);
  void MaybeInjectFaults();
  void StartPartition();
  void TickNodes();
  void DeliverMessages();
  void SendAll(Node& from, const std::vector<raft::Message>& msgs);
  void HandleReady(Node& n);
  void Apply(Node& n, const raft::Entry& e);
  void Step();
  void CheckLiveness();
  void Trace(const std::string& line);
  Node& node(raft::NodeId id) { return *nodes_[id - 1]; }
  Node* Leader();

  // sim_clients.cc
  void ClientsAct();
  void Invoke(int client, Op op, OpPath path);
  void Complete(const PendingOp& p, uint64_t read_value);
  void Release(const PendingOp& p);
  void OnReadStates(Node& n, const std::vector<raft::ReadState>& states);
  void ServeReadyReads(Node& n);
  void CheckHistories();

  // sim_features.cc
  void FeaturesAct();
  void MaybeSnapshot(Node& n);
  void InstallSnapshot(Node& n, const raft::Snapshot& snap);
  void ChangeMembership(Node& leader);
  void MaybeTransfer(Node& leader);
  uint64_t StateHash(const Node& n) const;

  SimOptions options_;
  util::SeededRandom random_;
  FaultPlan plan_;
  std::unique_ptr<SimNetwork> network_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<Client> clients_;
  Checker checker_;
  std::map<std::string, SnapshotData> snapshots_;
  uint64_t now_ = 0;
  // Logical time of client events (invocations and completions), for the
  // linearizability check.
  uint64_t event_clock_ = 0;
  std::map<int, std::vector<RegisterOp>> history_;  // per key
  std::map<uint64_t, size_t> history_slot_;         // op id -> index
  uint64_t next_op_id_ = 1;
  uint64_t next_value_ = 1;
  uint64_t heal_at_ = 0;
  bool faults_on_ = true;
  // Liveness phase: the first op invoked after faults stopped, and whether
  // one such op has completed.
  uint64_t first_liveness_op_ = UINT64_MAX;
  bool liveness_op_done_ = false;
  SimResult result_;
};

}  // namespace tally::sim::internal

#endif  // TALLY_TESTS_SIM_INTERNAL_SIMULATION_IMPL_H_
