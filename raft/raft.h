#ifndef TALLY_RAFT_RAFT_H_
#define TALLY_RAFT_RAFT_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/config.h"
#include "raft/log.h"
#include "raft/message.h"
#include "raft/progress.h"
#include "raft/types.h"

namespace tally::raft {

// The Raft state machine of one node of one group. Pure: it has no threads,
// clock or I/O. Its inputs are Tick(), Step(), Propose() and Campaign(); its
// outputs are the state it exposes and the messages it queues. Applications
// drive it through RawNode (raw_node.h), which packages the outputs into a
// Ready; tests may drive it directly.
//
// Thread safety: not thread-safe; one caller at a time.
class Raft {
 public:
  // Reads the initial state from config.storage. INVALID_ARGUMENT for a bad
  // config or a stored state that contradicts the log.
  static absl::StatusOr<std::unique_ptr<Raft>> Create(const Config& config);

  // Advances logical time by one tick: election timeout for followers and
  // candidates; heartbeats and the check-quorum test for leaders.
  void Tick();
  // Starts an election now (a pre-vote first when enabled). No-op on a leader.
  void Campaign();
  // Handles a message from another node. Messages of an older term are
  // ignored (or answered so their sender can catch up).
  void Step(const Message& m);
  // Appends `data` as a new entry if this node is the leader and returns its
  // index. UNAVAILABLE if this node is not the leader (the message names the
  // leader when one is known); RESOURCE_EXHAUSTED if the uncommitted-bytes
  // cap is reached. Nothing is appended on error.
  absl::StatusOr<Index> Propose(std::string data);

  // Moves out the messages queued since the last call.
  std::vector<Message> TakeMessages();
  bool HasMessages() const { return !msgs_.empty(); }
  // The application applied these entries: releases their share of the
  // uncommitted-bytes budget.
  void ReduceUncommittedSize(const std::vector<Entry>& applied);

  NodeId id() const { return id_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId lead() const { return lead_; }
  Role role() const { return role_; }
  HardState hard_state() const { return {term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return {lead_, role_}; }
  const RaftLog& log() const { return log_; }
  RaftLog& mutable_log() { return log_; }
  const std::vector<NodeId>& voters() const { return voters_; }
  // The leader's view of a follower, or nullptr if not leader / unknown id.
  const Progress* progress(NodeId id) const;
  int randomized_election_timeout() const {
    return randomized_election_timeout_;
  }

 private:
  explicit Raft(const Config& config);

  enum class VoteResult { kPending, kWon, kLost };

  void Reset(Term term);
  void ResetRandomizedElectionTimeout();
  void BecomeFollower(Term term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();

  void TickElection();
  void TickHeartbeat();
  void StartElection(bool pre_vote);

  // Returns false when the message is stale and must not be processed.
  bool StepTerm(const Message& m);
  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);

  void HandleVoteRequest(const Message& m);
  void HandleVoteResponse(const Message& m);
  void HandleAppendEntries(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleAppendResponse(const Message& m, Progress& pr);
  void HandleHeartbeatResponse(const Message& m, Progress& pr);

  // Sends the follower the entries it is missing, if its progress allows.
  // Returns whether a message was sent. Without send_if_empty, a message is
  // sent only if it carries entries.
  bool SendAppend(NodeId to, bool send_if_empty = true);
  void BroadcastAppend();
  void BroadcastHeartbeat();
  void Send(Message m);

  // Appends entries at the leader's term, counting them as replicated on the
  // leader itself. RESOURCE_EXHAUSTED if over the uncommitted-bytes cap.
  absl::Status AppendEntries(std::vector<Entry> entries);
  // §5.3/§5.4.2: advance commit to the highest index stored on a quorum whose
  // entry is of the current term. Returns whether commit advanced.
  bool MaybeCommit();
  VoteResult Poll(NodeId from, bool granted);
  bool QuorumActive() const;
  size_t Quorum() const { return voters_.size() / 2 + 1; }
  bool IsVoter(NodeId id) const;

  const NodeId id_;
  const int election_timeout_;
  const int heartbeat_timeout_;
  const bool pre_vote_;
  const bool check_quorum_;
  const uint64_t max_size_per_msg_;
  const size_t max_inflight_msgs_;
  const uint64_t max_inflight_bytes_;
  const uint64_t max_uncommitted_size_;
  util::RandomSource* const random_;

  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  RaftLog log_;
  std::vector<NodeId> voters_;
  std::map<NodeId, Progress> progress_;  // meaningful on the leader only
  std::map<NodeId, bool> votes_;         // during an election
  uint64_t uncommitted_size_ = 0;        // leader: payload bytes not applied

  // Ticks since the last election timeout reset (followers and candidates)
  // or since the last check-quorum test (leaders).
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;

  std::vector<Message> msgs_;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_RAFT_H_
