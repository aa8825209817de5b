#include "client/client.h"

#include <algorithm>
#include <random>
#include <thread>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/internal/bearer_token.h"
#include "client/internal/call.h"
#include "client/internal/crdt_batcher.h"
#include "grpcpp/grpcpp.h"
#include "rpc/health.grpc.pb.h"
#include "rpc/status.h"

namespace tally::client {

namespace {

// A membership change of every group: the server's own bound, and a bit.
constexpr auto kMembershipTimeout = std::chrono::milliseconds(65000);

}  // namespace

Client::Client(ClientOptions options)
    : options_(std::move(options)),
      endpoints_(options_.endpoints),
      credentials_(rpc::ChannelCredentials(options_.tls)),
      retry_budget_(std::max(options_.retry_budget, 0.0),
                    internal::kRetryFloorPerSecond),
      throttle_(options_.throttle) {
  internal::CrdtBatcher::Hooks hooks;
  hooks.target = [this] { return Target(kAnyNode); };
  hooks.channel = [this](const std::string& a) { return Channel(a); };
  hooks.answered = [this](const std::string& target, const grpc::Status& st) {
    const bool unreachable =
        st.error_code() == grpc::StatusCode::UNAVAILABLE ||
        st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
    absl::MutexLock l(&mu_);
    auto it = leader_.find(kAnyNode);
    if (st.ok()) {
      leader_[kAnyNode] = target;
    } else if (unreachable &&
               (it != leader_.end()
                    ? it->second
                    : endpoints_[next_endpoint_ % endpoints_.size()]) ==
                   target) {
      // Another call may have moved on already: move on once.
      leader_.erase(kAnyNode);
      ++next_endpoint_;
    }
  };
  crdt_batcher_ = std::make_unique<internal::CrdtBatcher>(std::move(hooks),
                                                          options_.timeout);
}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(ClientOptions options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "no endpoints: pass --endpoints or set KVCTL_ENDPOINTS");
  }
  if (absl::Status s = rpc::CheckTlsFiles(options.tls, /*identity=*/false);
      !s.ok()) {
    return s;
  }
  std::unique_ptr<Client> c(new Client(std::move(options)));
  return c;
}

std::string Client::Target(uint64_t group, const std::string& avoid) {
  absl::MutexLock l(&mu_);
  auto it = leader_.find(group);
  if (it != leader_.end() && it->second != avoid && Allow(it->second)) {
    return it->second;
  }
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    const std::string& e = endpoints_[(next_endpoint_ + i) % endpoints_.size()];
    if ((e != avoid || endpoints_.size() == 1) && Allow(e)) {
      next_endpoint_ += i;
      return e;
    }
  }
  return "";
}

bool Client::Allow(const std::string& address) {
  if (options_.breaker_failures <= 0) return true;
  return breakers_.try_emplace(address, options_.breaker_failures)
      .first->second.Allow(internal::SteadyClock::now());
}

internal::CallGate* Client::Gate(const std::string& address, bool critical) {
  if (critical || !options_.limit_in_flight) return nullptr;
  absl::MutexLock l(&mu_);
  std::unique_ptr<internal::CallGate>& g = gates_[address];
  if (g == nullptr) g = std::make_unique<internal::CallGate>();
  return g.get();
}

void Client::Report(const std::string& address, bool reached, bool accepted) {
  const auto now = internal::SteadyClock::now();
  absl::MutexLock l(&mu_);
  if (options_.throttle > 0) throttle_.Answered(now, accepted);
  if (options_.breaker_failures <= 0) return;
  internal::CircuitBreaker& b =
      breakers_.try_emplace(address, options_.breaker_failures).first->second;
  if (reached) {
    b.Answered();
  } else {
    b.Failed(now);
  }
}

CallStats Client::call_stats() const {
  absl::MutexLock l(&mu_);
  CallStats s = stats_;
  for (const auto& [group, pool] : sessions_) s.sessions += pool.size();
  for (const auto& [address, b] : breakers_) {
    s.breakers[address] = internal::BreakerStateName(b.state());
  }
  for (const auto& [address, g] : gates_) {
    s.in_flight_limits[address] = g->state().limit;
  }
  return s;
}

