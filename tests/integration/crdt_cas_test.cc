// The strong path of the CRDT tables on a real cluster: compare-and-sets of
// a row's cas_register columns, sent by concurrent clients to every node
// while a shard's leader is killed. Of the ones decided on one value of a
// row exactly one succeeds, its client is told so (a retry after a lost
// answer is answered from the session table, not taken for a lost
// comparison), and every node then reads the winner.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

rpc::CrdtCasValue Value(const std::string& column, const std::string& value) {
  rpc::CrdtCasValue v;
  v.set_column(column);
  v.set_value(value);
  return v;
}

// Rows on both sides of the split at "m", so in both data shards.
std::string Row(int i) { return absl::StrCat(i % 2 == 0 ? "a" : "z", i); }

TEST(CrdtCasTest, OfConcurrentCheckoutsOfARowOneWinsAcrossALeaderKill) {
  testing::TestCluster cluster("m");
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.timeout = std::chrono::seconds(15);
  auto admin = client::Client::Connect(opts);
  ASSERT_TRUE(admin.ok());
  std::vector<rpc::CrdtColumn> cols(2);
  cols[0].set_name("items");
  cols[0].set_type(rpc::CRDT_SET);
  cols[1].set_name("status");
  cols[1].set_type(rpc::CRDT_CAS_REGISTER);
  ASSERT_TRUE((*admin)->CrdtCreateTable("orders", cols).ok());

  constexpr int kRows = 40, kWriters = 4;
  for (int i = 0; i < kRows; ++i) {
    rpc::CrdtCasRequest req;
    req.set_table("orders");
    req.set_row(Row(i));
    req.set_check_version(true);  // version 0: the row holds nothing
    *req.add_set() = Value("status", "open");
    auto r = (*admin)->CrdtCas(req);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->succeeded());
  }

  // Each writer, with a client of its own, tries to check out every row.
  std::mutex mu;
  std::map<std::string, std::vector<int>> winners;
  std::vector<std::string> errors;
  std::atomic<int> done{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto c = client::Client::Connect(opts);
      ASSERT_TRUE(c.ok());
      for (int i = 0; i < kRows; ++i) {
        rpc::CrdtCasRequest req;
        req.set_table("orders");
        req.set_row(Row(i));
        *req.add_compare() = Value("status", "open");
        *req.add_set() = Value("status", absl::StrCat("paid by ", w));
        auto r = (*c)->CrdtCas(req);
        std::lock_guard<std::mutex> l(mu);
        if (!r.ok()) {
          errors.push_back(std::string(r.status().message()));
        } else if (r->succeeded()) {
          winners[Row(i)].push_back(w);
        } else if (r->values_size() != 1 || r->values(0).value() == "open") {
          errors.push_back(absl::StrCat(Row(i), ": refused while open"));
        }
        ++done;
      }
    });
  }
  while (done < kWriters * kRows / 3) std::this_thread::yield();
  const int leader = cluster.Leader(2);
  ASSERT_NE(leader, 0);
  cluster.Kill(leader);
  for (auto& t : writers) t.join();
  EXPECT_TRUE(errors.empty())
      << errors.size()
      << " errors, first: " << (errors.empty() ? "" : errors[0]);

  ASSERT_TRUE(cluster.Start());  // the killed node too
  for (int i = 0; i < kRows; ++i) {
    const std::vector<int>& won = winners[Row(i)];
    ASSERT_EQ(won.size(), 1u) << Row(i) << " checked out by " << won.size();
    for (const std::string& ep : opts.endpoints) {
      client::ClientOptions one = opts;
      one.endpoints = {ep};
      auto c = client::Client::Connect(one);
      ASSERT_TRUE(c.ok());
      auto got = (*c)->CrdtGet("orders", Row(i), rpc::CRDT_MAJORITY);
      ASSERT_TRUE(got.ok()) << ep << ": " << got.status();
      ASSERT_EQ(got->values_size(), 1);
      EXPECT_EQ(got->values(0).column(), "status");
      EXPECT_EQ(got->values(0).values(0), absl::StrCat("paid by ", won[0]))
          << ep << " " << Row(i);
      EXPECT_GT(got->cas_version(), 0u);
    }
  }
}

}  // namespace
}  // namespace tally
