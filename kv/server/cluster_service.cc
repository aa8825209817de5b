// Cluster status, routing information, membership and leadership.

#include <algorithm>
#include <future>
#include <optional>
#include <thread>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/cluster.grpc.pb.h"
#include "rpc/reasons.h"
#include "spdlog/spdlog.h"

namespace tally::kv::server {

namespace {

using Clock = std::chrono::system_clock;
using raft::ConfChangeSingle;

// A change of every group ends by this long after it began.
constexpr auto kMembershipTimeout = std::chrono::seconds(60);
// A member about to be removed has this long to have its CRDT rows taken
// over by a node that stays.
constexpr auto kHandOverTimeout = std::chrono::seconds(30);
// One group's attempt, and the wait before the next (a leader being
// elected, a learner catching up).
constexpr auto kMembershipAttempt = std::chrono::seconds(10);
constexpr auto kMembershipRetry = std::chrono::milliseconds(200);
// A backup waits this long for its read point; it sends its keys this many
// to a chunk.
constexpr auto kBackupReadTimeout = std::chrono::seconds(10);
constexpr size_t kBackupChunkKeys = 1000;

class ClusterService final : public rpc::Cluster::Service {
 public:
  explicit ClusterService(Node* node) : node_(node) {}

  grpc::Status Status(grpc::ServerContext*, const rpc::StatusRequest*,
                      rpc::StatusResponse* resp) override {
    resp->set_node(node_->id);
    resp->set_cluster_id(node_->layout.cluster_id());
    Members(resp->mutable_members());
    for (const raft::host::GroupInfo& g : node_->host->Groups()) {
      rpc::GroupStatus* s = resp->add_groups();
      s->set_group(g.group);
      for (const auto& r : node_->layout.ranges()) {
        if (r.group() == g.group) *s->mutable_range() = r;
      }
      s->set_leader(g.leader);
      s->set_term(g.term);
      s->set_commit_index(g.commit);
      s->set_applied_index(g.applied);
      s->set_first_index(g.first_index);
      s->set_last_index(g.last_index);
      s->set_quiet(g.quiet);
      s->set_role(RoleName(g.role));
      s->mutable_voters()->Add(g.conf.voters.begin(), g.conf.voters.end());
      s->mutable_learners()->Add(g.conf.learners.begin(),
                                 g.conf.learners.end());
      s->mutable_outgoing_voters()->Add(g.conf.voters_outgoing.begin(),
                                        g.conf.voters_outgoing.end());
      if (StateMachine* sm = node_->Machine(g.group)) {
        s->set_revision(sm->revision());
      }
    }
    for (size_t i = 0; i < kPriorities; ++i) {
      const Admission::ClassStats c = node_->admission->Stats(Priority(i));
      rpc::AdmissionClass* a = resp->add_admission();
      a->set_name(PriorityName(Priority(i)));
      a->set_limit(c.limit);
      a->set_most(c.most);
      a->set_in_flight(c.in_flight);
      a->set_admitted(c.admitted);
      a->set_shed(c.shed);
      a->set_late(c.late);
      a->set_expired(c.expired);
    }
    return grpc::Status::OK;
  }

  grpc::Status Ranges(grpc::ServerContext*, const rpc::RangesRequest*,
                      rpc::RangesResponse* resp) override {
    // The metadata group holds the descriptors; a node that joined and has
    // no snapshot of it yet answers from what it was told when joining.
    for (const auto& r : DataRanges()) *resp->add_ranges() = r;
    resp->set_meta_group(kMetaGroup);
    Members(resp->mutable_members());
    for (const raft::host::GroupInfo& g : node_->host->Groups()) {
      (*resp->mutable_leaders())[g.group] = g.leader;
    }
    return grpc::Status::OK;
  }

