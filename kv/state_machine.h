#ifndef TALLY_KV_STATE_MACHINE_H_
#define TALLY_KV_STATE_MACHINE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv/auth/auth.h"
#include "kv/crdt_table/cas_rows.h"
#include "kv/crdt_table/members.h"
#include "kv/crdt_table/schema.h"
#include "kv/idempotency/idempotency.h"
#include "kv/keyspace.h"
#include "kv/kvpb/kvpb.pb.h"
#include "kv/kvstore/kvstore.h"
#include "kv/lease/lease.h"
#include "kv/lock/lock.h"
#include "kv/meta/meta.h"
#include "kv/module.h"
#include "kv/saga/saga.h"
#include "kv/session/session.h"
#include "kv/storage/engine.h"
#include "raft/host/interfaces.h"

namespace tally::kv {

// The replicated state machine of one raft group (one shard, or the metadata
// group): a dispatcher over modules (module.h). It owns the applied index,
// the revision and log time (key space 'a', keyspace.h), writes each apply
// pass as one engine batch with the applied index it covers (one batch for
// every group of the engine, through NewPass and ApplyInto), and hands each
// command to its module: KvStore (kvstore/, recording every change in
// WatchHistory, watch/), Meta (meta/), Leases (lease/),
// Locks (lock/), AuthStore (auth/), and Sessions (session/), which opens
// sessions and wraps any other module's command that carries one. Writes are
// not synced (the raft log is), except by Sync and Import.
//
// Everything Apply does is a function of the entries alone: the same entries
// give the same results and the same data whatever the batching, and across
// a restart. Time enters only through the log (each command carries its
// proposer's log time); ProposalTimeMs gives a proposer that time.
//
// Thread safety: Apply, Import, Sync and OnLeadership from one thread (the
// host's apply thread); reads and Export from any thread.
class StateMachine final : public raft::host::StateMachine {
 public:
  // A monotonic clock in milliseconds (never the wall clock).
  using MonotonicClock = std::function<int64_t()>;
  // Reads the group's applied state. `engine` is not owned. `clock`
  // defaults to std::chrono::steady_clock.
  static absl::StatusOr<std::unique_ptr<StateMachine>> Open(
      storage::Engine* engine, raft::host::GroupId group,
      MonotonicClock clock = nullptr);

  // The log time a command proposed now should carry: the largest log time
  // this replica has applied, advanced by its monotonic clock since it
  // applied it. A wall clock set wrong moves nothing; a monotonic clock
  // running fast by a fraction moves log time, and so shortens sessions, by
  // that fraction while this node leads.
  int64_t ProposalTimeMs() const;
  int64_t log_time_ms() const;
  int64_t revision() const;

  raft::Index applied() const override;
  absl::StatusOr<std::vector<std::string>> Apply(
      const std::vector<raft::Entry>& entries) override;
  // Passes over this state machine's engine: the applies of every group it
  // holds, written as one engine batch.
  std::unique_ptr<raft::host::ApplyPass> NewPass() override;
  bool Joins(const raft::host::ApplyPass& pass) const override;
  absl::StatusOr<std::vector<std::string>> ApplyInto(
      raft::host::ApplyPass& pass,
      const std::vector<raft::Entry>& entries) override;
  absl::StatusOr<raft::Index> Sync() override;
  absl::Status Export(raft::Index min_index,
                      const raft::host::ChunkSink& sink) override;
  absl::Status Import(const raft::host::ChunkSource& source) override;
  // Tells every module.
  void OnLeadership(raft::Term term, bool leading) override;
  // What the group's leader should propose now (Module::Due), at
  // ProposalTimeMs.
  std::vector<kvpb::Command> Due() const;
  // Whether Due may have something: this node leads the group and a module
  // has work pending or may have (Module::NextDue). Cheap.
  bool MayHaveDuties() const;
  // Called on the apply thread whenever MayHaveDuties may have turned true
  // (leadership gained, an apply pass or a snapshot that left work
  // pending). REQUIRES: set before the first Apply.
  void set_duties_pending(std::function<void()> fn) {
    duties_pending_ = std::move(fn);
  }
  // The term this node leads the group in, with every earlier term's
  // entries applied (OnLeadership); 0 when it does not.
  raft::Term leading_term() const;

