#ifndef TALLY_CLIENT_FENCE_GUARD_H_
#define TALLY_CLIENT_FENCE_GUARD_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tally::client {

// The resource's side of fencing, for resources outside the store (files, a
// device, a service behind a proxy): the highest lock token ever admitted,
// kept in a file. A holder that lost its lock and comes back with an older
// token is turned away, as fenced keys in the store turn it away.
//
// Admit checks and advances under an exclusive flock of `path`.lock, so
// processes sharing the file admit atomically; the new token is written to
// a temporary file, fsynced, renamed over `path` and the directory fsynced,
// so a crash at any point leaves the old or the new token, never less.
//
// Thread safety: thread-safe; across processes through the lock file.
class FenceGuard {
 public:
  // Creates `path` (token 0) if it does not exist.
  static absl::StatusOr<std::unique_ptr<FenceGuard>> Open(std::string path);

  // OK and `token` durably the highest if it is no lower than the highest
  // admitted; FAILED_PRECONDITION naming the highest otherwise (nothing
  // changes). Do the guarded work only after OK.
  absl::Status Admit(uint64_t token);
  // The highest token admitted, as stored.
  absl::StatusOr<uint64_t> Highest() const;

 private:
  explicit FenceGuard(std::string path) : path_(std::move(path)) {}
  absl::Status Store(uint64_t token) const;

  const std::string path_;
};

}  // namespace tally::client

#endif  // TALLY_CLIENT_FENCE_GUARD_H_
