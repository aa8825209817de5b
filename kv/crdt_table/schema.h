#ifndef TALLY_KV_CRDT_TABLE_SCHEMA_H_
#define TALLY_KV_CRDT_TABLE_SCHEMA_H_

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kv/module.h"
#include "kv/storage/engine.h"

namespace tally::kv {

// Limits of a CRDT table's schema.
inline constexpr size_t kMaxCrdtNameBytes = 64;
inline constexpr int kMaxCrdtColumns = 64;
// Maps inside maps: at most this many levels of keys.
inline constexpr int kMaxCrdtMapDepth = 3;

// The schemas of the CRDT tables, kept in the metadata group (key space
// 'c'): created, altered (columns added) and dropped through raft, so every
// node agrees on a table's id and on each column's type. The rows are not
// here: each node keeps its replica of them (crdt_table/replica.h) and
// accepts writes without a consensus round.
//
// A column's type never changes: a replica that has merged counter states
// into a column could not read them as a set. A dropped table's rows stay
// behind under its id; a table created again under the name gets a new id
// and starts empty.
//
// Thread safety: Apply on the apply thread; reads from any thread.
class CrdtSchema final : public Module {
 public:
  // Neither is owned.
  CrdtSchema(const storage::Engine* engine, const Keyspace* keys)
      : engine_(engine), keys_(keys) {}

  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void Committed() override;
  void Reloaded() override { generation_.fetch_add(1); }

  // Grows after every change of a schema is stored: what was read before
  // is still current while it stays the same.
  uint64_t generation() const { return generation_.load(); }

  // nullopt if there is no such table.
  absl::StatusOr<std::optional<kvpb::CrdtTable>> Get(
      const std::string& name) const;
  // Every table, by name.
  absl::StatusOr<std::vector<kvpb::CrdtTable>> List() const;

  // INVALID_ARGUMENT naming what is wrong with a table or column name: 1 to
  // 64 bytes of [a-z0-9_-], starting with a letter.
  static absl::Status CheckName(const std::string& what,
                                const std::string& name);
  // Names and types of new columns, against `existing` ones.
  static absl::Status CheckColumns(
      const google::protobuf::RepeatedPtrField<kvpb::CrdtColumn>& add,
      const google::protobuf::RepeatedPtrField<kvpb::CrdtColumn>& existing);

 private:
  const storage::Engine* const engine_;
  const Keyspace* const keys_;
  bool changed_ = false;  // by the apply pass in progress
  std::atomic<uint64_t> generation_{0};
};

// "g_counter", "pn_counter", "lww_register", "mv_register", "flag", "set",
// "map", "cas_register".
const char* CrdtTypeName(kvpb::CrdtColumnType t);
// A column's type with a map's values: "map<set>", "map<map<flag>>"; a map
// of mv-registers is "map".
std::string CrdtColumnTypeName(const kvpb::CrdtColumn& c);
// The inverse; nullopt for an unknown name.
std::optional<kvpb::CrdtColumnType> ParseCrdtType(const std::string& name);

}  // namespace tally::kv

#endif  // TALLY_KV_CRDT_TABLE_SCHEMA_H_
