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
// Fence floors (key space 'f'): a key prefix bound to a lock (FenceBind)
// takes only writes that carry a fence token (kvpb::Command.fence_token) no
// lower than the highest it has accepted; a write or transaction with a
// stale token or none is refused whole (FAILED_PRECONDITION, naming the
// token accepted). Tokens come from the lock module of the metadata group
// and grow across every lock, so a floor needs nothing but a comparison.
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
  void Reloaded() override { fences_ = Fences::kUnknown; }

  absl::StatusOr<std::optional<kvpb::KeyValue>> Get(
      const std::string& key) const;
  // The fence bound to exactly `prefix`, if any.
  absl::StatusOr<std::optional<kvpb::FenceRecord>> Fence(
      const std::string& prefix) const;
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
  void Txn(Batch& b, const kvpb::Txn& txn, bool ok, int64_t revision,
           kvpb::TxnResult* resp, bool* wrote);
  kvpb::CommandResult Bind(ApplyContext& ctx, const kvpb::FenceBind& req);
  // A refusal if a fence of the written keys refuses `token` (0: none);
  // otherwise raises their floors to it.
  std::optional<kvpb::CommandResult> CheckFences(
      Batch& b, const std::vector<const std::string*>& writes, uint64_t token);

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  // Whether the group has fences at all, so that writes to a group without
  // any skip the lookup (apply thread; unknown until a write looks).
  enum class Fences { kUnknown, kNone, kSome };
  Fences fences_ = Fences::kUnknown;
};

}  // namespace tally::kv

#endif  // TALLY_KV_KVSTORE_KVSTORE_H_
