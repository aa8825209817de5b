#ifndef TALLY_CLIENT_LEASE_KEEPER_H_
#define TALLY_CLIENT_LEASE_KEEPER_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "util/waker.h"

namespace tally::client {

// Keeps many leases alive from one thread, with one keep-alive message for
// all those due together (up to 1,000 leases each; Client::KeepAlive of
// several): a process holding a thousand leases sends a few messages every
// third of their TTL, not a thousand. A lease is renewed a third of its TTL
// after the last keep-alive sent for it, or up to a sixth of its TTL
// earlier to go with others due; after a failed call, again soon.
//
// Thread safety: thread-safe. Callbacks run on the keeper's thread, never
// after Remove (or the destructor) has returned; they must not call Remove.
class LeaseKeeper {
 public:
  using Steady = std::chrono::steady_clock;
  struct Callbacks {
    // The server restarted the lease's TTL (`ttl_ms`) for a keep-alive sent
    // at `sent`; returns until when the lease counts as valid.
    std::function<Steady::time_point(Steady::time_point sent, int64_t ttl_ms)>
        renewed;
    // The lease has ended on the server, or is valid no longer (no keep-alive
    // confirmed it in time): the keeper forgets it.
    std::function<void()> lost;
  };

  // `client` must outlive the keeper.
  explicit LeaseKeeper(Client* client);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Keeps `lease` of `ttl`, last confirmed by a keep-alive (or its grant)
  // sent at `sent` and valid until `valid_until`, alive.
  void Add(uint64_t lease, std::chrono::milliseconds ttl,
           Steady::time_point sent, Steady::time_point valid_until,
           Callbacks callbacks);
  // Stops keeping `lease` alive; no callback of it runs once this returns
  // (so it may wait for a keep-alive call in flight, up to the client's
  // timeout).
  void Remove(uint64_t lease);

 private:
  struct Entry {
    std::chrono::milliseconds ttl;
    Steady::time_point next;  // when a keep-alive is due
    Steady::time_point valid_until;
    Callbacks callbacks;
  };
  void Run();

  Client* const client_;
  absl::Mutex mu_;
  std::map<uint64_t, Entry> leases_ ABSL_GUARDED_BY(mu_);
  // While the thread runs callbacks (Remove waits for it).
  bool calling_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  // Where the thread sleeps until a lease is due; Add wakes it.
  util::Waker sleep_;
  std::thread thread_;
};

}  // namespace tally::client

#endif  // TALLY_CLIENT_LEASE_KEEPER_H_
