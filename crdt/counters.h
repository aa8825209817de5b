#ifndef TALLY_CRDT_COUNTERS_H_
#define TALLY_CRDT_COUNTERS_H_

#include <algorithm>
#include <cstdint>
#include <map>

#include "clocks/version_vector.h"

namespace tally::crdt {

using clocks::ReplicaId;

// A grow-only counter: each replica counts its own increments; merging takes
// the larger count of each replica; the value is the sum.
class GCounter {
 public:
  // Adds n at `replica`; returns the delta to ship.
  GCounter Increment(ReplicaId replica, uint64_t n = 1) {
    GCounter delta;
    if (n == 0) return delta;
    delta.counts_[replica] = counts_[replica] += n;
    return delta;
  }
  void Merge(const GCounter& other) {
    for (const auto& [r, n] : other.counts_) {
      if (n == 0) continue;
      uint64_t& mine = counts_[r];
      mine = std::max(mine, n);
    }
  }
  uint64_t Value() const {
    uint64_t sum = 0;
    for (const auto& [r, n] : counts_) sum += n;
    return sum;
  }
  const std::map<ReplicaId, uint64_t>& counts() const { return counts_; }
  static GCounter FromCounts(std::map<ReplicaId, uint64_t> counts) {
    GCounter g;
    g.counts_ = std::move(counts);
    std::erase_if(g.counts_, [](const auto& kv) { return kv.second == 0; });
    return g;
  }
  bool operator==(const GCounter&) const = default;

 private:
  std::map<ReplicaId, uint64_t> counts_;
};

// A counter that also decrements: one grow-only counter of increments and
// one of decrements.
class PNCounter {
 public:
  PNCounter Add(ReplicaId replica, int64_t n) {
    PNCounter delta;
    if (n > 0) {
      delta.p_ = p_.Increment(replica, static_cast<uint64_t>(n));
    } else if (n < 0) {
      delta.n_ = n_.Increment(replica, static_cast<uint64_t>(-n));
    }
    return delta;
  }
  void Merge(const PNCounter& other) {
    p_.Merge(other.p_);
    n_.Merge(other.n_);
  }
  int64_t Value() const {
    return static_cast<int64_t>(p_.Value() - n_.Value());
  }
  const GCounter& increments() const { return p_; }
  const GCounter& decrements() const { return n_; }
  static PNCounter FromParts(GCounter p, GCounter n) {
    PNCounter c;
    c.p_ = std::move(p);
    c.n_ = std::move(n);
    return c;
  }
  bool operator==(const PNCounter&) const = default;

 private:
  GCounter p_, n_;
};

}  // namespace tally::crdt

#endif  // TALLY_CRDT_COUNTERS_H_
