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

// Sessions idle for longer than this (in log time: the largest proposal time
// applied so far, the same on every replica) are forgotten.
inline constexpr int64_t kSessionTtlMs = 10 * 60 * 1000;
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
// Thread safety: Apply, Import and Sync from one thread (the host's apply
// thread); reads and Export from any thread.
class StateMachine final : public raft::host::StateMachine {
 public:
  // Called after an Apply that changed the member table.
  using MembersChanged = std::function<void()>;
  // Reads the group's applied state. `db` is not owned.
  static absl::StatusOr<std::unique_ptr<StateMachine>> Open(
      leveldb::DB* db, raft::host::GroupId group);

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
  StateMachine(leveldb::DB* db, raft::host::GroupId group);

  std::string Key(char kind, std::string_view rest = {}) const;
  // Every record of one kind of this group.
  template <typename Record>
  absl::StatusOr<std::vector<Record>> Scan(char kind) const;
  // Runs one command against the batch; `st` is the applied state so far.
  rpc::CommandResult Execute(Batch& b, const rpc::Command& cmd,
                             raft::Index index, rpc::AppliedState& st);
  rpc::CommandResult Run(Batch& b, const rpc::Command& cmd, raft::Index index,
                         rpc::AppliedState& st);
  void Put(Batch& b, const rpc::PutRequest& req, int64_t revision,
           rpc::PutResponse* resp);
  void Delete(Batch& b, const rpc::DeleteRequest& req,
              rpc::DeleteResponse* resp);
  std::optional<rpc::StoredValue> Read(Batch& b, const std::string& key);
  void ExpireSessions(Batch& b, const rpc::AppliedState& st);

  leveldb::DB* const db_;
  const raft::host::GroupId group_;
  MembersChanged members_changed_;

  mutable absl::Mutex mu_;
  rpc::AppliedState state_ ABSL_GUARDED_BY(mu_);
  int64_t last_expiry_minute_ = 0;  // apply thread only
};

}  // namespace tally::kv

#endif  // TALLY_KV_STATE_MACHINE_H_
