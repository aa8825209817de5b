#include <algorithm>
#include <atomic>
#include <map>
#include <optional>
#include <random>
#include <thread>
#include <tuple>
#include <unordered_set>

#include "clocks/clock.h"
#include "gtest/gtest.h"
#include "kv/crdt_table/cas_rows.h"
#include "kv/crdt_table/replica.h"
#include "kv/crdt_table/schema.h"
#include "kv/state_machine_testing.h"
#include "kv/storage/memory_engine.h"

namespace tally::kv {
namespace {

kvpb::CrdtTable Table() {
  kvpb::CrdtTable t;
  t.set_name("carts");
  t.set_id(7);
  auto col = [&](const char* name, kvpb::CrdtColumnType type) {
    kvpb::CrdtColumn* c = t.add_columns();
    c->set_name(name);
    c->set_type(type);
  };
  col("views", kvpb::CRDT_G_COUNTER);
  col("stock", kvpb::CRDT_PN_COUNTER);
  col("owner", kvpb::CRDT_LWW_REGISTER);
  col("note", kvpb::CRDT_MV_REGISTER);
  col("vip", kvpb::CRDT_EW_FLAG);
  col("items", kvpb::CRDT_AW_SET);
  col("prefs", kvpb::CRDT_AW_MAP);
  col("status", kvpb::CRDT_CAS_REGISTER);
  col("tags", kvpb::CRDT_AW_MAP);  // map<set>
  t.mutable_columns()->rbegin()->add_value_types(kvpb::CRDT_AW_SET);
  col("perms", kvpb::CRDT_AW_MAP);  // map<map<flag>>
  t.mutable_columns()->rbegin()->add_value_types(kvpb::CRDT_AW_MAP);
  t.mutable_columns()->rbegin()->add_value_types(kvpb::CRDT_EW_FLAG);
  return t;
}

CrdtOp Incr(const std::string& column, int64_t n) {
  CrdtOp op;
  op.kind = CrdtOp::kIncrement;
  op.column = column;
  op.amount = n;
  return op;
}
CrdtOp Elements(CrdtOp::Kind kind, std::vector<std::string> elements) {
  CrdtOp op;
  op.kind = kind;
  op.column = "items";
  op.elements = std::move(elements);
  return op;
}
CrdtOp Set(const std::string& column, const std::string& value,
           const std::string& context = "") {
  CrdtOp op;
  op.kind = CrdtOp::kSet;
  op.column = column;
  op.value = value;
  op.context = context;
  return op;
}
CrdtOp MapSet(const std::string& key, const std::string& value,
              const std::string& context = "") {
  CrdtOp op;
  op.kind = CrdtOp::kSet;
  op.column = "prefs";
  op.path = {key};
  op.value = value;
  op.context = context;
  return op;
}
CrdtOp MapRemove(std::vector<std::string> keys) {
  CrdtOp op;
  op.kind = CrdtOp::kRemove;
  op.column = "prefs";
  op.elements = std::move(keys);
  return op;
}
CrdtOp Flag(bool enable) {
  CrdtOp op;
  op.kind = enable ? CrdtOp::kEnable : CrdtOp::kDisable;
  op.column = "vip";
  return op;
}

constexpr size_t kCacheBytes = 1 << 20;

// Replicas, each over its own in-memory engine.
class CrdtReplicaTest : public ::testing::Test {
 protected:
  CrdtReplica& Open(int i) {
    auto r = CrdtReplica::Open(&engines_[i], &clock_, kCacheBytes);
    EXPECT_TRUE(r.ok()) << r.status();
    replicas_[i] = std::move(*r);
    return *replicas_[i];
  }
  void SetUp() override {
    for (int i = 0; i < 3; ++i) Open(i);
  }
  CrdtRowChange Update(int i, const std::string& row, std::vector<CrdtOp> ops) {
    auto c = replicas_[i]->Update(table_, row, ops);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : CrdtRowChange{};
  }
  void Merge(int i, const CrdtRowChange& c) {
    absl::Status s = replicas_[i]->Merge(table_, c);
    EXPECT_TRUE(s.ok()) << s;
  }
  CrdtValue Value(int i, const std::string& row, const std::string& column) {
    auto values = replicas_[i]->Read(table_, row);
    EXPECT_TRUE(values.ok()) << values.status();
    for (const CrdtValue& v : *values) {
      if (v.column == column) return v;
    }
    return {};
  }
  // Anti-entropy from `from` into `to`: the rows of every bucket whose
  // digest differs, as full states.
  size_t Sync(int from, int to) {
    std::vector<uint64_t> a = replicas_[from]->Digest(table_.id());
    std::vector<uint64_t> b = replicas_[to]->Digest(table_.id());
    std::vector<uint32_t> differ;
    for (uint32_t i = 0; i < kCrdtBuckets; ++i) {
      if (a[i] != b[i]) differ.push_back(i);
    }
    auto rows = replicas_[from]->RowsNotIn(table_.id(), differ, {});
    EXPECT_TRUE(rows.ok());
    for (const CrdtRowChange& c : *rows) Merge(to, c);
    return differ.size();
  }

