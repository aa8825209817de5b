#ifndef TALLY_KV_BATCH_H_
#define TALLY_KV_BATCH_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// The writes of one apply pass: an engine write batch plus an overlay so
// that later commands in the pass read what earlier ones wrote. The first
// read error is kept in status(); reads after it find nothing.
//
// Thread safety: one thread (the apply thread).
class Batch {
 public:
  explicit Batch(const storage::Engine* engine) : engine_(engine) {}

  std::optional<std::string> Read(const std::string& key) {
    auto it = overlay_.find(key);
    if (it != overlay_.end()) return it->second;
    absl::StatusOr<std::optional<std::string>> v = engine_->Get(key);
    if (!v.ok()) {
      Fail(v.status());
      return std::nullopt;
    }
    return *std::move(v);
  }
  void Put(const std::string& key, std::string value) {
    wb_.Put(key, value);
    overlay_[key] = std::move(value);
  }
  void Delete(const std::string& key) {
    wb_.Delete(key);
    overlay_[key] = std::nullopt;
  }
  // Calls fn(key, value) for every key under `prefix` as this batch sees it
  // (stored, or written earlier in the batch), in key order.
  void ForEach(
      const std::string& prefix,
      const std::function<void(const std::string&, const std::string&)>& fn) {
    std::map<std::string, std::string> seen;
    std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
         it->Next()) {
      seen.emplace(std::string(it->key()), std::string(it->value()));
    }
    if (!it->status().ok()) return Fail(it->status());
    for (auto o = overlay_.lower_bound(prefix);
         o != overlay_.end() && o->first.starts_with(prefix); ++o) {
      if (o->second) {
        seen[o->first] = *o->second;
      } else {
        seen.erase(o->first);
      }
    }
    for (const auto& [k, v] : seen) fn(k, v);
  }
  // Calls fn(key, value) for the keys under `prefix` from `start` on, as
  // this batch sees them, in key order, until fn returns false. Reads only
  // as far as it goes.
  void Scan(
      const std::string& prefix, const std::string& start,
      const std::function<bool(const std::string&, const std::string&)>& fn) {
    std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
    it->Seek(start);
    auto o = overlay_.lower_bound(start);
    auto stored = [&] { return it->Valid() && it->key().starts_with(prefix); };
    auto written = [&] {
      return o != overlay_.end() && o->first.starts_with(prefix);
    };
    while (stored() || written()) {
      if (written() && (!stored() || o->first <= it->key())) {
        // What the batch wrote hides what is stored under the same key.
        if (stored() && o->first == it->key()) it->Next();
        const auto& [key, value] = *o++;
        if (value && !fn(key, *value)) return;
        continue;
      }
      if (!fn(std::string(it->key()), std::string(it->value()))) return;
      it->Next();
    }
    if (!it->status().ok()) Fail(it->status());
  }
  void Fail(absl::Status s) {
    if (status_.ok()) status_ = std::move(s);
  }
  const storage::WriteBatch& writes() const { return wb_; }
  const absl::Status& status() const { return status_; }

 private:
  const storage::Engine* engine_;
  storage::WriteBatch wb_;
  std::map<std::string, std::optional<std::string>> overlay_;
  absl::Status status_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_BATCH_H_
