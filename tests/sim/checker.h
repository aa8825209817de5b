#ifndef TALLY_TESTS_SIM_CHECKER_H_
#define TALLY_TESTS_SIM_CHECKER_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "raft/log.h"
#include "raft/types.h"

namespace tally::sim {

// A client operation on a register. Every operation, reads included, goes
// through the log; the position of its entry is its linearization point.
struct Op {
  enum class Kind : uint8_t { kWrite, kRead };
  uint64_t id = 0;
  Kind kind = Kind::kWrite;
  int key = 0;
  uint64_t value = 0;  // written value (writes)
  // Client-side only, not in the entry: the highest log index of any
  // operation acknowledged before this one was invoked. Real-time order
  // demands this op lands after it.
  raft::Index must_follow = 0;
};

// Raft's safety properties (Figure 3 of the paper) and the clients' view,
// checked incrementally as the simulation reports events. The first
// violation is kept; later ones are ignored.
//
// Thread safety: not thread-safe.
class Checker {
 public:
  explicit Checker(int nodes);

  // Election Safety: at most one leader per term.
  // Leader Completeness: the new leader's log holds every entry known to be
  // committed in an earlier term (compacted ones excepted: they are in its
  // snapshot).
  // Membership: a leader is a voter of its own configuration.
  void OnBecomeLeader(raft::NodeId id, raft::Term term,
                      const raft::RaftLog& log, const raft::ConfState& conf);
  // The leader `id` committed up to `commit`: majorities of both halves of
  // its configuration (learners not counted) must hold that entry.
  void OnLeaderCommit(raft::NodeId id, const raft::ConfState& conf,
                      raft::Index commit);
  // Every replica that applied index i has the same state then.
  void OnStateHash(raft::NodeId id, raft::Index index, uint64_t hash);
  // Log Matching: the node persisted `entries`, replacing its log from
  // entries[0].index on; any other node's entry with the same index and term
  // must be preceded by the same log.
  void OnPersist(raft::NodeId id, const std::vector<raft::Entry>& entries);
  // The node restarted from a snapshot at `snapshot_index` (0: none) and
  // the durable entries after it.
  void OnRestart(raft::NodeId id, raft::Index snapshot_index,
                 const std::vector<raft::Entry>& durable);
  // The node replaced its log with a snapshot at `index`.
  void OnSnapshotInstalled(raft::NodeId id, raft::Index index);
  // The node's commit index advanced to `commit` while it was in `term`:
  // committed entries never change.
  void OnCommit(raft::NodeId id, raft::Term term, raft::Index commit,
                const raft::RaftLog& log);
  // State Machine Safety: no two nodes apply different entries at one index.
  void OnApply(raft::NodeId id, const raft::Entry& e);

  // A client operation was acknowledged with its entry at `index`; for reads
  // `read_value` is what the client saw. Checks real-time order, that the
  // entry is the committed one, and that reads see the latest write.
  void OnAck(const Op& op, raft::Index index, raft::Term term,
             uint64_t read_value);
  raft::Index max_acked_index() const { return max_acked_index_; }
  uint64_t acked() const { return acked_; }

  const std::optional<std::string>& violation() const { return violation_; }
  // Records a violation found outside the checker (liveness).
  void Fail(std::string what);

 private:
  struct Digest {
    raft::Term term;
    uint64_t prefix_hash;  // hash of every entry up to this one
  };
  struct Committed {
    raft::Term term;
    raft::Term commit_term;  // lowest term a node observed it committed in
    uint64_t prefix_hash;    // of the log up to it (0: not yet known)
    uint64_t data_hash;
    bool applied_seen;
    std::optional<Op> op;  // the client op its data carries
  };

  void ExtendModel();
  // The digests of a log holding everything committed up to `index`.
  void ResetDigestsTo(raft::NodeId id, raft::Index index);
  // Whether the node's persisted log holds entry (index, term).
  bool Holds(raft::NodeId id, raft::Index index, raft::Term term) const;

  std::vector<std::vector<Digest>> digests_;  // per node, index 0 = sentinel
  std::vector<raft::Index> known_commit_;     // per node
  std::vector<raft::Index> snapshot_index_;   // per node: log starts after
  std::map<raft::Index, uint64_t> state_hashes_;
  std::map<raft::Term, raft::NodeId> leaders_;
  std::vector<Committed> committed_;  // index i at [i - 1]
  // The register model replayed along the committed log, and for each read
  // the value it must return.
  std::map<int, uint64_t> model_;
  size_t model_applied_ = 0;
  std::map<raft::Index, uint64_t> expected_reads_;
  raft::Index max_acked_index_ = 0;
  uint64_t acked_ = 0;
  std::optional<std::string> violation_;
};

// The entry data a client operation is carried in ("<id> w <key> <value>" or
// "<id> r <key>"), and back; nullopt for anything else (a leader's no-op).
std::string EncodeOp(const Op& op);
std::optional<Op> DecodeOp(const std::string& data);

}  // namespace tally::sim

#endif  // TALLY_TESTS_SIM_CHECKER_H_
