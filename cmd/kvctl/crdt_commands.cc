#include "cmd/kvctl/crdt_commands.h"

#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {
namespace {

constexpr const char* kTypes =
    "g_counter, pn_counter, lww_register, mv_register, flag, set, map or "
    "cas_register";

// "g_counter", ...: the enum's name without its prefix.
std::string Name(rpc::CrdtType t) {
  return absl::AsciiStrToLower(rpc::CrdtType_Name(t).substr(5));
}

// A column's type: "set", "map", "map<set>", "map<map<flag>>".
std::string TypeName(const rpc::CrdtColumn& c) {
  std::string out = Name(c.type()), close;
  for (int i = 0; i < c.value_types_size(); ++i) {
    const auto t = static_cast<rpc::CrdtType>(c.value_types(i));
    if (i + 1 == c.value_types_size() && t == rpc::CRDT_MV_REGISTER) break;
    absl::StrAppend(&out, "<", Name(t));
    close += ">";
  }
  return out + close;
}

absl::StatusOr<std::vector<rpc::CrdtColumn>> ParseColumns(
    const std::vector<std::string>& specs) {
  std::vector<rpc::CrdtColumn> out;
  for (const std::string& spec : specs) {
    const size_t colon = spec.find(':');
    std::vector<rpc::CrdtType> types;  // a map's, then its values'
    std::string t = colon == std::string::npos ? "" : spec.substr(colon + 1);
    while (t.starts_with("map<") && t.ends_with(">")) {
      types.push_back(rpc::CRDT_MAP);
      t = t.substr(4, t.size() - 5);
    }
    rpc::CrdtType leaf = rpc::CRDT_TYPE_UNKNOWN;
    if (colon == std::string::npos ||
        !rpc::CrdtType_Parse("CRDT_" + absl::AsciiStrToUpper(t), &leaf) ||
        leaf == rpc::CRDT_TYPE_UNKNOWN) {
      return absl::InvalidArgumentError(absl::StrCat(
          "column \"", spec, "\" must be NAME:TYPE, TYPE one of ", kTypes,
          " (a map's values: map<set>, map<map<flag>>, ...)"));
    }
    types.push_back(leaf);
    rpc::CrdtColumn c;
    c.set_name(spec.substr(0, colon));
    c.set_type(types[0]);
    for (size_t i = 1; i < types.size(); ++i) c.add_value_types(types[i]);
    out.push_back(std::move(c));
  }
  return out;
}

std::string Quoted(const std::string& s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

std::string QuotedAll(const std::vector<std::string>& values,
                      const char* separator) {
  std::vector<std::string> q;
  for (const std::string& v : values) q.push_back(Quoted(v));
  return absl::StrJoin(q, separator);
}

// A map: {"key": value, ...}, each value as its type shows it.
std::string Show(
    const google::protobuf::RepeatedPtrField<rpc::CrdtMapEntry>& entries) {
  std::vector<std::string> q;
  for (const rpc::CrdtMapEntry& e : entries) {
    std::string value;
    if (!e.entries().empty()) {
      value = Show(e.entries());
    } else if (!e.elements().empty()) {
      value =
          absl::StrCat("{",
                       QuotedAll(std::vector<std::string>{e.elements().begin(),
                                                          e.elements().end()},
                                 ", "),
                       "}");
    } else if (e.enabled()) {
      value = "enabled";
    } else {
      value = QuotedAll(
          std::vector<std::string>{e.values().begin(), e.values().end()},
          " | ");
    }
    q.push_back(absl::StrCat(Quoted(e.key()), ": ", value));
  }
  return absl::StrCat("{", absl::StrJoin(q, ", "), "}");
}

// The context of every register of a map, under the keys leading to it.
void PrintContexts(
    const google::protobuf::RepeatedPtrField<rpc::CrdtMapEntry>& entries,
    const std::string& path) {
  for (const rpc::CrdtMapEntry& e : entries) {
    const std::string at = path.empty()
                               ? Quoted(e.key())
                               : absl::StrCat(path, " ", Quoted(e.key()));
    if (!e.context().empty()) {
      std::cout << "  context of " << at << ": "
                << absl::Base64Escape(e.context()) << "\n";
    }
    PrintContexts(e.entries(), at);
  }
}

// COLUMN<tab>TYPE<tab>VALUE; an mv_register's context, each map register's,
// and a cas_register's row version, on a line of its own.
void Print(const rpc::CrdtValue& v, uint64_t cas_version) {
  std::string value;
  switch (v.type()) {
    case rpc::CRDT_G_COUNTER:
    case rpc::CRDT_PN_COUNTER:
      value = absl::StrCat(v.count());
      break;
    case rpc::CRDT_FLAG:
      value = v.enabled() ? "enabled" : "disabled";
      break;
    case rpc::CRDT_SET:
      value = absl::StrCat(
          "{",
          QuotedAll(
              std::vector<std::string>{v.values().begin(), v.values().end()},
              ", "),
          "}");
      break;
    case rpc::CRDT_MAP:
      value = Show(v.entries());
      break;
    default:
      value = v.values().empty()
                  ? "(unset)"
                  : QuotedAll(std::vector<std::string>{v.values().begin(),
                                                       v.values().end()},
                              " | ");
      if (v.values_size() > 1) absl::StrAppend(&value, "  (siblings)");
      break;
  }
  std::cout << v.column() << "\t" << Name(v.type()) << "\t" << value << "\n";
  if (v.type() == rpc::CRDT_MV_REGISTER && !v.context().empty()) {
    std::cout << "  context: " << absl::Base64Escape(v.context()) << "\n";
  }
  PrintContexts(v.entries(), "");
  if (v.type() == rpc::CRDT_CAS_REGISTER) {
    std::cout << "  version: " << cas_version << "\n";
  }
}

// "COLUMN=VALUE" (VALUE may be empty).
absl::StatusOr<rpc::CrdtCasValue> ParseAssignment(const std::string& spec,
                                                  const char* what) {
  const size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " \"", spec, "\" must be COLUMN=VALUE (VALUE may be empty)"));
  }
  rpc::CrdtCasValue v;
  v.set_column(spec.substr(0, eq));
  v.set_value(spec.substr(eq + 1));
  return v;
}

}  // namespace

