#include "rpc/grpc_transport.h"

#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace tally::rpc {
namespace {

// Records what the transport reports.
class Recorder : public raft::host::MessageHandler {
 public:
  void Deliver(std::vector<raft::host::GroupMessage>) override {}
  void ReportUnreachable(raft::NodeId) override {}
  void ReportSnapshot(raft::host::GroupId group, raft::NodeId node,
                      bool success) override {
    absl::MutexLock l(&mu_);
    snapshots_.push_back({group, node, success});
  }
  absl::Status ExportSnapshot(raft::host::GroupId, raft::NodeId, raft::Index,
                              const raft::host::ChunkSink&) override {
    return absl::FailedPreconditionError("the recorder holds no state");
  }
  struct Report {
    raft::host::GroupId group;
    raft::NodeId node;
    bool success;
  };
  std::vector<Report> snapshots() {
    absl::MutexLock l(&mu_);
    return snapshots_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Report> snapshots_;
};

raft::host::GroupMessage Message(raft::MessageType type) {
  raft::host::GroupMessage gm;
  gm.group = 7;
  gm.msg.type = type;
  gm.msg.from = 1;
  gm.msg.to = 2;
  gm.msg.term = 3;
  return gm;
}

// Issue: a peer's queue that overflowed dropped its oldest messages
// silently; a dropped snapshot message left the leader waiting for news of
// it forever.
TEST(GrpcTransportTest, SnapshotDroppedOnOverflowIsReported) {
  PeerDirectory directory;  // no address for node 2: nothing is sent
  GrpcTransport transport(1, "cluster", "127.0.0.1:1", &directory);
  Recorder recorder;
  transport.set_host(&recorder);
  std::vector<raft::host::GroupMessage> msgs;
  msgs.push_back(Message(raft::MessageType::kSnapshot));
  for (int i = 0; i < 10000; ++i) {
    msgs.push_back(Message(raft::MessageType::kHeartbeat));
  }
  transport.Send(2, std::move(msgs));
  const std::vector<Recorder::Report> got = recorder.snapshots();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].group, 7u);
  EXPECT_EQ(got[0].node, 2u);
  EXPECT_FALSE(got[0].success);
  transport.Stop();
}

}  // namespace
}  // namespace tally::rpc
