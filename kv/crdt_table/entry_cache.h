#ifndef TALLY_KV_CRDT_TABLE_ENTRY_CACHE_H_
#define TALLY_KV_CRDT_TABLE_ENTRY_CACHE_H_

#include <cstddef>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"

namespace tally::kv {

// Values of a store's keys as last written (nullopt: absent), the recently
// used ones, within a budget of bytes. The caller keeps it true: every
// write of the store goes through Put once it is durable.
//
// Two generations instead of a list per entry: entries go into the young
// one; when it holds half the budget it becomes the old one (the old one
// before it is dropped), and an entry found in the old one moves back to
// the young. What was used within the last half budget is kept.
class EntryCache {
 public:
  explicit EntryCache(size_t budget_bytes) : budget_(budget_bytes) {}

  // Whether `key` is cached; if so its value is copied into `*value`.
  bool Find(const std::string& key, std::optional<std::string>* value);
  void Put(std::string key, std::optional<std::string> value);
  void Clear();

  // Values held: a key put again counts twice until its older value is
  // dropped with the old generation.
  size_t entries() const { return young_.size() + old_.size(); }
  // What the entries take, bookkeeping included (an estimate).
  size_t bytes() const { return young_bytes_ + old_bytes_; }

 private:
  using Map = absl::flat_hash_map<std::string, std::optional<std::string>>;
  static size_t Cost(const std::string& key,
                     const std::optional<std::string>& value);

  const size_t budget_;
  Map young_;
  Map old_;
  size_t young_bytes_ = 0;
  size_t old_bytes_ = 0;
};

}  // namespace tally::kv

#endif  // TALLY_KV_CRDT_TABLE_ENTRY_CACHE_H_
