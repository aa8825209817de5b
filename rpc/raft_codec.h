#ifndef TALLY_RPC_RAFT_CODEC_H_
#define TALLY_RPC_RAFT_CODEC_H_

#include "raft/host/interfaces.h"
#include "raft/types.h"
#include "rpc/raft.pb.h"

// Conversions between the raft core's types and their Protobuf forms, for
// the wire and for the log store.
namespace tally::rpc {

void ToProto(const raft::Entry& e, RaftEntry* out);
raft::Entry FromProto(const RaftEntry& e);
void ToProto(const raft::Snapshot& s, RaftSnapshot* out);
raft::Snapshot FromProto(const RaftSnapshot& s);
void ToProto(const raft::host::GroupMessage& m, RaftMessage* out);
// INVALID_ARGUMENT for an unknown message or entry type.
absl::StatusOr<raft::host::GroupMessage> FromProto(const RaftMessage& m);

}  // namespace tally::rpc

#endif  // TALLY_RPC_RAFT_CODEC_H_
