#ifndef TALLY_CRDT_CAUSAL_TYPES_H_
#define TALLY_CRDT_CAUSAL_TYPES_H_

#include <string>
#include <vector>

#include "crdt/causal.h"

// The causal CRDTs. Each mutation returns a delta: merging the delta
// anywhere has the same effect as merging the full state it came from. The
// *Delta functions compute a delta against a store and the causal context
// it lives in, so the same mutations work on values nested in an AWMap
// (which share the map's context).
namespace tally::crdt {

// ---- Enable-wins flag: enabled if any enable was not seen by a disable.
using FlagStore = DotSet;
inline Causal<FlagStore> EnableDelta(const FlagStore& s, const DotContext& c,
                                     ReplicaId r) {
  return NewEvent(s, c, r);
}
inline Causal<FlagStore> DisableDelta(const FlagStore& s, const DotContext&,
                                      ReplicaId) {
  return RemoveAll(s);
}

class EWFlag {
 public:
  EWFlag() = default;
  explicit EWFlag(Causal<FlagStore> state) : s_(std::move(state)) {}
  Causal<FlagStore> Enable(ReplicaId r) {
    Causal<FlagStore> d = EnableDelta(s_.store, s_.context, r);
    s_.store = d.store;  // the delta's context names every old event
    s_.context.Merge(d.context);
    return d;
  }
  Causal<FlagStore> Disable() {
    Causal<FlagStore> d = DisableDelta(s_.store, s_.context, 0);
    s_.store.clear();
    return d;
  }
  bool Value() const { return !s_.store.empty(); }
  void Merge(const Causal<FlagStore>& o) { s_.Merge(o); }
  const Causal<FlagStore>& state() const { return s_; }
  bool operator==(const EWFlag&) const = default;

 private:
  Causal<FlagStore> s_;
};

// ---- Multi-value register: an assign replaces every value it saw;
// concurrent assigns all survive as siblings.
using RegisterStore = DotFun<std::string>;
inline Causal<RegisterStore> AssignDelta(const RegisterStore& s,
                                         const DotContext& c, ReplicaId r,
                                         std::string value) {
  Causal<RegisterStore> d;
  const Dot dot = c.Next(r);
  d.store.emplace(dot, std::move(value));
  CollectDots(s, &d.context);
  d.context.Insert(dot);
  return d;
}

class MVRegister {
 public:
  MVRegister() = default;
  explicit MVRegister(Causal<RegisterStore> state) : s_(std::move(state)) {}
  Causal<RegisterStore> Assign(ReplicaId r, std::string value) {
    Causal<RegisterStore> d =
        AssignDelta(s_.store, s_.context, r, std::move(value));
    s_.store = d.store;  // replaces every value it saw
    s_.context.Merge(d.context);
    return d;
  }
  // The siblings, in dot order.
  std::vector<std::string> Values() const {
    std::vector<std::string> out;
    for (const auto& [d, v] : s_.store) out.push_back(v);
    return out;
  }
  void Merge(const Causal<RegisterStore>& o) { s_.Merge(o); }
  const Causal<RegisterStore>& state() const { return s_; }
  bool operator==(const MVRegister&) const = default;

