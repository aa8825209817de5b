#include "kv/server/internal/health.h"

#include "absl/strings/str_cat.h"

namespace tally::kv::server {

std::optional<std::string> Unhealthy(
    const std::vector<raft::host::GroupInfo>& groups,
    raft::host::GroupId meta_group) {
  const raft::host::GroupInfo* meta = nullptr;
  for (const raft::host::GroupInfo& g : groups) {
    if (g.group == meta_group) meta = &g;
    if (g.commit > g.applied + kHealthyApplyLag) {
      return absl::StrCat("group ", g.group, " applies far behind (applied ",
                          g.applied, ", committed ", g.commit, ")");
    }
  }
  if (meta == nullptr) return "no replica of the metadata group yet";
  if (meta->leader == raft::kNoNode) {
    return "no leader of the metadata group (cut off from the majority, or an "
           "election is under way)";
  }
  return std::nullopt;
}

}  // namespace tally::kv::server
