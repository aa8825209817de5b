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

  bool Handles(const rpc::Command& cmd) const override;
  rpc::CommandResult Apply(ApplyContext& ctx, const rpc::Command& cmd) override;

  absl::StatusOr<std::optional<rpc::KeyValue>> Get(
      const std::string& key) const;
  // Keys in [start, end) (end empty: to the end), at most `limit`; `more` is
  // set when keys were left out.
  absl::StatusOr<std::vector<rpc::KeyValue>> Range(const std::string& start,
                                                   const std::string& end,
                                                   size_t limit,
                                                   bool* more) const;

 private:
  std::optional<rpc::StoredValue> Read(Batch& b, const std::string& key);
  void Put(Batch& b, const rpc::PutRequest& req, int64_t revision,
           rpc::PutResponse* resp);
  void Delete(Batch& b, const rpc::DeleteRequest& req,
              rpc::DeleteResponse* resp);
  void Txn(Batch& b, const rpc::TxnRequest& txn, int64_t revision,
           rpc::TxnResponse* resp, bool* wrote);

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_KVSTORE_KVSTORE_H_