CrdtCommands::CrdtCommands(CLI::App& app) {
  auto* crdt = app.add_subcommand(
      "crdt",
      "CRDT tables: rows writable on any node, even one cut off from the "
      "others, merged as replicas meet");
  crdt->require_subcommand(1);
  create_ =
      crdt->add_subcommand("create", "create TABLE with columns NAME:TYPE (" +
                                         std::string(kTypes) + ")");
  alter_ = crdt->add_subcommand(
      "alter",
      "add columns NAME:TYPE to TABLE (a column's type never changes)");
  for (auto* c : {create_, alter_}) {
    c->add_option("table", table_)->required();
    c->add_option("columns", columns_)->required();
  }
  drop_ = crdt->add_subcommand("drop", "drop TABLE and its rows");
  drop_->add_option("table", table_)->required();
  tables_ = crdt->add_subcommand("tables", "every table and its columns");
  incr_ = crdt->add_subcommand(
      "incr", "add N (default 1; negative for a pn_counter) to a counter");
  add_ = crdt->add_subcommand("add", "add elements to a set");
  remove_ = crdt->add_subcommand(
      "remove",
      "remove elements from a set or keys from a map (what this node has "
      "seen of them)");
  set_ = crdt->add_subcommand(
      "set",
      "write a register, or a map's key (--key); for an mv_register or a "
      "map's key pass the context of a read (--context) to replace the "
      "siblings it showed");
  cas_ = crdt->add_subcommand(
      "cas",
      "compare-and-set a row's cas_register columns through raft: set "
      "COLUMN=VALUE... if every --expect holds (exit 1 and print the row if "
      "not)");
  cas_->add_option("table", table_)->required();
  cas_->add_option("row", row_)->required();
  cas_->add_option("sets", sets_, "COLUMN=VALUE to set");
  cas_->add_option("--expect", expects_,
                   "COLUMN=VALUE the row must hold (repeatable)")
      ->allow_extra_args(false);
  cas_->add_option("--expect-unset", expect_unset_,
                   "a column that must hold nothing (repeatable)")
      ->allow_extra_args(false);
  cas_->add_option("--version", version_,
                   "the version the row must be at (0: no column holds a "
                   "value), as `crdt get` printed it");
  cas_->add_option("--clear", clears_, "a column to clear (repeatable)")
      ->allow_extra_args(false);
  enable_ = crdt->add_subcommand("enable", "enable a flag");
  disable_ = crdt->add_subcommand("disable", "disable a flag");
  get_ = crdt->add_subcommand(
      "get", "print a row: COLUMN TYPE VALUE (exit 1 if it holds nothing)");
  for (auto* c : {incr_, add_, remove_, set_, enable_, disable_, get_}) {
    c->add_option("table", table_)->required();
    c->add_option("row", row_)->required();
  }
  for (auto* c : {incr_, add_, remove_, set_, enable_, disable_}) {
    c->add_option("column", column_)->required();
  }
  incr_->add_option("n", amount_, "how much (default 1)");
  for (auto* c : {add_, remove_}) {
    c->add_option("elements", elements_)->required();
  }
  set_->add_option("value", value_)->required();
  set_->add_option("--context", context_,
                   "an mv_register's context, as `crdt get` printed it");
  for (auto* c : {set_, add_, remove_, enable_, disable_}) {
    c->add_option("--key", keys_,
                  "in a map column: the key (one per level of maps, "
                  "repeated) leading to the value written; fewer name a map "
                  "inside, whose keys `remove` removes")
        ->allow_extra_args(false);
  }
  get_->add_flag("--majority", majority_,
                 "merge the row from a majority of the nodes first");
  status_ = crdt->add_subcommand(
      "status",
      "each endpoint's replica: size, garbage collection, and per peer the "
      "deltas pending, sent and dropped and the last anti-entropy round");
  retire_ = crdt->add_subcommand(
      "retire",
      "retire the CRDT replica of a node gone for good, so that garbage "
      "collection stops waiting for it (if the node comes back, it throws "
      "its rows away and resyncs; what it had not passed on is lost)");
  retire_->add_option("node", node_, "the node's id")->required();
}

