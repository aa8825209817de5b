#include "cmd/kvctl/watch_commands.h"

#include <climits>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

WatchCommands::WatchCommands(CLI::App& app) {
  watch_ = app.add_subcommand(
      "watch",
      "print every change of KEY (or of the keys starting with it, or of a "
      "range) as it happens, one line each: SHARD@REVISION, PUT or DELETE, "
      "key, value (and the previous value with --prev-kv); -o json: every "
      "answer of the stream, progress included. Runs until interrupted, or "
      "--count changes");
  watch_->add_option("key", key_, "the key, or the start of the range")
      ->required();
  CLI::Option* prefix =
      watch_->add_flag("--prefix", prefix_, "every key that starts with KEY");
  watch_
      ->add_option("--range-end", range_end_,
                   "watch [KEY, END) instead of KEY alone")
      ->excludes(prefix);
  watch_
      ->add_option("--rev", rev_,
                   "the first revision to print, in each shard (0: from "
                   "now); one older than the shard keeps (its history "
                   "starts at its first watch) exits 4 naming the oldest "
                   "left")
      ->check(CLI::Range(int64_t{0}, INT64_MAX));
  watch_->add_flag("--prev-kv", prev_kv_, "print each change's previous value");
  watch_->add_option("--count", count_,
                     "exit 0 after this many changes (0: never)");
  watch_->add_option("--progress-ms", progress_ms_,
                     "with -o json: a progress answer this often while "
                     "nothing changes (0: the server's 10 s)");

  compact_ = app.add_subcommand(
      "compact",
      "forget the watch history up to REVISION in every shard (each at most "
      "to its own revision), or in KEY's shard with --key");
  compact_->add_option("revision", rev_)
      ->required()
      ->check(CLI::Range(int64_t{1}, INT64_MAX));
  compact_->add_option("--key", compact_key_,
                       "only the shard holding this key");
}

std::optional<int> WatchCommands::Run(client::Client& c, const Output& out) {
  if (*watch_) return Watch(c, out);
  if (!*compact_) return std::nullopt;
  auto r = c.Compact(rev_, compact_key_);
  if (!r.ok()) return Fail(r.status());
  if (out.json()) {
    std::vector<rpc::ResponseHeader> headers;
    nlohmann::json shards = nlohmann::json::array();
    for (const rpc::CompactResponse& one : *r) {
      headers.push_back(one.header());
      shards.push_back({{"group", JsonInt(one.header().group())},
                        {"compacted", JsonInt(one.compacted())}});
    }
    out.Print({{"shards", shards}}, headers);
    return kExitOk;
  }
  for (const rpc::CompactResponse& one : *r) {
    std::cout << "shard " << one.header().group() << ": history before "
              << one.compacted() + 1 << " forgotten\n";
  }
  return kExitOk;
}

int WatchCommands::Watch(client::Client& c, const Output& out) {
  client::Client::WatchOptions o;
  o.key = key_;
  if (prefix_) {
    o.range_end = PrefixEnd(key_);
    if (o.range_end.empty()) o.range_end = std::string(1, '\0');
  } else {
    o.range_end = range_end_;
  }
  o.start_revision = rev_;
  o.prev_kv = prev_kv_;
  o.progress_ms = progress_ms_;
  uint64_t seen = 0;
  absl::Status st = c.Watch(o, [&](const rpc::WatchResponse& r) {
    if (out.json()) {
      out.Print(r);
    } else if (r.created()) {
      std::cerr << "watching shard " << r.header().group() << " after revision "
                << r.header().revision() << "\n";
    }
    for (const rpc::WatchEvent& e : r.events()) {
      ++seen;
      if (!out.json()) {
        const bool put = e.type() == rpc::WatchEvent::PUT;
        std::string line =
            absl::StrCat(r.header().group(), "@", e.kv().mod_revision(), "\t",
                         put ? "PUT" : "DELETE", "\t", out.Bytes(e.kv().key()));
        if (put) absl::StrAppend(&line, "\t", out.Bytes(e.kv().value()));
        if (prev_kv_ && e.has_prev_kv()) {
          absl::StrAppend(&line, "\tprev=", out.Bytes(e.prev_kv().value()));
        }
        std::cout << line << std::endl;
      }
      if (count_ != 0 && seen >= count_) break;
    }
    return count_ == 0 || seen < count_;
  });
  if (!st.ok()) return Fail(st);
  return kExitOk;
}

}  // namespace tally::kvctl
