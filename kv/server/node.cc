#include "kv/server/internal/node.h"

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "kv/encode.h"
#include "kv/server/internal/reply.h"
#include "util/hash.h"
#include "util/waker.h"

namespace tally::kv::server {

namespace {

// How often a follower looks again while it catches up (CatchUpWithMeta).
constexpr auto kMetaCatchUpPoll = std::chrono::milliseconds(5);

template <typename T>
absl::StatusOr<T> Await(std::future<absl::StatusOr<T>> f,
                        std::chrono::system_clock::time_point deadline,
                        const char* what) {
  if (!WaitUntil(f, deadline)) {
    return rpc::OutcomeUnknown(absl::StrCat(
        what,
        " did not finish in time; the outcome is unknown (retry with "
        "the same session to find out)"));
  }
  return f.get();
}

}  // namespace

const rpc::RangeDescriptor& Node::RangeFor(const std::string& key) const {
  const rpc::RangeDescriptor* found = &layout.ranges(0);
  for (const auto& r : layout.ranges()) {
    if (key >= r.start() && (r.end().empty() || key < r.end())) found = &r;
  }
  return *found;
}

StateMachine* Node::Machine(raft::host::GroupId group) const {
  return groups->Find(group);
}

int64_t MinTtlMs(const ServerOptions& o) {
  return int64_t{2} * o.election_tick * o.tick_ms;
}

LeaseKnown LeaseState(const Node& node, uint64_t id) {
  const StateMachine* meta = node.Machine(kMetaGroup);
  // Applied first: a lease granted at or below it is in the replica unless
  // it has ended.
  if (meta == nullptr || meta->applied() < id) return LeaseKnown::kUnknown;
  absl::StatusOr<std::optional<kvpb::LeaseRecord>> rec = meta->leases().Get(id);
  if (!rec.ok()) return LeaseKnown::kUnknown;
  return rec->has_value() ? LeaseKnown::kLive : LeaseKnown::kEnded;
}

void Node::WriteAsync(raft::host::GroupId group, kvpb::Command cmd,
                      WriteDone done) {
  // Log time, not the wall clock: see StateMachine::ProposalTimeMs.
  if (StateMachine* sm = Machine(group)) cmd.set_time_ms(sm->ProposalTimeMs());
  writes.Proposed();
  host->Propose(
      group, cmd.SerializeAsString(),
      [this, start = std::chrono::steady_clock::now(),
       done = std::move(done)](absl::StatusOr<raft::host::Applied> r) {
        writes.Done(r.ok(), std::chrono::duration<double>(
                                std::chrono::steady_clock::now() - start)
                                .count());
        // The host's "outcome unknown" (a shutdown, a snapshot that
        // overtook the entry) is DEADLINE_EXCEEDED, as everywhere.
        if (absl::IsDeadlineExceeded(r.status())) {
          return done(rpc::OutcomeUnknown(std::string(r.status().message())));
        }
        if (!r.ok()) return done(r.status());
        kvpb::CommandResult result;
        if (!result.ParseFromString(r->result)) {
          return done(absl::InternalError("undecodable write result"));
        }
        if (result.error_code() != 0) {
          absl::Status st(static_cast<absl::StatusCode>(result.error_code()),
                          result.error_message());
          if (!result.error_reason().empty()) {
            st.SetPayload(rpc::kReasonKey, absl::Cord(result.error_reason()));
          }
          return done(st);
        }
        done(std::move(result));
      });
}

void Node::ReadAsync(raft::host::GroupId group, bool lease, ReadDone done) {
  host->ReadIndex(group, lease, std::move(done));
}

absl::StatusOr<raft::Index> Node::Read(
    raft::host::GroupId group, std::chrono::system_clock::time_point deadline) {
  auto p = std::make_shared<std::promise<absl::StatusOr<raft::Index>>>();
  ReadAsync(group, /*lease=*/false,
            [p](absl::StatusOr<raft::Index> r) { p->set_value(std::move(r)); });
  return Await(p->get_future(), deadline, "read");
}

bool Node::CatchUpWithMeta(std::chrono::system_clock::time_point deadline,
                           const std::function<bool()>& found) {
  if (meta_catch_ups.fetch_add(1) >= kMostMetaCatchUps) {
    meta_catch_ups.fetch_sub(1);
    return false;
  }
  // The leader acknowledged the change once it applied it.
  const auto now = std::chrono::system_clock::now();
  bool ok = false;
  if (Read(kMetaGroup, std::min(deadline, now + kMetaCatchUpTime)).ok()) {
    ok = found();
  } else {
    const auto until = util::SteadyAt(std::min(
        deadline, now + 4 * std::chrono::milliseconds(options.tick_ms)));
    while (!ok && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(kMetaCatchUpPoll);
      ok = found();
    }
  }
  meta_catch_ups.fetch_sub(1);
  return ok;
}

absl::StatusOr<kvpb::CommandResult> Node::Write(
    raft::host::GroupId group, kvpb::Command cmd,
    std::chrono::system_clock::time_point deadline) {
  auto p =
      std::make_shared<std::promise<absl::StatusOr<kvpb::CommandResult>>>();
  WriteAsync(group, std::move(cmd), [p](absl::StatusOr<kvpb::CommandResult> r) {
    p->set_value(std::move(r));
  });
  return Await(p->get_future(), deadline, "write");
}

absl::StatusOr<raft::Index> Node::ProposeConfChange(
    raft::host::GroupId group, const raft::ConfChange& cc,
    std::chrono::system_clock::time_point deadline) {
  auto p = std::make_shared<std::promise<absl::StatusOr<raft::Index>>>();
  host->ProposeConfChange(group, cc,
                          [p](absl::StatusOr<raft::host::Applied> r) {
                            if (r.ok()) {
                              p->set_value(r->index);
                            } else {
                              p->set_value(r.status());
                            }
                          });
  return Await(p->get_future(), deadline, "membership change");
}

grpc::Status Node::Refuse(grpc::ServerContextBase* ctx,
                          raft::host::GroupId group,
                          const absl::Status& s) const {
  if (absl::IsUnavailable(s)) return NotLeader(ctx, group, s);
  if (absl::IsResourceExhausted(s) && !s.GetPayload(rpc::kReasonKey)) {
    // Shed by the raft host: its queue is the writes'. (With a reason, it
    // is the state machine's answer: no overload, no hint.)
    ctx->AddTrailingMetadata(
        rpc::kRetryAfterKey,
        absl::StrCat(admission->RetryAfter(Priority::kWrite).count()));
  }
  return rpc::ToGrpc(s, ctx);
}

uint64_t Fingerprint(const google::protobuf::Message& request) {
  return util::Fnv1a64(EncodeDeterministic(request));
}

grpc::Status Node::NotLeader(grpc::ServerContextBase* ctx,
                             raft::host::GroupId group,
                             const absl::Status& cause) const {
  ctx->AddTrailingMetadata(rpc::kNodeKey, absl::StrCat("n", id));
  absl::StatusOr<raft::host::GroupInfo> info = host->Group(group);
  std::string hint;
  if (info.ok() && info->leader != raft::kNoNode && info->leader != id) {
    hint = directory.Client(info->leader);
    if (!hint.empty()) ctx->AddTrailingMetadata(rpc::kLeaderKey, hint);
  }
  std::string msg = absl::StrCat("node n", id, " cannot serve group ", group,
                                 ": ", cause.message());
  if (!hint.empty()) absl::StrAppend(&msg, "; leader is at ", hint);
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, msg);
}

}  // namespace tally::kv::server
