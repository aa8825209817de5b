#include "rpc/grpc_transport.h"

#include <chrono>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
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
  GrpcTransport transport(1, "cluster", "127.0.0.1:1", &directory,
                          grpc::InsecureChannelCredentials());
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
  const std::vector<PeerStats> stats = transport.Stats();
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].peer, 2u);
  EXPECT_EQ(stats[0].queued, 10000u);
  EXPECT_EQ(stats[0].dropped, 1u);
  EXPECT_EQ(stats[0].sent, 0u);
  transport.Stop();
}

// /metrics shows per peer what was sent and the round trip of a ping on
// the stream's connection.
TEST(GrpcTransportTest, StatsCountWhatWasSentAndTimeARoundTrip) {
  PeerDirectory directory;
  GrpcTransport one(1, "cluster", "127.0.0.1:1", &directory,
                    grpc::InsecureChannelCredentials());
  GrpcTransport two(2, "cluster", "127.0.0.1:2", &directory,
                    grpc::InsecureChannelCredentials());
  Recorder recorder_one, recorder_two;
  one.set_host(&recorder_one);
  two.set_host(&recorder_two);
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(two.service());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  directory.SetPeer(2, absl::StrCat("127.0.0.1:", port));

  std::vector<raft::host::GroupMessage> msgs;
  for (int i = 0; i < 5; ++i) {
    msgs.push_back(Message(raft::MessageType::kHeartbeat));
  }
  one.Send(2, std::move(msgs));
  // A ping every 2 s: the first within 5 s.
  PeerStats s;
  const auto give_up =
      std::chrono::steady_clock::now() + std::chrono::seconds(5);
  do {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const std::vector<PeerStats> stats = one.Stats();
    ASSERT_EQ(stats.size(), 1u);
    s = stats[0];
  } while ((s.rtt_seconds <= 0 || s.sent < 5) &&
           std::chrono::steady_clock::now() < give_up);
  EXPECT_EQ(s.peer, 2u);
  EXPECT_EQ(s.sent, 5u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.connects, 1u);
  EXPECT_GT(s.rtt_seconds, 0);
  EXPECT_LT(s.rtt_seconds, 1);
  EXPECT_EQ(s.ping_failures, 0u);
  one.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  two.Stop();
}

}  // namespace
}  // namespace tally::rpc
