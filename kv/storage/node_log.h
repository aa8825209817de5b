#ifndef TALLY_KV_STORAGE_NODE_LOG_H_
#define TALLY_KV_STORAGE_NODE_LOG_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kv/storage/segment_log.h"

namespace tally::kv::storage {

// Opens the raft log of the node whose data directory is `data_dir`, in
// <data_dir>/log. A data directory made before the log had segment files of
// its own keeps it in a LevelDB database at <data_dir>/raft: that log and
// its metadata are copied into <data_dir>/log once (made under another name
// and renamed when complete, so a crash midway copies again), and the old
// database is renamed <data_dir>/raft.old, to be removed by the operator.
absl::StatusOr<std::unique_ptr<SegmentLog>> OpenNodeLog(
    const std::string& data_dir);

}  // namespace tally::kv::storage

#endif  // TALLY_KV_STORAGE_NODE_LOG_H_
