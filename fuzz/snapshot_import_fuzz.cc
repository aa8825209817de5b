// A snapshot as a peer streams it (raft/host SnapshotChunk): any keys and
// values. Import must take it whole or refuse it with an error, and a
// replica that took it must keep applying commands and restart from it;
// nothing may crash.
//
// The input: pieces in pairs (key, value) for the stream, then, after an
// empty key, encoded Commands to apply on top.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fuzz/input.h"
#include "kv/state_machine.h"
#include "kv/storage/memory_engine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::fuzz::Input in(data, size);
  const uint64_t group = in.Byte() % 2 + 1;
  int64_t now = 0;
  tally::kv::storage::MemoryEngine engine;
  const tally::kv::StateMachine::MonotonicClock clock = [&now] { return now; };
  auto opened = tally::kv::StateMachine::Open(&engine, group, clock);
  TALLY_FUZZ_CHECK(opened.ok());
  std::unique_ptr<tally::kv::StateMachine> sm = std::move(*opened);

  tally::raft::host::SnapshotChunk chunk;
  while (!in.empty()) {
    std::string key = in.Piece();
    if (key.empty()) break;
    chunk.kvs.emplace_back(std::move(key), in.Piece());
  }
  chunk.done = true;
  bool sent = false;
  absl::Status imported =
      sm->Import([&]() -> absl::StatusOr<tally::raft::host::SnapshotChunk> {
        if (sent) return absl::InternalError("read past the last chunk");
        sent = true;
        return chunk;
      });
  if (!imported.ok()) return 0;

  tally::raft::Index index = sm->applied();
  while (!in.empty()) {
    tally::kvpb::Command cmd;
    if (!cmd.ParseFromString(in.Piece())) continue;
    if (index == UINT64_MAX) break;
    tally::raft::Entry e{1, ++index, tally::raft::EntryType::kNormal,
                         cmd.SerializeAsString()};
    // A state the peer sent may be one the modules refuse to build on
    // (DATA_LOSS); that is an error for the host to report, not a crash.
    if (!sm->Apply({e}).ok()) return 0;
    sm->OnLeadership(1, true);
    (void)sm->Due();
  }
  sm.reset();
  auto restarted = tally::kv::StateMachine::Open(&engine, group, clock);
  if (restarted.ok()) TALLY_FUZZ_CHECK((*restarted)->applied() == index);
  return 0;
}
