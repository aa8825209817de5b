// CRDT updates in batches on a real cluster: each update of a
// Crdt.UpdateBatch call stands on its own, and the client library's
// coalescing of concurrent updates neither loses nor repeats one.

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "client/client.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rpc/tls.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

rpc::CrdtUpdateRequest Update(const std::string& table, const std::string& row,
                              rpc::CrdtOp::Kind kind,
                              const std::string& column) {
  rpc::CrdtUpdateRequest u;
  u.set_table(table);
  u.set_row(row);
  rpc::CrdtOp* op = u.add_ops();
  op->set_kind(kind);
  op->set_column(column);
  op->set_amount(1);
  if (kind == rpc::CrdtOp::ADD) op->add_elements("x");
  return u;
}

// The count of row `row`'s column "n" on the node `c` reads from.
int64_t Count(client::Client& c, const std::string& row) {
  auto got = c.CrdtGet("t", row);
  EXPECT_TRUE(got.ok()) << got.status();
  if (!got.ok()) return -1;
  for (const rpc::CrdtValue& v : got->values()) {
    if (v.column() == "n") return v.count();
  }
  return 0;
}

// A cluster with table t (a g_counter n), and a client of its first node
// only (reads see its own writes).
class CrdtBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.Start());
    options_ = cluster_.ClientOptions();
    options_.endpoints.resize(1);
    auto c = client::Client::Connect(options_);
    ASSERT_TRUE(c.ok());
    client_ = *std::move(c);
    rpc::CrdtColumn n;
    n.set_name("n");
    n.set_type(rpc::CRDT_G_COUNTER);
    ASSERT_TRUE(client_->CrdtCreateTable("t", {n}).ok());
  }

  testing::TestCluster cluster_;
  client::ClientOptions options_;
  std::unique_ptr<client::Client> client_;
};

TEST_F(CrdtBatchTest, EachUpdateOfABatchIsAppliedOrRefusedOnItsOwn) {
  auto stub = rpc::Crdt::NewStub(grpc::CreateChannel(
      options_.endpoints[0], rpc::ChannelCredentials(rpc::TlsFilesFromEnv())));
  auto call = [&](const rpc::CrdtUpdateBatchRequest& req,
                  rpc::CrdtUpdateBatchResponse* resp) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(15));
    return stub->UpdateBatch(&ctx, req, resp);
  };

  rpc::CrdtUpdateBatchRequest req;
  *req.add_updates() = Update("t", "a", rpc::CrdtOp::INCREMENT, "n");
  *req.add_updates() = Update("nope", "a", rpc::CrdtOp::INCREMENT, "n");
  *req.add_updates() = Update("t", "b", rpc::CrdtOp::ADD, "n");  // wrong type
  *req.add_updates() = Update("t", "", rpc::CrdtOp::INCREMENT, "n");
  *req.add_updates() = Update("t", "b", rpc::CrdtOp::INCREMENT, "n");
  rpc::CrdtUpdateBatchResponse resp;
  grpc::Status st = call(req, &resp);
  ASSERT_TRUE(st.ok()) << st.error_message();
  ASSERT_EQ(resp.results_size(), 5);
  EXPECT_EQ(resp.results(0).code(), grpc::StatusCode::OK);
  EXPECT_EQ(resp.results(1).code(), grpc::StatusCode::NOT_FOUND)
      << resp.results(1).message();
  EXPECT_EQ(resp.results(2).code(), grpc::StatusCode::INVALID_ARGUMENT)
      << resp.results(2).message();
  EXPECT_EQ(resp.results(3).code(), grpc::StatusCode::INVALID_ARGUMENT)
      << resp.results(3).message();
  EXPECT_EQ(resp.results(4).code(), grpc::StatusCode::OK);
  EXPECT_NE(resp.node(), 0u);
  EXPECT_NE(resp.replica(), 0u);
  EXPECT_EQ(Count(*client_, "a"), 1);
  EXPECT_EQ(Count(*client_, "b"), 1);  // the refused update added nothing

  rpc::CrdtUpdateBatchRequest empty;
  st = call(empty, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  rpc::CrdtUpdateBatchRequest big;
  for (int i = 0; i < 1001; ++i) {
    *big.add_updates() = Update("t", "c", rpc::CrdtOp::INCREMENT, "n");
  }
  st = call(big, &resp);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << st.error_message();
  EXPECT_EQ(Count(*client_, "c"), 0);  // nothing of a refused call applied
}

TEST_F(CrdtBatchTest, ConcurrentUpdatesThroughOneClientAllCountOnce) {
  constexpr int kThreads = 32, kEach = 100;
  std::vector<std::thread> threads;
  std::atomic<int> failed{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string row =
            (i % 2 == 0) ? "shared" : "r" + std::to_string(t);
        if (!client_->CrdtUpdate(Update("t", row, rpc::CrdtOp::INCREMENT, "n"))
                 .ok()) {
          ++failed;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failed.load(), 0);
  EXPECT_EQ(Count(*client_, "shared"), kThreads * kEach / 2);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(Count(*client_, "r" + std::to_string(t)), kEach / 2) << t;
  }
}

}  // namespace
}  // namespace tally
