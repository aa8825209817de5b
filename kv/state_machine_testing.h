#ifndef TALLY_KV_STATE_MACHINE_TESTING_H_
#define TALLY_KV_STATE_MACHINE_TESTING_H_

#include <cstdint>
#include <utility>

#include "gtest/gtest.h"
#include "kv/state_machine.h"

namespace tally::kv {

// For tests: applies `cmd`, proposed at log time `time_ms`, as the next
// entry (term 1) after `*index`, and returns its result.
inline kvpb::CommandResult ApplyNext(StateMachine& sm, raft::Index* index,
                                     kvpb::Command cmd, int64_t time_ms) {
  cmd.set_time_ms(time_ms);
  raft::Entry e{1, ++*index, raft::EntryType::kNormal, cmd.SerializeAsString()};
  auto r = sm.Apply({e});
  EXPECT_TRUE(r.ok()) << r.status();
  kvpb::CommandResult out;
  if (r.ok()) out.ParseFromString(r->at(0));
  return out;
}

}  // namespace tally::kv

#endif  // TALLY_KV_STATE_MACHINE_TESTING_H_
