#include "util/linearizability.h"

#include "gtest/gtest.h"
#include "util/random.h"

namespace tally {
namespace {

using K = RegisterOp::Kind;

RegisterOp W(uint64_t v, uint64_t inv, std::optional<uint64_t> done) {
  return RegisterOp{K::kWrite, v, inv, done, v};
}
RegisterOp R(uint64_t v, uint64_t inv, uint64_t done) {
  return RegisterOp{K::kRead, v, inv, done, 1000 + inv};
}

TEST(LinearizabilityTest, SequentialHistory) {
  EXPECT_FALSE(
      CheckRegisterHistory({W(1, 1, 2), R(1, 3, 4), W(2, 5, 6), R(2, 7, 8)}));
}

TEST(LinearizabilityTest, StaleReadIsCaught) {
  // The write of 2 completed before the read began; the read saw 1.
  EXPECT_TRUE(CheckRegisterHistory({W(1, 1, 2), W(2, 3, 4), R(1, 5, 6)}));
}

TEST(LinearizabilityTest, ConcurrentWriteMayOrMayNotBeSeen) {
  EXPECT_FALSE(CheckRegisterHistory({W(1, 1, 2), W(2, 3, 10), R(1, 4, 5)}));
  EXPECT_FALSE(CheckRegisterHistory({W(1, 1, 2), W(2, 3, 10), R(2, 4, 5)}));
  // ...but once one read saw the new value, a later read cannot go back.
  EXPECT_TRUE(
      CheckRegisterHistory({W(1, 1, 2), W(2, 3, 10), R(2, 4, 5), R(1, 6, 7)}));
}

TEST(LinearizabilityTest, UnknownWritesMayHaveHappened) {
  // A write whose client never heard back, later observed: fine.
  EXPECT_FALSE(CheckRegisterHistory({W(1, 1, std::nullopt), R(1, 5, 6)}));
  // Never observed: fine too.
  EXPECT_FALSE(CheckRegisterHistory({W(1, 1, std::nullopt), R(0, 5, 6)}));
  // But it cannot be observed before it was invoked.
  EXPECT_TRUE(CheckRegisterHistory({R(1, 1, 2), W(1, 3, std::nullopt)}));
}

RegisterOp Cas(uint64_t from, uint64_t to, uint64_t inv,
               std::optional<uint64_t> done) {
  RegisterOp op{K::kCas, to, inv, done, to};
  op.expected = from;
  return op;
}

TEST(LinearizabilityTest, CompareAndSetNeedsItsExpectedValue) {
  EXPECT_FALSE(CheckRegisterHistory({W(1, 1, 2), Cas(1, 2, 3, 4), R(2, 5, 6)}));
  // The register held 1, not 5.
  EXPECT_TRUE(CheckRegisterHistory({W(1, 1, 2), Cas(5, 2, 3, 4)}));
  // Two compare-and-sets from the same value cannot both succeed.
  EXPECT_TRUE(CheckRegisterHistory(
      {W(1, 1, 2), Cas(1, 2, 3, 10), Cas(1, 3, 4, 10), R(3, 11, 12)}));
}

TEST(LinearizabilityTest, UnknownCompareAndSetObservedLater) {
  EXPECT_FALSE(CheckRegisterHistory(
      {W(1, 1, 2), Cas(1, 2, 3, std::nullopt), R(2, 9, 10)}));
}

TEST(LinearizabilityTest, UnknownCompareAndSetThatCannotApplyNeverHappened) {
  // It needed 1, the register held 0: it failed, and nobody heard back.
  EXPECT_FALSE(CheckRegisterHistory({Cas(1, 1, 0, std::nullopt)}));
  EXPECT_FALSE(CheckRegisterHistory(
      {W(2, 0, 1), Cas(1, 3, 2, std::nullopt), R(2, 5, 6)}));
}

TEST(LinearizabilityTest, ViolationNamesTheOpAndThePrefix) {
  RegisterCheck c = CheckRegister({W(1, 1, 2), W(2, 3, 4), R(1, 5, 6)});
  ASSERT_EQ(c.verdict, Linearizable::kNo);
  ASSERT_TRUE(c.violation);
  EXPECT_EQ(c.violation->op, 2u);
  EXPECT_EQ(c.violation->prefix, (std::vector<size_t>{0, 1}));
}

TEST(LinearizabilityTest, StateBoundGivesUnknown) {
  std::vector<RegisterOp> h;
  // Many concurrent writes and a read nobody can explain: the search tries
  // many orders before it gives up.
  for (uint64_t v = 1; v <= 12; ++v) h.push_back(W(v, 1, 100));
  h.push_back(R(99, 101, 102));
  EXPECT_EQ(CheckRegister(h, 50).verdict, Linearizable::kUnknown);
  EXPECT_EQ(CheckRegister(h).verdict, Linearizable::kNo);
}

TEST(LinearizabilityTest, ReadOfValueNeverWritten) {
  EXPECT_TRUE(CheckRegisterHistory({W(1, 1, 2), R(9, 3, 4)}));
}

TEST(LinearizabilityTest, LongConcurrentHistoryFromAModelIsAccepted) {
  // Three clients against an atomic register: each op takes effect at a
  // random point inside its interval. The result is linearizable by
  // construction; the search must say so, quickly.
  const uint64_t seed = 99;
  util::SeededRandom r(seed);
  std::vector<RegisterOp> h;
  uint64_t value = 0, next_value = 1, now = 0;
  struct Open {
    RegisterOp op;
    bool applied;
  };
  std::vector<Open> open(3, Open{{}, true});
  std::vector<bool> busy(3, false);
  for (int step = 0; step < 3000; ++step) {
    const int c = r.Uniform(3);
    ++now;
    if (!busy[c]) {
      RegisterOp op = r.Chance(0.5) ? W(next_value++, now, 0) : R(0, now, 0);
      open[c] = {op, false};
      busy[c] = true;
    } else if (!open[c].applied) {
      if (open[c].op.kind == K::kWrite)
        value = open[c].op.value;
      else
        open[c].op.value = value;
      open[c].applied = true;
    } else {
      open[c].op.completed = now;
      h.push_back(open[c].op);
      busy[c] = false;
    }
  }
  EXPECT_FALSE(CheckRegisterHistory(h)) << "seed " << seed;
}

}  // namespace
}  // namespace tally
