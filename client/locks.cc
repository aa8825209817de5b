// Client calls of rpc/lock.proto: leases and locks (metadata group), fence
// bindings.

#include <random>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/internal/call.h"

namespace tally::client {

absl::StatusOr<uint64_t> Client::MetaGroup() {
  {
    absl::MutexLock l(&mu_);
    if (meta_group_ != 0) return meta_group_;
  }
  if (absl::Status st = Refresh(); !st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("fetching the range map: ", st.message()));
  }
  absl::MutexLock l(&mu_);
  return meta_group_;
}

absl::StatusOr<rpc::LeaseGrantResponse> Client::GrantLease(
    std::chrono::milliseconds ttl) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::LeaseGrantRequest req;
  req.set_ttl_ms(ttl.count());
  rpc::LeaseGrantResponse resp;
  absl::Status st = Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Leases::NewStub(ch)->Grant(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<int64_t> Client::KeepAlive(uint64_t lease) {
  rpc::LeaseKeepAliveRequest req;
  req.set_id(lease);
  absl::StatusOr<rpc::LeaseKeepAliveResponse> resp = KeepAlive(req);
  if (!resp.ok()) return resp.status();
  return resp->ttl_ms();
}

absl::StatusOr<std::vector<int64_t>> Client::KeepAlive(
    const std::vector<uint64_t>& leases) {
  rpc::LeaseKeepAliveRequest req;
  req.mutable_ids()->Add(leases.begin(), leases.end());
  absl::StatusOr<rpc::LeaseKeepAliveResponse> resp = KeepAlive(req);
  if (!resp.ok()) return resp.status();
  if (resp->ttls_ms_size() != static_cast<int>(leases.size())) {
    return absl::InternalError(absl::StrCat("keep-alive of ", leases.size(),
                                            " leases answered for ",
                                            resp->ttls_ms_size()));
  }
  return std::vector<int64_t>(resp->ttls_ms().begin(), resp->ttls_ms().end());
}

absl::StatusOr<rpc::LeaseKeepAliveResponse> Client::KeepAlive(
    const rpc::LeaseKeepAliveRequest& req) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::LeaseKeepAliveResponse resp;
  // Renewing twice is harmless: retried on any unknown outcome.
  absl::Status st = Call(
      *meta, true,
      [&](auto ch, auto& ctx) {
        auto stream = rpc::Leases::NewStub(ch)->KeepAlive(&ctx);
        if (stream->Write(req) && stream->WritesDone() && stream->Read(&resp)) {
          return stream->Finish();
        }
        grpc::Status st = stream->Finish();
        return st.ok()
                   ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                  "keep-alive stream ended without an answer")
                   : st;
      },
      {}, {}, /*critical=*/true);
  if (!st.ok()) return st;
  return resp;
}

absl::Status Client::RevokeLease(uint64_t lease) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::LeaseRevokeRequest req;
  req.set_id(lease);
  rpc::LeaseRevokeResponse resp;
  return Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Leases::NewStub(ch)->Revoke(&ctx, req, &resp);
  });
}

