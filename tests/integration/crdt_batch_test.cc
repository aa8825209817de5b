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

// A table is usable on every node as soon as its creation is acknowledged:
// a node that has not applied it yet catches up with the metadata group
// before it answers NOT_FOUND.
TEST_F(CrdtBatchTest, ATableJustCreatedIsFoundOnEveryNode) {
  const client::ClientOptions all = cluster_.ClientOptions();
  std::vector<std::unique_ptr<client::Client>> nodes;
  for (const std::string& endpoint : all.endpoints) {
    client::ClientOptions one = all;
    one.endpoints = {endpoint};
    auto c = client::Client::Connect(one);
    ASSERT_TRUE(c.ok()) << c.status();
    nodes.push_back(*std::move(c));
  }
  std::vector<rpc::CrdtColumn> columns(2);
  columns[0].set_name("n");
  columns[0].set_type(rpc::CRDT_G_COUNTER);
  columns[1].set_name("c");
  columns[1].set_type(rpc::CRDT_CAS_REGISTER);
  // Right after each creation, one call to a node that may not have applied
  // it yet: an update, a read, a read of the cas_register columns or a
  // compare-and-set, in turn, each node in turn; then an update through
  // every node.
  for (size_t i = 0; i < 48; ++i) {
    const std::string table = "fresh" + std::to_string(i);
    ASSERT_TRUE(client_->CrdtCreateTable(table, columns).ok()) << table;
    const size_t k = (i / 4) % nodes.size();
    absl::Status st;
    if (i % 4 == 0) {
      st = nodes[k]
               ->CrdtUpdate(Update(table, "r", rpc::CrdtOp::INCREMENT, "n"))
               .status();
    } else if (i % 4 == 1) {
      st = nodes[k]->CrdtGet(table, "r").status();
    } else if (i % 4 == 2) {
      st = nodes[k]->CrdtCasGet(table, "r", rpc::SERIALIZABLE).status();
    } else {
      rpc::CrdtCasRequest cas;
      cas.set_table(table);
      cas.set_row("r");
      cas.set_check_version(true);
      rpc::CrdtCasValue* v = cas.add_set();
      v->set_column("c");
      v->set_value("x");
      auto set = nodes[k]->CrdtCas(cas);
      st = set.ok() && !set->succeeded() ? absl::AbortedError("not set")
                                         : set.status();
    }
    EXPECT_TRUE(st.ok()) << table << ", call " << i % 4 << " to node " << k + 1
                         << ": " << st;
    for (size_t n = 0; n < nodes.size(); ++n) {
      auto up =
          nodes[n]->CrdtUpdate(Update(table, "r", rpc::CrdtOp::INCREMENT, "n"));
      EXPECT_TRUE(up.ok()) << table << ", update to node " << n + 1 << ": "
                           << up.status();
    }
  }
}

}  // namespace
}  // namespace tally
