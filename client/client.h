#ifndef TALLY_CLIENT_CLIENT_H_
#define TALLY_CLIENT_CLIENT_H_

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/internal/overload.h"
#include "rpc/auth.grpc.pb.h"
#include "rpc/cluster.grpc.pb.h"
#include "rpc/crdt.grpc.pb.h"
#include "rpc/idem.grpc.pb.h"
#include "rpc/kv.grpc.pb.h"
#include "rpc/lock.grpc.pb.h"
#include "rpc/saga.grpc.pb.h"
#include "rpc/tls.h"

namespace tally::client {

namespace internal {
class CrdtBatcher;
}  // namespace internal

struct ClientOptions {
  // Client addresses of some cluster nodes ("127.0.0.1:7001", ...).
  std::vector<std::string> endpoints;
  // Overall time a call may take, retries included.
  std::chrono::milliseconds timeout{5000};
  // Backoff between retries: full jitter, exponential from `backoff_base`
  // to `backoff_max`.
  std::chrono::milliseconds backoff_base{10};
  std::chrono::milliseconds backoff_max{250};
  // Retries across the client stay within this share of its calls over the
  // last 10 s (plus 10 a second); a call whose retry would go beyond fails
  // at once with its last error, so that a slow or overloaded cluster does
  // not get a storm of retries on top of its load. A redirect to the leader
  // a node named is free. Negative: no budget (retry until the timeout).
  double retry_budget = 0.1;
  // Client-side throttling: once nodes refuse calls as overloaded (or do
  // not answer in time), the client refuses a share of new calls itself
  // (RESOURCE_EXHAUSTED), so that the cluster receives about this many
  // times the calls it accepts and spends its time serving them.
  // 0: never.
  double throttle = 2;
  // A node that could not be reached this many attempts in a row is
  // skipped for a second, then tried with
  // one call; failing again, skipped twice as long (up to 30 s). 0: never
  // skipped.
  int breaker_failures = 5;
  // Calls in flight to each node are held to a limit found from its
  // answers (internal::InFlightLimit: it grows while the node answers with
  // it in use, shrinks when the node refuses calls as overloaded); a call
  // beyond it waits in the client, and fails unsent with
  // RESOURCE_EXHAUSTED if no place comes in time (internal::CallGate). An
  // overloaded node then receives what it can serve in time, rather than
  // a backlog it reads and parses for callers that have stopped waiting.
  bool limit_in_flight = true;
  // A serializable Get not answered within the 95th percentile of the
  // client's recent ones is sent to a second node too, and the first answer
  // wins: one slow or paused node costs a read that much, not a timeout.
  // The second requests draw on the retry budget.
  bool hedge_reads = true;
  // TLS (rpc/tls.h): the CA that issued the nodes' certificates, and this
  // client's certificate and key where nodes require one. Empty: plaintext.
  rpc::TlsFiles tls;
  // A bearer token the cluster issued (kvctl auth token issue), sent with
  // every call as "authorization: Bearer <token>"; empty: none (a cluster
  // with auth enabled then needs a client certificate naming the user).
  std::string token;
  // Opens the channel to one node's address; empty for a channel with the
  // client's defaults, `tls` and `token`. Set it for interceptors (the
  // channel must then carry the token itself).
  std::function<std::shared_ptr<grpc::Channel>(const std::string& address)>
      dial;
};

// Calls that this thread makes through any Client while a ScopedDeadline
// lives end by its deadline (or their own timeout, if sooner), and the
// nodes get it as the calls' gRPC deadline: a service passes its own
// caller's deadline on, and no node works on a call nobody waits for.
// Scopes nest; the inner one counts while it lives.
class ScopedDeadline {
 public:
  explicit ScopedDeadline(std::chrono::system_clock::time_point deadline);
  ~ScopedDeadline();
  ScopedDeadline(const ScopedDeadline&) = delete;
  ScopedDeadline& operator=(const ScopedDeadline&) = delete;
  // This thread's deadline; time_point::max() when there is none.
  static std::chrono::system_clock::time_point Current();

