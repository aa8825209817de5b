#ifndef TALLY_KV_SERVER_INTERNAL_HEALTH_H_
#define TALLY_KV_SERVER_INTERNAL_HEALTH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "raft/host/node_host.h"

namespace tally::kv::server {

// A replica whose state machine trails its commit index by more than this
// many entries is far behind.
inline constexpr uint64_t kHealthyApplyLag = 10000;

// Why this node should not take traffic, from its groups as the host last
// published them; nullopt when it should. It should not when it has no
// replica of the metadata group yet (a node still joining), sees no leader
// of it (cut off from the majority, or an election under way), or applies
// far behind what is committed.
std::optional<std::string> Unhealthy(
    const std::vector<raft::host::GroupInfo>& groups,
    raft::host::GroupId meta_group);

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_HEALTH_H_
