// Commands as they reach a replica through the raft log (kv/kvpb Command):
// every module's validation and apply, and the leader duties, on any
// decodable command. Replicas must agree whatever the batching and across
// a restart (the same results, the same state), and nothing may crash.
//
// The input: a byte choosing the group (metadata or data), then steps, each
// a byte (bit 0: run the leader's duties first; bits 1-7: the proposer's
// clock advance) and a piece holding one encoded Command.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fuzz/input.h"
#include "kv/state_machine.h"
#include "kv/storage/memory_engine.h"

namespace {

using tally::kv::StateMachine;
using tally::raft::Entry;

std::unique_ptr<StateMachine> Open(tally::kv::storage::Engine* engine,
                                   uint64_t group, const int64_t* now) {
  auto sm = StateMachine::Open(engine, group, [now] { return *now; });
  TALLY_FUZZ_CHECK(sm.ok());
  return std::move(*sm);
}

void Bootstrap(StateMachine& sm, uint64_t group) {
  if (group != 1) return;
  std::vector<tally::kvpb::Member> members(3);
  for (int i = 0; i < 3; ++i) {
    members[i].set_id(i + 1);
    members[i].set_name("n" + std::to_string(i + 1));
  }
  tally::kvpb::RangeDescriptor range;
  range.set_group(2);
  TALLY_FUZZ_CHECK(sm.Bootstrap(1, members, {range}).ok());
}

// Everything Export streams, in order (nothing before the first apply).
std::vector<std::pair<std::string, std::string>> State(StateMachine& sm) {
  std::vector<std::pair<std::string, std::string>> kvs;
  if (sm.applied() == 0) return kvs;
  absl::Status s =
      sm.Export(0, [&](tally::raft::host::SnapshotChunk c) -> absl::Status {
        for (auto& kv : c.kvs) kvs.push_back(std::move(kv));
        return absl::OkStatus();
      });
  TALLY_FUZZ_CHECK(s.ok());
  return kvs;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tally::fuzz::Input in(data, size);
  const uint64_t group = in.Byte() % 2 + 1;
  int64_t now = 0;

  // Replica A applies entry by entry, as the leader proposes them.
  tally::kv::storage::MemoryEngine a_engine;
  std::unique_ptr<StateMachine> a = Open(&a_engine, group, &now);
  Bootstrap(*a, group);
  tally::raft::Index index = group == 1 ? 1 : 0;
  std::vector<Entry> log;
  std::vector<std::string> results;
  auto apply = [&](tally::kvpb::Command cmd) {
    Entry e{1, ++index, tally::raft::EntryType::kNormal,
            cmd.SerializeAsString()};
    absl::StatusOr<std::vector<std::string>> r = a->Apply({e});
    TALLY_FUZZ_CHECK(r.ok());
    TALLY_FUZZ_CHECK(r->size() == 1);
    log.push_back(std::move(e));
    results.push_back(std::move(r->front()));
  };
  a->OnLeadership(1, true);
  while (!in.empty()) {
    const uint8_t step = in.Byte();
    tally::kvpb::Command cmd;
    if (!cmd.ParseFromString(in.Piece())) continue;
    now += (step >> 1) * 997;
    if (step & 1) {
      for (tally::kvpb::Command& due : a->Due()) apply(std::move(due));
    }
    apply(std::move(cmd));
  }

  // Replica B applies the same log in one pass: the same results and state.
  tally::kv::storage::MemoryEngine b_engine;
  std::unique_ptr<StateMachine> b = Open(&b_engine, group, &now);
  Bootstrap(*b, group);
  if (!log.empty()) {
    absl::StatusOr<std::vector<std::string>> r = b->Apply(log);
    TALLY_FUZZ_CHECK(r.ok());
    TALLY_FUZZ_CHECK(*r == results);
  }
  const auto state = State(*a);
  TALLY_FUZZ_CHECK(State(*b) == state);
  TALLY_FUZZ_CHECK(b->revision() == a->revision());

  // Replica A restarted from its storage: the same state.
  a.reset();
  std::unique_ptr<StateMachine> restarted = Open(&a_engine, group, &now);
  TALLY_FUZZ_CHECK(restarted->applied() == index);
  TALLY_FUZZ_CHECK(State(*restarted) == state);
  return 0;
}
