#ifndef TALLY_CLIENT_ELECTION_H_
#define TALLY_CLIENT_ELECTION_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "client/client.h"
#include "client/lock_session.h"

namespace tally::client {

// Leader election among processes, on a lock (rpc/lock.proto): each
// candidate campaigns with a value (its address, say), candidates are
// served in the order they campaigned, and the one holding the lock leads
// and proclaims its value. The lock's token is the leader's fence token:
// pass it with the writes it makes as leader, so that a leader deposed
// while paused cannot overwrite its successor's. A leader whose session is
// lost (LockSession::lost) must stop leading: a successor may be elected as
// soon as its lease has ended on the server.
//
// Thread safety: not thread-safe; one candidate per object.
class Election {
 public:
  // Neither is owned; both must outlive the election.
  Election(Client* client, LockSession* session, std::string name)
      : client_(client), session_(session), name_(std::move(name)) {}

  // Waits until this candidate leads, at most `wait` (DEADLINE_EXCEEDED
  // then, and the candidacy is withdrawn); the leader's token. Retries
  // inside never queue the candidate twice.
  absl::StatusOr<uint64_t> Campaign(const std::string& value,
                                    std::chrono::milliseconds wait);
  // Changes the leader's value. FAILED_PRECONDITION if this candidate does
  // not lead (any more).
  absl::Status Proclaim(const std::string& value);
  // Steps down; the next candidate leads.
  absl::Status Resign();
  // This candidate's token while it leads, 0 otherwise.
  uint64_t token() const { return token_; }
  // The leader now (a linearizable read); nullopt when there is none.
  absl::StatusOr<std::optional<rpc::LockHolder>> Leader();
  // Client::Observe of this election: every change of leader or value.
  absl::Status Observe(
      const std::function<bool(const rpc::ObserveResponse&)>& fn);

 private:
  Client* const client_;
  LockSession* const session_;
  const std::string name_;
  uint64_t token_ = 0;
};

}  // namespace tally::client

#endif  // TALLY_CLIENT_ELECTION_H_
