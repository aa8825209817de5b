#ifndef TALLY_CLIENT_INTERNAL_CRDT_BATCHER_H_
#define TALLY_CLIENT_INTERNAL_CRDT_BATCHER_H_

// Client::CrdtUpdate's sender: concurrent updates share calls.

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "rpc/crdt.grpc.pb.h"

namespace tally::client::internal {

// Sends CRDT updates in Crdt.UpdateBatch calls. An update goes at once when
// fewer than kMaxInFlight calls are out; otherwise it waits, and the updates
// waiting when a call returns leave together in the next one. Nothing waits
// for a timer: under light load each update is a call of its own, under
// heavy load calls carry many (at most kMaxUpdates, about kMaxBytes). Each
// update is answered on its own; none is sent twice.
class CrdtBatcher {
 public:
  using Done = std::function<void(absl::StatusOr<rpc::CrdtUpdateResponse>)>;
  struct Hooks {
    // The node the next call goes to.
    std::function<std::string()> target;
    std::function<std::shared_ptr<grpc::Channel>(const std::string&)> channel;
    // Told of every call's outcome (the node answered, or did not).
    std::function<void(const std::string& target, const grpc::Status&)>
        answered;
  };

  static constexpr size_t kMaxInFlight = 2;
  static constexpr int kMaxUpdates = 1000;
  static constexpr size_t kMaxBytes = 1 << 20;

  CrdtBatcher(Hooks hooks, std::chrono::milliseconds timeout);
  // Waits for the calls in flight (each ends by its deadline).
  ~CrdtBatcher();

  // `done` runs once, on a gRPC thread (or this one, never under a lock of
  // the batcher); it must not block.
  void Update(rpc::CrdtUpdateRequest req, Done done);

 private:
  struct Waiting {
    rpc::CrdtUpdateRequest req;
    Done done;
  };
  struct Flight;

  // The next call's updates, taken from the queue; counts it in flight.
  std::unique_ptr<Flight> TakeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Launch(std::unique_ptr<Flight> f);
  void Finished(Flight* f, const grpc::Status& st);
  // Answers each update of a call that ended with `st`.
  static void Answer(Flight& f, const grpc::Status& st);

  const Hooks hooks_;
  const std::chrono::milliseconds timeout_;
  absl::Mutex mu_;
  std::deque<Waiting> queue_ ABSL_GUARDED_BY(mu_);
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  // By node, kept while the batcher lives: a call's completion must not
  // drop the last hold of its channel.
  std::map<std::string, std::unique_ptr<rpc::Crdt::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace tally::client::internal

#endif  // TALLY_CLIENT_INTERNAL_CRDT_BATCHER_H_
