#include "cmd/kvctl/snapshot_commands.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cmd/kvctl/output.h"
#include "nlohmann/json.hpp"

namespace tally::kvctl {
namespace {

constexpr char kMagic[] = "tally-snapshot 1\n";
constexpr size_t kTrailerSize = 7 + 64 + 1;  // "sha256 " hex "\n"
// A restore writes a range's keys in transactions of at most this many
// puts and bytes.
constexpr int kTxnPuts = 500;
constexpr size_t kTxnBytes = 1 << 20;

std::string Sha256Hex(const std::string& data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr);
  return absl::BytesToHexString(
      std::string(reinterpret_cast<const char*>(md), n));
}

void AppendRecord(std::string* out, const rpc::BackupChunk& chunk) {
  const std::string body = chunk.SerializeAsString();
  const uint32_t n = static_cast<uint32_t>(body.size());
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((n >> shift) & 0xff));
  }
  *out += body;
}

// One range of a snapshot file.
struct SavedRange {
  rpc::RangeDescriptor range;
  int64_t revision = 0;
  std::vector<std::pair<std::string, std::string>> kvs;
  bool done = false;
};

// Reads `path` and checks its SHA-256: INVALID_ARGUMENT if it is not a
// snapshot, DATA_LOSS if it is damaged or cut short.
absl::StatusOr<std::vector<SavedRange>> Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  const std::string data((std::istreambuf_iterator<char>(in)),
                         std::istreambuf_iterator<char>());
  if (!data.starts_with(kMagic)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a Tally snapshot (kvctl snapshot save)"));
  }
  if (data.size() < sizeof(kMagic) - 1 + kTrailerSize ||
      data.compare(data.size() - kTrailerSize, 7, "sha256 ") != 0 ||
      data.back() != '\n') {
    return absl::DataLossError(
        absl::StrCat(path, " is cut short: it has no checksum at its end"));
  }
  const std::string body = data.substr(0, data.size() - kTrailerSize);
  const std::string want = data.substr(data.size() - kTrailerSize + 7, 64);
  if (const std::string got = Sha256Hex(body); got != want) {
    return absl::DataLossError(absl::StrCat(
        path, " is damaged: its SHA-256 is ", got, ", the file says ", want));
  }
  std::vector<SavedRange> out;
  for (size_t at = sizeof(kMagic) - 1; at < body.size();) {
    if (body.size() - at < 4)
      return absl::DataLossError("a record is cut short");
    uint32_t n = 0;
    for (int i = 0; i < 4; ++i) {
      n = n << 8 | static_cast<unsigned char>(body[at + i]);
    }
    at += 4;
    rpc::BackupChunk chunk;
    if (n > body.size() - at || !chunk.ParseFromArray(body.data() + at, n)) {
      return absl::DataLossError(absl::StrCat("malformed record at byte ", at));
    }
    at += n;
    if (chunk.has_range()) {
      out.emplace_back();
      out.back().range = chunk.range();
      out.back().revision = chunk.revision();
    }
    if (out.empty() || chunk.keys_size() != chunk.values_size()) {
      return absl::DataLossError(absl::StrCat("malformed record at byte ", at));
    }
    for (int i = 0; i < chunk.keys_size(); ++i) {
      out.back().kvs.emplace_back(chunk.keys(i), chunk.values(i));
    }
    out.back().done = out.back().done || chunk.done();
  }
  for (const SavedRange& r : out) {
    if (!r.done) {
      return absl::DataLossError(absl::StrCat("the copy of group ",
                                              r.range.group(), " in ", path,
                                              " is incomplete"));
    }
  }
  return out;
}

// "[a, m)" for a range, "-" for no bound.
std::string Bounds(const rpc::RangeDescriptor& r) {
  return absl::StrCat("[", r.start().empty() ? "-" : Column(r.start()), ", ",
                      r.end().empty() ? "-" : Column(r.end()), ")");
}