absl::StatusOr<rpc::LeaseTimeToLiveResponse> Client::LeaseTimeToLive(
    uint64_t lease) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::LeaseTimeToLiveRequest req;
  req.set_id(lease);
  rpc::LeaseTimeToLiveResponse resp;
  absl::Status st = Call(*meta, true, [&](auto ch, auto& ctx) {
    return rpc::Leases::NewStub(ch)->TimeToLive(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::LeaseListResponse> Client::ListLeases() {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::LeaseListResponse resp;
  absl::Status st = Call(*meta, true, [&](auto ch, auto& ctx) {
    return rpc::Leases::NewStub(ch)->List(&ctx, rpc::LeaseListRequest(), &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::AcquireResponse> Client::Acquire(
    const std::string& name, uint64_t lease, std::chrono::milliseconds wait,
    const std::string& value) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  static thread_local std::mt19937_64 rng(std::random_device{}());
  rpc::AcquireRequest req;
  req.set_name(name);
  req.set_lease(lease);
  req.set_request_id(rng() | 1);
  req.set_wait_ms(wait.count());
  req.set_value(value);
  rpc::AcquireResponse resp;
  // A wait takes up to `wait`: each attempt may take that long, and more.
  const auto attempt = wait + internal::kAttemptTimeout;
  const auto total = wait + options_.timeout;
  absl::Status st = Call(
      *meta, true,
      [&](auto ch, auto& ctx) {
        return rpc::Locks::NewStub(ch)->Acquire(&ctx, req, &resp);
      },
      total, attempt);
  if (!st.ok()) return st;
  return resp;
}

absl::Status Client::Release(const std::string& name, uint64_t token) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::ReleaseRequest req;
  req.set_name(name);
  req.set_token(token);
  rpc::ReleaseResponse resp;
  return Call(*meta, false, [&](auto ch, auto& ctx) {
    return rpc::Locks::NewStub(ch)->Release(&ctx, req, &resp);
  });
}

absl::Status Client::Proclaim(const std::string& name, uint64_t token,
                              const std::string& value) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::ProclaimRequest req;
  req.set_name(name);
  req.set_token(token);
  req.set_value(value);
  rpc::ProclaimResponse resp;
  // Proclaiming the same value twice is harmless.
  return Call(*meta, true, [&](auto ch, auto& ctx) {
    return rpc::Locks::NewStub(ch)->Proclaim(&ctx, req, &resp);
  });
}

absl::Status Client::Observe(
    const std::string& name,
    const std::function<bool(const rpc::ObserveResponse&)>& fn) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::ObserveRequest req;
  req.set_name(name);
  // What was delivered last, so that a new stream's first answer (the
  // holder now) is not delivered twice; and the applied index it was read
  // at, so that a node further behind than the last one never takes the
  // observer back in time.
  std::optional<std::pair<uint64_t, std::string>> last;
  bool delivered_once = false;
  uint64_t seen_index = 0;
  bool stop = false;
  constexpr auto kForever = std::chrono::hours(24);
  while (!stop) {
    absl::Status st = Call(
        *meta, true,
        [&](auto ch, auto& ctx) {
          auto reader = rpc::Locks::NewStub(ch)->Observe(&ctx, req);
          rpc::ObserveResponse resp;
          while (!stop && reader->Read(&resp)) {
            if (resp.header().raft_index() < seen_index) continue;
            seen_index = resp.header().raft_index();
            std::optional<std::pair<uint64_t, std::string>> now;
            if (resp.has_holder()) {
              now.emplace(resp.holder().token(), resp.holder().value());
            }
            if (delivered_once && now == last) continue;
            delivered_once = true;
            last = now;
            stop = !fn(resp);
          }
          if (stop) {
            ctx.TryCancel();
            reader->Finish();
            return grpc::Status::OK;
          }
          grpc::Status s = reader->Finish();
          return s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       "the observe stream ended")
                        : s;
        },
        kForever, kForever);
    if (!st.ok() && !rpc::IsOutcomeUnknown(st)) return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<rpc::InspectResponse> Client::Inspect(const std::string& name) {
  absl::StatusOr<uint64_t> meta = MetaGroup();
  if (!meta.ok()) return meta.status();
  rpc::InspectRequest req;
  req.set_name(name);
  rpc::InspectResponse resp;
  absl::Status st = Call(*meta, true, [&](auto ch, auto& ctx) {
    return rpc::Locks::NewStub(ch)->Inspect(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::BindFenceResponse> Client::BindFence(
    const std::string& prefix, const std::string& lock) {
  if (absl::Status st = Refresh(); !st.ok()) return st;
  std::vector<uint64_t> groups;
  {
    absl::MutexLock l(&mu_);
    for (const Route& r : ranges_) {
      if ((r.end.empty() || r.end > prefix) &&
          (r.start <= prefix || r.start.starts_with(prefix))) {
        groups.push_back(r.group);
      }
    }
  }
  // Each shard at its leader; binding again is harmless.
  rpc::BindFenceResponse resp;
  for (uint64_t group : groups) {
    rpc::BindFenceRequest req;
    req.set_prefix(prefix);
    req.set_lock(lock);
    req.set_group(group);
    rpc::BindFenceResponse one;
    absl::Status st = Call(group, true, [&](auto ch, auto& ctx) {
      return rpc::Locks::NewStub(ch)->BindFence(&ctx, req, &one);
    });
    if (!st.ok()) return st;
    if (!one.previous_lock().empty())
      resp.set_previous_lock(one.previous_lock());
    *resp.mutable_header() = one.header();
  }
  return resp;
}

}  // namespace tally::client