namespace {
thread_local std::chrono::system_clock::time_point current_deadline =
    std::chrono::system_clock::time_point::max();
}  // namespace

ScopedDeadline::ScopedDeadline(std::chrono::system_clock::time_point deadline)
    : outer_(current_deadline) {
  current_deadline = deadline;
}

ScopedDeadline::~ScopedDeadline() { current_deadline = outer_; }

std::chrono::system_clock::time_point ScopedDeadline::Current() {
  return current_deadline;
}

std::shared_ptr<grpc::Channel> Client::Channel(const std::string& address,
                                               bool critical) {
  absl::MutexLock l(&mu_);
  auto& ch = (critical ? critical_channels_ : channels_)[address];
  if (!ch && options_.dial) {
    ch = options_.dial(address);
  } else if (!ch) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 300);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
    args.SetMaxReceiveMessageSize(64 << 20);
    // gRPC shares one connection among channels with the same target and
    // arguments, across clients too: this argument sets critical calls
    // apart from every other call of the process.
    if (critical) args.SetInt("tally.critical", 1);
    ch = internal::DialWithToken(address, credentials_, args, options_.token);
  }
  return ch;
}

absl::Status Client::Refresh() {
  rpc::RangesResponse resp;
  absl::Status st =
      Call(kAnyNode, true, [&](auto ch, grpc::ClientContext& ctx) {
        return rpc::Cluster::NewStub(ch)->Ranges(&ctx, rpc::RangesRequest(),
                                                 &resp);
      });
  if (!st.ok()) return st;
  absl::MutexLock l(&mu_);
  meta_group_ = resp.meta_group();
  ranges_.clear();
  for (const auto& r : resp.ranges())
    ranges_.push_back({r.group(), r.start(), r.end()});
  for (const auto& m : resp.members()) {
    if (!m.client_address().empty())
      client_address_[m.id()] = m.client_address();
  }
  for (const auto& [group, leader] : resp.leaders()) {
    auto addr = client_address_.find(leader);
    if (leader != 0 && addr != client_address_.end()) {
      leader_[group] = addr->second;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Client::GroupFor(const std::string& key) {
  bool empty;
  {
    absl::MutexLock l(&mu_);
    empty = ranges_.empty();
  }
  if (empty) {
    if (absl::Status st = Refresh(); !st.ok()) {
      return absl::Status(
          st.code(), absl::StrCat("fetching the range map: ", st.message()));
    }
  }
  absl::MutexLock l(&mu_);
  for (const Route& r : ranges_) {
    if (key >= r.start && (r.end.empty() || key < r.end)) return r.group;
  }
  return absl::UnavailableError(
      "the cluster's range map names no range for the key");
}

absl::StatusOr<uint64_t> Client::ReadTarget(const std::string& key,
                                            rpc::ReadMode mode) {
  // Serializable reads are served by whichever node is asked.
  if (mode == rpc::SERIALIZABLE) return kAnyNode;
  return GroupFor(key);
}

absl::StatusOr<std::vector<uint64_t>> Client::AllGroups() {
  if (absl::Status st = Refresh(); !st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("fetching the range map: ", st.message()));
  }
  absl::MutexLock l(&mu_);
  std::vector<uint64_t> out = {meta_group_};
  for (const Route& r : ranges_) out.push_back(r.group);
  return out;
}

Client::SessionState* Client::LeastBusy(uint64_t group) {
  SessionState* best = nullptr;
  for (SessionState& s : sessions_[group]) {
    if (best == nullptr || s.in_flight.size() < best->in_flight.size()) {
      best = &s;
    }
  }
  return best;
}

rpc::Session Client::Take(uint64_t group, SessionState& session) {
  rpc::Session s;
  s.set_client_id(session.client_id);
  s.set_group(group);
  s.set_sequence(session.next_sequence++);
  session.in_flight.insert(s.sequence());
  stats_.most_in_flight_per_session = std::max<uint64_t>(
      stats_.most_in_flight_per_session, session.in_flight.size());
  s.set_first_incomplete(*session.in_flight.begin());
  return s;
}

absl::StatusOr<rpc::Session> Client::NextSession(uint64_t group) {
  // The wait for a session and its opening share the call's time.
  const auto deadline = std::min(internal::Clock::now() + options_.timeout,
                                 ScopedDeadline::Current());
  {
    absl::MutexLock l(&mu_);
    // Never more than kMaxSessions sessions, opened or being opened: past
    // it, writers share the least busy (or, before any is open, wait).
    auto room = [this, group]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return sessions_[group].size() + opening_[group] < kMaxSessions;
    };
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !sessions_[group].empty() || room();
    };
    if (!mu_.AwaitWithTimeout(
            absl::Condition(&ready),
            absl::FromChrono(deadline - internal::Clock::now()))) {
      return absl::DeadlineExceededError(
          absl::StrCat("not sent: no session of group ", group,
                       " was open by the deadline (", opening_[group],
                       " being opened; do the nodes answer?)"));
    }
    // A new session when even the least busy one has kSessionInFlight.
    SessionState* s = LeastBusy(group);
    if (s != nullptr && (s->in_flight.size() < kSessionInFlight || !room())) {
      return Take(group, *s);
    }
    ++opening_[group];
  }
  rpc::OpenSessionRequest req;
  req.set_group(group);
  rpc::OpenSessionResponse resp;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(
      deadline - internal::Clock::now());
  absl::Status st = Call(
      group, true,
      [&](auto ch, auto& ctx) {
        return rpc::KV::NewStub(ch)->OpenSession(&ctx, req, &resp);
      },
      std::max(left, std::chrono::milliseconds(1)));
  absl::MutexLock l(&mu_);
  --opening_[group];
  if (!st.ok()) {
    return absl::Status(st.code(),
                        absl::StrCat("opening a session: ", st.message()));
  }
  sessions_[group].push_back(SessionState{resp.client_id()});
  return Take(group, sessions_[group].back());
}

