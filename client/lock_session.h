#ifndef TALLY_CLIENT_LOCK_SESSION_H_
#define TALLY_CLIENT_LOCK_SESSION_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "client/lease_keeper.h"

namespace tally::client {

// A lease kept alive in the background, for holding locks. The holder's
// side of the fencing contract:
// - `lost()` turns true (and `on_lost` runs, once) as soon as the lease may
//   have ended on the server: when no keep-alive has confirmed it for its
//   TTL, counted from when that keep-alive was sent, less a margin for clock
//   drift (`drift` of the TTL, plus `margin`). The server cannot have ended
//   it earlier unless clocks drift by more than that.
// - Work guarded by a lock passes the grant's token with every write it
//   makes to fenced keys (Client::Put(key, value, token)), so a holder that
//   lost the lock while paused cannot overwrite its successor's writes.
//
// Thread safety: thread-safe.
class LockSession {
 public:
  struct Options {
    std::chrono::milliseconds ttl{10000};
    // The fraction of the TTL by which clocks may drift apart.
    double drift = 0.02;
    std::chrono::milliseconds margin{100};
    // Runs on the keep-alive thread when the lease is lost.
    std::function<void()> on_lost;
    // Keeps the lease alive; sessions sharing one send one keep-alive for
    // all their leases due together. Null: one of the session's own. Must
    // outlive the session.
    LeaseKeeper* keeper = nullptr;
  };

  // Grants a lease and starts keeping it alive (every third of its TTL).
  // `client` must outlive the session.
  static absl::StatusOr<std::unique_ptr<LockSession>> Open(Client* client,
                                                           Options options);
  // Stops the keep-alives and revokes the lease (best effort), releasing
  // its locks.
  ~LockSession();

  uint64_t lease() const { return lease_; }
  bool lost() const;
  // Acquire of Client, under this session's lease.
  absl::StatusOr<rpc::AcquireResponse> Acquire(const std::string& name,
                                               std::chrono::milliseconds wait);
  absl::Status Release(const std::string& name, uint64_t token);

 private:
  using Steady = std::chrono::steady_clock;
  LockSession(Client* client, Options options, uint64_t lease,
              Steady::time_point valid_until);
  // The end of validity for a TTL confirmed by a request sent at `sent`.
  Steady::time_point ValidUntil(Steady::time_point sent, int64_t ttl_ms) const;

  Client* const client_;
  const Options options_;
  const uint64_t lease_;
  std::unique_ptr<LeaseKeeper> own_keeper_;
  LeaseKeeper* keeper_ = nullptr;
  mutable absl::Mutex mu_;
  Steady::time_point valid_until_ ABSL_GUARDED_BY(mu_);
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace tally::client

#endif  // TALLY_CLIENT_LOCK_SESSION_H_
