// A cluster whose keyspace is split into three ranges at bootstrap: every
// range is its own raft group; scans span them, transactions may not.

#include <set>

#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

TEST(ShardingTest, RangesAreGroupsAndScansSpanThem) {
  testing::TestCluster cluster("g,p");
  ASSERT_TRUE(cluster.Start());
  auto c = client::Client::Connect(cluster.ClientOptions());
  ASSERT_TRUE(c.ok());
  client::Client& client = **c;

  auto ranges = client.Ranges();
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  ASSERT_EQ(ranges->ranges_size(), 3);
  EXPECT_EQ(ranges->ranges(1).start(), "g");
  EXPECT_EQ(ranges->ranges(1).end(), "p");

  std::set<uint64_t> groups;
  for (const char* k : {"apple", "grape", "kiwi", "peach", "zucchini"}) {
    auto r = client.Put(k, std::string(k) + "!");
    ASSERT_TRUE(r.ok()) << k << ": " << r.status();
    groups.insert(r->header().group());
  }
  EXPECT_EQ(groups.size(), 3u)
      << "writes landed in fewer shards than keys' ranges";

  for (rpc::ReadMode mode : {rpc::LINEARIZABLE, rpc::SERIALIZABLE}) {
    auto all = client.Scan("", "", 0, mode);
    ASSERT_TRUE(all.ok()) << all.status();
    std::vector<std::string> keys;
    for (const auto& kv : *all) keys.push_back(kv.key());
    EXPECT_EQ(keys, (std::vector<std::string>{"apple", "grape", "kiwi", "peach",
                                              "zucchini"}));
  }
  auto some = client.Scan("b", "q", 2);
  ASSERT_TRUE(some.ok());
  ASSERT_EQ(some->size(), 2u);
  EXPECT_EQ((*some)[0].key(), "grape");
  EXPECT_EQ((*some)[1].key(), "kiwi");

  rpc::TxnRequest txn;
  auto* p1 = txn.add_success()->mutable_put();
  p1->set_key("apple");
  p1->set_value("x");
  auto* p2 = txn.add_success()->mutable_put();
  p2->set_key("peach");
  p2->set_value("x");
  auto t = client.Txn(txn);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument)
      << t.status();
  EXPECT_EQ(client.Get("apple")->kv().value(), "apple!") << "half-applied";
}

}  // namespace
}  // namespace tally
