#ifndef TALLY_KV_CRDT_TABLE_CAUSAL_ENTRY_H_
#define TALLY_KV_CRDT_TABLE_CAUSAL_ENTRY_H_

// The causal entries of a CRDT replica (flags, set elements, mv-registers)
// with a floor: every dot at or below it counts as seen without being
// stored (docs/crdt.md, "Garbage collection"). The joins, the stored form
// of a context, and the encodings the replica keeps.

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "crdt/causal.h"
#include "crdt/causal_types.h"
#include "crdt/codec.h"
#include "crdt/dot_context.h"
#include "kv/crdt_table/members.h"

namespace tally::kv::crdt_entry {

using crdt::Causal;
using crdt::DotContext;
using crdt::FlagStore;
using crdt::RegisterStore;

// Whether `d` is at or below the floor `f`.
bool Below(const CrdtVector& f, const crdt::Dot& d);

// The context without what is at or below `floor` (a compact run that
// goes above it stays whole).
DotContext AboveOnly(const DotContext& c, const CrdtVector& floor);

// Join, in place, of causal states with floors: (a, its context and `fa`)
// and (b, its context and `fb`; none for a delta, which speaks only of the
// dots in its context). A dot stays if both sides have it or the other
// has not seen it. What b has seen at or below `fa` is old news: it is
// neither added to a's store nor counted as seen by a.
template <typename S>
void JoinCausal(Causal<S>& a, const CrdtVector& fa, const Causal<S>& b,
                const CrdtVector* fb) {
  std::erase_if(a.store, [&](const auto& item) {
    const crdt::Dot& d = crdt::DotOf(item);
    return !b.store.contains(d) &&
           (b.context.Contains(d) || (fb != nullptr && Below(*fb, d)));
  });
  for (const auto& item : b.store) {
    const crdt::Dot& d = crdt::DotOf(item);
    if (!a.context.Contains(d) && !Below(fa, d)) a.store.insert(item);
  }
  a.context.Merge(AboveOnly(b.context, fa));
}

// A context in the form stored with `floor`: what the floor implies left
// out, the store's own dots kept (a causal state's invariant). A function
// of the context and floor as sets, so equal states store equal bytes.
template <typename S>
DotContext AboveFloor(const Causal<S>& s, const CrdtVector& floor) {
  DotContext m = s.context;
  m.Merge(DotContext::FromParts({floor.begin(), floor.end()}, {}));
  std::map<crdt::ReplicaId, uint64_t> compact = m.compact();
  std::erase_if(compact, [&](const auto& rn) {
    auto f = floor.find(rn.first);
    return f != floor.end() && f->second == rn.second;
  });
  DotContext out = DotContext::FromParts(std::move(compact), m.cloud());
  for (const auto& item : s.store) out.Insert(crdt::DotOf(item));
  return out;
}

// Whether the state's context holds dots its store does not: removals.
template <typename S>
bool HasTombstones(const Causal<S>& s) {
  DotContext live;
  crdt::CollectDots(s.store, &live);
  return !(live == s.context);
}

// A delta with one new event `dot` replacing the events of `store`.
Causal<FlagStore> Event(const FlagStore& store, const crdt::Dot& dot);

// A flag's stored form (flag columns and set elements alike, so the
// smallest, as there is one per element): a version (2; a crdt/ envelope
// never starts with it), the live dots, then the context beyond them: its
// compact part and its other dots, each a count and varints, dots in
// order. Decoding refuses anything malformed (INVALID_ARGUMENT).
std::string EncodeFlag(const Causal<FlagStore>& f);
absl::StatusOr<Causal<FlagStore>> DecodeFlag(const std::string& in);
// A causal entry as stored: a flag as above, an mv-register as crdt/ has it.
std::string EncodeCausal(const Causal<FlagStore>& f);
std::string EncodeCausal(const Causal<RegisterStore>& r);
// Calls fn with a stored causal entry, a flag (set elements among them)
// or an mv-register as the encoding says; false for anything else.
template <typename Fn>
bool VisitCausal(const std::string& value, Fn fn) {
  if (absl::StatusOr<Causal<FlagStore>> f = DecodeFlag(value); f.ok()) {
    fn(*f);
    return true;
  }
  if (absl::StatusOr<Causal<RegisterStore>> r = crdt::DecodeMVRegister(value);
      r.ok()) {
    fn(*r);
    return true;
  }
  return false;
}
// Whether a stored set element or map key holds a live dot.
bool LiveElement(const std::optional<std::string>& v);

// A version vector as the replica stores it (a count, then varint pairs);
// DATA_LOSS if malformed, empty if absent.
std::string EncodeVector(const CrdtVector& v);
absl::StatusOr<CrdtVector> DecodeVector(const std::optional<std::string>& in);

}  // namespace tally::kv::crdt_entry

#endif  // TALLY_KV_CRDT_TABLE_CAUSAL_ENTRY_H_