  clocks::ManualClock clock_{1'000'000};
  storage::MemoryEngine engines_[3];
  std::unique_ptr<CrdtReplica> replicas_[3];
  kvpb::CrdtTable table_ = Table();
};

TEST_F(CrdtReplicaTest, CountersAddUpWhateverTheOrderAndRepeats) {
  std::vector<CrdtRowChange> deltas;
  for (int i = 0; i < 3; ++i) {
    deltas.push_back(Update(i, "r", {Incr("views", i + 1), Incr("stock", -2)}));
    deltas.push_back(Update(i, "r", {Incr("views", 10)}));
  }
  std::mt19937 rng(1);
  for (int to = 0; to < 3; ++to) {
    std::vector<CrdtRowChange> order = deltas;
    std::shuffle(order.begin(), order.end(), rng);
    for (const CrdtRowChange& c : order) {
      Merge(to, c);
      Merge(to, c);  // a duplicate changes nothing
    }
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Value(i, "r", "views").count, 36);
    EXPECT_EQ(Value(i, "r", "stock").count, -6);
    EXPECT_EQ(replicas_[i]->Root(table_.id()), replicas_[0]->Root(table_.id()));
  }
}

TEST_F(CrdtReplicaTest, SetAddWinsAndARemoveTakesOnlyWhatItSaw) {
  CrdtRowChange add =
      Update(0, "cart", {Elements(CrdtOp::kAdd, {"apple", "pear"})});
  Merge(1, add);
  // Concurrently: 1 removes apple, 0 adds apple again.
  CrdtRowChange remove =
      Update(1, "cart", {Elements(CrdtOp::kRemove, {"apple"})});
  CrdtRowChange readd = Update(0, "cart", {Elements(CrdtOp::kAdd, {"apple"})});
  Merge(0, remove);
  Merge(1, readd);
  for (int i : {0, 1}) {
    EXPECT_EQ(Value(i, "cart", "items").values,
              (std::vector<std::string>{"apple", "pear"}));
  }
  // A remove that saw every add wins.
  Merge(0, Update(1, "cart", {Elements(CrdtOp::kRemove, {"apple"})}));
  EXPECT_EQ(Value(0, "cart", "items").values,
            (std::vector<std::string>{"pear"}));
  // A delta names only the element it changed.
  CrdtRowChange one = Update(0, "cart", {Elements(CrdtOp::kAdd, {"plum"})});
  ASSERT_EQ(one.entries.size(), 1u);
  EXPECT_NE(one.entries[0].first.find("plum"), std::string::npos);
}

TEST_F(CrdtReplicaTest, AntiEntropyRepairsLostDeltasRemovalsIncluded) {
  for (int k = 0; k < 200; ++k) {
    const std::string row = "row" + std::to_string(k);
    Update(0, row, {Elements(CrdtOp::kAdd, {"a", "b"}), Incr("views", 1)});
  }
  EXPECT_GT(Sync(0, 1), 100u);
  // Deltas lost: 1 removes b from every row, 0 adds c; neither hears.
  for (int k = 0; k < 200; ++k) {
    const std::string row = "row" + std::to_string(k);
    Update(1, row, {Elements(CrdtOp::kRemove, {"b"})});
    Update(0, row, {Elements(CrdtOp::kAdd, {"c"}), Incr("views", 1)});
  }
  Sync(0, 1);
  Sync(1, 0);
  EXPECT_EQ(Sync(0, 1), 0u);
  EXPECT_EQ(replicas_[0]->Digest(table_.id()),
            replicas_[1]->Digest(table_.id()));
  for (int i : {0, 1}) {
    EXPECT_EQ(Value(i, "row7", "items").values,
              (std::vector<std::string>{"a", "c"}));
    EXPECT_EQ(Value(i, "row7", "views").count, 2);
  }
}

TEST_F(CrdtReplicaTest, MultiValueRegisterKeepsConcurrentWritesAsSiblings) {
  Merge(1, Update(0, "r", {Set("note", "v1")}));
  CrdtValue read = Value(1, "r", "note");
  ASSERT_EQ(read.values, std::vector<std::string>{"v1"});
  CrdtRowChange a = Update(0, "r", {Set("note", "from0", read.context)});
  CrdtRowChange b = Update(1, "r", {Set("note", "from1", read.context)});
  Merge(0, b);
  Merge(1, a);
  for (int i : {0, 1}) {
    std::vector<std::string> v = Value(i, "r", "note").values;
    std::sort(v.begin(), v.end());
    EXPECT_EQ(v, (std::vector<std::string>{"from0", "from1"}));
  }
  // A blind write adds a sibling; a write with the context replaces all it saw.
  Merge(1, Update(0, "r", {Set("note", "blind")}));
  EXPECT_EQ(Value(1, "r", "note").values.size(), 3u);
  const std::string seen = Value(1, "r", "note").context;
  Merge(0, Update(1, "r", {Set("note", "resolved", seen)}));
  EXPECT_EQ(Value(0, "r", "note").values, std::vector<std::string>{"resolved"});
}

TEST_F(CrdtReplicaTest, LastWriterWinsAndEnableWins) {
  CrdtRowChange first = Update(0, "r", {Set("owner", "ann"), Flag(true)});
  clock_.Advance(5);
  CrdtRowChange second = Update(1, "r", {Set("owner", "bob")});
  Merge(1, first);
  Merge(0, second);
  // Concurrent enable (0) and disable of what 1 saw: enabled.
  CrdtRowChange disable = Update(1, "r", {Flag(false)});
  CrdtRowChange enable = Update(0, "r", {Flag(true)});
  Merge(0, disable);
  Merge(1, enable);
  for (int i : {0, 1}) {
    EXPECT_EQ(Value(i, "r", "owner").values, std::vector<std::string>{"bob"});
    EXPECT_TRUE(Value(i, "r", "vip").enabled);
  }
}

TEST_F(CrdtReplicaTest, BadInputAppliesNothing) {
  Update(0, "r", {Incr("views", 1)});
  const uint64_t root = replicas_[0]->Root(table_.id());
  auto refused = [&](std::vector<CrdtOp> ops, absl::StatusCode code,
                     const std::string& says) {
    auto r = replicas_[0]->Update(table_, "r", ops);
    EXPECT_EQ(r.status().code(), code) << r.status();
    EXPECT_NE(r.status().message().find(says), std::string::npos) << r.status();
  };
  refused({Incr("views", 5), Elements(CrdtOp::kAdd, {"x"}), Incr("items", 1)},
          absl::StatusCode::kInvalidArgument, "is a set: use add or remove");
  refused({Incr("views", -1)}, absl::StatusCode::kInvalidArgument,
          "only grows");
  refused({Incr("nope", 1)}, absl::StatusCode::kNotFound, "has no column nope");
  refused({Elements(CrdtOp::kAdd, {std::string(5000, 'x')})},
          absl::StatusCode::kInvalidArgument, "4096-byte limit");
  refused({Set("note", "v", "garbage")}, absl::StatusCode::kInvalidArgument,
          "context");
  refused({Set("owner", "v", "ctx")}, absl::StatusCode::kInvalidArgument,
          "takes no context");
  refused({Set("status", "v")}, absl::StatusCode::kInvalidArgument,
          "change it with a compare-and-set");
  EXPECT_EQ(replicas_[0]->Root(table_.id()), root);
  EXPECT_EQ(Value(0, "r", "views").count, 1);

  // A corrupted change from a peer is refused whole.
  CrdtRowChange c = Update(1, "r", {Incr("views", 3), Incr("stock", 1)});
  CrdtRowChange bad = c;
  bad.entries[1].second = "\x01\x02garbage";
  EXPECT_EQ(replicas_[0]->Merge(table_, bad).code(),
            absl::StatusCode::kInvalidArgument);
  CrdtRowChange wrong = c;
  wrong.entries[0].first = std::string("items\0s", 7);
  EXPECT_EQ(replicas_[0]->Merge(table_, wrong).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(replicas_[0]->Root(table_.id()), root);
}

TEST_F(CrdtReplicaTest, UpdatesAreDurableAndTheIdAndDigestsSurviveARestart) {
  const clocks::ReplicaId id = replicas_[0]->id();
  for (int k = 0; k < 50; ++k) {
    Update(0, "r" + std::to_string(k), {Elements(CrdtOp::kAdd, {"e"})});
  }
  const uint64_t root = replicas_[0]->Root(table_.id());
  EXPECT_EQ(engines_[0].unsynced_writes(), 0u);
  engines_[0].Crash();
  Open(0);
  EXPECT_EQ(replicas_[0]->id(), id);
  EXPECT_EQ(replicas_[0]->Root(table_.id()), root);
  EXPECT_EQ(replicas_[0]->stats().elements, 50u);
  // A wiped store is a new replica: its dots never collide with the old.
  storage::MemoryEngine fresh;
  auto other = CrdtReplica::Open(&fresh, &clock_, kCacheBytes);
  ASSERT_TRUE(other.ok());
  EXPECT_NE((*other)->id(), id);
}

TEST_F(CrdtReplicaTest, ConcurrentUpdatesShareSyncsAndLoseNothing) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < 200; ++k) {
        auto r = replicas_[0]->Update(
            table_, "hot",
            {Incr("views", 1), Elements(CrdtOp::kAdd, {std::to_string(t)})});
        ASSERT_TRUE(r.ok());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(Value(0, "hot", "views").count, 1600);
  EXPECT_EQ(Value(0, "hot", "items").values.size(), 8u);
}

// What garbage collection runs on: complete pulls between every pair
// (each records what the other had seen), then the cut every replica has
// seen, collected on each.
CrdtVector CutOf(const std::vector<CrdtVector>& seen) {
  CrdtVector cut = seen.front();
  for (auto& [r, n] : cut) {
    for (const CrdtVector& s : seen) {
      auto it = s.find(r);
      n = std::min(n, it == s.end() ? 0 : it->second);
    }
  }
  return cut;
}

TEST_F(CrdtReplicaTest,
       CollectionDropsTombstonesBelowTheCutAndNothingComesBack) {
  CrdtRowChange add =
      Update(0, "cart", {Elements(CrdtOp::kAdd, {"apple", "pear"})});
  Merge(1, add);
  Merge(2, add);
  auto stale = replicas_[2]->RowStates(table_.id(), {"cart"});
  ASSERT_TRUE(stale.ok());
  const std::vector<CrdtRowChange> stale_full = *stale;
  CrdtRowChange remove =
      Update(1, "cart", {Elements(CrdtOp::kRemove, {"apple"})});
  Merge(0, remove);
  Merge(2, remove);
  CrdtRowChange flag_on = Update(0, "cart", {Flag(true)});
  CrdtRowChange flag_off = Update(0, "cart", {Flag(false)});
  for (int i : {1, 2}) {
    Merge(i, flag_on);
    Merge(i, flag_off);
  }
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(replicas_[i]->stats().tombstones, 2u) << i;  // apple, vip
  }
  const uint64_t entries = replicas_[0]->stats().entries;

