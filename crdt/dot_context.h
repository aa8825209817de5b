#ifndef TALLY_CRDT_DOT_CONTEXT_H_
#define TALLY_CRDT_DOT_CONTEXT_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>

#include "clocks/dotted.h"

namespace tally::crdt {

using clocks::Dot;
using clocks::ReplicaId;

// A causal context: the set of every event (dot) a replica has seen, kept
// as a version vector (all dots up to n of each replica) plus the few dots
// seen out of order (the "dot cloud"). Compact() keeps the form canonical,
// so equal sets compare equal.
//
// Thread safety: not thread-safe.
class DotContext {
 public:
  bool Contains(const Dot& d) const;
  // The highest counter of `r` this context has in its compact part.
  uint64_t Max(ReplicaId r) const;
  // The dot a new event of `r` gets.
  Dot Next(ReplicaId r) const { return {r, Max(r) + 1}; }
  void Insert(const Dot& d);
  bool empty() const { return compact_.empty() && cloud_.empty(); }
  void Merge(const DotContext& other);

  const std::map<ReplicaId, uint64_t>& compact() const { return compact_; }
  const std::set<Dot>& cloud() const { return cloud_; }
  // For decoding: the parts as stored. Compacts.
  static DotContext FromParts(std::map<ReplicaId, uint64_t> compact,
                              std::set<Dot> cloud);
  bool operator==(const DotContext&) const = default;

 private:
  void Compact();
  std::map<ReplicaId, uint64_t> compact_;  // no zero counters
  std::set<Dot> cloud_;  // only dots above compact_ and not next to it
};

}  // namespace tally::crdt

#endif  // TALLY_CRDT_DOT_CONTEXT_H_