  // Writes the initial state of a new group (bootstrap), at `index`; the
  // metadata group's holds the members and the range descriptors.
  absl::Status Bootstrap(raft::Index index,
                         const std::vector<kvpb::Member>& members,
                         const std::vector<kvpb::RangeDescriptor>& ranges);

  // The modules, for reads of applied state.
  const KvStore& kv() const { return kv_; }
  const WatchHistory& watch() const { return watch_; }
  const Meta& meta() const { return meta_; }
  const Leases& leases() const { return leases_; }
  const Locks& locks() const { return locks_; }
  const Idempotency& idempotency() const { return idem_; }
  const Sagas& sagas() const { return sagas_; }
  const CrdtSchema& crdt_schema() const { return crdt_schema_; }
  const CrdtCasRows& crdt_cas_rows() const { return crdt_cas_rows_; }
  const CrdtMembers& crdt_members() const { return crdt_members_; }
  const AuthStore& auth() const { return auth_; }
  // Lock `name`'s record (nullopt: never taken) and the applied index it
  // is from, read from one snapshot of the store.
  absl::StatusOr<std::pair<raft::Index, std::optional<kvpb::LockRecord>>>
  LockAt(const std::string& name) const;
  // REQUIRES: called before the first Apply.
  void set_members_changed(Meta::MembersChanged fn) {
    meta_.set_members_changed(std::move(fn));
  }
  // REQUIRES: called before the first Apply.
  void set_locks_granted(Locks::Granted fn) {
    locks_.set_granted(std::move(fn));
  }
  // How the group learns that a lease of its keys has ended (the metadata
  // group's applied state). REQUIRES: called before the first Apply.
  void set_lease_ended(KvStore::LeaseEnded fn) {
    kv_.set_lease_ended(std::move(fn));
  }
  // REQUIRES: called before the first Apply.
  void set_locks_changed(Locks::Changed fn) {
    locks_.set_changed(std::move(fn));
  }
  // Revisions of watch history kept (0: until a compaction is asked for),
  // and what runs after an apply pass that changed the history.
  // REQUIRES: called before the first Apply.
  void set_watch_history(int64_t revisions) { watch_.set_history(revisions); }
  void set_watch_changed(std::function<void()> fn) {
    watch_.set_changed(std::move(fn));
  }
  // The changes of keys in [start, end) after revision `after` as applied
  // here (WatchHistory::Read), from one snapshot of the store.
  absl::StatusOr<WatchRead> WatchChanges(int64_t after,
                                         const std::string& start,
                                         const std::string& end, bool prev,
                                         size_t limit) const;

 private:
  class Pass;

  StateMachine(storage::Engine* engine, raft::host::GroupId group,
               MonotonicClock clock);

  // The applied state `pass` was committed with: now this replica's.
  void Publish(const kvpb::AppliedState& st);

  // Runs one command against the pass's batch.
  kvpb::CommandResult Execute(ApplyContext& ctx, const kvpb::Command& cmd);
  // Moves the base of ProposalTimeMs to `log_time`, just applied (log time
  // was `before`): on a follower if log time moved, on a leader if it is
  // ahead of the base.
  void Rebase(int64_t before, int64_t log_time)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  storage::Engine* const engine_;
  const Keyspace keys_;
  const MonotonicClock clock_;
  WatchHistory watch_;  // before kv_, which records into it
  KvStore kv_;
  Meta meta_;
  Leases leases_;
  Locks locks_;
  Idempotency idem_;
  Sagas sagas_;
  CrdtSchema crdt_schema_;
  CrdtMembers crdt_members_;
  CrdtCasRows crdt_cas_rows_;
  AuthStore auth_;
  Sessions sessions_;
  // Every module, in the order they are asked whether they handle a command.
  const std::vector<Module*> modules_;

  mutable absl::Mutex mu_;
  kvpb::AppliedState state_ ABSL_GUARDED_BY(mu_);
  // ProposalTimeMs = base_log_ms_ + (clock_() - base_clock_ms_).
  int64_t base_log_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t base_clock_ms_ ABSL_GUARDED_BY(mu_) = 0;
  // The earliest Module::NextDue.
  int64_t NextDue() const;
  // Tells duties_pending_ if there may be duties.
  void MaybeDutiesPending();

  std::atomic<raft::Term> leading_term_ = 0;
  std::function<void()> duties_pending_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_STATE_MACHINE_H_
