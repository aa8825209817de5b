#ifndef TALLY_RAFT_RAFT_H_
#define TALLY_RAFT_RAFT_H_

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "raft/conf_change.h"
#include "raft/config.h"
#include "raft/log.h"
#include "raft/message.h"
#include "raft/progress.h"
#include "raft/quorum.h"
#include "raft/types.h"

namespace tally::raft {

// The Raft state machine of one node of one group. Pure: it has no threads,
// clock or I/O. Its inputs are Tick(), Step(), the proposals and requests
// below; its outputs are the state it exposes, the messages it queues and
// the read states it produces. Applications drive it through RawNode
// (raw_node.h), which packages the outputs into a Ready; tests may drive it
// directly.
//
// Thread safety: not thread-safe; one caller at a time.
class Raft {
 public:
  // Reads the initial state from config.storage. INVALID_ARGUMENT for a bad
  // config or a stored state that contradicts the log. A storage with no
  // configuration, no log and no hard state makes an empty replica: a new
  // member that never campaigns and waits for a leader's snapshot.
  static absl::StatusOr<std::unique_ptr<Raft>> Create(const Config& config);

  // Advances logical time by one tick: election timeout for followers and
  // candidates; heartbeats, check-quorum and transfer timeout for leaders.
  void Tick();
  // Time passed without ticks (the process stood still, or the host let an
  // idle group sleep): moves the lease clock forward by `ticks` without
  // firing any timer, so that a lease never outlives the real time it was
  // granted for.
  void AdvanceClock(uint64_t ticks) { ticks_ += ticks; }
  // Starts an election now (a pre-vote first when enabled). No-op on a
  // leader and on a node that is not a voter.
  void Campaign();
  // Handles a message from another node. Messages of an older term are
  // ignored (or answered so their sender can catch up).
  void Step(const Message& m);

  // Appends `data` as a new entry if this node is the leader and returns its
  // index. UNAVAILABLE if this node is not the leader (the message names the
  // leader when one is known) or is handing leadership over;
  // RESOURCE_EXHAUSTED if the uncommitted-bytes cap is reached. Nothing is
  // appended on error.
  absl::StatusOr<Index> Propose(std::string data);
  // What ProposeAll appended.
  struct Proposed {
    Index first = 0;   // the index of the first entry appended
    size_t count = 0;  // how many were, from the front of the data
    // Why the others were not (RESOURCE_EXHAUSTED: the uncommitted-bytes
    // cap); OK when all were.
    absl::Status rest;
  };
  // Like Propose for each of `data`, in order, with one append message per
  // follower for all of those appended: as many from the front as the
  // uncommitted-bytes cap admits (as calls of Propose one by one, up to the
  // first refused). Propose's errors, with nothing appended, when not even
  // the first is. REQUIRES: !data.empty().
  absl::StatusOr<Proposed> ProposeAll(std::vector<std::string> data);
  // Like Propose, for a membership change. FAILED_PRECONDITION while another
  // change is not yet applied; the errors of ApplyChange (conf_change.h) if
  // it does not fit the current configuration.
  absl::StatusOr<Index> ProposeConfChange(const ConfChange& cc);
  // Called by the application when it applies a committed kConfChange entry;
  // returns the new configuration, which the application records with its
  // next snapshot. An invalid change (impossible when proposed through
  // ProposeConfChange) is rejected identically by every node and changes
  // nothing. A leader that is no longer a voter keeps leading, accepting no
  // proposals, and hands leadership to the most up-to-date voter.
  absl::StatusOr<ConfState> ApplyConfChange(const ConfChange& cc);

  // Hands leadership to `target` (§3.10): brings it up to date, then tells
  // it to campaign at once. Proposals are refused meanwhile; the transfer is
  // abandoned after an election timeout. UNAVAILABLE if not leader,
  // INVALID_ARGUMENT if the target is not a voter.
  absl::Status TransferLeadership(NodeId target);

  // Requests a linearizable read (§6.4). When it is safe, a ReadState with
  // this `context` and the read index appears (TakeReadStates): the read may
  // be served once the application has applied that index. A leader answers
  // only after an entry of its own term commits, and after a quorum confirms
  // its leadership (or within its lease, with lease reads); one round
  // answers every read queued while the previous round was in flight. A
  // follower forwards the request to the leader. UNAVAILABLE if there is no
  // known leader. A request lost to a leader change is never answered: the
  // caller times out and retries. With `allow_lease` false the leader
  // always confirms with a quorum round, even when lease reads are
  // configured (kLeaseBased), so that one group can serve both kinds.
  absl::Status ReadIndex(uint64_t context, bool allow_lease = true);

  // The host finished (or failed) sending a snapshot to `id`.
  void ReportSnapshot(NodeId id, bool success);
  // The host could not reach `id`: stop streaming to it optimistically.
  void ReportUnreachable(NodeId id);

  // Moves out the messages queued since the last call.
  std::vector<Message> TakeMessages();
  bool HasMessages() const { return !msgs_.empty(); }
  std::vector<ReadState> TakeReadStates();
  bool HasReadStates() const { return !read_states_.empty(); }
  // The application applied up to `index` (these entries): releases their
  // share of the uncommitted-bytes budget, and lets a leader leave a joint
  // configuration once it is applied.
  void OnApplied(Index index, const std::vector<Entry>& applied);

  NodeId id() const { return id_; }
  Term term() const { return term_; }
  NodeId vote() const { return vote_; }
  NodeId lead() const { return lead_; }
  Role role() const { return role_; }
  HardState hard_state() const { return {term_, vote_, log_.committed()}; }
  SoftState soft_state() const { return {lead_, role_}; }
  const RaftLog& log() const { return log_; }
  RaftLog& mutable_log() { return log_; }
  const ConfState& conf_state() const { return conf_; }
  NodeId lead_transferee() const { return lead_transferee_; }
  // The leader's view of a follower, or nullptr if not leader / unknown id.
  const Progress* progress(NodeId id) const;
  int randomized_election_timeout() const {
    return randomized_election_timeout_;
  }

