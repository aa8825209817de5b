// kvctl: the Tally command line. Exit codes: cmd/kvctl/output.h.

#include <algorithm>
#include <chrono>
#include <iostream>
#include <iterator>
#include <map>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "cmd/kvctl/auth_commands.h"
#include "cmd/kvctl/crdt_commands.h"
#include "cmd/kvctl/idem_commands.h"
#include "cmd/kvctl/lock_commands.h"
#include "cmd/kvctl/output.h"
#include "cmd/kvctl/saga_commands.h"
#include "cmd/kvctl/snapshot_commands.h"
#include "cmd/kvctl/watch_commands.h"
#include "nlohmann/json.hpp"

namespace {

using tally::client::Client;
using tally::kvctl::EndpointResults;
using tally::kvctl::Fail;
using tally::kvctl::JsonInt;
using tally::kvctl::Output;
using tally::kvctl::PrefixEnd;
using tally::kvctl::Table;
using tally::kvctl::ToJson;

// The subcommands given, e.g. "lock acquire".
std::string CommandPath(const CLI::App& app) {
  std::string path;
  for (const CLI::App* a = &app; !a->get_subcommands().empty();) {
    a = a->get_subcommands().front();
    absl::StrAppend(&path, path.empty() ? "" : " ", a->get_name());
  }
  return path;
}

absl::StatusOr<uint64_t> MemberId(const std::string& name) {
  uint64_t id = 0;
  if (name.size() < 2 || name[0] != 'n' ||
      !absl::SimpleAtoi(name.substr(1), &id) || id == 0) {
    return absl::InvalidArgumentError("member name must be n<number>, e.g. n4");
  }
  return id;
}

// "put KEY VALUE", "del KEY", "get KEY" for transaction branches.
absl::StatusOr<tally::rpc::TxnOp> ParseOp(const std::string& s) {
  std::vector<std::string> w = absl::StrSplit(s, absl::MaxSplits(' ', 2));
  tally::rpc::TxnOp op;
  if (w.size() == 3 && w[0] == "put") {
    op.mutable_put()->set_key(w[1]);
    op.mutable_put()->set_value(w[2]);
  } else if (w.size() == 2 && w[0] == "del") {
    op.mutable_delete_()->set_key(w[1]);
  } else if (w.size() == 2 && w[0] == "get") {
    op.mutable_get()->set_key(w[1]);
  } else {
    return absl::InvalidArgumentError(
        "an operation is \"put KEY VALUE\", \"del KEY\" or \"get KEY\": " + s);
  }
  return op;
}

// "KEY=VALUE" or "KEY@VERSION" (version 0: the key does not exist).
absl::StatusOr<tally::rpc::Compare> ParseCompare(const std::string& s) {
  tally::rpc::Compare c;
  if (auto eq = s.find('='); eq != std::string::npos) {
    c.set_key(s.substr(0, eq));
    c.set_target(tally::rpc::Compare::VALUE);
    c.set_value(s.substr(eq + 1));
    return c;
  }
  int64_t v = 0;
  if (auto at = s.rfind('@');
      at != std::string::npos && absl::SimpleAtoi(s.substr(at + 1), &v)) {
    c.set_key(s.substr(0, at));
    c.set_target(tally::rpc::Compare::VERSION);
    c.set_version(v);
    return c;
  }
  return absl::InvalidArgumentError(
      "a condition is KEY=VALUE or KEY@VERSION: " + s);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvctl: read, write and manage a Tally cluster"};
  app.set_version_flag("--version", "kvctl " TALLY_VERSION);
  app.option_defaults()->always_capture_default();
  app.footer(
      "Exit codes: 0 done; 1 not found, compare failed, nothing deleted, or\n"
      "refused (stale fence token, lock not held, lease ended: nothing\n"
      "applied); 2 bad input (nothing applied); 3 unavailable, timed out or\n"
      "overloaded (a write's outcome may be unknown: retry); 4 any other\n"
      "error. `kvctl lock NAME -- CMD` and `kvctl idem run` exit with CMD's\n"
      "exit code (idem run: 2 if the key was used for another request, 3\n"
      "while another run holds it).");
  app.require_subcommand(1);
  app.fallthrough();
  std::string endpoints_flag, output = "table", read_mode = "linearizable";
  int timeout_ms = 5000;
  // Each global option can also come from a KVCTL_* variable; a flag wins.
  app.add_option("--endpoints", endpoints_flag,
                 "client addresses, comma-separated")
      ->envname("KVCTL_ENDPOINTS");
  app.add_option("-o,--output", output, "table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->envname("KVCTL_OUTPUT");
  app.add_option("--timeout-ms", timeout_ms, "overall time per command")
      ->envname("KVCTL_TIMEOUT_MS");
  bool hex = false;
  app.add_flag("--hex", hex,
               "print keys and values as hex (text output; JSON has them in "
               "base64)")
      ->envname("KVCTL_HEX");
  tally::rpc::TlsFiles tls;
  app.add_option("--tls-ca", tls.ca,
                 "PEM CA certificate that issued the nodes' certificates: "
                 "talk TLS")
      ->envname("KVCTL_TLS_CA");
  app.add_option("--tls-cert", tls.cert,
                 "PEM client certificate, for nodes run with --tls-client-auth")
      ->envname("KVCTL_TLS_CERT");
  app.add_option("--tls-key", tls.key, "PEM private key of --tls-cert")
      ->envname("KVCTL_TLS_KEY");
  std::string token;
  app.add_option("--token", token,
                 "a token from `kvctl auth token issue`, for a cluster with "
                 "auth enabled")
      ->envname("KVCTL_TOKEN");

  std::string key, value, end, expected, target;
  uint32_t limit = 0;
  std::vector<std::string> cmps, then_ops, else_ops;
  bool prefix = false, keys_only = false;
  auto* put = app.add_subcommand("put", "write KEY = VALUE");
  put->add_option("key", key)->required();
  auto* put_value =
      put->add_option("value", value, "omitted: read from standard input");
  uint64_t put_lease = 0;
  put->add_option("--lease", put_lease,
                  "attach the key to lease ID: deleted when the lease ends");
  auto* get = app.add_subcommand(
      "get",
      "print KEY's value (exit 1 if absent), or with --prefix every "
      "key starting with KEY and its value (exit 0, even if none)");
  get->add_option("key", key)->required();
  get->add_flag("--prefix", prefix, "every key that starts with KEY");
  auto* del = app.add_subcommand(
      "del",
      "delete KEY, or the keys in [KEY, END), or with --prefix every key "
      "starting with KEY; prints what was deleted, exit 1 if nothing (a range "
      "is deleted up to 10,000 keys per shard at once, all or none of them)");
  del->add_option("key", key)->required();
  del->add_option("end", end, "delete the range [KEY, END)");
  del->add_flag("--prefix", prefix, "every key that starts with KEY")
      ->excludes(del->get_option("end"));
  auto* scan = app.add_subcommand(
      "scan",
      "list keys in [START, END): KEY<tab>VALUE lines (in listings, "
      "backslash, tab and newline print as \\\\, \\t and \\n)");
  scan->add_option("start", key)->required();
  scan->add_option("end", end, "exclusive; empty: to the last key");
  scan->add_option("--limit", limit, "at most this many keys");
  for (auto* c : {get, scan}) {
    c->add_flag("--keys-only", keys_only, "print keys without values");
    c->add_option("--read-mode", read_mode,
                  "linearizable, lease or serializable (may be stale)")
        ->check(CLI::IsMember({"linearizable", "lease", "serializable"}))
        ->envname("KVCTL_READ_MODE");
  }
  auto* cas = app.add_subcommand(
      "cas", "set KEY to NEW only if its value is EXPECTED (exit 1 if not)");
  cas->add_option("key", key)->required();
  cas->add_option("expected", expected)->required();
  cas->add_option("new", value)->required();
  auto* txn = app.add_subcommand(
      "txn", "if every --if holds run the --then operations, else --else");
  txn->add_option("--if", cmps, "KEY=VALUE or KEY@VERSION");
  txn->add_option("--then", then_ops, "\"put K V\", \"del K\" or \"get K\"");
  txn->add_option("--else", else_ops, "as --then");
  auto* cluster = app.add_subcommand("cluster", "cluster information");
  cluster->require_subcommand(1);
  auto* status = cluster->add_subcommand(
      "status", "every node's groups (exit 3 if a node is unreachable)");
  auto* health_cmd = app.add_subcommand(
      "health", "gRPC health check of every endpoint (exit 3 if one fails)");
  auto* endpoint = app.add_subcommand(
      "endpoint", "every endpoint's state, as a table (exit 3 if one fails)");
  endpoint->require_subcommand(1);
  auto* ep_status = endpoint->add_subcommand(
      "status",
      "node, cluster id, groups it holds and leads, learner groups, the "
      "most entries it has committed but not applied in a group, and client "
      "calls in flight and refused as overload since it started (-o json: "
      "per class)");
  auto* ep_health = endpoint->add_subcommand(
      "health", "gRPC health check: SERVING, or why not");
  auto* member = app.add_subcommand("member", "membership changes");
  member->require_subcommand(1);
  std::string name, peer;
  auto* madd = member->add_subcommand("add", "add NAME as a learner");
  madd->add_option("name", name)->required();
  madd->add_option("peer-address", peer)->required();
  auto* mpromote =
      member->add_subcommand("promote", "make learner NAME a voter");
  mpromote->add_option("name", name)->required();
  auto* mremove = member->add_subcommand("remove", "remove NAME");
  mremove->add_option("name", name)->required();
  auto* mlist = member->add_subcommand(
      "list", "every member: name, role, peer and client address");
  auto* leader = app.add_subcommand("leader", "leadership");
  leader->require_subcommand(1);
  auto* transfer =
      leader->add_subcommand("transfer", "move leadership to NAME");
  transfer->add_option("name", name)->required();
  uint64_t fence_token = 0;
  for (auto* w : {put, del, cas, txn}) {
    w->add_option("--fence-token", fence_token,
                  "a lock's token, for keys under a fenced prefix");
  }
  tally::kvctl::LockCommands locks(app);
  tally::kvctl::IdemCommands idem(app);
  tally::kvctl::SagaCommands sagas(app);
  tally::kvctl::CrdtCommands crdts(app);
  tally::kvctl::WatchCommands watches(app);
  tally::kvctl::SnapshotCommands snapshots(app);
  tally::kvctl::AuthCommands auth(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  const Output out(CommandPath(app), output == "json", hex);
  if (std::optional<int> rc = snapshots.RunOffline(out)) return *rc;
  tally::client::ClientOptions opts;
  opts.endpoints = absl::StrSplit(endpoints_flag, ',', absl::SkipEmpty());
  opts.timeout = std::chrono::milliseconds(timeout_ms);
  opts.tls = tls;
  opts.token = token;
  auto client = Client::Connect(opts);
  if (!client.ok()) return Fail(client.status());
  Client& c = **client;
  const tally::rpc::ReadMode mode = read_mode == "lease" ? tally::rpc::LEASE
                                    : read_mode == "serializable"
                                        ? tally::rpc::SERIALIZABLE
                                        : tally::rpc::LINEARIZABLE;

  if (std::optional<int> rc = locks.Run(c, out)) return *rc;
  if (std::optional<int> rc = idem.Run(c, out)) return *rc;
  if (std::optional<int> rc = sagas.Run(c, out)) return *rc;
  if (std::optional<int> rc = crdts.Run(c, out)) return *rc;
  if (std::optional<int> rc = watches.Run(c, out)) return *rc;
  if (std::optional<int> rc = snapshots.Run(c, out)) return *rc;
  if (std::optional<int> rc = auth.Run(c, out)) return *rc;
  const bool json = out.json();
  if (*put) {
    if (put_value->count() == 0) {
      value.assign(std::istreambuf_iterator<char>(std::cin),
                   std::istreambuf_iterator<char>());
    }
    auto r = c.Put(key, value, fence_token, put_lease);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      out.Print(*r);
    } else {
      std::cout << "OK\n";
    }
  } else if ((*get && prefix) || *scan) {
    std::vector<tally::rpc::ResponseHeader> headers;
    auto r = *scan ? c.Scan(key, end, limit, mode, &headers)
                   : c.Scan(key, PrefixEnd(key), 0, mode, &headers);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      nlohmann::json kvs = ToJson(*r);
      if (keys_only) {
        for (auto& kv : kvs) kv = {{"key", kv["key"]}};
      }
      out.Print(
          {{"kvs", std::move(kvs)}, {"count", JsonInt(uint64_t{r->size()})}},
          headers);
      return 0;
    }
    for (const auto& kv : *r) {
      std::cout << (keys_only
                        ? out.Bytes(kv.key())
                        : out.Bytes(kv.key()) + "\t" + out.Bytes(kv.value()))
                << "\n";
    }
  } else if (*get) {
    auto r = c.Get(key, mode);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      out.Print(*r);
    } else if (r->found()) {
      std::cout << out.Raw(keys_only ? r->kv().key() : r->kv().value()) << "\n";
    } else {
      std::cerr << "kvctl: key \"" << key << "\" not found\n";
    }
    if (mode == tally::rpc::SERIALIZABLE && !json) {
      std::cerr << "(serializable read: may be stale)\n";
    }
    return r->found() ? 0 : 1;
  } else if (*del && (prefix || !end.empty())) {
    std::string range_end = end;
    if (prefix) {
      range_end = PrefixEnd(key);
      if (range_end.empty()) range_end = std::string(1, '\0');
    }
    auto r = c.DeleteRange(key, range_end, fence_token);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      out.Print(*r);
    } else {
      std::cout << r->count() << " deleted\n";
    }
    return r->count() > 0 ? 0 : 1;
  } else if (*del) {
    auto r = c.Delete(key, fence_token);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      out.Print(*r);
    } else {
      std::cout << (r->deleted() ? "deleted" : "not found") << "\n";
    }
    return r->deleted() ? 0 : 1;
  } else if (*cas || *txn) {
    tally::rpc::TxnRequest req;
    if (*cas) {
      auto* cmp = req.add_compare();
      cmp->set_key(key);
      cmp->set_target(tally::rpc::Compare::VALUE);
      cmp->set_value(expected);
      auto* p = req.add_success()->mutable_put();
      p->set_key(key);
      p->set_value(value);
      req.add_failure()->mutable_get()->set_key(key);
    }
    for (const auto& s : cmps) {
      auto cmp = ParseCompare(s);
      if (!cmp.ok()) return Fail(cmp.status());
      *req.add_compare() = *cmp;
    }
    for (auto [ops, out] : {std::pair{&then_ops, req.mutable_success()},
                            std::pair{&else_ops, req.mutable_failure()}}) {
      for (const auto& s : *ops) {
        auto op = ParseOp(s);
        if (!op.ok()) return Fail(op.status());
        *out->Add() = *op;
      }
    }
    req.set_fence_token(fence_token);
    auto r = c.Txn(req);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      out.Print(*r);
    } else if (*cas) {
      if (r->succeeded()) {
        std::cout << "OK\n";
      } else {
        const auto& g = r->results(0).get();
        std::cerr << "kvctl: compare failed: \"" << key << "\" is "
                  << (g.found() ? "\"" + g.kv().value() + "\"" : "absent")
                  << "\n";
      }
    } else {
      std::cout << (r->succeeded() ? "SUCCESS" : "FAILURE") << "\n";
      for (const auto& res : r->results()) {
        if (res.has_get()) {
          std::cout << (res.get().found() ? out.Raw(res.get().kv().value())
                                          : "(absent)")
                    << "\n";
        }
      }
    }
    return r->succeeded() ? 0 : 1;
  } else if (*status) {
    int rc = 0;
    EndpointResults all;
    Table t({"ENDPOINT", "NODE", "GROUP", "ROLE", "LEADER", "TERM", "COMMIT",
             "APPLIED", "LOG", "QUIET", "VOTERS", "LEARNERS", "ERROR"});
    for (const std::string& ep : c.endpoints()) {
      auto r = c.Status(ep);
      all.Add(ep, r);
      if (!r.ok()) {
        t.Add({ep, "-", "-", "-", "-", "-", "-", "-", "-", "-", "-", "-",
               r.status().ToString()});
        rc = tally::kvctl::kExitUnavailable;
        continue;
      }
      auto ids = [](const auto& list) {
        return list.empty() ? std::string("-") : absl::StrJoin(list, ",");
      };
      for (const auto& g : r->groups()) {
        t.Add({ep, absl::StrCat("n", r->node()), absl::StrCat(g.group()),
               g.role(), g.leader() == 0 ? "-" : absl::StrCat("n", g.leader()),
               absl::StrCat(g.term()), absl::StrCat(g.commit_index()),
               absl::StrCat(g.applied_index()),
               absl::StrCat(g.first_index(), "..", g.last_index()),
               g.quiet() ? "yes" : "no", ids(g.voters()), ids(g.learners()),
               ""});
      }
    }
    if (json) {
      out.Print(all.json());
    } else {
      t.Print(std::cout);
    }
    return rc;
  } else if (*health_cmd || *ep_health) {
    // `health` is the older, terser form of `endpoint health`.
    int rc = 0;
    EndpointResults all;
    Table t({"ENDPOINT", "HEALTH", "TOOK"});
    for (const std::string& ep : c.endpoints()) {
      const auto start = std::chrono::steady_clock::now();
      absl::Status st = c.Health(ep);
      const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start);
      if (!st.ok()) rc = tally::kvctl::kExitUnavailable;
      const std::string health = st.ok() ? "SERVING" : st.ToString();
      all.Add(ep,
              {{"healthy", st.ok()},
               {"health", health},
               {"took_ms", JsonInt(int64_t{took.count()})}},
              st);
      if (*health_cmd) {
        if (!json) std::cout << ep << "\t" << health << "\n";
      } else {
        t.Add({ep, health, absl::StrCat(took.count(), " ms")});
      }
    }
    if (json) {
      out.Print(all.json());
    } else if (*ep_health) {
      t.Print(std::cout);
    }
    return rc;
  } else if (*ep_status) {
    int rc = 0;
    EndpointResults all;
    Table t({"ENDPOINT", "NODE", "CLUSTER", "GROUPS", "LEADER OF", "LEARNER IN",
             "MAX APPLY LAG", "IN FLIGHT", "REFUSED", "ERROR"});
    for (const std::string& ep : c.endpoints()) {
      absl::StatusOr<tally::rpc::StatusResponse> r = c.Status(ep);
      if (!r.ok()) {
        rc = tally::kvctl::kExitUnavailable;
        all.Add(ep, nlohmann::json::object(), r.status());
        t.Add({ep, "-", "-", "-", "-", "-", "-", "-", "-",
               r.status().ToString()});
        continue;
      }
      int leading = 0, learning = 0;
      uint64_t lag = 0;
      for (const auto& g : r->groups()) {
        if (g.leader() == r->node()) ++leading;
        for (uint64_t l : g.learners()) learning += l == r->node() ? 1 : 0;
        if (g.commit_index() > g.applied_index()) {
          lag = std::max(lag, g.commit_index() - g.applied_index());
        }
      }
      // Client calls in progress, and refused since the node started
      // (overloaded, too late, or past their deadline), over every class.
      uint64_t in_flight = 0, refused = 0;
      nlohmann::json admission = nlohmann::json::array();
      for (const tally::rpc::AdmissionClass& a : r->admission()) {
        in_flight += a.in_flight();
        refused += a.shed() + a.late() + a.expired();
        admission.push_back(ToJson(a));
      }
      all.Add(ep, {{"node", JsonInt(r->node())},
                   {"cluster_id", r->cluster_id()},
                   {"groups", r->groups_size()},
                   {"leader_of", leading},
                   {"learner_in", learning},
                   {"max_apply_lag", JsonInt(lag)},
                   {"admission", std::move(admission)}});
      t.Add({ep, absl::StrCat("n", r->node()), r->cluster_id(),
             absl::StrCat(r->groups_size()), absl::StrCat(leading),
             absl::StrCat(learning), absl::StrCat(lag), absl::StrCat(in_flight),
             absl::StrCat(refused), ""});
    }
    if (json) {
      out.Print(all.json());
    } else {
      t.Print(std::cout);
    }
    return rc;
  } else if (*mlist) {
    // The first answer, with client addresses that node does not know yet
    // (it learns them as peers connect) taken from the others' answers.
    absl::StatusOr<tally::rpc::StatusResponse> st =
        absl::UnavailableError("no endpoint answered");
    std::map<uint64_t, std::string> clients;
    for (const std::string& ep : c.endpoints()) {
      auto r = c.Status(ep);
      if (!r.ok()) {
        if (!st.ok()) st = r.status();
        continue;
      }
      for (const auto& m : r->members()) {
        if (!m.client_address().empty()) clients[m.id()] = m.client_address();
      }
      if (!st.ok()) st = std::move(r);
    }
    if (!st.ok()) return Fail(st.status());
    for (auto& m : *st->mutable_members()) {
      if (m.client_address().empty()) m.set_client_address(clients[m.id()]);
    }
    auto ranges = c.Ranges();
    if (!ranges.ok()) return Fail(ranges.status());
    const tally::rpc::GroupStatus* meta = nullptr;
    for (const auto& g : st->groups()) {
      if (g.group() == ranges->meta_group()) meta = &g;
    }
    auto role = [&](uint64_t id) -> std::string {
      if (meta == nullptr) return "unknown";
      for (uint64_t v : meta->voters()) {
        if (v == id) return "voter";
      }
      for (uint64_t l : meta->learners()) {
        if (l == id) return "learner";
      }
      return "none";
    };
    if (json) {
      nlohmann::json members = nlohmann::json::array();
      for (const auto& m : st->members()) {
        members.push_back(ToJson(m));
        members.back()["role"] = role(m.id());
      }
      out.Print({{"members", std::move(members)}});
      return 0;
    }
    Table t({"NAME", "ROLE", "PEER ADDRESS", "CLIENT ADDRESS"});
    for (const auto& m : st->members()) {
      t.Add({m.name(), role(m.id()), m.peer_address(), m.client_address()});
    }
    t.Print(std::cout);
  } else if (*madd || *mpromote || *mremove || *transfer) {
    auto id = MemberId(name);
    if (!id.ok()) return Fail(id.status());
    if (*transfer) {
      auto r = c.TransferLeader(*id);
      if (!r.ok()) return Fail(r.status());
      if (json) {
        out.Print(*r);
      } else {
        std::cout << "OK\n";
      }
      return 0;
    }
    absl::StatusOr<tally::rpc::MembershipResponse> r =
        *madd       ? c.AddLearner(*id, peer)
        : *mpromote ? c.Promote(*id)
                    : c.RemoveMember(*id);
    if (!r.ok()) return Fail(r.status());
    if (json) {
      out.Print(*r);
      return 0;
    }
    for (const tally::rpc::GroupChange& g : r->groups()) {
      std::cout << "group " << g.group() << "\t"
                << (g.changed() ? "changed" : "already in effect") << "\n";
    }
    std::cout << "OK\n";
  }
  return 0;
}
