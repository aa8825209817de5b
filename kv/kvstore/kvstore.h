#ifndef TALLY_KV_KVSTORE_KVSTORE_H_
#define TALLY_KV_KVSTORE_KVSTORE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// The user's keys and values: puts, deletes and transactions (compare, then
// or else) within the shard, each write a new revision; and reads of what is
// applied. Key space 'd'.
//
// Thread safety: Apply on the apply thread; reads from any thread.
class KvStore final : public Module {
 public:
  // Neither is owned.
  KvStore(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine), keys_(keys) {}

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;

  absl::StatusOr<std::optional<kvpb::KeyValue>> Get(
      const std::string& key) const;
  // Keys in [start, end) (end empty: to the end), at most `limit`; `more` is
  // set when keys were left out.
  absl::StatusOr<std::vector<kvpb::KeyValue>> Range(const std::string& start,
                                                    const std::string& end,
                                                    size_t limit,
                                                    bool* more) const;

 private:
  std::optional<kvpb::StoredValue> Read(Batch& b, const std::string& key);
  void Put(Batch& b, const kvpb::Put& req, int64_t revision,
           kvpb::PutResult* resp);
  void Delete(Batch& b, const kvpb::Delete& req, kvpb::DeleteResult* resp);
  void Txn(Batch& b, const kvpb::Txn& txn, int64_t revision,
           kvpb::TxnResult* resp, bool* wrote);

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_KVSTORE_KVSTORE_H_
