// Cluster status, routing information, membership and leadership.

#include <future>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "kv/server/internal/node.h"
#include "rpc/cluster.grpc.pb.h"

namespace tally::kv::server {

namespace {

using Clock = std::chrono::system_clock;
using raft::ConfChangeSingle;

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
    return grpc::Status::OK;
  }

  grpc::Status Ranges(grpc::ServerContext*, const rpc::RangesRequest*,
                      rpc::RangesResponse* resp) override {
    // The metadata group holds the descriptors; a node that joined and has
    // no snapshot of it yet answers from what it was told when joining.
    StateMachine* meta = node_->Machine(kMetaGroup);
    absl::StatusOr<std::vector<rpc::RangeDescriptor>> ranges =
        meta ? meta->meta().Ranges()
             : absl::StatusOr<std::vector<rpc::RangeDescriptor>>();
    if (!ranges.ok() || ranges->empty()) {
      ranges = std::vector<rpc::RangeDescriptor>(node_->layout.ranges().begin(),
                                                 node_->layout.ranges().end());
    }
    for (const auto& r : *ranges) *resp->add_ranges() = r;
    resp->set_meta_group(kMetaGroup);
    Members(resp->mutable_members());
    for (const raft::host::GroupInfo& g : node_->host->Groups()) {
      (*resp->mutable_leaders())[g.group] = g.leader;
    }
    return grpc::Status::OK;
  }

  grpc::Status AddLearner(grpc::ServerContext* ctx,
                          const rpc::AddLearnerRequest* req,
                          rpc::MembershipResponse* resp) override {
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
    if (req->group() == kMetaGroup) {
      rpc::Command cmd;
      *cmd.mutable_set_member() = m;
      cmd.mutable_set_member()->set_name(absl::StrCat("n", m.id()));
      absl::StatusOr<rpc::CommandResult> r =
          node_->Write(kMetaGroup, cmd, Deadline(ctx));
      if (!r.ok()) return node_->Refuse(ctx, kMetaGroup, r.status());
    }
    node_->directory.SetPeer(m.id(), m.peer_address());
    return Change(ctx, req->group(), ConfChangeSingle::Type::kAddLearner,
                  m.id(), resp);
  }

  grpc::Status Promote(grpc::ServerContext* ctx, const rpc::PromoteRequest* req,
                       rpc::MembershipResponse* resp) override {
    return Change(ctx, req->group(), ConfChangeSingle::Type::kAddVoter,
                  req->id(), resp);
  }

  grpc::Status RemoveMember(grpc::ServerContext* ctx,
                            const rpc::RemoveMemberRequest* req,
                            rpc::MembershipResponse* resp) override {
    grpc::Status st =
        Change(ctx, req->group(), ConfChangeSingle::Type::kRemoveNode,
               req->id(), resp);
    if (st.ok() && req->group() == kMetaGroup) {
      rpc::Command cmd;
      cmd.set_remove_member(req->id());
      node_->Write(kMetaGroup, cmd, Deadline(ctx)).IgnoreError();
    }
    return st;
  }

  grpc::Status TransferLeader(grpc::ServerContext* ctx,
                              const rpc::TransferLeaderRequest* req,
                              rpc::TransferLeaderResponse* resp) override {
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
      if (f.wait_until(Deadline(ctx)) != std::future_status::ready) {
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
    absl::StatusOr<std::vector<rpc::Member>> members =
        meta ? meta->meta().Members()
             : absl::StatusOr<std::vector<rpc::Member>>(
                   std::vector<rpc::Member>{});
    if (!members.ok()) return;
    for (rpc::Member m : *members) {
      m.set_client_address(node_->directory.Client(m.id()));
      *out->Add() = m;
    }
  }

  grpc::Status Change(grpc::ServerContext* ctx, uint64_t group,
                      ConfChangeSingle::Type type, uint64_t id,
                      rpc::MembershipResponse* resp) {
    if (group == 0) return Invalid("name the raft group to change");
    if (id == 0) return Invalid("member id must not be 0");
    raft::ConfChange cc;
    cc.changes.push_back({type, id});
    absl::Status st = node_->ProposeConfChange(group, cc, Deadline(ctx));
    if (absl::IsFailedPrecondition(st) &&
        type == ConfChangeSingle::Type::kAddVoter) {
      // The learner is still catching up: the client may wait and retry.
      st = rpc::WithReason(std::move(st), rpc::kLearnerBehind);
    }
    if (!st.ok()) return node_->Refuse(ctx, group, st);
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
