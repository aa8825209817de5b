#ifndef TALLY_KV_IDEMPOTENCY_IDEMPOTENCY_H_
#define TALLY_KV_IDEMPOTENCY_IDEMPOTENCY_H_

#include <climits>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/due_index.h"
#include "kv/kvstore/kvstore.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// Limits on what a client names and stores.
inline constexpr size_t kMaxIdemScopeBytes = 128;
inline constexpr size_t kMaxIdemKeyBytes = 1024;
inline constexpr size_t kMaxIdemResponseBytes = 1 << 20;
inline constexpr int64_t kMaxIdemRetentionMs = 30LL * 24 * 3600 * 1000;
// Records reaped by one command at most.
inline constexpr size_t kMaxReapedPerCommand = 1000;

// Idempotency records: one per (scope, key), in the data group of the range
// holding the KV key scope + key. Key spaces 'i' (records) and 'j' (by when
// they go).
//
// Begin claims a key for a request (identified by its fingerprint) under a
// token, the raft index of the Begin; a claim runs out `ttl_ms` of log time
// after it was made or renewed, and a Begin after that takes the key over
// under a higher token. Finish and Renew must carry the current token, so
// an owner that was paused past its claim can finish nothing once another
// took over. A finished record (completed, or failed for good) answers
// every later Begin with its stored response; a retryable failure removes
// the record, so nothing transient is cached. A record goes `retention_ms`
// after it finished (or after its last claim ran out), proposed by the
// leader (Due) and decided again at the entry's log time. A completion may
// carry KV writes of the shard (effects), applied by KvStore in the same
// entry: the owner's work and its record commit together or not at all.
//
// Thread safety: Apply and Committed on the apply thread; reads from any
// thread.
class Idempotency final : public Module {
 public:
  // None is owned; `kv` applies a completion's effects.
  Idempotency(const storage::Engine* engine, const Keyspace* keys, KvStore* kv)
      : engine_(engine),
        keys_(keys),
        kv_(kv),
        reaps_(engine, keys->Key(Space::kIdemReap)) {}

  // INVALID_ARGUMENT naming what is wrong with a scope or key.
  static absl::Status CheckName(std::string_view scope, std::string_view key);

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override { reaps_.Committed(); }
  void Reloaded() override { reaps_.Reloaded(); }
  std::vector<kvpb::Command> Due(int64_t now) const override;
  int64_t NextDue() const override { return reaps_.next(); }

  // Reads of applied state.
  absl::StatusOr<std::optional<kvpb::IdemRecord>> Get(
      std::string_view scope, std::string_view key) const;
  // Records of `scope` whose key starts with `key_prefix`, from `after`
  // (exclusive; empty: the first), at most `limit`.
  absl::StatusOr<std::vector<std::pair<std::string, kvpb::IdemRecord>>> List(
      std::string_view scope, std::string_view key_prefix,
      std::string_view after, size_t limit) const;

 private:
  std::string RecordKey(std::string_view scope, std::string_view key) const;
  std::string ReapKey(int64_t at_ms, std::string_view scope,
                      std::string_view key) const;
  std::optional<kvpb::IdemRecord> Read(Batch& b, const std::string& key);
  // Writes `rec` (reap_at_ms set from its state) and moves its reap entry.
  void Write(ApplyContext& ctx, std::string_view scope, std::string_view key,
             kvpb::IdemRecord& rec, const std::optional<int64_t>& old_reap);
  void Remove(ApplyContext& ctx, std::string_view scope, std::string_view key,
              const kvpb::IdemRecord& rec);
  kvpb::CommandResult Begin(ApplyContext& ctx, const kvpb::IdemBegin& req);
  kvpb::CommandResult Finish(ApplyContext& ctx, const kvpb::IdemFinish& req);
  kvpb::CommandResult Renew(ApplyContext& ctx, const kvpb::IdemRenew& req);
  kvpb::CommandResult Reap(ApplyContext& ctx, const kvpb::IdemReap& req);
  // The record if `token` owns it (or finished it, if `finished_is_fine`);
  // otherwise nullopt and `refusal`.
  std::optional<kvpb::IdemRecord> Owned(ApplyContext& ctx,
                                        std::string_view scope,
                                        std::string_view key, uint64_t token,
                                        bool finished_is_fine,
                                        kvpb::CommandResult* refusal);

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  KvStore* const kv_;
  // Records by when they go ('j').
  DueIndex reaps_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_IDEMPOTENCY_IDEMPOTENCY_H_