  // A cut above what a replica has seen is refused: nothing collected.
  CrdtVector ahead = replicas_[0]->Seen();
  ahead[replicas_[1]->id()] = 1'000'000;
  EXPECT_EQ(replicas_[0]->Collect(ahead).status().code(),
            absl::StatusCode::kFailedPrecondition);

  for (int to = 0; to < 3; ++to) {
    for (int from = 0; from < 3; ++from) {
      if (from == to) continue;
      const CrdtVector seen = replicas_[from]->Seen();
      Sync(from, to);
      ASSERT_TRUE(replicas_[to]->RecordPull(seen).ok());
    }
  }
  const CrdtVector cut =
      CutOf({replicas_[0]->Seen(), replicas_[1]->Seen(), replicas_[2]->Seen()});
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<uint64_t> n = replicas_[i]->Collect(cut);
    ASSERT_TRUE(n.ok()) << n.status();
    EXPECT_EQ(*n, 2u);
    EXPECT_EQ(replicas_[i]->stats().tombstones, 0u);
    EXPECT_EQ(replicas_[i]->stats().entries, entries - 2);
    EXPECT_EQ(replicas_[i]->Digest(table_.id()),
              replicas_[0]->Digest(table_.id()));
  }
  // Old news, as a delta or as a full state from before the removal, brings
  // nothing back: every dot below the floor counts as seen.
  for (int i = 0; i < 3; ++i) {
    Merge(i, add);
    Merge(i, flag_on);
    for (const CrdtRowChange& c : stale_full) Merge(i, c);
    EXPECT_EQ(Value(i, "cart", "items").values,
              (std::vector<std::string>{"pear"}));
    EXPECT_FALSE(Value(i, "cart", "vip").enabled);
  }
  // A replica that starts over (resyncs) and has not seen the cut yet
  // takes a late delta below it as old news, and full states as they are.
  ASSERT_TRUE(replicas_[2]->Reset().ok());
  EXPECT_EQ(replicas_[2]->Collect(cut).status().code(),
            absl::StatusCode::kFailedPrecondition);
  Merge(2, add);
  EXPECT_TRUE(Value(2, "cart", "items").values.empty());
  auto now = replicas_[0]->RowStates(table_.id(), {"cart"});
  ASSERT_TRUE(now.ok() && now->size() == 1);
  const CrdtVector floor0 = replicas_[0]->floor();
  ASSERT_TRUE(
      replicas_[2]->MergeAll({{&table_, &now->front(), &floor0}}).front().ok());
  EXPECT_EQ(Value(2, "cart", "items").values,
            (std::vector<std::string>{"pear"}));
  // The floor survives a restart.
  replicas_[0].reset();
  Open(0);
  EXPECT_EQ(replicas_[0]->floor(), cut);
  Merge(0, add);
  EXPECT_EQ(Value(0, "cart", "items").values,
            (std::vector<std::string>{"pear"}));
  // Above the floor, a full state's missing entries are ones it never saw.
  CrdtRowChange plum = Update(0, "cart", {Elements(CrdtOp::kAdd, {"plum"})});
  auto full = replicas_[1]->RowStates(table_.id(), {"cart"});
  ASSERT_TRUE(full.ok() && full->size() == 1);
  const CrdtVector floor = replicas_[1]->floor();
  ASSERT_TRUE(
      replicas_[0]->MergeAll({{&table_, &full->front(), &floor}}).front().ok());
  EXPECT_EQ(Value(0, "cart", "items").values,
            (std::vector<std::string>{"pear", "plum"}));
}

