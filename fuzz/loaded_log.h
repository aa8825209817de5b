#ifndef TALLY_FUZZ_LOADED_LOG_H_
#define TALLY_FUZZ_LOADED_LOG_H_

#include <map>

#include "fuzz/input.h"
#include "raft/host/interfaces.h"

namespace tally::fuzz {

// What a raft log store's Load must give, whatever was on disk: per group,
// entries after the snapshot and contiguous, so the host can start from it.
inline void CheckHostCanStart(
    const std::map<raft::host::GroupId, raft::host::PersistedGroup>& loaded) {
  for (const auto& [group, g] : loaded) {
    const raft::Index snap = g.snapshot.metadata.index;
    for (size_t i = 0; i < g.entries.size(); ++i) {
      TALLY_FUZZ_CHECK(g.entries[i].index > snap);
      if (i > 0) {
        TALLY_FUZZ_CHECK(g.entries[i].index == g.entries[i - 1].index + 1);
      }
    }
  }
}

}  // namespace tally::fuzz

#endif  // TALLY_FUZZ_LOADED_LOG_H_
