#ifndef TALLY_PUBLIC_CLIENT_H_
#define TALLY_PUBLIC_CLIENT_H_

// Tally's client for services that link it: KV, leases, fencing-token
// locks and idempotency keys against a cluster (or an EmbeddedNode). The
// installed library's headers (this folder) name no generated Protobuf or
// gRPC type.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tally {

namespace client {
class Client;
class ScopedDeadline;
}  // namespace client

struct ClientOptions {
  // Client addresses of some cluster nodes ("127.0.0.1:7001", ...).
  std::vector<std::string> endpoints;
  // Overall time a call may take, retries included.
  std::chrono::milliseconds timeout{5000};
  // TLS, PEM files: the CA that issued the nodes' certificates, and this
  // client's certificate and key where nodes require one (kvd
  // --tls-client-auth). All empty: plaintext.
  std::string tls_ca;
  std::string tls_cert;
  std::string tls_key;
  // A bearer token the cluster issued (kvctl auth token issue), for a
  // cluster with auth enabled; empty: none.
  std::string token;
  // Overload protection (docs/kv.md, "Overload"): retries stay within this
  // share of the calls of the last 10 s (negative: no budget); the client
  // refuses calls itself once the cluster accepts fewer than 1/throttle of
  // its attempts (0: never); a node not reached this many times in a row is
  // skipped for a while (0: never); the calls in flight to each node are
  // held to what it takes now, learned from its answers, and the rest wait
  // in the client until their deadline (false: never held).
  double retry_budget = 0.1;
  double throttle = 2;
  int breaker_failures = 5;
  bool limit_in_flight = true;
};

// Calls this thread makes through any Client while a ScopedDeadline lives
// end by its deadline (or their own timeout, if sooner), and the nodes get
// it as the calls' deadline: pass your own caller's deadline on, and no
// node works on a call nobody waits for. Scopes nest.
class ScopedDeadline {
 public:
  explicit ScopedDeadline(std::chrono::system_clock::time_point deadline);
  ~ScopedDeadline();
  ScopedDeadline(const ScopedDeadline&) = delete;
  ScopedDeadline& operator=(const ScopedDeadline&) = delete;

 private:
  std::unique_ptr<client::ScopedDeadline> impl_;
};

// A put of `value` at `key`, or its deletion when `erase`.
struct Write {
  std::string key;
  std::string value;
  bool erase = false;
};

struct LockGrant {
  bool acquired = false;
  // Acquired: the fence token (larger for every later grant of any lock)
  // to pass with fenced writes; otherwise the current holder's.
  uint64_t token = 0;
  uint64_t generation = 0;
};

enum class IdemOutcome {
  // The caller owns the key under `token`: do the work, then Complete.
  kStarted,
  // Another owner's claim runs for `retry_after` more.
  kInProgress,
  // Finished before: `response` is the stored one (`failed`: a failure
  // stored as terminal).
  kFinished,
  // The key was used for a request with another fingerprint.
  kMismatch,
};

struct IdemBegun {
  IdemOutcome outcome = IdemOutcome::kStarted;
  uint64_t token = 0;
  std::string response;
  bool failed = false;
  std::chrono::milliseconds retry_after{0};
};

// Routes each request to the leader of its shard, retries what is safe to
// retry (backoff with full jitter) within the call's timeout, and makes
// writes exactly-once with a session. Errors are absl codes:
// DEADLINE_EXCEEDED means the outcome of a write is unknown;
// FAILED_PRECONDITION a stale token or fence; INVALID_ARGUMENT bad input,
// with a message naming it.
//
// Thread safety: thread-safe; one client serves many threads.
class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // KV. A key's value, or nullopt when it has none (linearizable).
  absl::StatusOr<std::optional<std::string>> Get(const std::string& key);
  // `fence_token`: a lock's token, for keys bound to that lock; `lease`:
  // the key is deleted when that lease ends.
  absl::Status Put(const std::string& key, const std::string& value,
                   uint64_t fence_token = 0, uint64_t lease = 0);
  absl::Status Delete(const std::string& key, uint64_t fence_token = 0);

  // Leases: the TTL is at least twice the cluster's election timeout.
  absl::StatusOr<uint64_t> GrantLease(std::chrono::milliseconds ttl);
  // The TTL restarted; 0 once the lease has ended.
  absl::StatusOr<std::chrono::milliseconds> KeepAlive(uint64_t lease);
  absl::Status RevokeLease(uint64_t lease);

  // Locks held under a lease: tries once (`wait` 0) or waits up to `wait`
  // (DEADLINE_EXCEEDED without the lock).
  absl::StatusOr<LockGrant> Acquire(const std::string& name, uint64_t lease,
                                    std::chrono::milliseconds wait);
  absl::Status Release(const std::string& name, uint64_t token);

  // Idempotency keys: the owner of (`scope`, `key`) for the request
  // `fingerprint` (at most 64 bytes) holds a claim for `claim_ttl` of log
  // time, after which a retry takes the key over under a higher token and
  // the first owner can finish nothing (FAILED_PRECONDITION).
  absl::StatusOr<IdemBegun> IdemBegin(
      const std::string& scope, const std::string& key,
      const std::string& fingerprint,
      std::chrono::milliseconds claim_ttl = std::chrono::seconds(30));
  // `effects`: writes of the record's shard, committed in the same raft
  // entry as the completion, or not at all.
  absl::Status IdemComplete(const std::string& scope, const std::string& key,
                            uint64_t token, const std::string& response,
                            const std::vector<Write>& effects = {});
  // `retryable`: the record goes and the next Begin starts afresh;
  // otherwise `response` is stored and replayed like a completion's.
  absl::Status IdemFail(const std::string& scope, const std::string& key,
                        uint64_t token, bool retryable,
                        const std::string& response);

  // The library's own client, for the library's own use.
  client::Client& internal() { return *impl_; }

 private:
  explicit Client(std::unique_ptr<client::Client> impl);
  std::unique_ptr<client::Client> impl_;
};

}  // namespace tally

#endif  // TALLY_PUBLIC_CLIENT_H_
