#include "crdt/dot_context.h"

namespace tally::crdt {

bool DotContext::Contains(const Dot& d) const {
  return d.counter <= Max(d.replica) || cloud_.contains(d);
}

uint64_t DotContext::Max(ReplicaId r) const {
  auto it = compact_.find(r);
  return it == compact_.end() ? 0 : it->second;
}

void DotContext::Insert(const Dot& d) {
  if (d.counter == 0 || Contains(d)) return;
  uint64_t& n = compact_[d.replica];
  if (d.counter != n + 1) {
    if (n == 0) compact_.erase(d.replica);
    cloud_.insert(d);
    return;
  }
  // d extends the replica's compact run; so may the cloud dots after it.
  n = d.counter;
  for (auto it = cloud_.lower_bound({d.replica, n + 1});
       it != cloud_.end() && it->replica == d.replica && it->counter == n + 1;
       it = cloud_.erase(it)) {
    n = it->counter;
  }
}

void DotContext::Merge(const DotContext& other) {
  for (const auto& [r, n] : other.compact_) {
    uint64_t& mine = compact_[r];
    if (n > mine) mine = n;
  }
  cloud_.insert(other.cloud_.begin(), other.cloud_.end());
  Compact();
}

DotContext DotContext::FromParts(std::map<ReplicaId, uint64_t> compact,
                                 std::set<Dot> cloud) {
  DotContext c;
  c.compact_ = std::move(compact);
  std::erase_if(c.compact_, [](const auto& kv) { return kv.second == 0; });
  c.cloud_ = std::move(cloud);
  std::erase_if(c.cloud_, [](const Dot& d) { return d.counter == 0; });
  c.Compact();
  return c;
}

void DotContext::Compact() {
  // Cloud dots are ordered by replica, then counter: one pass absorbs each
  // run that continues a replica's compact counter.
  for (auto it = cloud_.begin(); it != cloud_.end();) {
    uint64_t& n = compact_[it->replica];
    if (it->counter <= n + 1) {
      if (it->counter == n + 1) n = it->counter;
      it = cloud_.erase(it);
    } else {
      ++it;
    }
  }
  std::erase_if(compact_, [](const auto& kv) { return kv.second == 0; });
}

}  // namespace tally::crdt
