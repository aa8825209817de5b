#ifndef TALLY_CLOCKS_VERSION_VECTOR_H_
#define TALLY_CLOCKS_VERSION_VECTOR_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "clocks/order.h"

namespace tally::clocks {

using ReplicaId = uint64_t;

// A version vector: for each replica, how many of its events are known.
// Replicas absent from the map count as 0.
//
// Thread safety: not thread-safe.
class VersionVector {
 public:
  VersionVector() = default;
  explicit VersionVector(std::map<ReplicaId, uint64_t> counts);

  uint64_t Get(ReplicaId r) const;
  // Records the next event of `r` and returns its counter.
  uint64_t Increment(ReplicaId r);
  // Raises r's counter to at least n.
  void Observe(ReplicaId r, uint64_t n);
  // Pointwise maximum.
  void Merge(const VersionVector& other);
  // Whether every event `other` knows is known here.
  bool Dominates(const VersionVector& other) const;
  Order Compare(const VersionVector& other) const;

  const std::map<ReplicaId, uint64_t>& counts() const { return counts_; }
  bool operator==(const VersionVector& o) const { return counts_ == o.counts_; }

  // Compact binary form: a version byte, then (replica, counter) pairs as
  // varints, replicas ascending, zero counters left out.
  std::string Encode() const;
  // INVALID_ARGUMENT naming what is malformed; never crashes on bad input.
  static absl::StatusOr<VersionVector> Decode(const std::string& data);
  std::string ToString() const;

 private:
  std::map<ReplicaId, uint64_t> counts_;  // no zero entries
};

}  // namespace tally::clocks

#endif  // TALLY_CLOCKS_VERSION_VECTOR_H_
