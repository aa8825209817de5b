#ifndef TALLY_UTIL_RANDOM_H_
#define TALLY_UTIL_RANDOM_H_

#include <cstdint>

namespace tally::util {

// A source of uniformly distributed integers. Everything in Tally that needs
// randomness takes one of these, so that a run can be replayed from a seed.
//
// Thread safety: implementations are not thread-safe unless they say so.
class RandomSource {
 public:
  virtual ~RandomSource() = default;

  // Returns a uniformly distributed integer in [0, n).
  // REQUIRES: n > 0.
  virtual uint64_t Uniform(uint64_t n) = 0;
};

// xoshiro256** seeded through splitmix64: fast, small state, and the same
// sequence for the same seed on every platform.
//
// Thread safety: not thread-safe.
class SeededRandom final : public RandomSource {
 public:
  explicit SeededRandom(uint64_t seed);

  uint64_t Next();
  uint64_t Uniform(uint64_t n) override;
  // Returns true with probability p (0 <= p <= 1).
  bool Chance(double p);
  // Returns a double in [0, 1).
  double NextDouble();

 private:
  uint64_t s_[4];
};

}  // namespace tally::util

#endif  // TALLY_UTIL_RANDOM_H_