int CrdtCommands::Update(client::Client& c, rpc::CrdtOp op, const Output& out) {
  rpc::CrdtUpdateRequest req;
  req.set_table(table_);
  req.set_row(row_);
  op.set_column(column_);
  for (const std::string& k : keys_) op.add_path(k);
  *req.add_ops() = std::move(op);
  auto r = c.CrdtUpdate(req);
  if (!r.ok()) return Fail(r.status());
  if (out.json()) {
    out.Print(*r);
  } else {
    std::cout << "OK (n" << r->node() << ")\n";
  }
  return kExitOk;
}

int CrdtCommands::Cas(client::Client& c, const Output& out) {
  rpc::CrdtCasRequest req;
  req.set_table(table_);
  req.set_row(row_);
  if (version_) {
    req.set_check_version(true);
    req.set_version(*version_);
  }
  for (const std::string& e : expects_) {
    auto v = ParseAssignment(e, "--expect");
    if (!v.ok()) return Fail(v.status());
    *req.add_compare() = *std::move(v);
  }
  for (const std::string& col : expect_unset_) {
    rpc::CrdtCasValue* v = req.add_compare();
    v->set_column(col);
    v->set_unset(true);
  }
  for (const std::string& s : sets_) {
    auto v = ParseAssignment(s, "set");
    if (!v.ok()) return Fail(v.status());
    *req.add_set() = *std::move(v);
  }
  for (const std::string& col : clears_) {
    rpc::CrdtCasValue* v = req.add_set();
    v->set_column(col);
    v->set_unset(true);
  }
  auto r = c.CrdtCas(std::move(req));
  if (!r.ok()) return Fail(r.status());
  if (out.json()) {
    out.Print(*r);
  } else {
    std::cout << (r->succeeded() ? "OK" : "NOT SET: the row did not match")
              << " (version " << r->version() << ")\n";
    if (!r->succeeded()) {
      for (const rpc::CrdtCasValue& v : r->values()) {
        std::cout << v.column() << "\t" << Quoted(v.value()) << "\n";
      }
    }
  }
  return r->succeeded() ? kExitOk : kExitNo;
}

