// Watch on a real cluster: a watch over two shards follows every write
// while the shards' leaders are killed and restarted, and sees each change
// once, in revision order, with no gap; a compacted start is refused naming
// the oldest revision left; idle watches get progress answers.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

using Clock = std::chrono::steady_clock;

// What a watch saw, filled by its callback.
struct Seen {
  absl::Mutex mu;
  // By group: every (revision, key, value) in the order delivered.
  std::map<uint64_t, std::vector<std::tuple<int64_t, std::string, std::string>>>
      events ABSL_GUARDED_BY(mu);
  // Created answers (one per shard).
  int answers ABSL_GUARDED_BY(mu) = 0;
};

TEST(WatchTest, AWatchOverTwoShardsMissesAndRepeatsNothingAcrossLeaderKills) {
  testing::TestCluster cluster("m");
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.timeout = std::chrono::seconds(15);
  auto writer = client::Client::Connect(opts);
  auto watcher = client::Client::Connect(opts);
  ASSERT_TRUE(writer.ok() && watcher.ok());

  Seen seen;
  std::atomic<bool> done = false;
  absl::Status watch_status;
  std::thread watch([&] {
    client::Client::WatchOptions o;
    o.key = "";
    o.range_end = std::string(1, '\0');
    o.start_revision = 1;
    o.progress_ms = 200;  // so that `done` is seen while idle
    watch_status = (*watcher)->Watch(o, [&](const rpc::WatchResponse& r) {
      absl::MutexLock l(&seen.mu);
      seen.answers += r.created();
      for (const rpc::WatchEvent& e : r.events()) {
        seen.events[r.header().group()].emplace_back(
            e.kv().mod_revision(), e.kv().key(), e.kv().value());
      }
      return !done;
    });
  });
  // A failed assertion returns early: the watch still stops (it sees `done`
  // at its next answer, a progress one at most 200 ms away) and is joined.
  absl::Cleanup stop_watch = [&] {
    done = true;
    if (watch.joinable()) watch.join();
  };

  // Both shards' first watch turns their history on: wait for it.
  const auto started = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    {
      absl::MutexLock l(&seen.mu);
      if (seen.answers == 2) break;
    }
    ASSERT_LT(Clock::now(), started) << watch_status;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // Puts on both sides of "m"; leaders killed and restarted on the way.
  constexpr int kPuts = 300;
  std::map<std::string, std::string> acked;  // key -> value
  std::set<std::string> unknown;
  for (int i = 0; i < kPuts; ++i) {
    for (auto [at, group] : {std::pair{75, 2}, std::pair{175, 3}}) {
      if (i != at) continue;
      const int leader = cluster.Leader(group);
      ASSERT_NE(leader, 0) << "no leader of group " << group;
      cluster.Kill(leader);
    }
    if (i == 150 || i == 250) {
      ASSERT_TRUE(cluster.Start());
    }
    const std::string key = absl::StrCat(i % 2 == 0 ? "a" : "z", i);
    auto r = (*writer)->Put(key, absl::StrCat("v", i));
    if (r.ok()) {
      acked[key] = absl::StrCat("v", i);
    } else {
      unknown.insert(key);
    }
  }
  // The last revision of each shard, then wait until the watch is there.
  std::map<uint64_t, int64_t> last;
  for (const std::string key : {"a-end", "z-end"}) {
    auto r = (*writer)->Put(key, "end");
    ASSERT_TRUE(r.ok()) << r.status();
    last[r->header().group()] = r->header().revision();
    acked[key] = "end";
  }
  ASSERT_EQ(last.size(), 2u);
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  for (;;) {
    bool there = true;
    {
      absl::MutexLock l(&seen.mu);
      for (const auto& [group, rev] : last) {
        const auto& ev = seen.events[group];
        there = there && !ev.empty() && std::get<0>(ev.back()) >= rev;
      }
    }
    if (there) break;
    ASSERT_LT(Clock::now(), give_up) << "the watch did not catch up";
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::move(stop_watch).Invoke();
  EXPECT_TRUE(watch_status.ok()) << watch_status;

  absl::MutexLock l(&seen.mu);
  std::map<std::string, int> times;
  for (const auto& [group, events] : seen.events) {
    // Every write here is a put: one change per revision, from 1 on.
    int64_t expect = 1;
    for (const auto& [rev, key, value] : events) {
      ASSERT_EQ(rev, expect) << "group " << group << ": a gap or a repeat";
      ++expect;
      auto a = acked.find(key);
      if ((a != acked.end() && a->second == value) || unknown.count(key)) {
        ++times[key];
      }
    }
    std::cout << "group " << group << ": " << events.size()
              << " changes watched in order, revisions 1.." << expect - 1
              << "\n";
  }
  for (const auto& [key, value] : acked) {
    EXPECT_EQ(times[key], 1)
        << key << "=" << value << " watched " << times[key] << " times";
  }
  std::cout << acked.size() << " acknowledged puts each watched once; "
            << unknown.size() << " with an unknown outcome\n";
}

TEST(WatchTest, CompactedHistoryIsRefusedAndTheLeaderKeepsItBounded) {
  testing::TestCluster cluster("", "--watch-history 100");
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.timeout = std::chrono::seconds(15);
  auto c = client::Client::Connect(opts);
  ASSERT_TRUE(c.ok());
  // The shard's first watch turns its history on.
  client::Client::WatchOptions first;
  first.key = "k";
  ASSERT_TRUE(
      (*c)->Watch(first, [](const rpc::WatchResponse&) { return false; }).ok());
  int64_t rev = 0;
  for (int i = 0; i < 300; ++i) {
    auto r = (*c)->Put("k", absl::StrCat(i));
    ASSERT_TRUE(r.ok()) << r.status();
    rev = r->header().revision();
  }
  // The leader compacts by itself to the last 100 revisions whenever more
  // than 110 are kept: from 1, the watch is refused naming the oldest
  // revision left, which settles within the bound once the writes stop.
  client::Client::WatchOptions o;
  o.key = "k";
  o.start_revision = 1;
  const std::string marker = "the oldest revision a watch may start from is ";
  absl::Status st;
  int64_t oldest = 0;
  const auto give_up = Clock::now() + std::chrono::seconds(10);
  while (oldest < rev - 110 + 1 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    st = (*c)->Watch(o, [](const rpc::WatchResponse&) { return false; });
    if (st.ok()) continue;  // not compacted yet
    ASSERT_EQ(st.code(), absl::StatusCode::kOutOfRange) << st;
    const size_t at = st.message().find(marker);
    ASSERT_NE(at, std::string::npos) << st;
    oldest = std::stoll(std::string(st.message().substr(at + marker.size())));
  }
  std::cout << st << "\n";
  EXPECT_GE(oldest, rev - 110 + 1);
  EXPECT_LE(oldest, rev - 100 + 1);

  // From the oldest revision left, every change after it, in order.
  o.start_revision = oldest;
  int64_t next = oldest;
  st = (*c)->Watch(o, [&](const rpc::WatchResponse& r) {
    for (const rpc::WatchEvent& e : r.events()) {
      EXPECT_EQ(e.kv().mod_revision(), next);
      next = e.kv().mod_revision() + 1;
    }
    return next <= rev;
  });
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_EQ(next, rev + 1);

  // A compaction asked for: the history before it is gone.
  auto compacted = (*c)->Compact(rev - 10);
  ASSERT_TRUE(compacted.ok()) << compacted.status();
  ASSERT_EQ(compacted->size(), 1u);
  EXPECT_EQ((*compacted)[0].compacted(), rev - 10);
  o.start_revision = rev - 10;
  st = (*c)->Watch(o, [](const rpc::WatchResponse&) { return false; });
  EXPECT_EQ(st.code(), absl::StatusCode::kOutOfRange) << st;
}

TEST(WatchTest, StreamsOfOneShardShareReadsAndEachGetsOnlyItsKeys) {
  testing::TestCluster cluster("");
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.timeout = std::chrono::seconds(15);
  auto c = client::Client::Connect(opts);
  ASSERT_TRUE(c.ok());
  client::Client::WatchOptions first;
  first.key = "a";
  ASSERT_TRUE(
      (*c)->Watch(first, [](const rpc::WatchResponse&) { return false; }).ok());
  // 60 puts over a, b/<i> and c: what each range should see, in order.
  const std::vector<std::string> keys = {"a", "b/1", "c", "b/2"};
  std::map<std::string, std::vector<std::string>> want;  // by watch
  int64_t from = 0, last = 0;
  for (int i = 0; i < 60; ++i) {
    const std::string& k = keys[i % keys.size()];
    auto r = (*c)->Put(k, absl::StrCat(i));
    ASSERT_TRUE(r.ok()) << r.status();
    last = r->header().revision();
    if (from == 0) from = last;
    if (k == "a") want["a"].push_back(absl::StrCat(k, "=", i));
    if (k.starts_with("b/")) want["b/"].push_back(absl::StrCat(k, "=", i));
    want["all"].push_back(absl::StrCat(k, "=", i));
  }
  // Three streams from the same revision at once (so that they read the
  // history together): key a, prefix b/, every key.
  struct Case {
    std::string name, key, end;
  };
  const std::vector<Case> cases = {
      {"a", "a", ""}, {"b/", "b/", "b0"}, {"all", "", std::string(1, '\0')}};
  std::map<std::string, std::vector<std::string>> got;
  absl::Mutex mu;
  std::vector<std::thread> threads;
  for (const Case& w : cases) {
    threads.emplace_back([&, w] {
      auto own = client::Client::Connect(opts);
      if (!own.ok()) return;
      client::Client::WatchOptions o;
      o.key = w.key;
      o.range_end = w.end;
      o.start_revision = from;
      absl::Status st = (*own)->Watch(o, [&](const rpc::WatchResponse& r) {
        absl::MutexLock l(&mu);
        for (const rpc::WatchEvent& e : r.events()) {
          got[w.name].push_back(
              absl::StrCat(e.kv().key(), "=", e.kv().value()));
        }
        return r.header().revision() < last;
      });
      EXPECT_TRUE(st.ok()) << w.name << ": " << st;
    });
  }
  for (std::thread& t : threads) t.join();
  absl::MutexLock l(&mu);
  for (const Case& w : cases) EXPECT_EQ(got[w.name], want[w.name]) << w.name;
}

TEST(WatchTest, ARangeDeleteAcrossShardsTakesEveryKeyAndIsWatchedKeyByKey) {
  testing::TestCluster cluster("m");
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.timeout = std::chrono::seconds(15);
  auto c = client::Client::Connect(opts);
  ASSERT_TRUE(c.ok());
  // 12,100 keys in shard "a".."m" (more than one delete entry takes), 100
  // in the other; written 110 to a transaction.
  auto put_many = [&](const std::string& prefix, int n) {
    for (int i = 0; i < n; i += 110) {
      rpc::TxnRequest txn;
      for (int j = i; j < std::min(n, i + 110); ++j) {
        rpc::PutRequest* p = txn.add_success()->mutable_put();
        p->set_key(absl::StrCat(prefix, 100000 + j));
        p->set_value("v");
      }
      auto r = (*c)->Txn(txn);
      ASSERT_TRUE(r.ok()) << r.status();
    }
  };
  put_many("b/", 12100);
  put_many("x/", 100);
  auto keep = (*c)->Put("zz", "stays");
  ASSERT_TRUE(keep.ok());

  // A watch of everything from now, counting deletions per shard.
  std::map<uint64_t, int> deleted;
  std::atomic<int> total = 0;
  std::atomic<bool> done = false;
  std::atomic<int> created = 0;  // a shard's first watch turns its history on
  std::thread watch([&] {
    client::Client::WatchOptions o;
    o.key = "";
    o.range_end = std::string(1, '\0');
    o.progress_ms = 200;
    auto st = (*c)->Watch(o, [&](const rpc::WatchResponse& r) {
      created += r.created();
      for (const rpc::WatchEvent& e : r.events()) {
        if (e.type() == rpc::WatchEvent::DELETE) {
          ++deleted[r.header().group()];
          ++total;
        }
      }
      return total < 12200 && !done;
    });
    EXPECT_TRUE(st.ok()) << st;
  });
  absl::Cleanup stop_watch = [&] {
    done = true;
    if (watch.joinable()) watch.join();
  };
  const auto started = Clock::now() + std::chrono::seconds(10);
  while (created < 2) {
    ASSERT_LT(Clock::now(), started) << "the watch did not start";
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto r = (*c)->DeleteRange("", "zz");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->count(), 12200);
  const auto give_up = Clock::now() + std::chrono::seconds(20);
  while (total < 12200 && Clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::move(stop_watch).Invoke();
  EXPECT_EQ(deleted.size(), 2u);
  EXPECT_EQ(total, 12200);
  auto left = (*c)->Scan("", "", 0, rpc::LINEARIZABLE);
  ASSERT_TRUE(left.ok()) << left.status();
  ASSERT_EQ(left->size(), 1u);
  EXPECT_EQ((*left)[0].key(), "zz");
  std::cout << "deleted 12,200 keys over 2 shards; the watch saw each\n";
}

TEST(WatchTest, AnIdleWatchGetsProgressAnswersAndThenTheChange) {
  testing::TestCluster cluster;
  ASSERT_TRUE(cluster.Start());
  auto c = client::Client::Connect(cluster.ClientOptions());
  ASSERT_TRUE(c.ok());
  auto before = (*c)->Put("other", "x");
  ASSERT_TRUE(before.ok());
  client::Client::WatchOptions o;
  o.key = "idle";
  o.progress_ms = 200;
  o.prev_kv = true;
  int progress = 0;
  std::vector<rpc::WatchEvent> events;
  const auto start = Clock::now();
  std::thread put([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ASSERT_TRUE((*c)->Put("idle", "1").ok());
    ASSERT_TRUE((*c)->Put("idle", "2").ok());
  });
  absl::Status st = (*c)->Watch(o, [&](const rpc::WatchResponse& r) {
    if (r.created()) {
      EXPECT_GE(r.header().revision(), before->header().revision());
    } else if (r.events().empty()) {
      ++progress;
    }
    for (const rpc::WatchEvent& e : r.events()) events.push_back(e);
    return events.size() < 2 && Clock::now() - start < std::chrono::seconds(10);
  });
  put.join();
  EXPECT_TRUE(st.ok()) << st;
  EXPECT_GE(progress, 4) << "progress answers in 1.5 s of quiet, every 200 ms";
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kv().value(), "1");
  EXPECT_FALSE(events[0].has_prev_kv());
  EXPECT_EQ(events[1].kv().value(), "2");
  EXPECT_EQ(events[1].prev_kv().value(), "1");
}

}  // namespace
}  // namespace tally