// Each key's siblings, by key, as replica i reads the map.
std::map<std::string, std::vector<std::string>> MapOf(const CrdtValue& v) {
  std::map<std::string, std::vector<std::string>> out;
  for (const CrdtValue::Entry& e : v.entries) out[e.key] = e.values;
  return out;
}

TEST_F(CrdtReplicaTest, MapKeysAreRegistersAndAWriteWinsOverAConcurrentRemove) {
  const CrdtRowChange first =
      Update(0, "u", {MapSet("color", "red"), MapSet("size", "L")});
  Merge(1, first);
  Merge(2, first);
  // n1 replaces the red it read; n2, concurrently, removes color and size.
  std::string ctx;
  for (const CrdtValue::Entry& e : Value(1, "u", "prefs").entries) {
    if (e.key == "color") ctx = e.context;
  }
  ASSERT_FALSE(ctx.empty());
  const CrdtRowChange green = Update(1, "u", {MapSet("color", "green", ctx)});
  const CrdtRowChange removal = Update(2, "u", {MapRemove({"color", "size"})});
  // Blind writes of one key on two replicas: both kept, as siblings.
  const CrdtRowChange a = Update(0, "u", {MapSet("note", "a")});
  const CrdtRowChange b = Update(1, "u", {MapSet("note", "b")});
  for (int i = 0; i < 3; ++i) {
    for (const CrdtRowChange& c : {green, removal, a, b}) Merge(i, c);
  }
  const std::map<std::string, std::vector<std::string>> want = {
      {"color", {"green"}}, {"note", {"a", "b"}}};
  for (int i = 0; i < 3; ++i) {
    std::map<std::string, std::vector<std::string>> got =
        MapOf(Value(i, "u", "prefs"));
    for (auto& [k, v] : got) std::sort(v.begin(), v.end());
    EXPECT_EQ(got, want) << "replica " << i;
    EXPECT_EQ(replicas_[i]->Root(table_.id()), replicas_[0]->Root(table_.id()));
  }
  // A removed key is gone after anti-entropy too (the remover's full state
  // carries what it saw removed).
  Update(0, "u", {MapRemove({"note"})});
  Sync(0, 1);
  EXPECT_EQ(MapOf(Value(1, "u", "prefs")).count("note"), 0u);

  // Bad input: refused whole.
  for (const CrdtOp& bad :
       {MapSet("", "v"),
        MapSet(std::string(kMaxCrdtElementBytes + 1, 'k'), "v"), MapRemove({}),
        Elements(CrdtOp::kAdd, {"x"})}) {
    CrdtOp op = bad;
    op.column = "prefs";
    auto r = replicas_[0]->Update(table_, "u", {Incr("views", 1), op});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
  }
  EXPECT_EQ(Value(0, "u", "views").count, 0);
}

// An operation on column `column` at the map path `path`.
CrdtOp At(CrdtOp::Kind kind, const std::string& column,
          std::vector<std::string> path, std::vector<std::string> elements) {
  CrdtOp op;
  op.kind = kind;
  op.column = column;
  op.path = std::move(path);
  op.elements = std::move(elements);
  return op;
}

// A nested map as text: {key: value, ...}, a set as [e, ...], a flag as on.
std::string Show(const std::vector<CrdtValue::Entry>& entries) {
  std::string out = "{";
  for (const CrdtValue::Entry& e : entries) {
    if (out.size() > 1) out += ", ";
    out += e.key + ": ";
    if (!e.entries.empty()) {
      out += Show(e.entries);
    } else if (!e.elements.empty()) {
      out += "[";
      for (size_t i = 0; i < e.elements.size(); ++i) {
        out += (i > 0 ? ", " : "") + e.elements[i];
      }
      out += "]";
    } else if (e.enabled) {
      out += "on";
    }
  }
  return out + "}";
}

