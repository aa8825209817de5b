#ifndef TALLY_KV_STATE_MACHINE_TESTING_H_
#define TALLY_KV_STATE_MACHINE_TESTING_H_

#include <cstdint>
#include <memory>
#include <utility>

#include "gtest/gtest.h"
#include "kv/state_machine.h"
#include "kv/storage/memory_engine.h"

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

// For tests of a module: a data group (2) over an in-memory engine, driven
// command by command, each carrying its log time.
class ModuleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto sm = StateMachine::Open(&db_, 2, [this] { return now_ms_; });
    ASSERT_TRUE(sm.ok());
    sm_ = std::move(*sm);
  }
  // Applies `cmd`, proposed at log time `time_ms`, as the next entry.
  kvpb::CommandResult Apply(kvpb::Command cmd, int64_t time_ms) {
    now_ms_ = time_ms;  // the proposer's clock
    return ApplyNext(*sm_, &index_, std::move(cmd), time_ms);
  }
  // Proposes what the leader finds due at `at`, as the leader duties do.
  void RunDuties(int64_t at) {
    now_ms_ = at;
    sm_->OnLeadership(1, true);
    for (kvpb::Command& c : sm_->Due()) Apply(std::move(c), at);
  }

  storage::MemoryEngine db_;
  int64_t now_ms_ = 0;
  std::unique_ptr<StateMachine> sm_;
  raft::Index index_ = 0;
};

}  // namespace tally::kv

#endif  // TALLY_KV_STATE_MACHINE_TESTING_H_
