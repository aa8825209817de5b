#include "kv/crdt_table/schema.h"

#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace tally::kv {

namespace {

struct TypeName {
  kvpb::CrdtColumnType type;
  const char* name;
};
constexpr TypeName kTypeNames[] = {
    {kvpb::CRDT_G_COUNTER, "g_counter"},
    {kvpb::CRDT_PN_COUNTER, "pn_counter"},
    {kvpb::CRDT_LWW_REGISTER, "lww_register"},
    {kvpb::CRDT_MV_REGISTER, "mv_register"},
    {kvpb::CRDT_EW_FLAG, "flag"},
    {kvpb::CRDT_AW_SET, "set"},
    {kvpb::CRDT_AW_MAP, "map"},
    {kvpb::CRDT_CAS_REGISTER, "cas_register"},
};

kvpb::CommandResult Result(ApplyContext& ctx, const kvpb::CrdtTable& t) {
  kvpb::CommandResult r;
  ctx.Header(r.mutable_crdt_table()->mutable_header());
  *r.mutable_crdt_table()->mutable_table() = t;
  return r;
}

}  // namespace

const char* CrdtTypeName(kvpb::CrdtColumnType t) {
  for (const TypeName& n : kTypeNames) {
    if (n.type == t) return n.name;
  }
  return "unknown";
}

std::string CrdtColumnTypeName(const kvpb::CrdtColumn& c) {
  std::string out = CrdtTypeName(c.type());
  std::string close;
  for (int i = 0; i < c.value_types_size(); ++i) {
    const kvpb::CrdtColumnType t = c.value_types(i);
    // The innermost map's registers go unsaid, as for a map of them.
    if (i + 1 == c.value_types_size() && t == kvpb::CRDT_MV_REGISTER) break;
    absl::StrAppend(&out, "<", CrdtTypeName(t));
    close += ">";
  }
  return out + close;
}

std::optional<kvpb::CrdtColumnType> ParseCrdtType(const std::string& name) {
  for (const TypeName& n : kTypeNames) {
    if (name == n.name) return n.type;
  }
  return std::nullopt;
}

absl::Status CrdtSchema::CheckName(const std::string& what,
                                   const std::string& name) {
  bool ok = !name.empty() && name.size() <= kMaxCrdtNameBytes &&
            name[0] >= 'a' && name[0] <= 'z';
  for (char c : name) {
    ok = ok && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                c == '-');
  }
  if (ok) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " name \"", name, "\" must be 1 to ", kMaxCrdtNameBytes,
      " characters of a-z, 0-9, _ and -, starting with a letter"));
}

