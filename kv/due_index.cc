#include "kv/due_index.h"

#include <memory>

#include "kv/storage/leveldb_util.h"

namespace tally::kv {

std::string DueIndex::Key(int64_t at_ms, std::string_view name) const {
  std::string k = prefix_;
  storage::AppendBigEndian64(&k, static_cast<uint64_t>(at_ms));
  k.append(name);
  return k;
}

void DueIndex::Committed() {
  if (written_ == INT64_MAX) return;
  absl::MutexLock l(&mu_);
  next_ = std::min(next_.load(), written_);
  changed_ = true;
  written_ = INT64_MAX;
}

void DueIndex::Reloaded() {
  absl::MutexLock l(&mu_);
  next_ = INT64_MIN;
  changed_ = true;
  written_ = INT64_MAX;
}

absl::Status DueIndex::Scan(int64_t now, size_t max,
                            std::vector<std::string>* names,
                            int64_t* next) const {
  *next = INT64_MAX;
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix_); it->Valid() && it->key().starts_with(prefix_);
       it->Next()) {
    std::string_view rest = it->key().substr(prefix_.size());
    if (rest.size() < 8) return absl::DataLossError("malformed due index key");
    const auto at = static_cast<int64_t>(storage::ReadBigEndian64(rest));
    if (at > now || names->size() == max) {
      *next = at;
      break;
    }
    names->emplace_back(rest.substr(8));
  }
  return it->status();
}

std::vector<std::string> DueIndex::Due(int64_t now, size_t max) const {
  {
    absl::MutexLock l(&mu_);
    if (now < next_) return {};
    changed_ = false;
  }
  std::vector<std::string> names;
  int64_t next = INT64_MIN;
  absl::Status s = Scan(now, max, &names, &next);
  {
    // Until what is proposed for these is applied, they are still due:
    // look again next time (next_ stays at most `now`).
    absl::MutexLock l(&mu_);
    if (s.ok() && names.empty() && !changed_) next_ = next;
  }
  if (!s.ok()) return {};
  return names;
}

}  // namespace tally::kv