void Client::Done(const rpc::Session& s) {
  absl::MutexLock l(&mu_);
  for (SessionState& session : sessions_[s.group()]) {
    if (session.client_id == s.client_id()) {
      session.in_flight.erase(s.sequence());
    }
  }
}

void Client::ForgetSession(uint64_t group, uint64_t client_id) {
  absl::MutexLock l(&mu_);
  std::erase_if(sessions_[group], [&](const SessionState& s) {
    return s.client_id == client_id;
  });
}

absl::StatusOr<rpc::GetResponse> Client::Get(const std::string& key,
                                             rpc::ReadMode mode) {
  rpc::GetRequest req;
  req.set_key(key);
  req.set_read_mode(mode);
  rpc::GetResponse resp;
  absl::StatusOr<uint64_t> target = ReadTarget(key, mode);
  if (!target.ok()) return target.status();
  const auto start = internal::SteadyClock::now();
  if (mode == rpc::SERIALIZABLE && options_.hedge_reads) {
    if (auto hedged = HedgedGet(req)) return *std::move(hedged);
  }
  absl::Status st = Call(*target, true, [&](auto ch, auto& ctx) {
    return rpc::KV::NewStub(ch)->Get(&ctx, req, &resp);
  });
  if (!st.ok()) return st;
  if (mode == rpc::SERIALIZABLE) {
    absl::MutexLock l(&mu_);
    read_latency_.Add(std::chrono::duration_cast<std::chrono::microseconds>(
        internal::SteadyClock::now() - start));
  }
  return resp;
}

absl::StatusOr<rpc::PutResponse> Client::Put(const std::string& key,
                                             const std::string& value,
                                             uint64_t fence_token,
                                             uint64_t lease) {
  rpc::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_fence_token(fence_token);
  req.set_lease(lease);
  return Write<rpc::PutResponse>(
      key, req, [](auto& stub, auto* ctx, const auto& r, auto* resp) {
        return stub.Put(ctx, r, resp);
      });
}

absl::StatusOr<rpc::DeleteResponse> Client::Delete(const std::string& key,
                                                   uint64_t fence_token) {
  rpc::DeleteRequest req;
  req.set_key(key);
  req.set_fence_token(fence_token);
  return Write<rpc::DeleteResponse>(
      key, req, [](auto& stub, auto* ctx, const auto& r, auto* resp) {
        return stub.Delete(ctx, r, resp);
      });
}

