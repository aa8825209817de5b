// Watch on a real cluster: watchers over two shards follow every write
// while the shards' leaders are killed and restarted (some disconnecting
// and resuming), and each sees each change once, in revision order, with
// no gap; streams of one shard each get only their keys; a compacted start
// is refused naming the oldest revision left; idle watches get progress
// answers.

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

// One watcher of [key, end) from revision 1, on a client of its own. With
// `resume_every`, it ends its watch once it has seen that many changes
// and starts a new one from the revision after the last answered, as a
// client that disconnects and comes back would (single-shard ranges only:
// a start revision is per shard).
struct Watching {
  std::string key, end;
  int resume_every = 0;
  Seen seen;
  absl::Status status;
  int resumes = 0;
  std::thread thread;

  void Run(client::Client* c, const std::atomic<bool>* done) {
    int64_t next = 1;
    for (;;) {
      client::Client::WatchOptions o;
      o.key = key;
      o.range_end = end;
      o.start_revision = next;
      o.progress_ms = 200;  // so that `done` is seen while idle
      int events = 0;
      bool resume = false;
      status = c->Watch(o, [&](const rpc::WatchResponse& r) {
        absl::MutexLock l(&seen.mu);
        seen.answers += r.created();
        for (const rpc::WatchEvent& e : r.events()) {
          seen.events[r.header().group()].emplace_back(
              e.kv().mod_revision(), e.kv().key(), e.kv().value());
        }
        next = r.header().revision() + 1;
        events += r.events_size();
        if (resume_every > 0 && events >= resume_every) {
          resume = true;
          return false;
        }
        return !*done;
      });
      if (!status.ok() || !resume || *done) return;
      ++resumes;
    }
  }
};

TEST(WatchTest, WatchersOverTwoShardsMissAndRepeatNothingAcrossLeaderKills) {
  testing::TestCluster cluster("m");
  ASSERT_TRUE(cluster.Start());
  client::ClientOptions opts = cluster.ClientOptions();
  opts.timeout = std::chrono::seconds(15);
  auto writer = client::Client::Connect(opts);
  ASSERT_TRUE(writer.ok());

  // Two watchers of every key (a stream per shard each), and one per shard
  // that disconnects and resumes every 10 changes.
  const std::string all_end(1, '\0');
  std::vector<std::unique_ptr<Watching>> watchers;
  for (auto [key, end, resume] :
       {std::tuple{"", all_end, 0}, std::tuple{"", all_end, 0},
        std::tuple{"", std::string("m"), 20}, std::tuple{"m", all_end, 20}}) {
    auto w = std::make_unique<Watching>();
    w->key = key;
    w->end = end;
    w->resume_every = resume;
    watchers.push_back(std::move(w));
  }
  std::vector<std::unique_ptr<client::Client>> clients;
  for (size_t i = 0; i < watchers.size(); ++i) {
    auto c = client::Client::Connect(opts);
    ASSERT_TRUE(c.ok());
    clients.push_back(std::move(*c));
  }
  std::atomic<bool> done = false;
  for (size_t i = 0; i < watchers.size(); ++i) {
    watchers[i]->thread =
        std::thread([w = watchers[i].get(), c = clients[i].get(), &done] {
          w->Run(c, &done);
        });
  }
  // A failed assertion returns early: the watches still stop (each sees
  // `done` at its next answer, a progress one at most 200 ms away) and are
  // joined.
  absl::Cleanup stop_watches = [&] {
    done = true;
    for (auto& w : watchers) {
      if (w->thread.joinable()) w->thread.join();
    }
  };

  // Both shards' first watch turns their history on: wait for every
  // stream's first answer (two per watcher of every key).
  const auto started = Clock::now() + std::chrono::seconds(10);
  for (;;) {
    int answers = 0;
    for (auto& w : watchers) {
      absl::MutexLock l(&w->seen.mu);
      answers += w->seen.answers;
    }
    if (answers >= 6) break;
    ASSERT_LT(Clock::now(), started) << watchers[0]->status;
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
  // The last revision of each shard, then wait until every watch is there.
  std::map<uint64_t, int64_t> last;
  uint64_t low = 0;  // the shard of the keys before "m"
  for (const std::string key : {"a-end", "z-end"}) {
    auto r = (*writer)->Put(key, "end");
    ASSERT_TRUE(r.ok()) << r.status();
    last[r->header().group()] = r->header().revision();
    if (key == "a-end") low = r->header().group();
    acked[key] = "end";
  }
  ASSERT_EQ(last.size(), 2u);
  auto covers = [&](const Watching& w, uint64_t group) {
    return group == low ? w.key < "m" : w.end != "m";
  };
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  for (size_t i = 0; i < watchers.size(); ++i) {
    Watching& w = *watchers[i];
    for (;;) {
      bool there = true;
      {
        absl::MutexLock l(&w.seen.mu);
        for (const auto& [group, rev] : last) {
          if (!covers(w, group)) continue;
          const auto& ev = w.seen.events[group];
          there = there && !ev.empty() && std::get<0>(ev.back()) >= rev;
        }
      }
      if (there) break;
      ASSERT_LT(Clock::now(), give_up)
          << "watcher " << i << " did not catch up: " << w.status;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::move(stop_watches).Invoke();

  for (size_t i = 0; i < watchers.size(); ++i) {
    Watching& w = *watchers[i];
    EXPECT_TRUE(w.status.ok()) << "watcher " << i << ": " << w.status;
    if (w.resume_every > 0) {
      EXPECT_GE(w.resumes, 3) << "watcher " << i;
    }
    absl::MutexLock l(&w.seen.mu);
    std::map<std::string, int> times;
    for (const auto& [group, events] : w.seen.events) {
      // Every write here is a put: one change per revision, from 1 on.
      int64_t expect = 1;
      for (const auto& [rev, key, value] : events) {
        ASSERT_EQ(rev, expect)
            << "watcher " << i << ", group " << group << ": a gap or a repeat";
        ++expect;
        auto a = acked.find(key);
        if ((a != acked.end() && a->second == value) || unknown.count(key)) {
          ++times[key];
        }
      }
      std::cout << "watcher " << i << ", group " << group << ": "
                << events.size() << " changes in order, revisions 1.."
                << expect - 1 << " (" << w.resumes << " resumes)\n";
    }
    for (const auto& [key, value] : acked) {
      const bool in_range = key >= w.key && (w.end != "m" || key < "m");
      EXPECT_EQ(times[key], in_range ? 1 : 0)
          << "watcher " << i << ": " << key << "=" << value << " watched "
          << times[key] << " times";
    }
  }
  std::cout << acked.size() << " acknowledged puts each watched once by each "
            << "watcher of its key; " << unknown.size()
            << " with an unknown outcome\n";
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
      o.progress_ms = 200;  // the last answer of a quiet range comes soon
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
