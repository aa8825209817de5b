#include "raft/config.h"

namespace tally::raft {

absl::Status Config::Validate() const {
  if (id == kNoNode) return absl::InvalidArgumentError("id must not be 0");
  if (heartbeat_tick <= 0) {
    return absl::InvalidArgumentError("heartbeat_tick must be positive");
  }
  if (election_tick <= heartbeat_tick) {
    return absl::InvalidArgumentError(
        "election_tick must be greater than heartbeat_tick");
  }
  if (max_inflight_msgs == 0) {
    return absl::InvalidArgumentError("max_inflight_msgs must be positive");
  }
  if (read_only == ReadOnlyOption::kLeaseBased && !check_quorum) {
    return absl::InvalidArgumentError(
        "lease-based reads need check_quorum: without it a deposed leader "
        "would not know its lease is over");
  }
  if (lease_drift_margin <= 0 || lease_drift_margin >= election_tick - 1) {
    return absl::InvalidArgumentError(
        "lease_drift_margin must be in (0, election_tick - 1)");
  }
  if (storage == nullptr) return absl::InvalidArgumentError("storage is null");
  if (random == nullptr) return absl::InvalidArgumentError("random is null");
  return absl::OkStatus();
}

}  // namespace tally::raft