  grpc::Status Backup(grpc::ServerContext* ctx, const rpc::BackupRequest* req,
                      grpc::ServerWriter<rpc::BackupChunk>* writer) override {
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) return st;
    std::optional<rpc::RangeDescriptor> range;
    for (const auto& r : DataRanges()) {
      if (r.group() == req->group()) range = r;
    }
    if (!range) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("group ", req->group(), " is not a data group"));
    }
    const StateMachine* sm = node_->Machine(req->group());
    if (sm == nullptr) {
      return node_->NotLeader(
          ctx, req->group(),
          absl::UnavailableError("this node holds no replica of it yet"));
    }
    // Linearizable: everything committed when asked is applied here, and
    // this node still leads the group.
    absl::StatusOr<raft::Index> at =
        node_->Read(req->group(), Clock::now() + kBackupReadTimeout);
    if (!at.ok()) return node_->Refuse(ctx, req->group(), at.status());
    const int64_t revision = sm->revision();
    std::unique_ptr<storage::Snapshot> snap = node_->data->GetSnapshot();
    rpc::BackupChunk chunk;
    *chunk.mutable_range() = *range;
    chunk.set_revision(revision);
    std::string start;
    for (bool more = true; more;) {
      absl::StatusOr<std::vector<kvpb::KeyValue>> kvs =
          sm->kv().Range(start, "", kBackupChunkKeys, &more, snap.get());
      if (!kvs.ok()) return rpc::ToGrpc(kvs.status());
      for (kvpb::KeyValue& kv : *kvs) {
        chunk.add_keys(kv.key());
        chunk.add_values(std::move(*kv.mutable_value()));
      }
      if (!kvs->empty()) start = kvs->back().key() + '\0';
      chunk.set_done(!more);
      if (ctx->IsCancelled() || !writer->Write(chunk)) {
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            "the backup's reader went away");
      }
      chunk.Clear();
    }
    return grpc::Status::OK;
  }

  grpc::Status AddLearner(grpc::ServerContext* ctx,
                          const rpc::AddLearnerRequest* req,
                          rpc::MembershipResponse* resp) override {
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) return st;
    const rpc::Member& m = req->member();
    if (m.id() == 0 || m.peer_address().empty()) {
      return Invalid("a new member needs an id (n<number>) and a peer address");
    }
    if (StateMachine* meta = node_->Machine(kMetaGroup);
        meta != nullptr && meta->meta().WasRemoved(m.id())) {
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("n", m.id(),
                       " was removed from the cluster and its id "
                       "cannot be used again; add the node "
                       "under a new name"));
    }
    if (req->group() == 0) {
      return Everywhere(
          *ctx, *req, /*meta_last=*/false,
          [](rpc::Cluster::Stub& stub, grpc::ClientContext* c,
             const rpc::AddLearnerRequest& r, rpc::MembershipResponse* out) {
            return stub.AddLearner(c, r, out);
          },
          resp);
    }
    if (req->group() == kMetaGroup) {
      kvpb::Command cmd;
      *cmd.mutable_set_member() = ToKv(m);
      cmd.mutable_set_member()->set_name(absl::StrCat("n", m.id()));
      absl::StatusOr<kvpb::CommandResult> r =
          node_->Write(kMetaGroup, cmd, Deadline(ctx));
      if (!r.ok()) return node_->Refuse(ctx, kMetaGroup, r.status());
    }
    node_->directory.SetPeer(m.id(), m.peer_address());
    // Adding a member that is a voter already changes nothing (to the raft
    // core it would be a demotion).
    if (absl::StatusOr<raft::host::GroupInfo> info =
            node_->host->Group(req->group());
        info.ok() && info->role == raft::Role::kLeader &&
        std::count(info->conf.voters.begin(), info->conf.voters.end(), m.id()) >
            0) {
      resp->mutable_voters()->Add(info->conf.voters.begin(),
                                  info->conf.voters.end());
      resp->mutable_learners()->Add(info->conf.learners.begin(),
                                    info->conf.learners.end());
      return grpc::Status::OK;
    }
    return Change(ctx, req->group(), ConfChangeSingle::Type::kAddLearner,
                  m.id(), resp);
  }

  grpc::Status Promote(grpc::ServerContext* ctx, const rpc::PromoteRequest* req,
                       rpc::MembershipResponse* resp) override {
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) return st;
    if (req->group() == 0) {
      if (req->id() == 0) return Invalid("member id must not be 0");
      return Everywhere(
          *ctx, *req, /*meta_last=*/false,
          [](rpc::Cluster::Stub& stub, grpc::ClientContext* c,
             const rpc::PromoteRequest& r,
             rpc::MembershipResponse* out) { return stub.Promote(c, r, out); },
          resp);
    }
    return Change(ctx, req->group(), ConfChangeSingle::Type::kAddVoter,
                  req->id(), resp);
  }

  grpc::Status RemoveMember(grpc::ServerContext* ctx,
                            const rpc::RemoveMemberRequest* req,
                            rpc::MembershipResponse* resp) override {
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) return st;
    if (req->group() == 0) {
      if (req->id() == 0) return Invalid("member id must not be 0");
      // First, what the member acknowledged of CRDT tables (no raft
      // behind it) goes to a node that stays.
      rpc::RemoveMemberRequest all = *req;
      if (node_->crdt) {
        absl::StatusOr<bool> handed =
            node_->crdt->HandOver(req->id(), Clock::now() + kHandOverTimeout);
        if (!handed.ok()) {
          return grpc::Status(
              grpc::StatusCode::UNAVAILABLE,
              absl::StrCat("n", req->id(),
                           " was not removed: its CRDT rows "
                           "could not be taken over first (",
                           handed.status().message(), "); try again"));
        }
        all.set_crdt_rows_taken_over(*handed);
      }
      // The metadata group last: the member's addresses stay known until
      // every data group has let it go.
      return Everywhere(
          *ctx, all, /*meta_last=*/true,
          [](rpc::Cluster::Stub& stub, grpc::ClientContext* c,
             const rpc::RemoveMemberRequest& r, rpc::MembershipResponse* out) {
            return stub.RemoveMember(c, r, out);
          },
          resp);
    }
    grpc::Status st =
        Change(ctx, req->group(), ConfChangeSingle::Type::kRemoveNode,
               req->id(), resp);
    if (st.ok() && req->group() == kMetaGroup) {
      kvpb::Command cmd;
      cmd.set_remove_member(req->id());
      node_->Write(kMetaGroup, cmd, Deadline(ctx)).IgnoreError();
      if (req->crdt_rows_taken_over()) {
        // Nothing it held is missing elsewhere: GC stops waiting for it.
        kvpb::Command retire;
        retire.set_crdt_retire(req->id());
        if (absl::StatusOr<kvpb::CommandResult> r =
                node_->Write(kMetaGroup, retire, Deadline(ctx));
            !r.ok()) {
          spdlog::warn(
              "[n={}] CRDT replica of the removed n{} not retired ({}): "
              "kvctl crdt retire {} lets garbage collection move on",
              node_->id, req->id(), r.status().ToString(), req->id());
        }
      }
    }
    return st;
  }

  grpc::Status TransferLeader(grpc::ServerContext* ctx,
                              const rpc::TransferLeaderRequest* req,
                              rpc::TransferLeaderResponse* resp) override {
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) return st;
    std::vector<uint64_t> groups;
    for (const raft::host::GroupInfo& g : node_->host->Groups()) {
      if ((req->group() == 0 || g.group == req->group()) &&
          g.role == raft::Role::kLeader) {
        groups.push_back(g.group);
      }
    }
    if (groups.empty()) {
      return node_->Refuse(
          ctx, req->group() == 0 ? kMetaGroup : req->group(),
          absl::UnavailableError("this node leads no such group"));
    }
    for (uint64_t g : groups) {
      auto p = std::make_shared<std::promise<absl::Status>>();
      node_->host->TransferLeadership(g, req->target(),
                                      [p](absl::Status s) { p->set_value(s); });
      auto f = p->get_future();
      if (!WaitUntil(f, Deadline(ctx))) {
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            "leadership transfer did not finish in time");
      }
      absl::Status s = f.get();
      if (!s.ok()) return rpc::ToGrpc(s);
      resp->add_groups(g);
    }
    return grpc::Status::OK;
  }

 private:
  static grpc::Status Invalid(const std::string& msg) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, msg);
  }
  static Clock::time_point Deadline(grpc::ServerContext* ctx) {
    const auto fallback = Clock::now() + std::chrono::seconds(10);
    return ctx->deadline() < fallback ? ctx->deadline() : fallback;
  }
  static const char* RoleName(raft::Role r) {
    switch (r) {
      case raft::Role::kLeader:
        return "LEADER";
      case raft::Role::kCandidate:
        return "CANDIDATE";
      case raft::Role::kPreCandidate:
        return "PRE_CANDIDATE";
      default:
        return "FOLLOWER";
    }
  }
  void Members(google::protobuf::RepeatedPtrField<rpc::Member>* out) const {
    StateMachine* meta = node_->Machine(kMetaGroup);
    if (meta == nullptr) return;
    absl::StatusOr<std::vector<kvpb::Member>> members = meta->meta().Members();
    if (!members.ok()) return;
    for (const kvpb::Member& m : *members) {
      rpc::Member* api = out->Add();
      *api = ToApi(m);
      api->set_client_address(node_->directory.Client(m.id()));
    }
  }

  // The data groups' descriptors, from the metadata group; a node that
  // joined and has no snapshot of it yet answers from what it was told when
  // joining.
  std::vector<rpc::RangeDescriptor> DataRanges() const {
    StateMachine* meta = node_->Machine(kMetaGroup);
    absl::StatusOr<std::vector<kvpb::RangeDescriptor>> ranges =
        meta ? meta->meta().Ranges()
             : absl::StatusOr<std::vector<kvpb::RangeDescriptor>>();
    if (!ranges.ok() || ranges->empty()) {
      return {node_->layout.ranges().begin(), node_->layout.ranges().end()};
    }
    std::vector<rpc::RangeDescriptor> out;
    for (const kvpb::RangeDescriptor& r : *ranges) out.push_back(ToApi(r));
    return out;
  }

  // Sends `req` with each group in turn (the metadata group first, or last)
  // to that group's leader, until every group has it or kMembershipTimeout
  // passes. The caller's deadline does not stop it, so a caller that goes
  // away does not leave groups with different members.
  template <typename Req, typename Rpc>
  grpc::Status Everywhere(const grpc::ServerContext& from, const Req& req,
                          bool meta_last, Rpc rpc,
                          rpc::MembershipResponse* resp) {
    std::vector<uint64_t> groups = {kMetaGroup};
    for (const auto& r : DataRanges()) groups.push_back(r.group());
    if (meta_last) std::reverse(groups.begin(), groups.end());
    const auto deadline = Clock::now() + kMembershipTimeout;
    for (uint64_t g : groups) {
      Req one = req;
      one.set_group(g);
      std::string target = LeaderAddress(g);
      while (true) {
        rpc::MembershipResponse out;
        grpc::ClientContext c;
        c.set_deadline(std::min(deadline, Clock::now() + kMembershipAttempt));
        ForwardCredentials(from, &c);
        auto stub = rpc::Cluster::NewStub(
            grpc::CreateChannel(target, node_->peer_credentials));
        grpc::Status st = rpc(*stub, &c, one, &out);
        if (st.ok()) {
          rpc::GroupChange* gc = resp->add_groups();
          gc->set_group(g);
          gc->set_changed(out.changed());
          *gc->mutable_voters() = out.voters();
          *gc->mutable_learners() = out.learners();
          if (g == kMetaGroup) {
            *resp->mutable_voters() = out.voters();
            *resp->mutable_learners() = out.learners();
          }
          break;
        }
        const auto& md = c.GetServerTrailingMetadata();
        auto hint = md.find(rpc::kLeaderKey);
        if (hint != md.end()) {
          target.assign(hint->second.data(), hint->second.size());
        }
        auto reason = md.find(rpc::kReasonKey);
        const bool waiting =
            reason != md.end() && reason->second == rpc::kLearnerBehind;
        const bool retry =
            waiting || st.error_code() == grpc::StatusCode::UNAVAILABLE ||
            st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
            st.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
        if (!retry || Clock::now() + kMembershipRetry >= deadline) {
          std::string done;
          for (const rpc::GroupChange& gc : resp->groups()) {
            absl::StrAppend(&done, done.empty() ? "" : ", ", gc.group());
          }
          return grpc::Status(
              st.error_code(),
              absl::StrCat("group ", g, ": ", st.error_message(),
                           done.empty() ? "; no group is done"
                                        : absl::StrCat("; groups done: ", done),
                           "; send the same request again to finish"));
        }
        if (hint == md.end()) target = LeaderAddress(g);
        std::this_thread::sleep_for(kMembershipRetry);
      }
    }
    return grpc::Status::OK;
  }

  // The client address of the group's leader as this node knows it, else
  // this node's own (which answers with a redirect).
  std::string LeaderAddress(uint64_t group) const {
    absl::StatusOr<raft::host::GroupInfo> info = node_->host->Group(group);
    if (info.ok() && info->leader != raft::kNoNode) {
      std::string a = node_->directory.Client(info->leader);
      if (!a.empty()) return a;
    }
    return node_->directory.Client(node_->id);
  }

  grpc::Status Change(grpc::ServerContext* ctx, uint64_t group,
                      ConfChangeSingle::Type type, uint64_t id,
                      rpc::MembershipResponse* resp) {
    if (id == 0) return Invalid("member id must not be 0");
    raft::ConfChange cc;
    cc.changes.push_back({type, id});
    absl::StatusOr<raft::Index> index =
        node_->ProposeConfChange(group, cc, Deadline(ctx));
    if (!index.ok()) {
      absl::Status st = index.status();
      if (absl::IsFailedPrecondition(st) &&
          type == ConfChangeSingle::Type::kAddVoter) {
        // The learner is still catching up: the caller may wait and retry.
        st = rpc::WithReason(std::move(st), rpc::kLearnerBehind);
      }
      return node_->Refuse(ctx, group, st);
    }
    resp->set_changed(*index != 0);
    absl::StatusOr<raft::host::GroupInfo> info = node_->host->Group(group);
    if (info.ok()) {
      resp->mutable_voters()->Add(info->conf.voters.begin(),
                                  info->conf.voters.end());
      resp->mutable_learners()->Add(info->conf.learners.begin(),
                                    info->conf.learners.end());
    }
    return grpc::Status::OK;
  }

  Node* const node_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewClusterService(Node* node) {
  return std::make_unique<ClusterService>(node);
}

}  // namespace tally::kv::server
