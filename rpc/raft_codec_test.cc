#include "rpc/raft_codec.h"

#include "gtest/gtest.h"

namespace tally::rpc {
namespace {

TEST(RaftCodecTest, MessageRoundTrips) {
  raft::host::GroupMessage gm;
  gm.group = 7;
  gm.quiesce = true;
  raft::Message& m = gm.msg;
  m.type = raft::MessageType::kSnapshot;
  m.from = 1;
  m.to = 2;
  m.term = 3;
  m.log_term = 2;
  m.index = 9;
  m.entries = {{2, 10, raft::EntryType::kNormal, "a"},
               {3, 11, raft::EntryType::kConfChange, "cc"}};
  m.commit = 8;
  m.reject = true;
  m.reject_hint = 4;
  m.context = 99;
  m.transfer = true;
  m.snapshot.metadata = {.index = 5, .term = 2};
  m.snapshot.metadata.conf_state = {{1, 2}, {1, 3}, {4}, true};
  m.snapshot.data_ref = "ref";
  RaftMessage p;
  ToProto(gm, &p);
  absl::StatusOr<raft::host::GroupMessage> back = FromProto(p);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->group, 7u);
  EXPECT_TRUE(back->quiesce);
  EXPECT_EQ(back->msg, m);
}

// Found by fuzz_raft_message: a snapshot at index 0 with a term decoded as a
// snapshot, which encodes as none (an empty snapshot is not sent).
TEST(RaftCodecTest, SnapshotAtIndexZeroIsNone) {
  RaftMessage p;
  p.set_type(static_cast<uint32_t>(raft::MessageType::kSnapshot));
  p.mutable_snapshot()->set_term(11);
  absl::StatusOr<raft::host::GroupMessage> m = FromProto(p);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(m->msg.snapshot.IsEmpty());
  EXPECT_EQ(m->msg.snapshot, raft::Snapshot{});
}

TEST(RaftCodecTest, RejectsUnknownTypes) {
  RaftMessage p;
  p.set_type(200);
  EXPECT_EQ(FromProto(p).status().code(), absl::StatusCode::kInvalidArgument);
  p.set_type(0);
  p.add_entries()->set_type(5);
  EXPECT_EQ(FromProto(p).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tally::rpc
