#include "kv/crdt_table/cas_rows.h"

#include <map>
#include <optional>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/crdt_table/replica.h"
#include "kv/crdt_table/schema.h"

namespace tally::kv {

namespace {

const kvpb::CrdtCasValue* Find(const kvpb::CrdtCasRow& row,
                               const std::string& column) {
  for (const kvpb::CrdtCasValue& v : row.values()) {
    if (v.column() == column) return &v;
  }
  return nullptr;
}

absl::Status CheckRow(const std::string& row) {
  if (row.empty() || row.size() > kMaxCrdtRowBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("a row key must be 1 to ", kMaxCrdtRowBytes, " bytes"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CrdtCasRows::Check(const kvpb::CrdtTable& table,
                                const kvpb::CrdtCas& cas) {
  if (absl::Status s = CheckRow(cas.row()); !s.ok()) return s;
  if (cas.sets().empty()) {
    return absl::InvalidArgumentError(
        "nothing to set: name at least one cas_register column to set or "
        "clear");
  }
  auto check_column = [&](const kvpb::CrdtCasValue& v) -> absl::Status {
    const kvpb::CrdtColumn* col = nullptr;
    for (const kvpb::CrdtColumn& c : table.columns()) {
      if (c.name() == v.column()) col = &c;
    }
    if (col == nullptr) {
      return absl::NotFoundError(absl::StrCat("CRDT table ", table.name(),
                                              " has no column ", v.column()));
    }
    if (col->type() != kvpb::CRDT_CAS_REGISTER) {
      return absl::InvalidArgumentError(absl::StrCat(
          "column ", v.column(), " is a ", CrdtTypeName(col->type()),
          ", replicated without consensus: only cas_register columns are "
          "compared and set through raft"));
    }
    if (v.value().size() > kMaxCrdtValueBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("a value of column ", v.column(), " exceeds ",
                       kMaxCrdtValueBytes, " bytes"));
    }
    if (v.unset() && !v.value().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "column ", v.column(), " is given both a value and unset"));
    }
    return absl::OkStatus();
  };
  for (const kvpb::CrdtCasValue& v : cas.compares()) {
    if (absl::Status s = check_column(v); !s.ok()) return s;
  }
  std::set<std::string> set;
  for (const kvpb::CrdtCasValue& v : cas.sets()) {
    if (absl::Status s = check_column(v); !s.ok()) return s;
    if (!set.insert(v.column()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("column ", v.column(), " is set twice"));
    }
  }
  return absl::OkStatus();
}

std::string CrdtCasRows::Key(uint64_t table_id, const std::string& row) const {
  return keys_->IdKey(Space::kCrdtCasRow, table_id) + row;
}

kvpb::CommandResult CrdtCasRows::Apply(ApplyContext& ctx,
                                       const kvpb::Command& cmd) {
  const kvpb::CrdtCas& cas = cmd.crdt_cas();
  if (absl::Status s = CheckRow(cas.row()); !s.ok()) {
    return Refusal(s.code(), std::string(s.message()));
  }
  const std::string key = Key(cas.table_id(), cas.row());
  std::optional<std::string> stored = ctx.batch.Read(key);
  kvpb::CrdtCasRow row;
  if (stored && !row.ParseFromString(*stored)) {
    return Refusal(absl::StatusCode::kDataLoss,
                   "malformed cas_register columns of a CRDT row");
  }
  bool holds = !cas.check_version() || cas.version() == row.version();
  for (const kvpb::CrdtCasValue& c : cas.compares()) {
    const kvpb::CrdtCasValue* v = Find(row, c.column());
    holds = holds && (c.unset() ? v == nullptr
                                : v != nullptr && v->value() == c.value());
  }
  if (holds) {
    std::map<std::string, std::string> values;
    for (kvpb::CrdtCasValue& v : *row.mutable_values()) {
      values[v.column()] = std::move(*v.mutable_value());
    }
    for (const kvpb::CrdtCasValue& s : cas.sets()) {
      if (s.unset()) {
        values.erase(s.column());
      } else {
        values[s.column()] = s.value();
      }
    }
    size_t bytes = 0;
    for (const auto& [column, value] : values) bytes += value.size();
    if (bytes > kMaxCrdtCasRowBytes) {
      return Refusal(
          absl::StatusCode::kInvalidArgument,
          absl::StrCat("the row's cas_register values would take ", bytes,
                       " bytes; at most ", kMaxCrdtCasRowBytes, " together"));
    }
    row.clear_values();
    for (auto& [column, value] : values) {
      kvpb::CrdtCasValue* v = row.add_values();
      v->set_column(column);
      v->set_value(std::move(value));
    }
    if (row.values().empty()) {
      row.set_version(0);
      ctx.batch.Delete(key);
    } else {
      row.set_version(ctx.index);
      ctx.batch.Put(key, row.SerializeAsString());
    }
  }
  kvpb::CommandResult r;
  kvpb::CrdtCasResult* out = r.mutable_crdt_cas();
  ctx.Header(out->mutable_header());
  out->set_succeeded(holds);
  *out->mutable_row() = std::move(row);
  return r;
}

absl::StatusOr<kvpb::CrdtCasRow> CrdtCasRows::Get(
    uint64_t table_id, const std::string& row) const {
  absl::StatusOr<std::optional<std::string>> v =
      engine_->Get(Key(table_id, row));
  if (!v.ok()) return v.status();
  kvpb::CrdtCasRow out;
  if (v->has_value() && !out.ParseFromString(**v)) {
    return absl::DataLossError("malformed cas_register columns of a CRDT row");
  }
  return out;
}

}  // namespace tally::kv