absl::StatusOr<rpc::DeleteResponse> Client::DeleteRange(
    const std::string& start, const std::string& end, uint64_t fence_token) {
  rpc::DeleteResponse total;
  std::string from = start;
  for (;;) {
    rpc::DeleteRequest req;
    req.set_key(from);
    req.set_range_end(end);
    req.set_fence_token(fence_token);
    absl::StatusOr<rpc::DeleteResponse> r = Write<rpc::DeleteResponse>(
        from, req, [](auto& stub, auto* ctx, const auto& r, auto* resp) {
          return stub.Delete(ctx, r, resp);
        });
    if (!r.ok()) {
      if (total.count() == 0) return r.status();
      return absl::Status(
          r.status().code(),
          absl::StrCat(r.status().message(), " (", total.count(),
                       " keys of the range were deleted "
                       "before; send it again to go on)"));
    }
    total.set_count(total.count() + r->count());
    total.set_deleted(total.deleted() || r->deleted());
    *total.mutable_header() = r->header();
    if (!r->more()) return total;
    from = r->next();
  }
}

absl::StatusOr<rpc::TxnResponse> Client::Txn(rpc::TxnRequest req) {
  // The shard is that of the first key named, as the server decides.
  std::string key;
  if (req.compare_size() > 0) {
    key = req.compare(0).key();
  } else {
    for (const auto* ops : {&req.success(), &req.failure()}) {
      if (ops->empty() || !key.empty()) continue;
      const rpc::TxnOp& op = (*ops)[0];
      key = op.has_put()       ? op.put().key()
            : op.has_delete_() ? op.delete_().key()
                               : op.get().key();
    }
  }
  return Write<rpc::TxnResponse>(
      key, req, [](auto& stub, auto* ctx, const auto& r, auto* resp) {
        return stub.Txn(ctx, r, resp);
      });
}

absl::StatusOr<std::vector<rpc::KeyValue>> Client::Scan(
    const std::string& start, const std::string& end, uint32_t limit,
    rpc::ReadMode mode, std::vector<rpc::ResponseHeader>* headers) {
  std::vector<rpc::KeyValue> out;
  std::string from = start;
  while (true) {
    rpc::RangeRequest req;
    req.set_start(from);
    req.set_end(end);
    req.set_read_mode(mode);
    if (limit > 0) req.set_limit(limit - out.size());
    rpc::RangeResponse resp;
    absl::StatusOr<uint64_t> target = ReadTarget(from, mode);
    if (!target.ok()) return target.status();
    absl::Status st = Call(*target, true, [&](auto ch, auto& ctx) {
      return rpc::KV::NewStub(ch)->Range(&ctx, req, &resp);
    });
    if (!st.ok()) return st;
    if (headers != nullptr) headers->push_back(resp.header());
    for (auto& kv : *resp.mutable_kvs()) out.push_back(std::move(kv));
    if (!resp.more() || (limit > 0 && out.size() >= limit)) return out;
    if (resp.next() <= from) {
      return absl::InternalError(
          absl::StrCat("a range answer's next key does not go forward: \"",
                       absl::CEscape(resp.next()), "\""));
    }
    from = resp.next();
  }
}

absl::StatusOr<rpc::StatusResponse> Client::Status(
    const std::string& endpoint) {
  grpc::ClientContext ctx;
  ctx.set_deadline(internal::Clock::now() + options_.timeout);
  rpc::StatusResponse resp;
  grpc::Status st =
      rpc::Cluster::NewStub(Channel(endpoint))->Status(&ctx, {}, &resp);
  if (!st.ok()) return rpc::FromGrpc(st);
  return resp;
}

absl::StatusOr<std::vector<rpc::RangeDescriptor>> Client::DataRanges() {
  if (absl::Status st = Refresh(); !st.ok()) return st;
  absl::MutexLock l(&mu_);
  std::vector<rpc::RangeDescriptor> out;
  for (const Route& r : ranges_) {
    rpc::RangeDescriptor d;
    d.set_group(r.group);
    d.set_start(r.start);
    d.set_end(r.end);
    out.push_back(std::move(d));
  }
  return out;
}

