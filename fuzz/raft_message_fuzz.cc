// A batch of raft messages as a peer sends it (rpc/raft.proto MessageBatch),
// decoded as the transport does. What decodes must encode back to the same
// message; what does not must be refused with an error, never a crash.
#include <cstddef>
#include <cstdint>

#include "fuzz/input.h"
#include "rpc/raft.pb.h"
#include "rpc/raft_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::rpc::MessageBatch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  for (const tally::rpc::RaftMessage& m : batch.messages()) {
    absl::StatusOr<tally::raft::host::GroupMessage> decoded =
        tally::rpc::FromProto(m);
    if (!decoded.ok()) continue;
    tally::rpc::RaftMessage encoded;
    tally::rpc::ToProto(*decoded, &encoded);
    absl::StatusOr<tally::raft::host::GroupMessage> again =
        tally::rpc::FromProto(encoded);
    TALLY_FUZZ_CHECK(again.ok());
    TALLY_FUZZ_CHECK(again->group == decoded->group);
    TALLY_FUZZ_CHECK(again->quiesce == decoded->quiesce);
    TALLY_FUZZ_CHECK(again->msg == decoded->msg);
  }
  return 0;
}
