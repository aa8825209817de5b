#ifndef TALLY_CRDT_CAUSAL_H_
#define TALLY_CRDT_CAUSAL_H_

#include <map>
#include <set>
#include <string>

#include "crdt/dot_context.h"

// Causal CRDTs (Almeida, Shoker, Baquero, "Delta State Replicated Data
// Types", 2018): a dot store (which events are alive, and what they carry)
// paired with a causal context (every event seen). Joining keeps an event
// that both sides have, or that one side has and the other has not seen;
// an event one side has seen but no longer has was removed. Removals thus
// need no tombstones, and only remove what the remover had observed.
namespace tally::crdt {

// The events alive.
using DotSet = std::set<Dot>;
// The events alive, each with the value written by it.
template <typename V>
using DotFun = std::map<Dot, V>;
// Keys, each with a nested dot store; a key whose store is empty is absent.
template <typename K, typename S>
using DotMap = std::map<K, S>;

inline bool IsEmpty(const DotSet& s) { return s.empty(); }
template <typename V>
bool IsEmpty(const DotFun<V>& s) {
  return s.empty();
}
template <typename K, typename S>
bool IsEmpty(const DotMap<K, S>& s) {
  return s.empty();
}

// Every dot in a store, nested ones included.
inline void CollectDots(const DotSet& s, DotContext* out) {
  for (const Dot& d : s) out->Insert(d);
}
template <typename V>
void CollectDots(const DotFun<V>& s, DotContext* out) {
  for (const auto& [d, v] : s) out->Insert(d);
}
template <typename K, typename S>
void CollectDots(const DotMap<K, S>& s, DotContext* out) {
  for (const auto& [k, v] : s) CollectDots(v, out);
}

inline const Dot& DotOf(const Dot& d) { return d; }
template <typename V>
const Dot& DotOf(const std::pair<const Dot, V>& item) {
  return item.first;
}

// Join, in place: a becomes the join of (a, ca) and (b, cb).
template <typename Store>
void JoinDots(Store& a, const DotContext& ca, const Store& b,
              const DotContext& cb) {
  // Keep what b also has or cb has not seen; add what ca has not seen.
  if (!cb.empty()) {
    std::erase_if(a, [&](const auto& item) {
      const Dot& d = DotOf(item);
      return !b.contains(d) && cb.Contains(d);
    });
  }
  for (const auto& item : b) {
    if (!ca.Contains(DotOf(item))) a.insert(item);
  }
}

inline void JoinInto(DotSet& a, const DotContext& ca, const DotSet& b,
                     const DotContext& cb) {
  JoinDots(a, ca, b, cb);
}

template <typename V>
void JoinInto(DotFun<V>& a, const DotContext& ca, const DotFun<V>& b,
              const DotContext& cb) {
  JoinDots(a, ca, b, cb);
  // A dot names one write, so both sides hold its value. Should they
  // disagree (a faulty peer, a damaged record), the larger value wins, so
  // that replicas converge whatever order they merge in.
  for (const auto& [d, v] : b) {
    auto it = a.find(d);
    if (it != a.end() && it->second < v) it->second = v;
  }
}

template <typename K, typename S>
void JoinInto(DotMap<K, S>& a, const DotContext& ca, const DotMap<K, S>& b,
              const DotContext& cb) {
  static const S kEmpty{};
  for (const auto& [k, bv] : b) {
    auto [it, inserted] = a.try_emplace(k);
    JoinInto(it->second, ca, bv, cb);
    if (IsEmpty(it->second)) a.erase(it);
  }
  // Keys b lacks keep only what cb has not seen (cb may remove them). This
  // pass over every key is what merging a delta costs.
  if (cb.empty()) return;
  for (auto it = a.begin(); it != a.end();) {
    if (!b.contains(it->first)) JoinInto(it->second, ca, kEmpty, cb);
    it = IsEmpty(it->second) ? a.erase(it) : std::next(it);
  }
}

// A causal CRDT state (or a delta of one).
template <typename S>
struct Causal {
  S store{};
  DotContext context;

  void Merge(const Causal& other) {
    JoinInto(store, context, other.store, other.context);
    context.Merge(other.context);
  }
  bool operator==(const Causal&) const = default;
};

// Delta that replaces every event of `store` (seen in `context`) with one
// new event of `replica`, carrying `value` for dot functions: the common
// shape of an "assign" or "enable".
inline Causal<DotSet> NewEvent(const DotSet& store, const DotContext& context,
                               ReplicaId replica) {
  Causal<DotSet> d;
  const Dot dot = context.Next(replica);
  d.store.insert(dot);
  CollectDots(store, &d.context);
  d.context.Insert(dot);
  return d;
}

// Delta that removes every event of `store`: an empty store whose context
// names them (for maps, recursively: nested values are reset).
template <typename S>
Causal<S> RemoveAll(const S& store) {
  Causal<S> d;
  CollectDots(store, &d.context);
  return d;
}

}  // namespace tally::crdt

#endif  // TALLY_CRDT_CAUSAL_H_
