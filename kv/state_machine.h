#ifndef TALLY_KV_STATE_MACHINE_H_
#define TALLY_KV_STATE_MACHINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "leveldb/db.h"
#include "raft/host/interfaces.h"
#include "rpc/storage.pb.h"

namespace tally::kv {

// A session ends once this long passes without a request from it, unless it
// was opened with another TTL. The time is log time: the largest proposal
// time applied so far, the same on every replica at the same index.
inline constexpr int64_t kSessionTtlMs = 10 * 60 * 1000;
// Ended sessions' records are removed whenever log time enters a new period
// of this length (the records of ended sessions are garbage either way: a
// request under an ended session is refused whether or not it is there).
inline constexpr int64_t kSessionSweepMs = 60 * 1000;
// Saved results kept per session, for requests still in flight.
inline constexpr size_t kMaxResultsPerSession = 4096;

// The key-value state machine of one raft group (one shard, or the metadata
// group). Its data lives in a LevelDB database shared by every group of the
// node, under a prefix of the group id:
//   group 'a'          -> AppliedState (applied index, revision, log time)
//   group 'd' key      -> StoredValue
//   group 's' client   -> SessionRecord
//   group 'm' member   -> Member (metadata group)
//   group 't' member   -> "" once the member was removed (metadata group)
//   group 'r' start    -> RangeDescriptor (metadata group)
// Each Apply is one LevelDB batch, the applied index with the data it covers;
// writes are not synced (the raft log is), except by Sync.
//
// Everything Apply does is a function of the entries alone: the same entries
// give the same results and the same data whatever the batching, and across
// a restart. Time enters only through the log (each command carries its
// proposer's log time); ProposalTimeMs gives a proposer that time.
//
// Thread safety: Apply, Import and Sync from one thread (the host's apply
// thread); reads and Export from any thread.
class StateMachine final : public raft::host::StateMachine {
 public:
  // Called after an Apply that changed the member table.
  using MembersChanged = std::function<void()>;
  // A monotonic clock in milliseconds (never the wall clock).
  using MonotonicClock = std::function<int64_t()>;
  // Reads the group's applied state. `db` is not owned. `clock` defaults to
  // std::chrono::steady_clock.
  static absl::StatusOr<std::unique_ptr<StateMachine>> Open(
      leveldb::DB* db, raft::host::GroupId group,
      MonotonicClock clock = nullptr);

  // The log time a command proposed now should carry: the largest log time
  // this replica has applied, advanced by its monotonic clock since it
  // applied it. A wall clock set wrong moves nothing; a monotonic clock
  // running fast by a fraction moves log time, and so shortens sessions, by
  // that fraction while this node leads.
  int64_t ProposalTimeMs() const;
  int64_t log_time_ms() const;

  raft::Index applied() const override;
  absl::StatusOr<std::vector<std::string>> Apply(
      const std::vector<raft::Entry>& entries) override;
  absl::StatusOr<raft::Index> Sync() override;
  absl::Status Export(raft::Index min_index,
                      const raft::host::ChunkSink& sink) override;
  absl::Status Import(const raft::host::ChunkSource& source) override;

  // Reads of applied state.
  absl::StatusOr<std::optional<rpc::KeyValue>> Get(
      const std::string& key) const;
  // Keys in [start, end) (end empty: to the end), at most `limit`; `more` is
  // set when keys were left out.
  absl::StatusOr<std::vector<rpc::KeyValue>> Range(const std::string& start,
                                                   const std::string& end,
                                                   size_t limit,
                                                   bool* more) const;
  int64_t revision() const;
  absl::StatusOr<std::vector<rpc::Member>> Members() const;
  // Metadata group: whether member `id` was removed (ids are never reused).
  bool WasRemoved(uint64_t id) const;
  void set_members_changed(MembersChanged fn) {
    members_changed_ = std::move(fn);
  }

  // Writes the initial state of a new group (bootstrap), at `index`; the
  // metadata group's holds the members and the range descriptors.
  absl::Status Bootstrap(raft::Index index,
                         const std::vector<rpc::Member>& members,
                         const std::vector<rpc::RangeDescriptor>& ranges);
  // Metadata group: the range descriptors, in key order.
  absl::StatusOr<std::vector<rpc::RangeDescriptor>> Ranges() const;

 private:
  class Batch;
  StateMachine(leveldb::DB* db, raft::host::GroupId group,
               MonotonicClock clock);

  std::string Key(char kind, std::string_view rest = {}) const;
  // Every record of one kind of this group.
  template <typename Record>
  absl::StatusOr<std::vector<Record>> Scan(char kind) const;
  // Runs one command against the batch; `st` is the applied state so far.
  rpc::CommandResult Execute(Batch& b, const rpc::Command& cmd,
                             raft::Index index, rpc::AppliedState& st);
  // Sessions (state_machine_session.cc).
  rpc::CommandResult OpenSession(Batch& b, const rpc::Command& cmd,
                                 raft::Index index,
                                 const rpc::AppliedState& st);
  rpc::CommandResult RunInSession(Batch& b, const rpc::Command& cmd,
                                  raft::Index index, rpc::AppliedState& st);
  // Removes the records of sessions that ended by log time `now`.
  void SweepSessions(Batch& b, int64_t now);
  std::string SessionKey(uint64_t client_id) const;
  // Moves the base of ProposalTimeMs to `log_time` if that is ahead of it.
  void Rebase(int64_t log_time) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  rpc::CommandResult Run(Batch& b, const rpc::Command& cmd, raft::Index index,
                         rpc::AppliedState& st);
  void Put(Batch& b, const rpc::PutRequest& req, int64_t revision,
           rpc::PutResponse* resp);
  void Delete(Batch& b, const rpc::DeleteRequest& req,
              rpc::DeleteResponse* resp);
  std::optional<rpc::StoredValue> Read(Batch& b, const std::string& key);

  leveldb::DB* const db_;
  const raft::host::GroupId group_;
  const MonotonicClock clock_;
  MembersChanged members_changed_;

  mutable absl::Mutex mu_;
  rpc::AppliedState state_ ABSL_GUARDED_BY(mu_);
  // ProposalTimeMs = base_log_ms_ + (clock_() - base_clock_ms_).
  int64_t base_log_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t base_clock_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tally::kv

#endif  // TALLY_KV_STATE_MACHINE_H_
