#include "cmd/kvctl/snapshot_commands.h"

#include <iostream>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cmd/kvctl/output.h"
#include "cmd/kvctl/snapshot_file.h"
#include "nlohmann/json.hpp"

namespace tally::kvctl {
namespace {

// A restore writes keys in transactions of at most this many puts and
// bytes (within kvd's --max-txn-ops and --max-txn-bytes defaults).
constexpr int kTxnPuts = 500;
constexpr size_t kTxnBytes = 1 << 20;

// "[a, m)" for a range, "-" for no bound.
std::string Bounds(const rpc::RangeDescriptor& r) {
  return absl::StrCat("[", r.start().empty() ? "-" : Column(r.start()), ", ",
                      r.end().empty() ? "-" : Column(r.end()), ")");
}

}  // namespace

SnapshotCommands::SnapshotCommands(CLI::App& app) {
  auto* snapshot = app.add_subcommand(
      "snapshot",
      "back up every range's keys and values to a file, check "
      "one, or load one into a new cluster");
  snapshot->require_subcommand(1);
  save_ = snapshot->add_subcommand(
      "save",
      "write FILE: each range's keys and values as its leader holds them at "
      "one point (every write acknowledged before the command is in it), "
      "with a SHA-256; ranges are copied one after the other");
  restore_ = snapshot->add_subcommand(
      "restore",
      "write FILE's keys and values into the cluster, which must be new and "
      "empty and have the same ranges (kvd --initial-ranges as `snapshot "
      "status` shows; a new --initial-cluster-token gives it its own id)");
  status_ = snapshot->add_subcommand(
      "status",
      "check FILE's SHA-256 and show its ranges, revisions and "
      "key counts (reads only the file)");
  for (CLI::App* c : {save_, restore_, status_}) {
    c->add_option("file", file_, "the snapshot file")->required();
  }
  for (CLI::App* c : {save_, restore_}) {
    c->add_option("--timeout-s", timeout_s_, "per range")
        ->check(CLI::PositiveNumber);
  }
}

std::optional<int> SnapshotCommands::RunOffline(const Output& out) {
  if (!*status_) return std::nullopt;
  absl::StatusOr<std::vector<SnapshotRange>> ranges = ReadSnapshot(file_);
  if (!ranges.ok()) return Fail(ranges.status());
  uint64_t keys = 0;
  nlohmann::json rows = nlohmann::json::array();
  Table t({"GROUP", "RANGE", "REVISION", "KEYS"});
  for (const SnapshotRange& r : *ranges) {
    keys += r.keys;
    rows.push_back({{"group", JsonInt(r.range.group())},
                    {"start", JsonBytes(r.range.start())},
                    {"end", JsonBytes(r.range.end())},
                    {"revision", JsonInt(r.revision)},
                    {"keys", JsonInt(r.keys)}});
    t.Add({absl::StrCat(r.range.group()), Bounds(r.range),
           absl::StrCat(r.revision), absl::StrCat(r.keys)});
  }
  if (out.json()) {
    out.Print({{"file", file_},
               {"checksum", "ok"},
               {"keys", JsonInt(keys)},
               {"ranges", rows}});
    return kExitOk;
  }
  t.Print(std::cout);
  std::string splits;
  for (size_t i = 1; i < ranges->size(); ++i) {
    absl::StrAppend(&splits, i > 1 ? "," : "", (*ranges)[i].range.start());
  }
  std::cout << keys << " keys in " << ranges->size()
            << " ranges; SHA-256 checked; restore into a cluster started with "
               "--initial-ranges \""
            << splits << "\"\n";
  return kExitOk;
}

std::optional<int> SnapshotCommands::Run(client::Client& c, const Output& out) {
  if (*save_) return Save(c, out);
  if (*restore_) return Restore(c, out);
  return std::nullopt;
}

int SnapshotCommands::Save(client::Client& c, const Output& out) {
  absl::StatusOr<std::vector<rpc::RangeDescriptor>> ranges = c.DataRanges();
  if (!ranges.ok()) return Fail(ranges.status());
  absl::StatusOr<std::unique_ptr<SnapshotWriter>> w =
      SnapshotWriter::Create(file_);
  if (!w.ok()) return Fail(w.status());
  uint64_t keys = 0;
  for (const rpc::RangeDescriptor& r : *ranges) {
    const uint64_t start = (*w)->size();
    uint64_t range_keys = 0;
    absl::Status written;  // the first write that failed
    absl::Status st = c.Backup(
        r.group(),
        [&](const rpc::BackupChunk& chunk) {
          if (!written.ok()) return;
          if (chunk.has_range()) {  // a copy begins (again)
            written = (*w)->Truncate(start);
            range_keys = 0;
          }
          if (written.ok()) written = (*w)->Append(chunk);
          range_keys += chunk.keys_size();
        },
        std::chrono::seconds(timeout_s_));
    if (st.ok()) st = written;
    if (!st.ok()) {
      return Fail(absl::Status(
          st.code(), absl::StrCat("range of group ", r.group(), ": ",
                                  st.message(), " (nothing written)")));
    }
    keys += range_keys;
  }
  absl::StatusOr<std::string> sha = (*w)->Finish();
  if (!sha.ok()) return Fail(sha.status());
  const uint64_t bytes = (*w)->size();
  if (out.json()) {
    out.Print({{"file", file_},
               {"keys", JsonInt(keys)},
               {"range_count", JsonInt(ranges->size())},
               {"bytes", JsonInt(bytes)},
               {"sha256", *sha}});
  } else {
    std::cout << "saved " << keys << " keys of " << ranges->size()
              << " ranges to " << file_ << " (" << bytes << " bytes, sha256 "
              << *sha << ")\n";
  }
  return kExitOk;
}

int SnapshotCommands::Restore(client::Client& c, const Output& out) {
  absl::StatusOr<std::vector<SnapshotRange>> saved = ReadSnapshot(file_);
  if (!saved.ok()) return Fail(saved.status());
  absl::StatusOr<std::vector<rpc::RangeDescriptor>> ranges = c.DataRanges();
  if (!ranges.ok()) return Fail(ranges.status());
  auto bounds = [](const auto& list, auto get) {
    std::string out;
    for (const auto& r : list) absl::StrAppend(&out, Bounds(get(r)), " ");
    return out;
  };
  const std::string want =
      bounds(*saved, [](const SnapshotRange& r) -> const rpc::RangeDescriptor& {
        return r.range;
      });
  const std::string have =
      bounds(*ranges,
             [](const rpc::RangeDescriptor& r) -> const rpc::RangeDescriptor& {
               return r;
             });
  if (want != have) {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "the cluster's ranges ", have, "differ from the snapshot's ", want,
        "(kvctl snapshot status shows the --initial-ranges to start it "
        "with); nothing written")));
  }
  absl::StatusOr<std::vector<rpc::KeyValue>> any = c.Scan("", "", 1);
  if (!any.ok()) return Fail(any.status());
  if (!any->empty()) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "the cluster already holds keys (\"", Column(any->front().key()),
        "\"): restore into a new, empty cluster; nothing written")));
  }
  // Each range's keys in transactions of at most kTxnPuts puts and
  // kTxnBytes bytes, as the records are read.
  uint64_t keys = 0;
  rpc::TxnRequest txn;
  size_t bytes = 0;
  auto flush = [&]() -> absl::Status {
    if (txn.success_size() == 0) return absl::OkStatus();
    absl::StatusOr<rpc::TxnResponse> resp = c.Txn(std::move(txn));
    txn = rpc::TxnRequest();
    bytes = 0;
    if (!resp.ok()) {
      return absl::Status(
          resp.status().code(),
          absl::StrCat(resp.status().message(), " (", keys,
                       " keys written before; restore into a new cluster "
                       "again)"));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::vector<SnapshotRange>> read =
      ReadSnapshot(file_, [&](const rpc::BackupChunk& chunk) -> absl::Status {
        // A transaction stays within one range: send what the last range
        // left before this one's first record.
        if (chunk.has_range()) {
          if (absl::Status st = flush(); !st.ok()) return st;
        }
        for (int i = 0; i < chunk.keys_size(); ++i) {
          rpc::PutRequest* put = txn.add_success()->mutable_put();
          put->set_key(chunk.keys(i));
          put->set_value(chunk.values(i));
          bytes += chunk.keys(i).size() + chunk.values(i).size();
          if (txn.success_size() >= kTxnPuts || bytes >= kTxnBytes) {
            if (absl::Status st = flush(); !st.ok()) return st;
          }
          ++keys;
        }
        return absl::OkStatus();
      });
  if (!read.ok()) return Fail(read.status());
  if (absl::Status st = flush(); !st.ok()) return Fail(st);
  if (out.json()) {
    out.Print({{"file", file_},
               {"keys", JsonInt(keys)},
               {"range_count", JsonInt(saved->size())}});
  } else {
    std::cout << "restored " << keys << " keys of " << saved->size()
              << " ranges from " << file_ << "\n";
  }
  return kExitOk;
}

}  // namespace tally::kvctl
