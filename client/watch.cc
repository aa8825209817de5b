// Client::Watch and Client::Compact: one stream per shard, resumed from the
// last revision answered.

#include <atomic>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/call.h"
#include "rpc/status.h"

namespace tally::client {

// The streams of one Watch: stopping cancels every one that is open.
struct Client::WatchStop {
  std::atomic<bool> stopped = false;
  absl::Mutex mu;
  std::set<grpc::ClientContext*> open ABSL_GUARDED_BY(mu);

  void Stop() {
    stopped = true;
    absl::MutexLock l(&mu);
    for (grpc::ClientContext* ctx : open) ctx->TryCancel();
  }
  // False (and not added) once stopped.
  bool Add(grpc::ClientContext* ctx) {
    absl::MutexLock l(&mu);
    if (stopped) return false;
    open.insert(ctx);
    return true;
  }
  void Remove(grpc::ClientContext* ctx) {
    absl::MutexLock l(&mu);
    open.erase(ctx);
  }
};

absl::StatusOr<std::vector<uint64_t>> Client::GroupsOf(const std::string& start,
                                                       const std::string& end) {
  if (end.empty()) {
    absl::StatusOr<uint64_t> g = GroupFor(start);
    if (!g.ok()) return g.status();
    return std::vector<uint64_t>{*g};
  }
  if (absl::Status st = Refresh(); !st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("fetching the range map: ", st.message()));
  }
  const bool unbounded = end == std::string(1, '\0');
  absl::MutexLock l(&mu_);
  std::vector<uint64_t> out;
  for (const Route& r : ranges_) {
    const bool after_start = r.end.empty() || start < r.end;
    const bool before_end = unbounded || r.start < end;
    if (after_start && before_end) out.push_back(r.group);
  }
  return out;
}

absl::Status Client::WatchGroup(
    uint64_t group, const WatchOptions& o,
    const std::function<bool(const rpc::WatchResponse&)>& fn, WatchStop* stop) {
  rpc::WatchRequest req;
  req.set_key(o.key);
  req.set_range_end(o.range_end);
  req.set_group(group);
  req.set_prev_kv(o.prev_kv);
  req.set_progress_ms(o.progress_ms);
  // The revision to start the next stream from (0: now, the first time).
  int64_t next = o.start_revision;
  bool created = false;
  constexpr auto kForever = std::chrono::hours(24);
  while (!stop->stopped) {
    absl::Status st = Call(
        group, true,
        [&](auto ch, auto& ctx) {
          if (!stop->Add(&ctx)) return grpc::Status::OK;
          req.set_start_revision(next);
          auto reader = rpc::Watch::NewStub(ch)->Watch(&ctx, req);
          rpc::WatchResponse resp;
          while (!stop->stopped && reader->Read(&resp)) {
            next = resp.header().revision() + 1;
            // The created answer of a resumed stream tells nothing new.
            if (resp.created() && std::exchange(created, true)) continue;
            if (!fn(resp)) stop->Stop();
          }
          if (stop->stopped) ctx.TryCancel();
          grpc::Status s = reader->Finish();
          stop->Remove(&ctx);
          if (stop->stopped) return grpc::Status::OK;
          return s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       "the watch stream ended")
                        : s;
        },
        kForever, kForever);
    if (!st.ok() && !rpc::IsOutcomeUnknown(st)) return st;
  }
  return absl::OkStatus();
}

absl::Status Client::Watch(
    const WatchOptions& o,
    const std::function<bool(const rpc::WatchResponse&)>& fn) {
  absl::StatusOr<std::vector<uint64_t>> groups = GroupsOf(o.key, o.range_end);
  if (!groups.ok()) return groups.status();
  WatchStop stop;
  if (groups->size() == 1) return WatchGroup(groups->front(), o, fn, &stop);
  // A stream per shard on a thread of its own; fn under one mutex.
  absl::Mutex mu;
  absl::Status first_error;
  auto serialized = [&](const rpc::WatchResponse& r) {
    absl::MutexLock l(&mu);
    return !stop.stopped && fn(r);
  };
  std::vector<std::thread> threads;
  for (uint64_t g : *groups) {
    threads.emplace_back([&, g] {
      absl::Status st = WatchGroup(g, o, serialized, &stop);
      if (st.ok()) return;
      {
        absl::MutexLock l(&mu);
        if (first_error.ok()) first_error = st;
      }
      stop.Stop();
    });
  }
  for (std::thread& t : threads) t.join();
  return first_error;
}

absl::StatusOr<std::vector<rpc::CompactResponse>> Client::Compact(
    int64_t revision, const std::optional<std::string>& key) {
  std::vector<uint64_t> groups;
  if (key) {
    absl::StatusOr<uint64_t> g = GroupFor(*key);
    if (!g.ok()) return g.status();
    groups.push_back(*g);
  } else {
    absl::StatusOr<std::vector<uint64_t>> all = AllGroups();
    if (!all.ok()) return all.status();
    groups.assign(all->begin() + 1, all->end());  // the data groups
  }
  std::vector<rpc::CompactResponse> out;
  for (uint64_t g : groups) {
    rpc::CompactRequest req;
    req.set_group(g);
    req.set_revision(revision);
    rpc::CompactResponse resp;
    // Idempotent: a compaction only grows.
    absl::Status st = Call(g, true, [&](auto ch, auto& ctx) {
      return rpc::Watch::NewStub(ch)->Compact(&ctx, req, &resp);
    });
    if (!st.ok()) return st;
    out.push_back(std::move(resp));
  }
  return out;
}

}  // namespace tally::client