TEST_F(CrdtReplicaTest, NestedMapsHoldSetsAndFlagsAndARemovalTakesWhatItSaw) {
  // tags is a map<set>, perms a map<map<flag>>.
  const CrdtRowChange first =
      Update(0, "u",
             {At(CrdtOp::kAdd, "tags", {"fruit"}, {"pear", "apple"}),
              At(CrdtOp::kAdd, "tags", {"veg"}, {"leek"}),
              At(CrdtOp::kEnable, "perms", {"alice", "read"}, {}),
              At(CrdtOp::kEnable, "perms", {"alice", "write"}, {}),
              At(CrdtOp::kEnable, "perms", {"bob", "read"}, {})});
  Merge(1, first);
  Merge(2, first);
  EXPECT_EQ(Show(Value(1, "u", "tags").entries),
            "{fruit: [apple, pear], veg: [leek]}");
  EXPECT_EQ(Show(Value(1, "u", "perms").entries),
            "{alice: {read: on, write: on}, bob: {read: on}}");

  // n1 removes fruit and alice with all they hold as it saw them; n2,
  // concurrently, adds plum to fruit and makes alice an admin: those stay.
  const CrdtRowChange removal =
      Update(1, "u",
             {At(CrdtOp::kRemove, "tags", {}, {"fruit"}),
              At(CrdtOp::kRemove, "perms", {}, {"alice"}),
              At(CrdtOp::kDisable, "perms", {"bob", "read"}, {})});
  const CrdtRowChange concurrent =
      Update(2, "u",
             {At(CrdtOp::kAdd, "tags", {"fruit"}, {"plum"}),
              At(CrdtOp::kEnable, "perms", {"alice", "admin"}, {})});
  Merge(0, removal);
  Merge(0, concurrent);
  Merge(1, concurrent);
  Merge(2, removal);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Show(Value(i, "u", "tags").entries),
              "{fruit: [plum], veg: [leek]}")
        << "replica " << i;
    EXPECT_EQ(Show(Value(i, "u", "perms").entries), "{alice: {admin: on}}")
        << "replica " << i;
    EXPECT_EQ(replicas_[i]->Root(table_.id()), replicas_[0]->Root(table_.id()));
  }

  // One key of a map inside: the rest of it stays; anti-entropy carries it.
  Update(0, "u",
         {At(CrdtOp::kRemove, "tags", {"veg"}, {"leek"}),
          At(CrdtOp::kEnable, "perms", {"carol", "read"}, {}),
          At(CrdtOp::kEnable, "perms", {"carol", "write"}, {})});
  Update(0, "u", {At(CrdtOp::kRemove, "perms", {"carol"}, {"read"})});
  EXPECT_EQ(Sync(0, 1), 1u);
  EXPECT_EQ(Show(Value(1, "u", "tags").entries), "{fruit: [plum]}");
  EXPECT_EQ(Show(Value(1, "u", "perms").entries),
            "{alice: {admin: on}, carol: {write: on}}");

  // Bad input: refused whole.
  auto refused = [&](const CrdtOp& op, const std::string& says) {
    auto r = replicas_[0]->Update(table_, "u", {Incr("views", 1), op});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
    EXPECT_NE(r.status().message().find(says), std::string::npos) << r.status();
  };
  refused(At(CrdtOp::kAdd, "tags", {}, {"x"}), "name 1 key");
  refused(At(CrdtOp::kAdd, "tags", {"a", "b"}, {"x"}), "at most 1 keys");
  refused(At(CrdtOp::kEnable, "tags", {"a"}, {}), "add or remove on a key");
  refused(At(CrdtOp::kAdd, "perms", {"a", "b"}, {"x"}), "enable or disable");
  refused(At(CrdtOp::kEnable, "perms", {"a", ""}, {}), "1 byte or more");
  refused(At(CrdtOp::kRemove, "perms", {"a"}, {}), "no keys given");
  EXPECT_EQ(Value(0, "u", "views").count, 0);
}

TEST_F(CrdtReplicaTest, StoppedUpdatesAreRefusedWholeUntilResumed) {
  Update(0, "r", {Incr("views", 1)});
  ASSERT_TRUE(
      replicas_[0]->StopUpdates(absl::UnavailableError("node leaving")).ok());
  auto refused = replicas_[0]->Update(table_, "r", {Incr("views", 5)});
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(refused.status().message(), "node leaving");
  EXPECT_EQ(Value(0, "r", "views").count, 1);
  // Merges still land: the node goes on taking what others acknowledged.
  Merge(0, Update(1, "r", {Incr("views", 2)}));
  EXPECT_EQ(Value(0, "r", "views").count, 3);
  replicas_[0]->ResumeUpdates();
  Update(0, "r", {Incr("views", 5)});
  EXPECT_EQ(Value(0, "r", "views").count, 8);
}

TEST_F(CrdtReplicaTest, ResetForgetsEverythingUnderANewId) {
  Update(0, "r", {Elements(CrdtOp::kAdd, {"a"}), Incr("views", 3)});
  const clocks::ReplicaId old = replicas_[0]->id();
  ASSERT_TRUE(replicas_[0]->RecordPull(replicas_[1]->Seen()).ok());
  ASSERT_TRUE(replicas_[0]->Reset().ok());
  EXPECT_NE(replicas_[0]->id(), old);
  EXPECT_EQ(replicas_[0]->stats().entries, 0u);
  EXPECT_TRUE(replicas_[0]->Read(table_, "r")->empty());
  EXPECT_EQ(replicas_[0]->Root(table_.id()), 0u);
  const clocks::ReplicaId fresh = replicas_[0]->id();
  replicas_[0].reset();
  Open(0);
  EXPECT_EQ(replicas_[0]->id(), fresh);
  EXPECT_TRUE(replicas_[0]->Read(table_, "r")->empty());
}