 private:
  explicit Raft(const Config& config);

  struct PendingRead {
    NodeId from;
    uint64_t context;
    Index index;
    bool allow_lease;
  };

  void Reset(Term term);
  void ResetRandomizedElectionTimeout();
  void BecomeFollower(Term term, NodeId lead);
  void BecomePreCandidate();
  void BecomeCandidate();
  void BecomeLeader();
  void SwitchToConfig(const ConfState& cs);
  void AddProgress(NodeId id);

  void TickElection();
  void TickHeartbeat();
  void StartElection(bool pre_vote, bool transfer);

  // Returns false when the message is stale and must not be processed.
  bool StepTerm(const Message& m);
  void StepLeader(const Message& m);
  void StepCandidate(const Message& m);
  void StepFollower(const Message& m);

  void HandleVoteRequest(const Message& m);
  void LearnCommit(Index index, Term term);
  void HandleVoteResponse(const Message& m);
  void HandleAppendEntries(const Message& m);
  void HandleHeartbeat(const Message& m);
  void HandleSnapshot(const Message& m);
  void HandleAppendResponse(const Message& m, Progress& pr);
  void HandleHeartbeatResponse(const Message& m, Progress& pr);

  // Sends the follower the entries it is missing, or the snapshot if they
  // are compacted, if its progress allows. Returns whether a message was
  // sent. Without send_if_empty, a message is sent only if it carries
  // entries.
  bool SendAppend(NodeId to, bool send_if_empty = true);
  bool SendSnapshot(NodeId to, Progress& pr);
  void BroadcastAppend();
  // Sends a heartbeat with a new sequence number to every follower.
  void BroadcastHeartbeat();
  void Send(Message m);

  void SendTimeoutNow(NodeId to);
  // A removed leader transfers leadership to the most up-to-date voter.
  void HandOver();
  void AbortLeaderTransfer() { lead_transferee_ = kNoNode; }
  // UNAVAILABLE unless this node is a leader that accepts proposals.
  absl::Status CheckCanPropose() const;

  // Reads (§6.4).
  void HandleReadRequest(NodeId from, uint64_t context, bool allow_lease);
  void AnswerRead(const PendingRead& read, Index index);
  void StartReadRound();
  void MaybeFinishReadRound();
  bool CommittedInCurrentTerm() const;
  bool LeaseValid() const;

  // Appends entries at the leader's term, counting them as replicated on the
  // leader itself. RESOURCE_EXHAUSTED if over the uncommitted-bytes cap.
  absl::Status AppendEntries(std::vector<Entry> entries);
  // OK if `bytes` more may be appended after `pending` bytes that the same
  // call appends first: the uncommitted-bytes cap.
  absl::Status CheckUncommitted(uint64_t pending, uint64_t bytes) const;
  // §5.3/§5.4.2: advance commit to the highest index stored on a quorum
  // (of both halves of a joint configuration) whose entry is of the current
  // term. Returns whether commit advanced.
  bool MaybeCommit();
  VoteResult Poll(NodeId from, bool granted);
  bool QuorumActive() const;

  const NodeId id_;
  const int election_timeout_;
  const int heartbeat_timeout_;
  const bool pre_vote_;
  const bool check_quorum_;
  const ReadOnlyOption read_only_;
  const int lease_ticks_;
  const uint64_t max_size_per_msg_;
  const size_t max_inflight_msgs_;
  const uint64_t max_inflight_bytes_;
  const uint64_t max_uncommitted_size_;
  const Storage* const storage_;
  util::RandomSource* const random_;

  Term term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId lead_ = kNoNode;
  Role role_ = Role::kFollower;
  RaftLog log_;
  ConfState conf_;
  std::map<NodeId, Progress> progress_;  // meaningful on the leader only
  std::map<NodeId, bool> votes_;         // during an election
  uint64_t uncommitted_size_ = 0;        // leader: payload bytes not applied
  // Index of the last membership change the leader appended; a new one waits
  // until it is applied.
  Index pending_conf_index_ = 0;
  NodeId lead_transferee_ = kNoNode;
  // Set once this leader told a node to campaign: followers grant that
  // candidate their vote despite the lease, so the lease no longer holds.
  bool sent_timeout_now_ = false;

  // Ticks since the last election timeout reset (followers and candidates)
  // or since the last check-quorum test (leaders).
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_election_timeout_ = 0;
  // With lease reads, a node that just started grants no vote for one
  // election timeout: before it crashed it may have acknowledged a leader
  // whose lease still runs.
  bool startup_quiet_ = false;

  // The leader's clock (ticks of this node), for leases.
  uint64_t ticks_ = 0;
  // Heartbeats: the last sequence number sent, and the tick each recent one
  // was sent at (indexed by sequence number modulo the size).
  uint64_t heartbeat_seq_ = 0;
  std::array<uint64_t, 64> heartbeat_sent_tick_{};
  // Reads waiting for the leader's first commit in its term; waiting for the
  // next round; and answered when the round's heartbeat (read_round_seq_)
  // is acknowledged by a quorum.
  std::vector<PendingRead> reads_awaiting_commit_;
  std::vector<PendingRead> reads_queued_;
  std::vector<PendingRead> reads_in_round_;
  uint64_t read_round_seq_ = 0;  // 0: no round in flight
  std::vector<ReadState> read_states_;

  std::vector<Message> msgs_;
};

}  // namespace tally::raft

#endif  // TALLY_RAFT_RAFT_H_