// Writes `data` to `path` durably: to a file next to it, synced, then
// renamed over it, so that a crash leaves the old file or the new one.
absl::Status WriteDurably(const std::string& path, const std::string& data) {
  const std::string part = path + ".part";
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot write ", part));
  }
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  const bool ok = done == data.size() && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || std::rename(part.c_str(), path.c_str()) != 0) {
    std::remove(part.c_str());
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot write ", path, " (disk full?)"));
  }
  return absl::OkStatus();
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
  absl::StatusOr<std::vector<SavedRange>> ranges = Load(file_);
  if (!ranges.ok()) return Fail(ranges.status());
  size_t keys = 0;
  nlohmann::json rows = nlohmann::json::array();
  Table t({"GROUP", "RANGE", "REVISION", "KEYS"});
  for (const SavedRange& r : *ranges) {
    keys += r.kvs.size();
    rows.push_back({{"group", JsonInt(r.range.group())},
                    {"start", JsonBytes(r.range.start())},
                    {"end", JsonBytes(r.range.end())},
                    {"revision", JsonInt(r.revision)},
                    {"keys", JsonInt(uint64_t{r.kvs.size()})}});
    t.Add({absl::StrCat(r.range.group()), Bounds(r.range),
           absl::StrCat(r.revision), absl::StrCat(r.kvs.size())});
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
  std::string data = kMagic;
  size_t keys = 0;
  for (const rpc::RangeDescriptor& r : *ranges) {
    std::string part;
    size_t part_keys = 0;
    absl::Status st = c.Backup(
        r.group(),
        [&](const rpc::BackupChunk& chunk) {
          if (chunk.has_range()) {  // a copy begins (again)
            part.clear();
            part_keys = 0;
          }
          AppendRecord(&part, chunk);
          part_keys += chunk.keys_size();
        },
        std::chrono::seconds(timeout_s_));
    if (!st.ok()) {
      return Fail(absl::Status(
          st.code(), absl::StrCat("range of group ", r.group(), ": ",
                                  st.message(), " (nothing written)")));
    }
    data += part;
    keys += part_keys;
  }
  const std::string sha = Sha256Hex(data);
  absl::StrAppend(&data, "sha256 ", sha, "\n");
  if (absl::Status st = WriteDurably(file_, data); !st.ok()) return Fail(st);
  if (out.json()) {
    out.Print({{"file", file_},
               {"keys", JsonInt(keys)},
               {"range_count", JsonInt(ranges->size())},
               {"bytes", JsonInt(data.size())},
               {"sha256", sha}});
  } else {
    std::cout << "saved " << keys << " keys of " << ranges->size()
              << " ranges to " << file_ << " (" << data.size()
              << " bytes, sha256 " << sha << ")\n";
  }
  return kExitOk;
}

int SnapshotCommands::Restore(client::Client& c, const Output& out) {
  absl::StatusOr<std::vector<SavedRange>> saved = Load(file_);
  if (!saved.ok()) return Fail(saved.status());
  absl::StatusOr<std::vector<rpc::RangeDescriptor>> ranges = c.DataRanges();
  if (!ranges.ok()) return Fail(ranges.status());
  auto bounds = [](const auto& list, auto get) {
    std::string out;
    for (const auto& r : list) absl::StrAppend(&out, Bounds(get(r)), " ");
    return out;
  };
  const std::string want =
      bounds(*saved, [](const SavedRange& r) -> const rpc::RangeDescriptor& {
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
  size_t keys = 0;
  for (const SavedRange& r : *saved) {
    rpc::TxnRequest txn;
    size_t bytes = 0;
    auto flush = [&]() -> absl::Status {
      if (txn.success_size() == 0) return absl::OkStatus();
      absl::StatusOr<rpc::TxnResponse> resp = c.Txn(std::move(txn));
      txn = rpc::TxnRequest();
      bytes = 0;
      return resp.status();
    };
    for (const auto& [key, value] : r.kvs) {
      rpc::PutRequest* put = txn.add_success()->mutable_put();
      put->set_key(key);
      put->set_value(value);
      bytes += key.size() + value.size();
      if (txn.success_size() >= kTxnPuts || bytes >= kTxnBytes) {
        if (absl::Status st = flush(); !st.ok()) {
          return Fail(absl::Status(
              st.code(), absl::StrCat(st.message(), " (", keys,
                                      " keys written before; restore into a "
                                      "new cluster again)")));
        }
      }
      ++keys;
    }
    if (absl::Status st = flush(); !st.ok()) {
      return Fail(absl::Status(
          st.code(), absl::StrCat(st.message(),
                                  " (some keys written; restore into a "
                                  "new cluster again)")));
    }
  }
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