absl::Status Client::Backup(
    uint64_t group, const std::function<void(const rpc::BackupChunk&)>& fn,
    std::chrono::milliseconds timeout) {
  rpc::BackupRequest req;
  req.set_group(group);
  return Call(
      group, true,
      [&](auto ch, auto& ctx) {
        auto reader = rpc::Cluster::NewStub(ch)->Backup(&ctx, req);
        rpc::BackupChunk chunk;
        bool done = false;
        while (!done && reader->Read(&chunk)) {
          fn(chunk);
          done = chunk.done();
        }
        if (done) ctx.TryCancel();  // nothing more is sent
        grpc::Status st = reader->Finish();
        if (done) return grpc::Status::OK;
        return st.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                      "the backup stream ended early")
                       : st;
      },
      timeout, timeout);
}

absl::Status Client::Health(const std::string& endpoint) {
  grpc::ClientContext ctx;
  ctx.set_deadline(internal::Clock::now() + options_.timeout);
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status st = grpc::health::v1::Health::NewStub(Channel(endpoint))
                        ->Check(&ctx, {}, &resp);
  if (!st.ok()) return rpc::FromGrpc(st);
  if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    return absl::UnavailableError(
        absl::StrCat(endpoint, " is ",
                     grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
                         resp.status())));
  }
  return absl::OkStatus();
}

absl::StatusOr<rpc::RangesResponse> Client::Ranges() {
  rpc::RangesResponse resp;
  absl::Status st = Call(kAnyNode, true, [&](auto ch, auto& ctx) {
    return rpc::Cluster::NewStub(ch)->Ranges(&ctx, rpc::RangesRequest(), &resp);
  });
  if (!st.ok()) return st;
  return resp;
}

template <typename Req, typename Rpc>
absl::StatusOr<rpc::MembershipResponse> Client::ChangeMembership(Req req,
                                                                 Rpc rpc) {
  // Group 0: the node asked drives the change through every group, and
  // waits for a learner to catch up before promoting it: allow it time.
  req.set_group(0);
  rpc::MembershipResponse resp;
  const auto timeout =
      std::max<std::chrono::milliseconds>(options_.timeout, kMembershipTimeout);
  absl::Status st = Call(
      kAnyNode, /*idempotent=*/true,
      [&](auto ch, auto& ctx) {
        return rpc(*rpc::Cluster::NewStub(ch), &ctx, req, &resp);
      },
      timeout, timeout);
  if (!st.ok()) return st;
  return resp;
}

absl::StatusOr<rpc::MembershipResponse> Client::AddLearner(
    uint64_t id, const std::string& peer_address) {
  rpc::AddLearnerRequest req;
  req.mutable_member()->set_id(id);
  req.mutable_member()->set_peer_address(peer_address);
  return ChangeMembership(req,
                          [](auto& stub, auto* ctx, const auto& r, auto* resp) {
                            return stub.AddLearner(ctx, r, resp);
                          });
}

absl::StatusOr<rpc::MembershipResponse> Client::Promote(uint64_t id) {
  rpc::PromoteRequest req;
  req.set_id(id);
  return ChangeMembership(req,
                          [](auto& stub, auto* ctx, const auto& r, auto* resp) {
                            return stub.Promote(ctx, r, resp);
                          });
}

absl::StatusOr<rpc::MembershipResponse> Client::RemoveMember(uint64_t id) {
  rpc::RemoveMemberRequest req;
  req.set_id(id);
  return ChangeMembership(req,
                          [](auto& stub, auto* ctx, const auto& r, auto* resp) {
                            return stub.RemoveMember(ctx, r, resp);
                          });
}

absl::StatusOr<rpc::TransferLeaderResponse> Client::TransferLeader(
    uint64_t target) {
  absl::StatusOr<std::vector<uint64_t>> groups = AllGroups();
  if (!groups.ok()) return groups.status();
  rpc::TransferLeaderResponse all;
  for (uint64_t g : *groups) {
    rpc::TransferLeaderRequest req;
    req.set_group(g);
    req.set_target(target);
    rpc::TransferLeaderResponse resp;
    absl::Status st = Call(g, false, [&](auto ch, auto& ctx) {
      return rpc::Cluster::NewStub(ch)->TransferLeader(&ctx, req, &resp);
    });
    if (!st.ok()) return st;
    for (uint64_t x : resp.groups()) all.add_groups(x);
  }
  return all;
}

}  // namespace tally::client