 private:
  Causal<RegisterStore> s_;
};

// ---- Add-wins observed-remove set: an element is in the set if some add
// of it was not seen by a remove. No tombstones.
using SetStore = DotMap<std::string, DotSet>;
inline Causal<SetStore> AddDelta(const SetStore& s, const DotContext& c,
                                 ReplicaId r, const std::string& e) {
  static const DotSet kNone;
  auto it = s.find(e);
  Causal<DotSet> inner = NewEvent(it == s.end() ? kNone : it->second, c, r);
  Causal<SetStore> d;
  d.store.emplace(e, std::move(inner.store));
  d.context = std::move(inner.context);
  return d;
}
inline Causal<SetStore> RemoveDelta(const SetStore& s, const std::string& e) {
  Causal<SetStore> d;
  auto it = s.find(e);
  if (it != s.end()) CollectDots(it->second, &d.context);
  return d;
}

class AWSet {
 public:
  AWSet() = default;
  explicit AWSet(Causal<SetStore> state) : s_(std::move(state)) {}
  // Local mutations change the state directly (what merging their delta
  // would do, without a pass over every element).
  Causal<SetStore> Add(ReplicaId r, const std::string& e) {
    Causal<SetStore> d = AddDelta(s_.store, s_.context, r, e);
    s_.store[e] = d.store.at(e);
    s_.context.Merge(d.context);
    return d;
  }
  Causal<SetStore> Remove(const std::string& e) {
    Causal<SetStore> d = RemoveDelta(s_.store, e);
    s_.store.erase(e);
    return d;
  }
  Causal<SetStore> Clear() {
    Causal<SetStore> d = RemoveAll(s_.store);
    s_.store.clear();
    return d;
  }
  bool Contains(const std::string& e) const { return s_.store.contains(e); }
  std::vector<std::string> Elements() const {
    std::vector<std::string> out;
    for (const auto& [e, dots] : s_.store) out.push_back(e);
    return out;
  }
  size_t size() const { return s_.store.size(); }
  void Merge(const Causal<SetStore>& o) { s_.Merge(o); }
  const Causal<SetStore>& state() const { return s_; }
  bool operator==(const AWSet&) const = default;

 private:
  Causal<SetStore> s_;
};

// ---- Add-wins map of nested causal CRDTs (S is FlagStore, RegisterStore,
// SetStore, or another map's store). Updating a key applies a nested delta;
// removing a key resets its value recursively (every nested event it saw
// goes), while a concurrent update of that key survives.
template <typename S>
using MapStore = DotMap<std::string, S>;

template <typename S>
class AWMap {
 public:
  AWMap() = default;
  explicit AWMap(Causal<MapStore<S>> state) : s_(std::move(state)) {}
  // Applies a nested mutation to key k: `fn(store, context, r)` returns the
  // nested delta, computed against the key's current store and the map's
  // shared context (e.g. EnableDelta, or a lambda around AssignDelta).
  template <typename Fn>
  Causal<MapStore<S>> Update(const std::string& k, ReplicaId r, Fn fn) {
    static const S kEmpty{};
    auto it = s_.store.find(k);
    Causal<S> inner =
        fn(it == s_.store.end() ? kEmpty : it->second, s_.context, r);
    // Only key k changes: join the nested delta into it alone.
    auto [slot, inserted] = s_.store.try_emplace(k);
    JoinInto(slot->second, s_.context, inner.store, inner.context);
    if (IsEmpty(slot->second)) s_.store.erase(slot);
    s_.context.Merge(inner.context);
    Causal<MapStore<S>> d;
    if (!IsEmpty(inner.store)) d.store.emplace(k, std::move(inner.store));
    d.context = std::move(inner.context);
    return d;
  }
  Causal<MapStore<S>> Remove(const std::string& k) {
    Causal<MapStore<S>> d;
    auto it = s_.store.find(k);
    if (it != s_.store.end()) {
      CollectDots(it->second, &d.context);
      s_.store.erase(it);
    }
    return d;
  }
  // The nested store of k (empty if absent).
  const S& Get(const std::string& k) const {
    static const S kEmpty{};
    auto it = s_.store.find(k);
    return it == s_.store.end() ? kEmpty : it->second;
  }
  bool Contains(const std::string& k) const { return s_.store.contains(k); }
  void Merge(const Causal<MapStore<S>>& o) { s_.Merge(o); }
  const Causal<MapStore<S>>& state() const { return s_; }
  bool operator==(const AWMap&) const = default;

 private:
  Causal<MapStore<S>> s_;
};

}  // namespace tally::crdt

#endif  // TALLY_CRDT_CAUSAL_TYPES_H_
