// Property tests of the CRDT laws, for every type, over random histories.
// Each law runs kCases cases. The seed is fixed and printed on failure;
// set TALLY_CRDT_SEED to try others:
//   TALLY_CRDT_SEED=123 build/bin/crdt_test --gtest_filter='Laws*'

#include <cstdlib>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clocks/clock.h"
#include "crdt/codec.h"
#include "gtest/gtest.h"
#include "util/random.h"

namespace tally::crdt {
namespace {

constexpr int kCases = 1000;

uint64_t BaseSeed() {
  const char* s = std::getenv("TALLY_CRDT_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 10) : 20261202;
}

std::string Element(util::SeededRandom& rng) {
  return absl::StrCat("e", rng.Uniform(6));  // few: adds and removes collide
}

// Each model says how to mutate a replica at random and how states merge.
struct GCounterModel {
  using State = GCounter;
  using Delta = GCounter;
  static Delta Op(State& s, ReplicaId r, util::SeededRandom& rng) {
    return s.Increment(r, 1 + rng.Uniform(5));
  }
  static const Delta& Full(const State& s) { return s; }
  static uint64_t Value(const State& s) { return s.Value(); }
  static Delta RoundTrip(const Delta& d) { return *DecodeGCounter(Encode(d)); }
};

struct PNCounterModel {
  using State = PNCounter;
  using Delta = PNCounter;
  static Delta Op(State& s, ReplicaId r, util::SeededRandom& rng) {
    return s.Add(r, static_cast<int64_t>(rng.Uniform(11)) - 5);
  }
  static const Delta& Full(const State& s) { return s; }
  static int64_t Value(const State& s) { return s.Value(); }
  static Delta RoundTrip(const Delta& d) { return *DecodePNCounter(Encode(d)); }
};

struct LwwModel {
  using State = LwwRegister;
  using Delta = LwwRegister;
  static Delta Op(State& s, ReplicaId r, util::SeededRandom& rng) {
    // Per replica, timestamps only grow; across replicas they collide often
    // and the replica id breaks the tie.
    const clocks::HlcTimestamp ts{
        static_cast<int64_t>(
            std::max<uint64_t>(s.timestamp().physical_ms, rng.Uniform(20))),
        static_cast<uint16_t>(s.timestamp().logical + 1)};
    return s.Set(ts, r, absl::StrCat("v", rng.Uniform(100)));
  }
  static const Delta& Full(const State& s) { return s; }
  static std::string Value(const State& s) { return s.value(); }
  static Delta RoundTrip(const Delta& d) {
    return *DecodeLwwRegister(Encode(d));
  }
};

template <typename T, typename S>
struct CausalModel {
  using State = T;
  using Delta = Causal<S>;
  static const Delta& Full(const State& s) { return s.state(); }
};

struct MVRegisterModel : CausalModel<MVRegister, RegisterStore> {
  static Delta Op(State& s, ReplicaId r, util::SeededRandom& rng) {
    return s.Assign(r, absl::StrCat("v", rng.Uniform(100)));
  }
  static std::vector<std::string> Value(const State& s) { return s.Values(); }
  static Delta RoundTrip(const Delta& d) {
    return *DecodeMVRegister(Encode(d));
  }
};

struct EWFlagModel : CausalModel<EWFlag, FlagStore> {
  static Delta Op(State& s, ReplicaId r, util::SeededRandom& rng) {
    return rng.Chance(0.5) ? s.Enable(r) : s.Disable();
  }
  static bool Value(const State& s) { return s.Value(); }
  static Delta RoundTrip(const Delta& d) { return *DecodeEWFlag(Encode(d)); }
};

struct AWSetModel : CausalModel<AWSet, SetStore> {
  static Delta Op(State& s, ReplicaId r, util::SeededRandom& rng) {
    const uint64_t k = rng.Uniform(10);
    if (k < 6) return s.Add(r, Element(rng));
    if (k < 9) return s.Remove(Element(rng));
    return s.Clear();
  }
  static std::vector<std::string> Value(const State& s) { return s.Elements(); }
  static Delta RoundTrip(const Delta& d) { return *DecodeAWSet(Encode(d)); }
};

// A map of sets: nested updates, and removes that reset a whole set.
struct AWMapModel : CausalModel<AWMap<SetStore>, MapStore<SetStore>> {
  static Delta Op(State& s, ReplicaId r, util::SeededRandom& rng) {
    const std::string key = absl::StrCat("k", rng.Uniform(3));
    const uint64_t k = rng.Uniform(10);
    if (k < 5) {
      const std::string e = Element(rng);
      return s.Update(
          key, r, [&](const SetStore& in, const DotContext& c, ReplicaId rep) {
            return AddDelta(in, c, rep, e);
          });
    }
    if (k < 8) {
      const std::string e = Element(rng);
      return s.Update(key, r,
                      [&](const SetStore& in, const DotContext&, ReplicaId) {
                        return RemoveDelta(in, e);
                      });
    }
    return s.Remove(key);
  }
  static std::map<std::string, std::vector<std::string>> Value(const State& s) {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& [k, set] : s.state().store) {
      for (const auto& [e, dots] : set) out[k].push_back(e);
    }
    return out;
  }
  static Delta RoundTrip(const Delta& d) {
    return *DecodeAWMap<SetStore>(Encode(d));
  }
};

template <typename M>
class Laws : public ::testing::Test {
 protected:
  using State = typename M::State;
  using Delta = typename M::Delta;

