// What each CRDT does on conflict, and the decoders on bad input.

#include <algorithm>

#include "crdt/codec.h"
#include "gtest/gtest.h"
#include "util/random.h"

namespace tally::crdt {
namespace {

using Strings = std::vector<std::string>;

TEST(CountersTest, ConcurrentIncrementsAllCount) {
  GCounter a, b;
  a.Increment(1, 2);
  b.Increment(2, 3);
  a.Merge(b);
  a.Merge(b);  // duplicates do not count twice
  EXPECT_EQ(a.Value(), 5u);
  PNCounter p, q;
  p.Add(1, 10);
  q.Add(2, -4);
  p.Merge(q);
  EXPECT_EQ(p.Value(), 6);
}

TEST(LwwRegisterTest, LaterTimestampWinsAndReplicaBreaksTies) {
  LwwRegister a, b;
  a.Set({100, 0}, 1, "old");
  b.Set({200, 0}, 2, "new");
  a.Merge(b);
  EXPECT_EQ(a.value(), "new");
  LwwRegister c, d;
  c.Set({100, 0}, 1, "from-1");
  d.Set({100, 0}, 2, "from-2");
  c.Merge(d);
  d.Merge(c);
  EXPECT_EQ(c.value(), "from-2");
  EXPECT_EQ(c, d);
}

// A timestamp and replica name one write; if two states disagree on its
// value (a faulty peer, a damaged record), replicas must still converge.
// Found by fuzz_crdt_codec for mv-registers.
TEST(LwwRegisterTest, ConflictingValuesForOneWriteConverge) {
  LwwRegister a, b;
  a.Set({100, 0}, 1, "x");
  b.Set({100, 0}, 1, "y");
  LwwRegister ab = a, ba = b;
  ab.Merge(b);
  ba.Merge(a);
  EXPECT_EQ(ab, ba);
}

TEST(MVRegisterTest, ConflictingValuesForOneDotConverge) {
  Causal<RegisterStore> a, b;
  a.store[Dot{1, 1}] = "x";
  a.context.Insert(Dot{1, 1});
  b.store[Dot{1, 1}] = ":";
  b.context.Insert(Dot{1, 1});
  Causal<RegisterStore> ab = a, ba = b;
  ab.Merge(b);
  ba.Merge(a);
  EXPECT_EQ(ab, ba);
}

TEST(MVRegisterTest, ConcurrentAssignsAreSiblingsUntilOneSeesThemAll) {
  MVRegister a, b;
  auto da = a.Assign(1, "x");
  auto db = b.Assign(2, "y");
  a.Merge(db);
  b.Merge(da);
  EXPECT_EQ(a.Values(), (Strings{"x", "y"}));
  a.Assign(1, "z");  // a has seen both
  b.Merge(a.state());
  EXPECT_EQ(b.Values(), Strings{"z"});
}

TEST(EWFlagTest, EnableWinsOverAConcurrentDisable) {
  EWFlag a, b;
  b.Merge(a.Enable(1));
  auto disable = b.Disable();
  auto enable = a.Enable(1);  // concurrent with the disable
  a.Merge(disable);
  b.Merge(enable);
  EXPECT_TRUE(a.Value());
  EXPECT_TRUE(b.Value());
  b.Merge(a.Disable());  // a disable that saw every enable
  EXPECT_FALSE(b.Value());
}

TEST(AWSetTest, RemoveOnlyRemovesTheAddsItObserved) {
  AWSet a, b;
  b.Merge(a.Add(1, "x"));
  auto remove = b.Remove("x");
  auto re_add = a.Add(1, "x");  // concurrent: b never saw it
  a.Merge(remove);
  b.Merge(re_add);
  EXPECT_TRUE(a.Contains("x"));
  EXPECT_EQ(a, b);
  // An element never added stays absent after a remove anywhere.
  auto ghost = b.Remove("never");
  a.Merge(ghost);
  EXPECT_FALSE(a.Contains("never"));
  // A remove that saw every add wins.
  a.Merge(b.Remove("x"));
  EXPECT_FALSE(a.Contains("x"));
}

TEST(AWMapTest, RemoveResetsTheNestedValueButAConcurrentUpdateSurvives) {
  AWMap<SetStore> a, b;
  auto add = [](std::string e) {
    return [e](const SetStore& s, const DotContext& c, ReplicaId r) {
      return AddDelta(s, c, r, e);
    };
  };
  b.Merge(a.Update("cart", 1, add("apple")));
  b.Merge(a.Update("cart", 1, add("pear")));
  auto remove = b.Remove("cart");
  auto concurrent = a.Update("cart", 1, add("plum"));
  a.Merge(remove);
  b.Merge(concurrent);
  EXPECT_EQ(a, b);
  // The removal reset everything it saw; the concurrent add survives alone.
  ASSERT_TRUE(a.Contains("cart"));
  EXPECT_EQ(a.Get("cart").size(), 1u);
  EXPECT_TRUE(a.Get("cart").contains("plum"));
}

TEST(CodecTest, EveryTypeRoundTrips) {
  AWSet s;
  s.Add(1, "a");
  s.Add(2, "b");
  s.Remove("a");
  auto set = DecodeAWSet(Encode(s.state()));
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(*set, s.state());
  PNCounter c;
  c.Add(3, -7);
  EXPECT_EQ(DecodePNCounter(Encode(c))->Value(), -7);
  LwwRegister r;
  r.Set({5, 1}, 4, "v");
  EXPECT_EQ(*DecodeLwwRegister(Encode(r)), r);
}

// Replicas compare digests of encodings: equal states must encode to equal
// bytes, whatever order their maps were filled in.
TEST(CodecTest, EqualStatesEncodeToEqualBytes) {
  GCounter a, b;
  for (ReplicaId r = 1; r <= 40; ++r) a.Increment(r * 7919, r);
  for (ReplicaId r = 40; r >= 1; --r) b.Increment(r * 7919, r);
  ASSERT_EQ(a, b);
  EXPECT_EQ(Encode(a), Encode(b));
  DotContext ca, cb;
  for (ReplicaId r = 1; r <= 40; ++r) ca.Insert({r * 104729, 1});
  for (ReplicaId r = 40; r >= 1; --r) cb.Insert({r * 104729, 1});
  Causal<FlagStore> fa, fb;
  fa.context = ca;
  fb.context = cb;
  EXPECT_EQ(Encode(fa), Encode(fb));
}

TEST(CodecTest, RefusesOtherTypesVersionsAndBrokenInvariants) {
  AWSet s;
  s.Add(1, "a");
  const std::string set = Encode(s.state());
  EXPECT_EQ(DecodeEWFlag(set).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_NE(DecodeEWFlag(set).status().message().find("expected a EW_FLAG"),
            std::string::npos);
  proto::Envelope e;
  ASSERT_TRUE(e.ParseFromString(set));
  e.set_version(2);
  EXPECT_FALSE(DecodeAWSet(e.SerializeAsString()).ok());
  e.set_version(1);
  e.clear_context();  // the store names a dot the context has not seen
  EXPECT_NE(DecodeAWSet(e.SerializeAsString())
                .status()
                .message()
                .find("has not seen"),
            std::string::npos);
}

// Random bytes and random corruptions of valid encodings: every decoder
// returns an error or a value, never crashes.
TEST(CodecTest, SurvivesRandomBytes) {
  util::SeededRandom rng(42);
  AWMap<SetStore> m;
  m.Update("k", 1, [](const SetStore& s, const DotContext& c, ReplicaId r) {
    return AddDelta(s, c, r, "e");
  });
  const std::vector<std::string> valid = {Encode(m.state()),
                                          Encode(GCounter().Increment(1, 3))};
  for (int i = 0; i < 20000; ++i) {
    std::string data;
    if (rng.Chance(0.5)) {
      data = valid[rng.Uniform(valid.size())];
      for (int j = 0, n = 1 + rng.Uniform(4); j < n && !data.empty(); ++j) {
        data[rng.Uniform(data.size())] = static_cast<char>(rng.Uniform(256));
      }
    } else {
      data.resize(rng.Uniform(64));
      for (char& ch : data) ch = static_cast<char>(rng.Uniform(256));
    }
    (void)DecodeGCounter(data);
    (void)DecodePNCounter(data);
    (void)DecodeLwwRegister(data);
    (void)DecodeMVRegister(data);
    (void)DecodeEWFlag(data);
    (void)DecodeAWSet(data);
    (void)DecodeAWMap<SetStore>(data);
  }
}

}  // namespace
}  // namespace tally::crdt
