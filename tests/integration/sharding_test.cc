// A cluster whose keyspace is split into three ranges at bootstrap: every
// range is its own raft group; scans span them, transactions may not.

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "client/client.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_interceptor.h"
#include "gtest/gtest.h"
#include "rpc/tls.h"
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

  const std::vector<std::string> written = {"apple", "grape", "kiwi", "peach",
                                            "zucchini"};
  for (rpc::ReadMode mode : {rpc::LINEARIZABLE, rpc::SERIALIZABLE}) {
    SCOPED_TRACE(rpc::ReadMode_Name(mode));
    // A serializable read is served by whichever node is asked, from what
    // it has applied: a follower may not have applied the last writes yet.
    // It sees them once it has; a linearizable read sees them at once.
    const auto until = std::chrono::steady_clock::now() +
                       (mode == rpc::SERIALIZABLE ? std::chrono::seconds(5)
                                                  : std::chrono::seconds(0));
    std::vector<std::string> keys;
    do {
      auto all = client.Scan("", "", 0, mode);
      ASSERT_TRUE(all.ok()) << all.status();
      keys.clear();
      for (const auto& kv : *all) keys.push_back(kv.key());
      if (keys == written) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < until);
    EXPECT_EQ(keys, written);
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

// Turns the answer to the next `fail` Ranges calls into an error the client
// does not retry.
class FailRanges
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit FailRanges(std::atomic<int>* fail) : fail_(fail) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo* info) override {
    if (std::string(info->method()) != "/tally.rpc.Cluster/Ranges") {
      return nullptr;
    }
    return new Interceptor(fail_);
  }

 private:
  class Interceptor : public grpc::experimental::Interceptor {
   public:
    explicit Interceptor(std::atomic<int>* fail) : fail_(fail) {}
    void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
      if (m->QueryInterceptionHookPoint(
              grpc::experimental::InterceptionHookPoints::POST_RECV_STATUS) &&
          fail_->fetch_sub(1) > 0) {
        *m->GetRecvStatus() =
            grpc::Status(grpc::StatusCode::INTERNAL, "injected fault");
      }
      m->Proceed();
    }

   private:
    std::atomic<int>* fail_;
  };
  std::atomic<int>* fail_;
};

// Issue: when the range map could not be fetched the client guessed group
// 2, took a sequence from that group's session, and the server applied the
// write in the key's real group; that group's next write reused the number
// and got the old saved result back as its own: acknowledged, never applied.
TEST(ShardingTest, FailedRangeLookupAcknowledgesNothingUnapplied) {
  testing::TestCluster cluster("m");
  ASSERT_TRUE(cluster.Start());
  std::atomic<int> fail{0};
  client::ClientOptions o = cluster.ClientOptions();
  o.dial = [&fail](const std::string& address) {
    std::vector<
        std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>>
        interceptors;
    interceptors.push_back(std::make_unique<FailRanges>(&fail));
    return grpc::experimental::CreateCustomChannelWithInterceptors(
        address, rpc::ChannelCredentials(rpc::TlsFilesFromEnv()),
        grpc::ChannelArguments(), std::move(interceptors));
  };
  auto c = client::Client::Connect(o);
  ASSERT_TRUE(c.ok());
  client::Client& client = **c;

  fail = 1;
  auto first = client.Put("zebra", "1");
  EXPECT_LE(fail.load(), 0) << "no Ranges call was made";
  std::map<std::string, std::string> want;
  if (first.ok()) want["zebra"] = "1";
  // Writes to both ranges, each acknowledged only once applied.
  int n = 0;
  for (const char* key : {"zebra", "apple", "zebra", "apple", "zebra"}) {
    const std::string value = std::to_string(++n + 1);
    auto r = client.Put(key, value);
    ASSERT_TRUE(r.ok()) << key << ": " << r.status();
    want[key] = value;
    for (const auto& [k, v] : want) {
      auto got = client.Get(k);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_EQ(got->kv().value(), v)
          << "the write of " << k << "=" << v << " was acknowledged but "
          << "not applied (after " << key << "=" << value << ")";
    }
  }
}

// A shard holding exactly one page (10,000 keys, the server's most per
// answer) and keys after it in the next shard: a scan of everything
// returns every key, and reads each shard once.
TEST(ShardingTest, ScanGoesOnPastAShardHoldingExactlyOnePage) {
  testing::TestCluster cluster("m");
  ASSERT_TRUE(cluster.Start());
  auto c = client::Client::Connect(cluster.ClientOptions());
  ASSERT_TRUE(c.ok());
  constexpr int kPage = 10000, kWriters = 16;
  std::vector<std::thread> writers;
  std::atomic<int> failed{0};
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = w; i < kPage; i += kWriters) {
        if (!(*c)->Put(absl::StrFormat("a%05d", i), "v").ok()) ++failed;
      }
    });
  }
  for (auto& t : writers) t.join();
  ASSERT_EQ(failed.load(), 0);
  ASSERT_TRUE((*c)->Put("z", "after the page").ok());

  std::vector<rpc::ResponseHeader> headers;
  auto all = (*c)->Scan("", "", 0, rpc::LINEARIZABLE, &headers);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), static_cast<size_t>(kPage) + 1);
  EXPECT_EQ(all->back().key(), "z");
  EXPECT_EQ(headers.size(), 2u) << "one read per shard";
}

}  // namespace
}  // namespace tally