  static State Merged(State a, const State& b) {
    a.Merge(M::Full(b));
    return a;
  }

  // Random states of one run: replicas mutate and now and then merge each
  // other's states, and the states of random replicas at random moments are
  // kept. (States must come from one run: dots and timestamps are unique
  // per replica only within it.)
  static std::vector<State> RandomStates(util::SeededRandom& rng, size_t k) {
    std::vector<State> replicas(3), kept;
    while (kept.size() < k) {
      const size_t r = rng.Uniform(replicas.size());
      if (rng.Chance(0.25)) {
        replicas[r].Merge(M::Full(replicas[rng.Uniform(replicas.size())]));
      } else {
        M::Op(replicas[r], r + 1, rng);
      }
      if (rng.Chance(0.15)) kept.push_back(replicas[rng.Uniform(3)]);
    }
    return kept;
  }

  template <typename Fn>
  static void ForEachCase(const char* law, Fn fn) {
    for (int i = 0; i < kCases; ++i) {
      const uint64_t seed = BaseSeed() * 1000003 + i;
      SCOPED_TRACE(absl::StrCat(law, ": TALLY_CRDT_SEED=", BaseSeed(), " case ",
                                i, " (seed ", seed, ")"));
      util::SeededRandom rng(seed);
      fn(rng);
      if (::testing::Test::HasFailure()) return;
    }
  }
};

using Models =
    ::testing::Types<GCounterModel, PNCounterModel, LwwModel, MVRegisterModel,
                     EWFlagModel, AWSetModel, AWMapModel>;
TYPED_TEST_SUITE(Laws, Models);

TYPED_TEST(Laws, MergeIsCommutative) {
  this->ForEachCase("commutative", [](util::SeededRandom& rng) {
    auto s = TestFixture::RandomStates(rng, 2);
    EXPECT_EQ(TestFixture::Merged(s[0], s[1]), TestFixture::Merged(s[1], s[0]));
  });
}

TYPED_TEST(Laws, MergeIsAssociative) {
  this->ForEachCase("associative", [](util::SeededRandom& rng) {
    auto s = TestFixture::RandomStates(rng, 3);
    EXPECT_EQ(TestFixture::Merged(TestFixture::Merged(s[0], s[1]), s[2]),
              TestFixture::Merged(s[0], TestFixture::Merged(s[1], s[2])));
  });
}

TYPED_TEST(Laws, MergeIsIdempotent) {
  this->ForEachCase("idempotent", [](util::SeededRandom& rng) {
    auto a = TestFixture::RandomStates(rng, 1)[0];
    EXPECT_EQ(TestFixture::Merged(a, a), a);
  });
}

// Shipping the delta of a mutation does what shipping the whole new state
// does, to any replica that already had the state before the mutation.
TYPED_TEST(Laws, DeltaMergeEqualsFullStateMerge) {
  this->ForEachCase("delta", [](util::SeededRandom& rng) {
    // y has seen x; then x mutates as a replica of its own (id 99), so its
    // new event is unique.
    auto s = TestFixture::RandomStates(rng, 2);
    auto x = s[0];
    auto y = TestFixture::Merged(s[1], x);
    const auto delta = TypeParam::Op(x, 99, rng);
    auto via_delta = y;
    via_delta.Merge(delta);
    EXPECT_EQ(via_delta, TestFixture::Merged(y, x));
  });
}

// Replicas that receive the same deltas in any order, with duplicates and
// re-deliveries (and through an encode/decode round trip), converge.
TYPED_TEST(Laws, ReplicasConvergeWhateverTheDeliveryOrder) {
  this->ForEachCase("convergence", [](util::SeededRandom& rng) {
    const size_t n = 3 + rng.Uniform(3);
    std::vector<typename TypeParam::State> replicas(n);
    std::vector<typename TypeParam::Delta> deltas;
    for (int i = 0, ops = 1 + rng.Uniform(20); i < ops; ++i) {
      const size_t r = rng.Uniform(n);
      // Some deltas arrive early, so later mutations build on them.
      if (!deltas.empty() && rng.Chance(0.3)) {
        replicas[r].Merge(deltas[rng.Uniform(deltas.size())]);
      }
      deltas.push_back(TypeParam::Op(replicas[r], r + 1, rng));
    }
    for (auto& rep : replicas) {
      std::vector<size_t> order;
      for (size_t i = 0; i < deltas.size(); ++i) {
        order.push_back(i);
        if (rng.Chance(0.3)) order.push_back(i);  // duplicate
      }
      for (size_t i = order.size(); i > 1; --i) {
        std::swap(order[i - 1], order[rng.Uniform(i)]);
      }
      for (size_t i : order) rep.Merge(TypeParam::RoundTrip(deltas[i]));
    }
    for (size_t r = 1; r < n; ++r) {
      EXPECT_EQ(replicas[r], replicas[0]);
      EXPECT_EQ(TypeParam::Value(replicas[r]), TypeParam::Value(replicas[0]));
    }
  });
}

// Observed-remove, at random: after every delta reached everyone, an add's
// event is alive exactly when no later operation on its element (a remove,
// a clear, or another add, which replaces the events it saw) had seen it;
// an element is present exactly when one of its adds is alive.
TEST(ObservedRemove, RemovesOnlyRemoveWhatTheyObserved) {
  for (int i = 0; i < kCases; ++i) {
    const uint64_t seed = BaseSeed() * 1000003 + i;
    SCOPED_TRACE(absl::StrCat("TALLY_CRDT_SEED=", BaseSeed(), " case ", i));
    util::SeededRandom rng(seed);
    std::vector<AWSet> replicas(3);
    std::vector<Causal<SetStore>> deltas;
    struct Add {
      std::string e;
      Dot dot;
    };
    struct Seen {
      std::string e;  // empty: a clear
      DotContext context;
    };
    std::vector<Add> adds;
    std::vector<Seen> seen;
    for (int op = 0, ops = 1 + rng.Uniform(25); op < ops; ++op) {
      const size_t r = rng.Uniform(3);
      if (!deltas.empty() && rng.Chance(0.4)) {
        replicas[r].Merge(deltas[rng.Uniform(deltas.size())]);
      }
      const std::string e = Element(rng);
      const DotContext before = replicas[r].state().context;
      const uint64_t kind = rng.Uniform(10);
      if (kind < 6) {
        const Dot dot = before.Next(r + 1);
        seen.push_back({e, before});  // it replaces the adds of e it saw
        deltas.push_back(replicas[r].Add(r + 1, e));
        adds.push_back({e, dot});
      } else if (kind < 9) {
        seen.push_back({e, before});
        deltas.push_back(replicas[r].Remove(e));
      } else {
        seen.push_back({"", before});
        deltas.push_back(replicas[r].Clear());
      }
    }
    AWSet all;
    for (const auto& d : deltas) all.Merge(d);
    std::set<std::string> expected;
    for (const Add& a : adds) {
      bool alive = true;
      for (const Seen& s : seen) {
        if ((s.e.empty() || s.e == a.e) && s.context.Contains(a.dot)) {
          alive = false;
        }
      }
      if (alive) expected.insert(a.e);
    }
    const std::vector<std::string> got = all.Elements();
    EXPECT_EQ(std::set<std::string>(got.begin(), got.end()), expected);
    if (HasFailure()) return;
  }
}

}  // namespace
}  // namespace tally::crdt
