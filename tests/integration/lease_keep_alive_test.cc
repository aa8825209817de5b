// Keep-alive streams on a real cluster.

#include <chrono>
#include <thread>
#include <vector>

#include "client/client.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rpc/lock.grpc.pb.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

using std::chrono::milliseconds;

// One cluster for the suite.
class LeaseKeepAliveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new testing::TestCluster();
    started_ = cluster_->Start();
  }
  static void TearDownTestSuite() { delete cluster_; }
  void SetUp() override { ASSERT_TRUE(started_); }

  static testing::TestCluster* cluster_;
  static bool started_;
};
testing::TestCluster* LeaseKeepAliveTest::cluster_ = nullptr;
bool LeaseKeepAliveTest::started_ = false;

// A keep-alive stream that stays quiet between messages for longer than the
// server's ping period: a client on gRPC's synchronous API answers pings
// only while a call of its waits, or every 5 s. With clients pinged as
// peers are (every 2 s, 2 s to answer), the server closed the connection
// under the stream ("keepalive watchdog timeout").
TEST_F(LeaseKeepAliveTest, QuietStreamOutlivesTheServersPings) {
  auto c = client::Client::Connect(cluster_->ClientOptions());
  ASSERT_TRUE(c.ok()) << c.status();
  auto lease = (*c)->GrantLease(milliseconds(60'000));
  ASSERT_TRUE(lease.ok()) << lease.status();
  auto ranges = (*c)->Ranges();
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  std::string leader;
  for (const auto& m : ranges->members()) {
    if (m.id() == ranges->leaders().at(ranges->meta_group())) {
      leader = m.client_address();
    }
  }
  auto stub = rpc::Leases::NewStub(
      grpc::CreateChannel(leader, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  auto stream = stub->KeepAlive(&ctx);
  rpc::LeaseKeepAliveRequest req;
  req.set_id(lease->id());
  rpc::LeaseKeepAliveResponse resp;
  for (int i = 0; i < 2; ++i) {
    if (i > 0) std::this_thread::sleep_for(milliseconds(10'000));
    ASSERT_TRUE(stream->Write(req) && stream->Read(&resp))
        << "keep-alive " << i + 1 << ": " << stream->Finish().error_message();
    EXPECT_EQ(resp.ttl_ms(), 60'000);
  }
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
}

}  // namespace
}  // namespace tally
