#ifndef TALLY_KV_CRDT_TABLE_CAS_ROWS_H_
#define TALLY_KV_CRDT_TABLE_CAS_ROWS_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// The values of one row's cas_register columns together, at most.
inline constexpr size_t kMaxCrdtCasRowBytes = 256 * 1024;

// The strong path of the CRDT tables: a row's cas_register columns, kept in
// the data group of the range holding the row key (key space 'v', by table
// id and row) and changed only by a compare-and-set through raft. The
// row's other columns take writes on any node without a consensus round; a
// comparison with them could not be decided, since a write accepted on the
// other side of a partition is concurrent with it. The cas_register
// columns are linearizable instead: of two compare-and-sets decided on the
// same version of a row, one succeeds.
//
// A row's version is the index of its last change, so it only grows (a
// row whose values were all cleared is at version 0 again, and its next
// change takes a new index). The schema is checked before the command is
// proposed: a column's type never changes, so a cas_register stays one. A
// dropped table's rows stay behind under its id, like its replicated ones.
//
// Thread safety: Apply on the apply thread; Get from any thread.
class CrdtCasRows final : public Module {
 public:
  // Neither is owned.
  CrdtCasRows(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine), keys_(keys) {}

  // INVALID_ARGUMENT or NOT_FOUND naming what is wrong with `cas` for
  // `table` (its columns, sizes, a column set twice, nothing to set).
  static absl::Status Check(const kvpb::CrdtTable& table,
                            const kvpb::CrdtCas& cas);

  bool Handles(const kvpb::Command& cmd) const override {
    return cmd.has_crdt_cas();
  }
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;

  // The row as applied here: version 0 and no values if none is set.
  absl::StatusOr<kvpb::CrdtCasRow> Get(uint64_t table_id,
                                       const std::string& row) const;

 private:
  std::string Key(uint64_t table_id, const std::string& row) const;

  const storage::Engine* const engine_;
  const Keyspace* const keys_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_CRDT_TABLE_CAS_ROWS_H_
