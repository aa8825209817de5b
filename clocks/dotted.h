#ifndef TALLY_CLOCKS_DOTTED_H_
#define TALLY_CLOCKS_DOTTED_H_

#include <compare>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "clocks/order.h"
#include "clocks/version_vector.h"

namespace tally::clocks {

// One event: the `counter`-th event of `replica`.
struct Dot {
  ReplicaId replica = 0;
  uint64_t counter = 0;
  auto operator<=>(const Dot&) const = default;
};

// A dotted version vector (Preguiça et al.): a write's own dot plus the
// causal past it was written over (the context the client had read).
struct DottedVersion {
  Dot dot;
  VersionVector past;

  // Whether this write is part of history `vv`.
  bool CoveredBy(const VersionVector& vv) const {
    return dot.counter <= vv.Get(dot.replica);
  }
  // Writes are ordered only through their pasts: a is before b when b's
  // past covers a's dot.
  Order Compare(const DottedVersion& other) const;
};

// A dotted version vector set (Almeida et al., "Scalable and Accurate
// Causality Tracking for Eventually Consistent Stores"): the concurrent
// values ("siblings") of one key with one compact causal summary. For each
// replica it keeps a counter n and the values of its latest events, newest
// first: values[i] is event n - i.
//
// Clients read Values() and Context(), and send the context back with their
// next write, which then replaces exactly the siblings they saw.
//
// Thread safety: not thread-safe.
class DvvSet {
 public:
  // Every event the set summarises: what a reader saw.
  VersionVector Context() const;
  std::vector<std::string> Values() const;
  // A client write: drops the siblings `context` covers and adds `value` as
  // the next event of `replica` (the server coordinating the write). A
  // retried write (a sibling with the same value that the context does not
  // cover) adds nothing, so retries make no false conflicts.
  void Update(const VersionVector& context, ReplicaId replica,
              std::string value);
  // Merges another replica's set of the same key.
  void Sync(const DvvSet& other);
  // Drops the siblings `context` covers.
  void Discard(const VersionVector& context);

  bool operator==(const DvvSet&) const = default;
  std::string Encode() const;
  // INVALID_ARGUMENT naming what is malformed.
  static absl::StatusOr<DvvSet> Decode(const std::string& data);

 private:
  struct Entry {
    uint64_t n = 0;
    std::vector<std::string> values;  // newest first
    bool operator==(const Entry&) const = default;
  };
  std::map<ReplicaId, Entry> entries_;
};

}  // namespace tally::clocks

#endif  // TALLY_CLOCKS_DOTTED_H_
