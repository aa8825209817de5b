#include "raft/interaction_env.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "util/status_macros.h"

namespace tally::raft::testing {
namespace {

absl::StatusOr<uint64_t> ParseNumber(const std::string& s) {
  uint64_t v;
  if (!absl::SimpleAtoi(s, &v)) {
    return absl::InvalidArgumentError("not a number: " + s);
  }
  return v;
}

absl::StatusOr<bool> ParseBool(const std::string& s) {
  if (s == "true") return true;
  if (s == "false") return false;
  return absl::InvalidArgumentError("not a boolean: " + s);
}

std::string Indent(const std::string& text) {
  if (text.empty()) return text;
  return "  " + absl::StrReplaceAll(text, {{"\n", "\n  "}});
}

}  // namespace

std::string InteractionEnv::Run(const std::string& command,
                                const std::vector<std::string>& args) {
  absl::StatusOr<std::string> out = Dispatch(command, args);
  if (!out.ok()) return "error: " + std::string(out.status().message());
  return *out;
}

absl::StatusOr<std::string> InteractionEnv::Dispatch(
    const std::string& command, const std::vector<std::string>& args) {
  if (command == "add-nodes") return AddNodes(args);
  if (command == "heal") {
    cut_.clear();
    return "ok";
  }
  if (command == "partition") return Partition(args);
  if (command == "stabilize" || command == "process-ready" ||
      command == "deliver-msgs" || command == "status") {
    ASSIGN_OR_RETURN(std::vector<NodeId> ids, Ids(args));
    if (command == "stabilize") return Stabilize(ids);
    std::vector<std::string> out;
    for (NodeId id : ids) {
      std::string s = command == "process-ready"  ? ProcessReady(id)
                      : command == "deliver-msgs" ? DeliverMsgs(id)
                                                  : Status(id);
      if (!s.empty()) out.push_back(std::move(s));
    }
    return out.empty() ? "ok" : absl::StrJoin(out, "\n");
  }
  if (args.empty())
    return absl::InvalidArgumentError(command + " needs a node id");
  ASSIGN_OR_RETURN(const NodeId id, ParseNumber(args[0]));
  if (!nodes_.count(id))
    return absl::NotFoundError(absl::StrCat("no node ", id));
  RawNode& raw = *nodes_.at(id).raw;
  if (command == "campaign") {
    raw.Campaign();
    return "ok";
  }
  if (command == "propose") {
    if (args.size() != 2)
      return absl::InvalidArgumentError("usage: propose ID DATA");
    absl::StatusOr<Index> index = raw.Propose(args[1]);
    if (!index.ok()) return index.status().ToString();
    return absl::StrCat("index=", *index);
  }
  if (command == "tick") {
    uint64_t n = 1;
    if (args.size() > 1) {
      ASSIGN_OR_RETURN(n, ParseNumber(args[1]));
    }
    for (uint64_t i = 0; i < n; ++i) raw.Tick();
    return "ok";
  }
  if (command == "tick-election") {
    const int n = raw.raft().randomized_election_timeout();
    for (int i = 0; i < n; ++i) raw.Tick();
    return "ok";
  }
  if (command == "log") return Log(id);
  if (command == "propose-conf-change") return ProposeConfChange(raw, args);
  if (command == "snapshot") return TakeSnapshot(id);
  if (command == "transfer-leadership") {
    if (args.size() != 2) {
      return absl::InvalidArgumentError("usage: transfer-leadership ID TARGET");
    }
    ASSIGN_OR_RETURN(const NodeId target, ParseNumber(args[1]));
    absl::Status st = raw.TransferLeadership(target);
    return st.ok() ? "ok" : st.ToString();
  }
  if (command == "read-index") {
    if (args.size() != 2)
      return absl::InvalidArgumentError("usage: read-index ID CTX");
    ASSIGN_OR_RETURN(const uint64_t ctx, ParseNumber(args[1]));
    absl::Status st = raw.ReadIndex(ctx);
    return st.ok() ? "ok" : st.ToString();
  }
  return absl::InvalidArgumentError("unknown command: " + command);
}

absl::StatusOr<std::string> InteractionEnv::AddNodes(
    const std::vector<std::string>& args) {
  if (args.empty()) {
    return absl::InvalidArgumentError("usage: add-nodes N [key=value...]");
  }
  ASSIGN_OR_RETURN(const uint64_t count, ParseNumber(args[0]));
  Config base;
  std::vector<NodeId> bootstrap;  // the initial voters; all nodes if empty
  base.pre_vote = true;
  base.check_quorum = true;
  for (size_t i = 1; i < args.size(); ++i) {
    std::pair<std::string, std::string> kv = absl::StrSplit(args[i], '=');
    if (kv.first == "pre-vote") {
      ASSIGN_OR_RETURN(base.pre_vote, ParseBool(kv.second));
    } else if (kv.first == "check-quorum") {
      ASSIGN_OR_RETURN(base.check_quorum, ParseBool(kv.second));
    } else if (kv.first == "election") {
      ASSIGN_OR_RETURN(base.election_tick, ParseNumber(kv.second));
    } else if (kv.first == "heartbeat") {
      ASSIGN_OR_RETURN(base.heartbeat_tick, ParseNumber(kv.second));
    } else if (kv.first == "voters") {
      for (absl::string_view v : absl::StrSplit(kv.second, ',')) {
        ASSIGN_OR_RETURN(const NodeId id, ParseNumber(std::string(v)));
        bootstrap.push_back(id);
      }
    } else if (kv.first == "read-only") {
      if (kv.second != "lease" && kv.second != "safe") {
        return absl::InvalidArgumentError("read-only must be safe or lease");
      }
      base.read_only = kv.second == "lease" ? ReadOnlyOption::kLeaseBased
                                            : ReadOnlyOption::kSafe;
    } else {
      return absl::InvalidArgumentError("unknown option: " + kv.first);
    }
  }
  std::vector<NodeId> ids;
  for (NodeId id = 1; id <= count; ++id) ids.push_back(id);
  if (bootstrap.empty()) bootstrap = ids;
  std::sort(bootstrap.begin(), bootstrap.end());
  std::vector<std::string> out;
  // Every node starts from the same bootstrap configuration, joiners too:
  // replaying the log then gives each the same membership history.
  for (NodeId id : ids) {
    Node n;
    n.storage = std::make_unique<MemoryStorage>(ConfState{.voters = bootstrap});
    n.random = std::make_unique<util::SeededRandom>(id);
    Config c = base;
    c.id = id;
    c.storage = n.storage.get();
    c.random = n.random.get();
    absl::StatusOr<std::unique_ptr<RawNode>> raw = RawNode::Create(c);
    if (!raw.ok()) return raw.status().ToString();
    n.raw = std::move(*raw);
    nodes_[id] = std::move(n);
    out.push_back(absl::StrCat(id, ": ", Status(id)));
  }
  return absl::StrJoin(out, "\n");
}

std::string InteractionEnv::ProcessReady(NodeId id) {
  Node& n = nodes_.at(id);
  if (!n.raw->HasReady()) return "";
  Ready rd = n.raw->GetReady();
  std::vector<std::string> lines;
  if (rd.soft_state) {
    lines.push_back(absl::StrCat("Lead:", rd.soft_state->lead,
                                 " Role:", RoleName(rd.soft_state->role)));
  }
  if (rd.hard_state) {
    const HardState& hs = *rd.hard_state;
    lines.push_back(absl::StrCat("HardState term=", hs.term, " vote=", hs.vote,
                                 " commit=", hs.commit,
                                 rd.must_sync ? " (sync)" : ""));
    n.storage->SetHardState(hs);
  }
  if (rd.snapshot) {
    const SnapshotMetadata& meta = rd.snapshot->metadata;
    lines.push_back(absl::StrCat("Snapshot: ", meta.index, "/", meta.term, " ",
                                 Describe(meta.conf_state),
                                 " data=", rd.snapshot->data_ref));
    n.storage->ApplySnapshot(*rd.snapshot);
  }
  if (!rd.entries.empty()) {
    std::vector<std::string> es;
    for (const Entry& e : rd.entries) es.push_back(Describe(e));
    lines.push_back("Entries: " + absl::StrJoin(es, ", "));
    n.storage->Append(rd.entries);
  }
  for (const Message& m : rd.messages) {
    const bool dropped = cut_.count({m.from, m.to}) > 0;
    lines.push_back(Describe(m) + (dropped ? " (dropped)" : ""));
    if (!dropped) inbox_[m.to].push_back(m);
  }
  if (!rd.committed_entries.empty()) {
    std::vector<std::string> es;
    for (const Entry& e : rd.committed_entries) {
      es.push_back(Describe(e));
      n.applied.push_back(e);
    }
    lines.push_back("Apply: " + absl::StrJoin(es, ", "));
    for (const Entry& e : rd.committed_entries) {
      if (e.type != EntryType::kConfChange) continue;
      absl::StatusOr<ConfChange> cc = DecodeConfChange(e.data);
      absl::StatusOr<ConfState> cs =
          cc.ok() ? n.raw->ApplyConfChange(*cc) : cc.status();
      lines.push_back(cs.ok() ? "Config: " + Describe(*cs)
                              : "Config unchanged: " + cs.status().ToString());
    }
  }
  for (const ReadState& rs : rd.read_states) {
    lines.push_back(
        absl::StrCat("ReadState: index=", rs.index, " ctx=", rs.context));
  }
  n.raw->Advance(rd);
  return absl::StrCat("> ", id, " handling Ready\n",
                      Indent(absl::StrJoin(lines, "\n")));
}

std::string InteractionEnv::DeliverMsgs(NodeId id) {
  std::vector<Message> msgs = std::move(inbox_[id]);
  inbox_[id].clear();
  std::vector<std::string> lines;
  for (const Message& m : msgs) {
    lines.push_back(Describe(m));
    absl::Status s = nodes_.at(id).raw->Step(m);
    if (!s.ok()) lines.push_back("  " + s.ToString());
  }
  if (lines.empty()) return "";
  return absl::StrCat("> ", id, " receiving messages\n",
                      Indent(absl::StrJoin(lines, "\n")));
}

std::string InteractionEnv::Stabilize(const std::vector<NodeId>& ids) {
  std::vector<std::string> out;
  for (bool progressed = true; progressed;) {
    progressed = false;
    for (NodeId id : ids) {
      std::string s = ProcessReady(id);
      if (!s.empty()) {
        out.push_back(std::move(s));
        progressed = true;
      }
    }
    for (NodeId id : ids) {
      std::string s = DeliverMsgs(id);
      if (!s.empty()) {
        out.push_back(std::move(s));
        progressed = true;
      }
    }
  }
  return out.empty() ? "ok" : absl::StrJoin(out, "\n");
}

absl::StatusOr<std::string> InteractionEnv::ProposeConfChange(
    RawNode& raw, const std::vector<std::string>& args) {
  // propose-conf-change ID [joint] v4 l5 r2 ...   (no changes: leave joint)
  std::string encoded = "cc1 ";
  size_t first = 1;
  if (args.size() > 1 && args[1] == "joint") {
    encoded += "joint";
    first = 2;
  } else {
    encoded += "auto";
  }
  for (size_t i = first; i < args.size(); ++i) encoded += " " + args[i];
  ASSIGN_OR_RETURN(const ConfChange cc, DecodeConfChange(encoded));
  absl::StatusOr<Index> index = raw.ProposeConfChange(cc);
  if (!index.ok()) return index.status().ToString();
  return absl::StrCat("index=", *index);
}

absl::StatusOr<std::string> InteractionEnv::TakeSnapshot(NodeId id) {
  Node& n = nodes_.at(id);
  const Raft& r = n.raw->raft();
  const Index applied = r.log().applied();
  const std::string ref = absl::StrCat("snap-", id, "-", applied);
  RETURN_IF_ERROR(n.storage->CreateSnapshot(applied, r.conf_state(), ref));
  RETURN_IF_ERROR(n.storage->Compact(applied));
  return absl::StrCat("snapshot ", ref, " at ", applied, "; log compacted to ",
                      n.storage->FirstIndex());
}

absl::StatusOr<std::string> InteractionEnv::Partition(
    const std::vector<std::string>& args) {
  std::vector<std::vector<NodeId>> groups;
  for (const std::string& g : args) {
    std::vector<NodeId> ids;
    for (absl::string_view s : absl::StrSplit(g, ',')) {
      ASSIGN_OR_RETURN(const NodeId id, ParseNumber(std::string(s)));
      ids.push_back(id);
    }
    groups.push_back(std::move(ids));
  }
  for (size_t i = 0; i < groups.size(); ++i) {
    for (size_t j = 0; j < groups.size(); ++j) {
      if (i == j) continue;
      for (NodeId a : groups[i]) {
        for (NodeId b : groups[j]) cut_.insert({a, b});
      }
    }
  }
  return "ok";
}

std::string InteractionEnv::Status(NodeId id) const {
  const Raft& r = nodes_.at(id).raw->raft();
  std::string out = absl::StrCat(
      RoleName(r.role()), " term=", r.term(), " lead=", r.lead(),
      " commit=", r.log().committed(), " last=", r.log().LastIndex(), " ",
      Describe(r.conf_state()));
  if (r.role() == Role::kLeader) {
    for (NodeId v : r.conf_state().Members()) {
      if (v == id) continue;
      absl::StrAppend(&out, "\n  ", v, ": ", r.progress(v)->DebugString());
    }
  }
  return out;
}

std::string InteractionEnv::Log(NodeId id) const {
  const Node& n = nodes_.at(id);
  std::vector<std::string> lines;
  const Snapshot snap = n.storage->GetSnapshot().value();
  if (!snap.IsEmpty()) {
    lines.push_back(absl::StrCat("snapshot: ", snap.metadata.index, "/",
                                 snap.metadata.term, " ", snap.data_ref));
  }
  absl::StatusOr<std::vector<Entry>> stored = n.storage->Entries(
      n.storage->FirstIndex(), n.storage->LastIndex() + 1, UINT64_MAX);
  std::vector<std::string> es;
  for (const Entry& e : stored.value()) es.push_back(Describe(e));
  lines.push_back("stored: " +
                  (es.empty() ? "(empty)" : absl::StrJoin(es, ", ")));
  lines.push_back(absl::StrCat("applied: ", n.applied.size(), " entries"));
  return absl::StrJoin(lines, "\n");
}

absl::StatusOr<std::vector<NodeId>> InteractionEnv::Ids(
    const std::vector<std::string>& args) const {
  std::vector<NodeId> ids;
  if (args.empty() || (args.size() == 1 && args[0] == "all")) {
    for (const auto& [id, n] : nodes_) ids.push_back(id);
    return ids;
  }
  for (const std::string& a : args) {
    ASSIGN_OR_RETURN(const NodeId id, ParseNumber(a));
    if (!nodes_.count(id))
      return absl::NotFoundError(absl::StrCat("no node ", id));
    ids.push_back(id);
  }
  return ids;
}

}  // namespace tally::raft::testing