 private:
  std::chrono::system_clock::time_point outer_;
};

// Writes a client keeps in flight on one session before it opens another
// for the same shard (a session's record, rewritten at each of its writes,
// holds the results of those in flight).
inline constexpr uint64_t kSessionInFlight = 8;

// A client's calls and what its overload protection did with them.
struct CallStats {
  // Calls made, and attempts sent to nodes (retries included): attempts /
  // calls is the load the client adds by retrying.
  uint64_t calls = 0;
  uint64_t attempts = 0;
  // Retries not made because the retry budget was spent.
  uint64_t retries_refused = 0;
  // Calls failed at once because every node's breaker was open, and
  // because the client throttled itself.
  uint64_t breaker_refusals = 0;
  uint64_t throttled = 0;
  // Calls failed unsent: the node's in-flight limit had no place for them
  // in time (ClientOptions::limit_in_flight).
  uint64_t held = 0;
  // Serializable reads sent to a second node (ClientOptions::hedge_reads),
  // and those the second node answered first.
  uint64_t hedged = 0;
  uint64_t hedges_won = 0;
  // Write sessions open now (across shards), and the most writes any one
  // of them had in flight at once.
  uint64_t sessions = 0;
  uint64_t most_in_flight_per_session = 0;
  // Each node address the client called, with its breaker's state
  // ("closed", "open", "half-open").
  std::map<std::string, std::string> breakers;
  // Each node address, with the calls the client keeps in flight to it at
  // most now (ClientOptions::limit_in_flight).
  std::map<std::string, double> in_flight_limits;
};

// A Tally client: routes each request to the leader of the key's range
// (cached; redirects and retries update it), retries what is safe to retry
// with exponential backoff and full jitter within the call's deadline, and
// makes writes exactly-once with a session: a write retried after a lost
// answer is answered from the server's session table, never applied twice.
// Sessions are opened per shard on first use; one that ended (idle past its
// TTL) is replaced by a new one, and a write it refused is sent again under
// the new one when no earlier attempt of it can have been applied.
//
// Errors: the gRPC codes of rpc/kv.proto as absl codes. DEADLINE_EXCEEDED
// means the outcome of a write is unknown.
//
// Thread safety: thread-safe; one client serves many threads.
class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);
  ~Client();

  absl::StatusOr<rpc::GetResponse> Get(const std::string& key,
                                       rpc::ReadMode mode = rpc::LINEARIZABLE);
  // `fence_token`: a lock's token, for keys under a fenced prefix
  // (BindFence); FAILED_PRECONDITION naming the token accepted if stale.
  // `lease`: the key is deleted when that lease ends (NOT_FOUND if it has).
  absl::StatusOr<rpc::PutResponse> Put(const std::string& key,
                                       const std::string& value,
                                       uint64_t fence_token = 0,
                                       uint64_t lease = 0);
  // Deletes the keys in [start, end) (end "\0": no bound), shard by shard,
  // each shard's part in one entry per 10,000 keys: `count` is the total.
  // Not atomic across shards: an error says how many were deleted before.
  absl::StatusOr<rpc::DeleteResponse> DeleteRange(const std::string& start,
                                                  const std::string& end,
                                                  uint64_t fence_token = 0);
  absl::StatusOr<rpc::DeleteResponse> Delete(const std::string& key,
                                             uint64_t fence_token = 0);
  // Keys in [start, end) across every shard, at most `limit` (0: all).
  // `headers`, if given, receives the header of every answer read.
  absl::StatusOr<std::vector<rpc::KeyValue>> Scan(
      const std::string& start, const std::string& end, uint32_t limit,
      rpc::ReadMode mode = rpc::LINEARIZABLE,
      std::vector<rpc::ResponseHeader>* headers = nullptr);
  absl::StatusOr<rpc::TxnResponse> Txn(rpc::TxnRequest txn);

  // Leases (rpc/lock.proto). A Grant whose answer is lost is not retried:
  // the lease it may have made ends after its TTL.
  absl::StatusOr<rpc::LeaseGrantResponse> GrantLease(
      std::chrono::milliseconds ttl);
  // The TTL restarted; 0 once the lease has ended.
  absl::StatusOr<int64_t> KeepAlive(uint64_t lease);
  // Several leases (at most 1,000) in one message: each one's TTL restarted
  // (0: ended), in the same order.
  absl::StatusOr<std::vector<int64_t>> KeepAlive(
      const std::vector<uint64_t>& leases);
  absl::Status RevokeLease(uint64_t lease);
  absl::StatusOr<rpc::LeaseTimeToLiveResponse> LeaseTimeToLive(uint64_t lease);
  absl::StatusOr<rpc::LeaseListResponse> ListLeases();

  // Locks. Acquire tries once (`wait` 0: acquired = false when held) or
  // waits up to `wait` (DEADLINE_EXCEEDED without the lock); retried with
  // the same request id, so a lost answer neither loses nor doubles a grant.
  // `value`: what the holder proclaims (an election's candidate).
  absl::StatusOr<rpc::AcquireResponse> Acquire(const std::string& name,
                                               uint64_t lease,
                                               std::chrono::milliseconds wait,
                                               const std::string& value = "");
  absl::Status Release(const std::string& name, uint64_t token);
  absl::StatusOr<rpc::InspectResponse> Inspect(const std::string& name);
  // Replaces the value the holder of `name` proclaims (FAILED_PRECONDITION
  // once `token` no longer holds it).
  absl::Status Proclaim(const std::string& name, uint64_t token,
                        const std::string& value);
  // Calls `fn` with the holder of `name` (none: unset), then at each change
  // of holder or value, until `fn` returns false. Moves to another node
  // when the one it streams from fails, so it may skip an intermediate
  // holder but never repeats one; ends early only on an error that a retry
  // cannot mend.
  absl::Status Observe(
      const std::string& name,
      const std::function<bool(const rpc::ObserveResponse&)>& fn);
  // Streams the changes of `key` (or of [key, range_end): see
  // rpc::WatchRequest) from every shard that holds part of it, one stream
  // per shard. `fn` gets each answer, one shard's changes in revision order
  // (header.group says which shard; revisions are per shard), and a first
  // `created` answer per shard; calls of `fn` never overlap. A stream that
  // breaks (a node down, a leader change) starts again on another node
  // from the revision after the last one answered: no change is missed or
  // repeated. Returns when `fn` returns false (OK), or with the error that
  // a retry cannot mend (OUT_OF_RANGE: the history from `start_revision`
  // is compacted).
  struct WatchOptions {
    std::string key;
    std::string range_end;
    // Per shard; 0: from now.
    int64_t start_revision = 0;
    bool prev_kv = false;
    // Progress answers (no events) while nothing changes; 0: the server's
    // default (10 s).
    uint32_t progress_ms = 0;
  };
  absl::Status Watch(const WatchOptions& options,
                     const std::function<bool(const rpc::WatchResponse&)>& fn);
  // Forgets the watch history of every shard up to `revision` (each at most
  // its own revision); the shard holding `key` only, when given.
  absl::StatusOr<std::vector<rpc::CompactResponse>> Compact(
      int64_t revision, const std::optional<std::string>& key = std::nullopt);
  // Binds the keys under `prefix` to `lock` (empty: unbinds), in every
  // shard. Sending it again completes one that failed part-way.
  absl::StatusOr<rpc::BindFenceResponse> BindFence(const std::string& prefix,
                                                   const std::string& lock);

  // Idempotency keys (rpc/idem.proto), sent to the leader of the shard
  // holding scope + key and retried on unknown outcomes: Begin with its
  // attempt id (one is drawn if unset), so a lost answer still gives the
  // caller its token; Complete, Fail and Renew with the token. A retried
  // retryable Fail may answer FAILED_PRECONDITION "not-claimed": the record
  // is gone either way.
  absl::StatusOr<rpc::IdemBeginResponse> IdemBegin(rpc::IdemBeginRequest req);
  // `effects`: puts and deletes of the record's shard, committed with the
  // completion or not at all (IdemCompleteRequest).
  absl::StatusOr<rpc::IdemFinishResponse> IdemComplete(
      const std::string& scope, const std::string& key, uint64_t token,
      const std::string& response, const std::vector<rpc::TxnOp>& effects = {},
      uint64_t fence_token = 0);
  absl::StatusOr<rpc::IdemFinishResponse> IdemFail(const std::string& scope,
                                                   const std::string& key,
                                                   uint64_t token,
                                                   bool retryable,
                                                   const std::string& response);
  absl::StatusOr<rpc::IdemRenewResponse> IdemRenew(
      const std::string& scope, const std::string& key, uint64_t token,
      std::chrono::milliseconds claim_ttl);
  absl::StatusOr<rpc::IdemGetResponse> IdemGet(
      const std::string& scope, const std::string& key,
      rpc::ReadMode mode = rpc::LINEARIZABLE);
  // Every record of `scope` whose key starts with `key_prefix`, from every
  // shard, in key order; at most `limit` (0: no limit). `headers`, if
  // given, receives the header of every answer read.
  absl::StatusOr<std::vector<rpc::IdemListEntry>> IdemList(
      const std::string& scope, const std::string& key_prefix, size_t limit = 0,
      rpc::ReadMode mode = rpc::LINEARIZABLE,
      std::vector<rpc::ResponseHeader>* headers = nullptr);
  // Removes the record, whatever its state; false if there was none.
  absl::StatusOr<bool> IdemPurge(const std::string& scope,
                                 const std::string& key);

  // Saga state (rpc/saga.proto), in the shard holding the saga's id.
  // Create and Transition are exactly-once writes (a session); a
  // Transition refused with "version-changed" or "stale-token" changed
  // nothing. SagaRunner (tally/saga.h) drives these for a
  // coordinator; kvctl's saga commands for an operator.
  absl::StatusOr<rpc::SagaCreateResponse> SagaCreate(
      rpc::SagaCreateRequest req);
  absl::StatusOr<rpc::SagaTransitionResponse> SagaTransition(
      rpc::SagaTransitionRequest req);
  // NOT_FOUND if there is no such saga.
  absl::StatusOr<rpc::SagaRecord> SagaGet(
      const std::string& id, rpc::ReadMode mode = rpc::LINEARIZABLE);
  // The sagas of every shard in `states` (none: all) unchanged for at least
  // `idle`, in id order; at most `limit` (0: no limit). `headers`, if
  // given, receives the header of every answer read.
  absl::StatusOr<std::vector<rpc::SagaRecord>> SagaList(
      const std::vector<rpc::SagaState>& states,
      std::chrono::milliseconds idle = {}, size_t limit = 0,
      rpc::ReadMode mode = rpc::LINEARIZABLE,
      std::vector<rpc::ResponseHeader>* headers = nullptr);

  // CRDT tables (rpc/crdt.proto). Schema changes go through the metadata
  // group (a lost answer is not retried: sending it again says whether it
  // was applied). Updates and reads are answered by one node: the first
  // endpoint until it fails, then the next. An Update is sent once: on
  // UNAVAILABLE or DEADLINE_EXCEEDED its outcome is unknown (an increment
  // sent again could count twice), and the next call goes to another node.
  // Concurrent updates share calls (internal/crdt_batcher.h): each waits
  // for at most one call before it and the timeout of its own.
  absl::StatusOr<rpc::CrdtTable> CrdtCreateTable(
      const std::string& name, const std::vector<rpc::CrdtColumn>& columns);
  absl::StatusOr<rpc::CrdtTable> CrdtAlterTable(
      const std::string& name, const std::vector<rpc::CrdtColumn>& add);
  absl::Status CrdtDropTable(const std::string& name);
  absl::StatusOr<std::vector<rpc::CrdtTable>> CrdtTables();
  absl::StatusOr<rpc::CrdtUpdateResponse> CrdtUpdate(
      const rpc::CrdtUpdateRequest& req);
  // CrdtUpdate without waiting: `done` runs once, on a gRPC thread (or this
  // one), and must not block.
  void CrdtUpdateAsync(
      rpc::CrdtUpdateRequest req,
      std::function<void(absl::StatusOr<rpc::CrdtUpdateResponse>)> done);
  // With CRDT_MAJORITY, the row's cas_register columns (if the table has
  // any) are read linearizably from the shard's leader (CrdtCasGet);
  // otherwise as the answering node holds them.
  absl::StatusOr<rpc::CrdtGetResponse> CrdtGet(
      const std::string& table, const std::string& row,
      rpc::CrdtReadMode mode = rpc::CRDT_LOCAL);
  absl::StatusOr<rpc::CrdtCasGetResponse> CrdtCasGet(
      const std::string& table, const std::string& row,
      rpc::ReadMode mode = rpc::LINEARIZABLE);
  // Compare-and-set of a row's cas_register columns, through raft in the
  // row key's shard; exactly-once (a session): a retry after a lost answer
  // gets the first answer. Not succeeding is an answer, not an error: see
  // `succeeded` and the row's values that failed the comparison.
  absl::StatusOr<rpc::CrdtCasResponse> CrdtCas(rpc::CrdtCasRequest req);
  absl::StatusOr<rpc::CrdtStatusResponse> CrdtStatus(
      const std::string& endpoint);
  // Retires node `node`'s CRDT replica (a node gone for good): garbage
  // collection stops waiting for it. The replica retired.
  absl::StatusOr<uint64_t> CrdtRetire(uint64_t node);

  // Users, roles and tokens (rpc/auth.proto): one change, or the records
  // the caller may see.
  absl::StatusOr<rpc::AuthChangeResponse> AuthChange(
      const rpc::AuthChangeRequest& req);
  absl::StatusOr<rpc::AuthGetResponse> AuthGet();

  absl::StatusOr<rpc::StatusResponse> Status(const std::string& endpoint);
  // The data groups, in key order, with their ranges.
  absl::StatusOr<std::vector<rpc::RangeDescriptor>> DataRanges();
  // A consistent copy of data group `group`'s keys and values, read by its
  // leader at one point: `fn` gets the chunks in order (rpc::BackupChunk),
  // the first with the range and revision, the last with `done`. If the
  // stream breaks part-way it starts over on the (new) leader: a chunk with
  // `range` set means "a copy begins; drop what came before". `timeout`
  // bounds the whole copy.
  absl::Status Backup(uint64_t group,
                      const std::function<void(const rpc::BackupChunk&)>& fn,
                      std::chrono::milliseconds timeout);
  // The standard gRPC health check of one node: OK when it serves,
  // UNAVAILABLE otherwise.
  absl::Status Health(const std::string& endpoint);
  absl::StatusOr<rpc::RangesResponse> Ranges();
  // Membership changes of every raft group, driven by the node asked
  // (rpc/cluster.proto): each group's outcome in the response. Sending the
  // same change again finishes one that stopped part-way. Promote waits for
  // a learner that is still catching up (FAILED_PRECONDITION if it has not
  // within a minute).
  absl::StatusOr<rpc::MembershipResponse> AddLearner(
      uint64_t id, const std::string& peer_address);
  absl::StatusOr<rpc::MembershipResponse> Promote(uint64_t id);
  absl::StatusOr<rpc::MembershipResponse> RemoveMember(uint64_t id);
  absl::StatusOr<rpc::TransferLeaderResponse> TransferLeader(uint64_t target);

  const std::vector<std::string>& endpoints() const { return endpoints_; }
  CallStats call_stats() const;

 private:
  explicit Client(ClientOptions options);

  struct Route {
    uint64_t group = 0;
    std::string start, end;
  };
  // For Call: any node will do (the first endpoint that answers).
  static constexpr uint64_t kAnyNode = 0;
  // Calls `fn(channel, ctx)` against the group's leader (or kAnyNode) with
  // retries, within `timeout` (0: the client's) and `attempt_timeout` per
  // attempt (0: the default). A `critical` call (a lease keep-alive, which
  // nodes serve before any other) is never throttled and retries outside
  // the budget.
  template <typename Fn>
  absl::Status Call(uint64_t group, bool idempotent, Fn fn,
                    std::chrono::milliseconds timeout = {},
                    std::chrono::milliseconds attempt_timeout = {},
                    bool critical = false);
  absl::Status Refresh();
  absl::StatusOr<rpc::LeaseKeepAliveResponse> KeepAlive(
      const rpc::LeaseKeepAliveRequest& req);
  // The group of the range holding `key`, from the range map (fetched when
  // there is none); never a guess.
  absl::StatusOr<uint64_t> GroupFor(const std::string& key);
  // The group to send a read to, or kAnyNode for a serializable one.
  absl::StatusOr<uint64_t> ReadTarget(const std::string& key,
                                      rpc::ReadMode mode);
  // A serializable Get, hedged (ClientOptions::hedge_reads); nullopt when
  // it could not be (no latency estimate yet, one node, no budget): the
  // caller sends it the usual way.
  std::optional<absl::StatusOr<rpc::GetResponse>> HedgedGet(
      const rpc::GetRequest& req);
  // The metadata group (where leases and locks live).
  absl::StatusOr<uint64_t> MetaGroup();
  // The data groups holding part of [start, end) (end as in
  // rpc::WatchRequest: empty for `start` alone, "\0" for no bound).
  absl::StatusOr<std::vector<uint64_t>> GroupsOf(const std::string& start,
                                                 const std::string& end);
  // Watch of one shard, until `stop` (shared by the shards' streams).
  struct WatchStop;
  absl::Status WatchGroup(
      uint64_t group, const WatchOptions& options,
      const std::function<bool(const rpc::WatchResponse&)>& fn,
      WatchStop* stop);
  // The metadata group, then the data groups, as the server names them.
  absl::StatusOr<std::vector<uint64_t>> AllGroups();
  // Sends a membership change of every group to any node.
  template <typename Req, typename Rpc>
  absl::StatusOr<rpc::MembershipResponse> ChangeMembership(Req req, Rpc rpc);
  // The next sequence of the group's session with the fewest writes in
  // flight, or of a session it opens when each has kSessionInFlight (up to
  // kMaxSessions).
  absl::StatusOr<rpc::Session> NextSession(uint64_t group);
  void Done(const rpc::Session& session);
  // Drops the group's session if it is still `client_id`.
  void ForgetSession(uint64_t group, uint64_t client_id);
  // Sends a write with the next session sequence of the key's group;
  // `rpc(stub, ctx, req, resp)` with a stub of `Service`.
  template <typename Resp, typename Service = rpc::KV, typename Req,
            typename Rpc>
  absl::StatusOr<Resp> Write(const std::string& key, Req& req, Rpc rpc);

  const ClientOptions options_;
  std::vector<std::string> endpoints_;
  // One set for every channel (each holds a thread re-reading the files).
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;

  mutable absl::Mutex mu_;
  std::vector<Route> ranges_ ABSL_GUARDED_BY(mu_);
  uint64_t meta_group_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::string> leader_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::string> client_address_ ABSL_GUARDED_BY(mu_);
  // By address; critical calls (lease keep-alives) have their own.
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<grpc::Channel>> critical_channels_
      ABSL_GUARDED_BY(mu_);
  struct SessionState {
    uint64_t client_id = 0;  // 0: none open
    uint64_t next_sequence = 1;
    std::set<uint64_t> in_flight;
  };
  // By group, as each shard keeps its own session table; several per group
  // (NextSession), up to kMaxSessions.
  static constexpr size_t kMaxSessions = 64;
  std::map<uint64_t, std::vector<SessionState>> sessions_ ABSL_GUARDED_BY(mu_);
  // Sessions being opened, by group.
  std::map<uint64_t, size_t> opening_ ABSL_GUARDED_BY(mu_);
  SessionState* LeastBusy(uint64_t group) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The session's next sequence, counted in flight.
  rpc::Session Take(uint64_t group, SessionState& session)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  size_t next_endpoint_ ABSL_GUARDED_BY(mu_) = 0;
  internal::RetryBudget retry_budget_ ABSL_GUARDED_BY(mu_);
  internal::Throttle throttle_ ABSL_GUARDED_BY(mu_);
  // Of serializable Gets answered: when to hedge.
  internal::LatencyQuantile read_latency_ ABSL_GUARDED_BY(mu_){0.95};
  std::map<std::string, internal::CircuitBreaker> breakers_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<internal::CallGate>> gates_
      ABSL_GUARDED_BY(mu_);
  CallStats stats_ ABSL_GUARDED_BY(mu_);

  // The channel to `address`. `critical`: a connection of its own, so that
  // a keep-alive does not wait behind thousands of puts queued in the same
  // TCP connection when the node is overloaded (ClientOptions::dial, when
  // set, makes both).
  std::shared_ptr<grpc::Channel> Channel(const std::string& address,
                                         bool critical = false);
  // Where to send a call of `group`: its leader if known, else the endpoint
  // whose turn it is; passing over `avoid` and nodes whose breaker is open.
  // Empty when there is none left.
  std::string Target(uint64_t group, const std::string& avoid = "");
  // The gate holding calls to `address` to its in-flight limit; null when
  // calls are not limited (ClientOptions::limit_in_flight, `critical`).
  internal::CallGate* Gate(const std::string& address, bool critical);
  // Whether `address`'s breaker lets a call through now.
  bool Allow(const std::string& address) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Counts an attempt's outcome in `address`'s breaker (`reached`) and in
  // the throttle (`accepted`: not refused as overload nor unanswered in
  // time).
  void Report(const std::string& address, bool reached, bool accepted);

  // Last: destroyed first, while what its calls use is still there.
  std::unique_ptr<internal::CrdtBatcher> crdt_batcher_;
};

}  // namespace tally::client

#endif  // TALLY_CLIENT_CLIENT_H_