std::optional<int> CrdtCommands::Run(client::Client& c, const Output& out) {
  if (*create_ || *alter_) {
    auto cols = ParseColumns(columns_);
    if (!cols.ok()) return Fail(cols.status());
    auto r = *create_ ? c.CrdtCreateTable(table_, *cols)
                      : c.CrdtAlterTable(table_, *cols);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else {
      std::cout << "OK\n";
    }
    return kExitOk;
  }
  if (*drop_) {
    absl::Status st = c.CrdtDropTable(table_);
    if (!st.ok()) return Fail(st);
    out.Ok({{"table", table_}, {"dropped", true}});
    return kExitOk;
  }
  if (*tables_) {
    auto r = c.CrdtTables();
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print({{"tables", ToJson(*r)}});
      return kExitOk;
    }
    for (const rpc::CrdtTable& t : *r) {
      std::vector<std::string> cols;
      for (const rpc::CrdtColumn& col : t.columns()) {
        cols.push_back(absl::StrCat(col.name(), ":", TypeName(col)));
      }
      std::cout << t.name() << "\t" << absl::StrJoin(cols, " ") << "\n";
    }
    return kExitOk;
  }
  rpc::CrdtOp op;
  if (*incr_) {
    op.set_kind(rpc::CrdtOp::INCREMENT);
    op.set_amount(amount_);
    return Update(c, op, out);
  }
  if (*add_ || *remove_) {
    op.set_kind(*add_ ? rpc::CrdtOp::ADD : rpc::CrdtOp::REMOVE);
    for (const std::string& e : elements_) op.add_elements(e);
    return Update(c, op, out);
  }
  if (*set_) {
    op.set_kind(rpc::CrdtOp::SET);
    op.set_value(value_);
    std::string context;
    if (!context_.empty() && !absl::Base64Unescape(context_, &context)) {
      return Fail(absl::InvalidArgumentError(
          "--context is not base64 (pass it as `crdt get` printed it)"));
    }
    op.set_context(context);
    return Update(c, op, out);
  }
  if (*enable_ || *disable_) {
    op.set_kind(*enable_ ? rpc::CrdtOp::ENABLE : rpc::CrdtOp::DISABLE);
    return Update(c, op, out);
  }
  if (*get_) {
    auto r = c.CrdtGet(table_, row_,
                       majority_ ? rpc::CRDT_MAJORITY : rpc::CRDT_LOCAL);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else {
      for (const rpc::CrdtValue& v : r->values()) Print(v, r->cas_version());
    }
    return r->values().empty() ? kExitNo : kExitOk;
  }
  if (*cas_) return Cas(c, out);
  if (*retire_) {
    auto r = c.CrdtRetire(node_);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print({{"node", JsonInt(node_)},
                 {"replica", JsonInt(*r)},
                 {"retired", true}});
    } else {
      std::cout << "OK (retired replica " << absl::StrCat(absl::Hex(*r))
                << " of n" << node_ << ")\n";
    }
    return kExitOk;
  }
  if (*status_) {
    int rc = kExitOk;
    EndpointResults all;
    for (const std::string& ep : c.endpoints()) {
      auto r = c.CrdtStatus(ep);
      all.Add(ep, r);
      if (!r.ok()) {
        if (!out.json())
          std::cout << ep << "\t" << r.status().message() << "\n";
        rc = kExitUnavailable;
        continue;
      }
      if (out.json()) continue;
      std::cout << "n" << r->node() << " (" << ep << ") replica "
                << absl::StrCat(absl::Hex(r->replica())) << ": " << r->entries()
                << " entries, " << r->bytes() << " bytes, " << r->elements()
                << " set elements; refused changes " << r->refused_changes()
                << (r->registered() ? "" : "; NOT REGISTERED (updates wait)")
                << (r->removed()
                        ? "; REMOVED from the cluster (updates refused)"
                    : r->leaving()
                        ? "; LEAVING (updates refused while its rows are "
                          "handed over)"
                        : "")
                << "\n";
      std::vector<std::string> floor;
      for (const rpc::CrdtCount& f : r->floor()) {
        floor.push_back(absl::StrCat(absl::Hex(f.replica()), ":", f.counter()));
      }
      std::cout << "  gc: " << r->tombstones()
                << " tombstones awaiting the cut, " << r->collected()
                << " collected; cut epoch " << r->cut_epoch() << ", floor {"
                << absl::StrJoin(floor, " ") << "}";
      if (r->resyncs() > 0) std::cout << "; resynced " << r->resyncs() << "x";
      std::cout << "\n";
      for (const rpc::CrdtReplicaStatus& rs : r->replicas()) {
        if (rs.retired()) continue;
        std::cout << "  replica " << absl::StrCat(absl::Hex(rs.replica()))
                  << " of n" << rs.node() << " active\n";
      }
      for (const rpc::CrdtPeerStatus& p : r->peers()) {
        std::cout << "  n" << p.node() << "\t"
                  << (p.in_sync() ? "in sync"
                                  : absl::StrCat(p.differing_buckets(),
                                                 " buckets differ"))
                  << ", last sync "
                  << (p.last_sync_ago_ms() < 0
                          ? std::string("never")
                          : absl::StrCat(p.last_sync_ago_ms() / 1000.0,
                                         " s ago"))
                  << "; deltas pending " << p.pending_deltas() << ", sent "
                  << p.sent_deltas() << ", dropped " << p.dropped_deltas()
                  << "; pulled " << p.rows_pulled() << " rows";
        if (!p.last_error().empty()) std::cout << "; " << p.last_error();
        std::cout << "\n";
      }
    }
    if (out.json()) out.Print(all.json());
    return rc;
  }
  return std::nullopt;
}

}  // namespace tally::kvctl