// A replica's store, counting the reads that reach it.
class ReadCountingEngine : public storage::Engine {
 public:
  absl::StatusOr<std::optional<std::string>> Get(
      std::string_view key) const override {
    ++gets_;
    return engine_.Get(key);
  }
  absl::Status Write(const storage::WriteBatch& batch, bool sync) override {
    return engine_.Write(batch, sync);
  }
  std::unique_ptr<storage::Iterator> NewIterator() const override {
    return engine_.NewIterator();
  }
  std::unique_ptr<storage::Snapshot> GetSnapshot() const override {
    return engine_.GetSnapshot();
  }
  int gets() const { return gets_; }

 private:
  storage::MemoryEngine engine_;
  mutable std::atomic<int> gets_{0};
};

TEST_F(CrdtReplicaTest, UpdatesAndMergesOfARowUsedLatelyDoNotReadTheStore) {
  ReadCountingEngine store;
  auto opened = CrdtReplica::Open(&store, &clock_, kCacheBytes);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<CrdtReplica> r = *std::move(opened);
  const std::vector<CrdtOp> ops = {Incr("views", 1),
                                   Elements(CrdtOp::kAdd, {"a"})};
  ASSERT_TRUE(r->Update(table_, "row", ops).ok());
  const int gets = store.gets();
  EXPECT_GT(gets, 0);  // the row's entries, not used before
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(r->Update(table_, "row", ops).ok());
    ASSERT_TRUE(r->Merge(table_, Update(1, "row", {Incr("views", 1)})).ok());
  }
  EXPECT_EQ(store.gets(), gets);
  // Each update counted on what the one before wrote: the store has them
  // all, as a replica opened on it again reads.
  r.reset();
  opened = CrdtReplica::Open(&store, &clock_, kCacheBytes);
  ASSERT_TRUE(opened.ok()) << opened.status();
  auto values = (*opened)->Read(table_, "row");
  ASSERT_TRUE(values.ok()) << values.status();
  auto views =
      std::find_if(values->begin(), values->end(),
                   [](const CrdtValue& v) { return v.column == "views"; });
  ASSERT_NE(views, values->end());
  EXPECT_EQ(views->count, 201);
}

using CrdtMembersTest = ModuleTest;

kvpb::Command Reports(
    std::vector<std::tuple<uint64_t, uint64_t, CrdtVector>> reports) {
  kvpb::Command cmd;
  for (auto& [node, replica, seen] : reports) {
    kvpb::CrdtReplicaReport* r = cmd.mutable_crdt_reports()->add_reports();
    r->set_node(node);
    r->set_replica(replica);
    ToCounts(seen, r->mutable_seen());
  }
  return cmd;
}