namespace {

// A map's value types: registers, flags, sets, or maps of them, at most
// kMaxCrdtMapDepth levels; other types have none.
absl::Status CheckValueTypes(const kvpb::CrdtColumn& c) {
  if (c.value_types().empty()) return absl::OkStatus();
  if (c.type() != kvpb::CRDT_AW_MAP) {
    return absl::InvalidArgumentError(
        absl::StrCat("column ", c.name(), " is a ", CrdtTypeName(c.type()),
                     ": only a map has value types"));
  }
  int maps = 1;
  for (int i = 0; i < c.value_types_size(); ++i) {
    const kvpb::CrdtColumnType t = c.value_types(i);
    const bool last = i + 1 == c.value_types_size();
    if (t == kvpb::CRDT_AW_MAP) {
      ++maps;
    } else if ((t != kvpb::CRDT_MV_REGISTER && t != kvpb::CRDT_EW_FLAG &&
                t != kvpb::CRDT_AW_SET) ||
               !last) {
      return absl::InvalidArgumentError(absl::StrCat(
          "column ", c.name(),
          ": a map holds mv_registers, flags, sets or maps of them, not ",
          CrdtTypeName(t), last ? "" : " with values of its own"));
    }
  }
  if (maps > kMaxCrdtMapDepth) {
    return absl::InvalidArgumentError(absl::StrCat("column ", c.name(),
                                                   ": maps nest at most ",
                                                   kMaxCrdtMapDepth, " deep"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CrdtSchema::CheckColumns(
    const google::protobuf::RepeatedPtrField<kvpb::CrdtColumn>& add,
    const google::protobuf::RepeatedPtrField<kvpb::CrdtColumn>& existing) {
  if (add.empty()) {
    return absl::InvalidArgumentError("no columns given");
  }
  if (add.size() + existing.size() > kMaxCrdtColumns) {
    return absl::InvalidArgumentError(
        absl::StrCat("a table has at most ", kMaxCrdtColumns, " columns"));
  }
  std::set<std::string> names;
  for (const kvpb::CrdtColumn& c : existing) names.insert(c.name());
  for (const kvpb::CrdtColumn& c : add) {
    if (absl::Status s = CheckName("column", c.name()); !s.ok()) return s;
    if (CrdtTypeName(c.type()) == std::string("unknown")) {
      return absl::InvalidArgumentError(
          absl::StrCat("column ", c.name(),
                       " has no type (one of g_counter, pn_counter, "
                       "lww_register, mv_register, flag, set, map, "
                       "cas_register)"));
    }
    if (absl::Status s = CheckValueTypes(c); !s.ok()) return s;
    for (const kvpb::CrdtColumn& e : existing) {
      if (e.name() == c.name() &&
          CrdtColumnTypeName(e) != CrdtColumnTypeName(c)) {
        return absl::FailedPreconditionError(absl::StrCat(
            "column ", c.name(), " is a ", CrdtColumnTypeName(e),
            "; a column's type never changes (add a column under a new name)"));
      }
    }
    if (!names.insert(c.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("column ", c.name(), " already exists"));
    }
  }
  return absl::OkStatus();
}

bool CrdtSchema::Handles(const kvpb::Command& cmd) const {
  return cmd.has_crdt_table_create() || cmd.has_crdt_table_alter() ||
         cmd.has_crdt_table_drop();
}

void CrdtSchema::Committed() {
  if (std::exchange(changed_, false)) generation_.fetch_add(1);
}

kvpb::CommandResult CrdtSchema::Apply(ApplyContext& ctx,
                                      const kvpb::Command& cmd) {
  Batch& b = ctx.batch;
  const std::string& name =
      cmd.has_crdt_table_create()  ? cmd.crdt_table_create().name()
      : cmd.has_crdt_table_alter() ? cmd.crdt_table_alter().name()
                                   : cmd.crdt_table_drop();
  if (absl::Status s = CheckName("table", name); !s.ok()) {
    return Refusal(s.code(), std::string(s.message()));
  }
  const std::string key = keys_->Key(Space::kCrdtTable, name);
  std::optional<std::string> stored = b.Read(key);
  kvpb::CrdtTable t;
  if (stored && !t.ParseFromString(*stored)) {
    return Refusal(absl::StatusCode::kDataLoss,
                   absl::StrCat("malformed schema of CRDT table ", name));
  }
  if (cmd.has_crdt_table_create()) {
    if (stored) {
      return Refusal(absl::StatusCode::kAlreadyExists,
                     absl::StrCat("CRDT table ", name, " already exists"));
    }
    if (absl::Status s =
            CheckColumns(cmd.crdt_table_create().columns(), t.columns());
        !s.ok()) {
      return Refusal(s.code(), std::string(s.message()));
    }
    t.set_name(name);
    t.set_id(ctx.index);
    *t.mutable_columns() = cmd.crdt_table_create().columns();
    t.set_created_ms(ctx.state.log_time_ms());
  } else if (!stored) {
    return Refusal(absl::StatusCode::kNotFound,
                   absl::StrCat("no CRDT table ", name));
  } else if (cmd.has_crdt_table_alter()) {
    if (absl::Status s =
            CheckColumns(cmd.crdt_table_alter().add_columns(), t.columns());
        !s.ok()) {
      return Refusal(s.code(), std::string(s.message()));
    }
    for (const kvpb::CrdtColumn& c : cmd.crdt_table_alter().add_columns()) {
      *t.add_columns() = c;
    }
  } else {
    b.Delete(key);
    changed_ = true;
    return Result(ctx, t);
  }
  t.set_version(ctx.index);
  b.Put(key, t.SerializeAsString());
  changed_ = true;
  return Result(ctx, t);
}

absl::StatusOr<std::optional<kvpb::CrdtTable>> CrdtSchema::Get(
    const std::string& name) const {
  absl::StatusOr<std::optional<std::string>> v =
      engine_->Get(keys_->Key(Space::kCrdtTable, name));
  if (!v.ok()) return v.status();
  if (!v->has_value()) return std::nullopt;
  kvpb::CrdtTable t;
  if (!t.ParseFromString(**v)) {
    return absl::DataLossError(
        absl::StrCat("malformed schema of CRDT table ", name));
  }
  return t;
}

absl::StatusOr<std::vector<kvpb::CrdtTable>> CrdtSchema::List() const {
  std::vector<kvpb::CrdtTable> out;
  const std::string prefix = keys_->Key(Space::kCrdtTable);
  std::unique_ptr<storage::Iterator> it = engine_->NewIterator();
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix);
       it->Next()) {
    kvpb::CrdtTable t;
    if (!t.ParseFromArray(it->value().data(),
                          static_cast<int>(it->value().size()))) {
      return absl::DataLossError("malformed CRDT table schema");
    }
    out.push_back(std::move(t));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

}  // namespace tally::kv
