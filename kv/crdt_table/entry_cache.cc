#include "kv/crdt_table/entry_cache.h"

#include <utility>

namespace tally::kv {

size_t EntryCache::Cost(const std::string& key,
                        const std::optional<std::string>& value) {
  // The slot (a key and an optional value) and its control byte, plus the
  // bytes of both strings (allocated apart when they are long).
  constexpr size_t kSlot =
      sizeof(std::string) + sizeof(std::optional<std::string>) + 1;
  return kSlot + key.size() + (value ? value->size() : 0);
}

bool EntryCache::Find(const std::string& key,
                      std::optional<std::string>* value) {
  if (auto it = young_.find(key); it != young_.end()) {
    *value = it->second;
    return true;
  }
  auto it = old_.find(key);
  if (it == old_.end()) return false;
  *value = it->second;
  auto node = old_.extract(it);
  old_bytes_ -= Cost(node.key(), node.mapped());
  Put(std::move(node.key()), std::move(node.mapped()));
  return true;
}

void EntryCache::Put(std::string key, std::optional<std::string> value) {
  // An older value of the key in the old generation stays until it is
  // dropped with it: Find looks in the young one first.
  if (budget_ == 0) return;
  const size_t cost = Cost(key, value);
  auto [it, added] = young_.try_emplace(std::move(key));
  if (!added) young_bytes_ -= Cost(it->first, it->second);
  it->second = std::move(value);
  young_bytes_ += cost;
  if (young_bytes_ > budget_ / 2) {
    old_ = std::move(young_);
    old_bytes_ = young_bytes_;
    young_ = Map();
    young_.reserve(old_.size());  // about what it will hold: no rehashing
    young_bytes_ = 0;
  }
}

void EntryCache::Clear() {
  young_ = Map();
  old_ = Map();
  young_bytes_ = old_bytes_ = 0;
}

}  // namespace tally::kv