TEST_F(CrdtMembersTest, TheCutIsWhatEveryActiveReplicaHasSeenAndOnlyGrows) {
  // Replicas 11, 22, 33 on nodes 1, 2, 3.
  kvpb::CommandResult r = Apply(Reports({{1, 11, {{11, 50}, {22, 10}}},
                                         {2, 22, {{11, 40}, {22, 30}}},
                                         {3, 33, {{11, 45}, {33, 5}}}}),
                                100);
  ASSERT_EQ(r.error_code(), 0) << r.error_message();
  EXPECT_EQ(FromCounts(r.crdt_members().cut().floor()), (CrdtVector{{11, 40}}));
  // A stale report lowers nothing.
  r = Apply(Reports({{2, 22, {{11, 1}}}}), 101);
  EXPECT_EQ(FromCounts(sm_->crdt_members().Cut()->floor()),
            (CrdtVector{{11, 40}}));
  // Node 3 is gone for good: retired, its dots fold in as far as the
  // others have them, and the cut stops waiting for it.
  kvpb::Command retire;
  retire.set_crdt_retire(3);
  r = Apply(retire, 102);
  ASSERT_EQ(r.error_code(), 0) << r.error_message();
  EXPECT_EQ(r.crdt_members().retired_replica(), 33u);
  r = Apply(Reports({{1, 11, {{11, 60}, {22, 30}, {33, 5}}},
                     {2, 22, {{11, 60}, {22, 30}, {33, 4}}}}),
            103);
  EXPECT_EQ(FromCounts(r.crdt_members().cut().floor()),
            (CrdtVector{{11, 60}, {22, 30}, {33, 4}}));
  // Its reports count no more; node 3 back with a new replica (a resync)
  // joins, and the cut waits for it from then on.
  r = Apply(Reports({{3, 34, {{11, 60}, {22, 30}, {33, 4}, {34, 2}}},
                     {3, 33, {{11, 99}}}}),
            104);
  auto rec = sm_->crdt_members().Replica(33);
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_TRUE((*rec)->retired());
  EXPECT_EQ(FromCounts((*rec)->seen()).at(11), 45u);
  EXPECT_EQ(FromCounts(r.crdt_members().cut().floor()).at(11), 60u);
  // A node whose disk was wiped comes with a new replica: the old one
  // retires.
  Apply(Reports({{2, 23, {}}}), 105);
  EXPECT_TRUE((*sm_->crdt_members().Replica(22))->retired());
  EXPECT_EQ(Apply(retire, 106).error_code(), 0);  // retires 34
  retire.set_crdt_retire(9);
  EXPECT_EQ(Apply(retire, 107).error_code(),
            static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_EQ(sm_->crdt_members().Replicas()->size(), 5u);
}

using CrdtSchemaTest = ModuleTest;

kvpb::Command CreateCmd(
    const std::string& name,
    std::vector<std::pair<std::string, kvpb::CrdtColumnType>> cols) {
  kvpb::Command cmd;
  cmd.mutable_crdt_table_create()->set_name(name);
  for (auto& [n, t] : cols) {
    kvpb::CrdtColumn* c = cmd.mutable_crdt_table_create()->add_columns();
    c->set_name(n);
    c->set_type(t);
  }
  return cmd;
}

TEST_F(CrdtSchemaTest, TablesAreCreatedAlteredAndDroppedAndTypesNeverChange) {
  kvpb::CommandResult r =
      Apply(CreateCmd("carts", {{"items", kvpb::CRDT_AW_SET}}), 100);
  ASSERT_EQ(r.error_code(), 0) << r.error_message();
  const uint64_t id = r.crdt_table().table().id();
  EXPECT_EQ(id, index_);
  EXPECT_EQ(
      Apply(CreateCmd("carts", {{"x", kvpb::CRDT_EW_FLAG}}), 101).error_code(),
      static_cast<int>(absl::StatusCode::kAlreadyExists));
  EXPECT_EQ(Apply(CreateCmd("Bad name", {{"x", kvpb::CRDT_EW_FLAG}}), 101)
                .error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(Apply(CreateCmd("t2", {{"x", kvpb::CRDT_EW_FLAG},
                                   {"x", kvpb::CRDT_AW_SET}}),
                  101)
                .error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_EQ(
      Apply(CreateCmd("t3", {{"x", kvpb::CRDT_UNKNOWN}}), 101).error_code(),
      static_cast<int>(absl::StatusCode::kInvalidArgument));

  kvpb::Command alter;
  alter.mutable_crdt_table_alter()->set_name("carts");
  kvpb::CrdtColumn* c = alter.mutable_crdt_table_alter()->add_add_columns();
  c->set_name("items");
  c->set_type(kvpb::CRDT_G_COUNTER);
  r = Apply(alter, 102);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(r.error_message().find("never changes"), std::string::npos);
  c->set_name("views");
  ASSERT_EQ(Apply(alter, 103).error_code(), 0);
  auto t = sm_->crdt_schema().Get("carts");
  ASSERT_TRUE(t.ok() && t->has_value());
  EXPECT_EQ((*t)->columns_size(), 2);
  EXPECT_EQ((*t)->id(), id);

  kvpb::Command drop;
  drop.set_crdt_table_drop("carts");
  ASSERT_EQ(Apply(drop, 104).error_code(), 0);
  EXPECT_EQ(Apply(drop, 105).error_code(),
            static_cast<int>(absl::StatusCode::kNotFound));
  r = Apply(CreateCmd("carts", {{"items", kvpb::CRDT_AW_SET}}), 106);
  EXPECT_GT(r.crdt_table().table().id(), id);  // starts empty
}

TEST_F(CrdtSchemaTest, MapsHoldRegistersFlagsSetsOrMapsOfThemThreeDeep) {
  auto with_values = [](std::vector<kvpb::CrdtColumnType> values) {
    kvpb::Command cmd = CreateCmd("m", {{"c", kvpb::CRDT_AW_MAP}});
    for (kvpb::CrdtColumnType t : values) {
      cmd.mutable_crdt_table_create()->mutable_columns(0)->add_value_types(t);
    }
    return cmd;
  };
  const kvpb::CrdtColumnType kMap = kvpb::CRDT_AW_MAP;
  kvpb::CommandResult r =
      Apply(with_values({kMap, kMap, kMap, kvpb::CRDT_AW_SET}), 100);
  EXPECT_NE(r.error_message().find("at most 3 deep"), std::string::npos)
      << r.error_message();
  r = Apply(with_values({kvpb::CRDT_G_COUNTER}), 100);
  EXPECT_NE(r.error_message().find("not g_counter"), std::string::npos)
      << r.error_message();
  r = Apply(with_values({kvpb::CRDT_AW_SET, kvpb::CRDT_EW_FLAG}), 100);
  EXPECT_NE(r.error_message().find("with values of its own"), std::string::npos)
      << r.error_message();
  kvpb::Command set_of = CreateCmd("s", {{"c", kvpb::CRDT_AW_SET}});
  set_of.mutable_crdt_table_create()->mutable_columns(0)->add_value_types(
      kvpb::CRDT_EW_FLAG);
  EXPECT_EQ(Apply(set_of, 100).error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));

  r = Apply(with_values({kMap, kvpb::CRDT_EW_FLAG}), 101);
  ASSERT_EQ(r.error_code(), 0) << r.error_message();
  EXPECT_EQ(CrdtColumnTypeName(r.crdt_table().table().columns(0)),
            "map<map<flag>>");
  // The values are part of the type: they never change either.
  kvpb::Command alter;
  alter.mutable_crdt_table_alter()->set_name("m");
  kvpb::CrdtColumn* c = alter.mutable_crdt_table_alter()->add_add_columns();
  c->set_name("c");
  c->set_type(kMap);
  c->add_value_types(kvpb::CRDT_AW_SET);
  r = Apply(alter, 102);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_NE(r.error_message().find("is a map<map<flag>>"), std::string::npos)
      << r.error_message();
  kvpb::CrdtColumn plain;
  plain.set_type(kMap);
  EXPECT_EQ(CrdtColumnTypeName(plain), "map");
  plain.add_value_types(kvpb::CRDT_MV_REGISTER);
  EXPECT_EQ(CrdtColumnTypeName(plain), "map");
}

using CrdtCasRowsTest = ModuleTest;

kvpb::CrdtCasValue CasValue(const std::string& column, const std::string& value,
                            bool unset = false) {
  kvpb::CrdtCasValue v;
  v.set_column(column);
  v.set_value(value);
  v.set_unset(unset);
  return v;
}

// A compare-and-set of row "o-1" of Table(): `sets` if the version is
// `version` (when given) and each of `compares` holds.
kvpb::Command Cas(std::optional<uint64_t> version,
                  std::vector<kvpb::CrdtCasValue> compares,
                  std::vector<kvpb::CrdtCasValue> sets) {
  kvpb::Command cmd;
  kvpb::CrdtCas* c = cmd.mutable_crdt_cas();
  c->set_table_id(Table().id());
  c->set_row("o-1");
  c->set_check_version(version.has_value());
  c->set_version(version.value_or(0));
  for (auto& v : compares) *c->add_compares() = std::move(v);
  for (auto& v : sets) *c->add_sets() = std::move(v);
  EXPECT_TRUE(CrdtCasRows::Check(Table(), *c).ok())
      << CrdtCasRows::Check(Table(), *c);
  return cmd;
}

TEST_F(CrdtCasRowsTest, OfTwoDecidedOnTheSameVersionOneSucceeds) {
  // Two writers create the row, each expecting it to hold nothing.
  kvpb::CommandResult a = Apply(Cas(0, {}, {CasValue("status", "open")}), 10);
  ASSERT_EQ(a.error_code(), 0) << a.error_message();
  EXPECT_TRUE(a.crdt_cas().succeeded());
  EXPECT_EQ(a.crdt_cas().row().version(), index_);
  const uint64_t v1 = index_;
  kvpb::CommandResult b = Apply(Cas(0, {}, {CasValue("status", "open")}), 11);
  EXPECT_FALSE(b.crdt_cas().succeeded());
  EXPECT_EQ(b.crdt_cas().row().version(), v1);  // what failed it

  // Two checkouts decided on the value read: one wins.
  auto checkout = [&](const std::string& by) {
    return Apply(Cas(std::nullopt, {CasValue("status", "open")},
                     {CasValue("status", "checked-out by " + by)}),
                 12);
  };
  EXPECT_TRUE(checkout("alice").crdt_cas().succeeded());
  kvpb::CommandResult lost = checkout("bob");
  EXPECT_FALSE(lost.crdt_cas().succeeded());
  ASSERT_EQ(lost.crdt_cas().row().values_size(), 1);
  EXPECT_EQ(lost.crdt_cas().row().values(0).value(), "checked-out by alice");
  const uint64_t v2 = lost.crdt_cas().row().version();
  EXPECT_GT(v2, v1);

  // "Holds nothing" compares; a stale version fails even when the values
  // match.
  EXPECT_FALSE(Apply(Cas(std::nullopt, {CasValue("status", "", true)},
                         {CasValue("status", "x")}),
                     13)
                   .crdt_cas()
                   .succeeded());
  EXPECT_FALSE(
      Apply(Cas(v1, {}, {CasValue("status", "x")}), 13).crdt_cas().succeeded());
  auto row = sm_->crdt_cas_rows().Get(Table().id(), "o-1");
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->version(), v2);
  EXPECT_EQ(row->values(0).value(), "checked-out by alice");

  // Clearing every value takes the row back to version 0; its next change
  // takes a version above every earlier one.
  ASSERT_TRUE(Apply(Cas(v2, {}, {CasValue("status", "", true)}), 14)
                  .crdt_cas()
                  .succeeded());
  row = sm_->crdt_cas_rows().Get(Table().id(), "o-1");
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->version(), 0u);
  EXPECT_TRUE(row->values().empty());
  kvpb::CommandResult again = Apply(Cas(0, {}, {CasValue("status", "y")}), 15);
  EXPECT_TRUE(again.crdt_cas().succeeded());
  EXPECT_GT(again.crdt_cas().row().version(), v2);
}

TEST_F(CrdtCasRowsTest, BadInputIsRefusedAndAppliesNothing) {
  auto check = [](std::vector<kvpb::CrdtCasValue> compares,
                  std::vector<kvpb::CrdtCasValue> sets, const std::string& row,
                  absl::StatusCode code, const std::string& says) {
    kvpb::CrdtCas c;
    c.set_table_id(Table().id());
    c.set_row(row);
    for (auto& v : compares) *c.add_compares() = std::move(v);
    for (auto& v : sets) *c.add_sets() = std::move(v);
    absl::Status s = CrdtCasRows::Check(Table(), c);
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(s.message().find(says), std::string::npos) << s;
  };
  check({}, {CasValue("status", "x")}, "", absl::StatusCode::kInvalidArgument,
        "row key");
  check({}, {}, "r", absl::StatusCode::kInvalidArgument, "nothing to set");
  check({}, {CasValue("nope", "x")}, "r", absl::StatusCode::kNotFound,
        "has no column nope");
  check({CasValue("views", "1")}, {CasValue("status", "x")}, "r",
        absl::StatusCode::kInvalidArgument,
        "only cas_register columns are compared and set");
  check({}, {CasValue("status", "x"), CasValue("status", "y")}, "r",
        absl::StatusCode::kInvalidArgument, "set twice");
  check({}, {CasValue("status", std::string(kMaxCrdtValueBytes + 1, 'x'))}, "r",
        absl::StatusCode::kInvalidArgument, "exceeds");

  // Values that fit one by one but not together: refused when applied.
  kvpb::CrdtTable t = Table();
  kvpb::Command cmd;
  kvpb::CrdtCas* c = cmd.mutable_crdt_cas();
  c->set_table_id(t.id());
  c->set_row("o-1");
  for (int i = 0; i < 5; ++i) {
    const std::string name = "s" + std::to_string(i);
    kvpb::CrdtColumn* col = t.add_columns();
    col->set_name(name);
    col->set_type(kvpb::CRDT_CAS_REGISTER);
    *c->add_sets() = CasValue(name, std::string(kMaxCrdtValueBytes, 'x'));
  }
  ASSERT_TRUE(CrdtCasRows::Check(t, *c).ok());
  kvpb::CommandResult r = Apply(cmd, 10);
  EXPECT_EQ(r.error_code(),
            static_cast<int>(absl::StatusCode::kInvalidArgument));
  EXPECT_NE(r.error_message().find("together"), std::string::npos);
  auto row = sm_->crdt_cas_rows().Get(t.id(), "o-1");
  ASSERT_TRUE(row.ok());
  EXPECT_EQ(row->version(), 0u);
}

}  // namespace
}  // namespace tally::kv
