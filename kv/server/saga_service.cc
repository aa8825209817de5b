// The saga service: a saga's record lives in the shard holding the KV key of
// its id, and is written and read there like a key.

#include <algorithm>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/saga/saga.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/calls.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/saga.grpc.pb.h"

namespace tally::kv::server {

namespace {

constexpr size_t kMaxFingerprintBytes = 64;
constexpr uint32_t kDefaultMaxAttempts = 3;
constexpr int64_t kDefaultRetentionMs = 7LL * 24 * 3600 * 1000;
constexpr uint32_t kMaxListLimit = 1000;
// The idempotency scope of step attempts; the key is the saga id, '/', the
// step's name (and "/undo" for its compensation).
constexpr char kIdemScope[] = "saga/";

static_assert(rpc::SAGA_INCIDENT ==
              static_cast<int>(kvpb::SagaRecord::INCIDENT));
static_assert(rpc::PHASE_MARKED_DONE ==
              static_cast<int>(kvpb::SagaPhase::MARKED_DONE));
static_assert(rpc::STEP_RETRIABLE ==
              static_cast<int>(kvpb::SagaStepDef::RETRIABLE));
static_assert(rpc::SAGA_MARK_DONE ==
              static_cast<int>(kvpb::SagaTransition::MARK_DONE));

grpc::Status Check(absl::Status s) {
  return s.ok() ? grpc::Status::OK : Calls::Invalid(std::string(s.message()));
}

rpc::SagaPhase PhaseToApi(const kvpb::SagaPhase& p, uint32_t max_attempts) {
  rpc::SagaPhase out;
  out.set_state(static_cast<rpc::SagaPhaseState>(p.state()));
  out.set_attempts(p.attempts());
  const uint32_t used = p.attempts() - p.retried_at();
  out.set_attempts_left(used >= max_attempts ? 0 : max_attempts - used);
  out.set_token(p.token());
  out.set_started_ms(p.started_ms());
  out.set_deadline_ms(p.deadline_ms());
  out.set_finished_ms(p.finished_ms());
  out.set_output(p.output());
  out.set_error(p.error());
  out.set_maybe_applied(p.maybe_applied());
  return out;
}

// The record as a client sees it, read at log time `now`.
rpc::SagaRecord RecordToApi(const std::string& id, const kvpb::SagaRecord& r,
                            int64_t now) {
  rpc::SagaRecord out;
  out.set_id(id);
  out.set_definition(r.definition().name());
  out.set_input(r.input());
  out.set_fingerprint(r.fingerprint());
  out.set_state(static_cast<rpc::SagaState>(r.state()));
  out.set_version(r.version());
  out.set_fence(r.fence());
  out.set_created_ms(r.created_ms());
  out.set_updated_ms(r.updated_ms());
  out.set_deadline_ms(r.deadline_ms());
  out.set_finished_ms(r.finished_ms());
  out.set_retention_ms(r.retention_ms());
  for (int i = 0; i < r.steps_size(); ++i) {
    const kvpb::SagaStepDef& def = r.definition().steps(i);
    rpc::SagaStep* s = out.add_steps();
    s->set_name(def.name());
    s->set_kind(static_cast<rpc::SagaStepKind>(def.kind()));
    *s->mutable_forward() =
        PhaseToApi(r.steps(i).forward(), def.max_attempts());
    *s->mutable_compensation() =
        PhaseToApi(r.steps(i).compensation(), def.max_attempts());
    s->set_idem_scope(kIdemScope);
    s->set_idem_key(absl::StrCat(id, "/", def.name()));
    s->set_compensation_idem_key(absl::StrCat(id, "/", def.name(), "/undo"));
  }
  out.set_reason(r.reason());
  out.set_incident_step(r.incident_step());
  out.set_incident_compensation(r.incident_compensation());
  out.set_incident(r.incident());
  if (r.state() != kvpb::SagaRecord::INCIDENT) {
    if (std::optional<Sagas::Position> p = Sagas::Current(r)) {
      out.set_has_next(true);
      out.set_next_step(p->step);
      out.set_next_compensation(p->compensation);
    }
  }
  out.set_now_ms(now);
  return out;
}

constexpr auto kSaga = kvpb::AuthPermission::SAGA;

class SagaService final : public rpc::Sagas::CallbackService {
 public:
  explicit SagaService(Node* node) : node_(node) {}

  grpc::ServerUnaryReactor* Create(grpc::CallbackServerContext* ctx,
                                   const rpc::SagaCreateRequest* req,
                                   rpc::SagaCreateResponse* resp) override {
    auto* reply = new Reply<rpc::SagaCreateResponse>(ctx, resp, &node_->rpcs,
                                                     "SagaCreate");
    kvpb::Command cmd;
    kvpb::SagaCreate* c = cmd.mutable_saga_create();
    c->set_id(req->id());
    c->mutable_definition()->set_name(req->definition().name());
    for (const rpc::SagaStepDef& s : req->definition().steps()) {
      kvpb::SagaStepDef* d = c->mutable_definition()->add_steps();
      d->set_name(s.name());
      d->set_kind(static_cast<kvpb::SagaStepDef::Kind>(s.kind()));
      d->set_timeout_ms(s.timeout_ms());
      d->set_max_attempts(s.max_attempts() == 0 ? kDefaultMaxAttempts
                                                : s.max_attempts());
    }
    c->set_input(req->input());
    c->set_fingerprint(req->fingerprint());
    c->set_deadline_ms(req->deadline_ms());
    c->set_retention_ms(req->retention_ms() == 0 ? kDefaultRetentionMs
                                                 : req->retention_ms());
    grpc::Status st = Check(Sagas::CheckId(req->id()));
    if (st.ok()) st = Check(Sagas::CheckDefinition(c->definition()));
    if (st.ok() && req->fingerprint().size() > kMaxFingerprintBytes) {
      st = Calls::Invalid(absl::StrCat(
          "fingerprint of ", req->fingerprint().size(), " bytes exceeds the ",
          kMaxFingerprintBytes, "-byte limit"));
    }
    if (st.ok() && req->input().size() > kMaxSagaInputBytes) {
      st = Calls::Invalid(absl::StrCat("input of ", req->input().size(),
                                       " bytes exceeds the ",
                                       kMaxSagaInputBytes, "-byte limit"));
    }
    if (st.ok() && (req->deadline_ms() < 0 || req->retention_ms() < 0 ||
                    req->retention_ms() > kMaxSagaRetentionMs)) {
      st = Calls::Invalid(
          "deadline_ms must be 0 or more and retention_ms 0 to 30 days");
    }
    if (st.ok()) st = node_->auth.Check(*ctx, ToWrite(kSaga, req->id()));
    if (!st.ok()) return Calls::Finish(reply, st);
    cmd.set_request_fingerprint(Fingerprint(*c));
    *cmd.mutable_session() = ToKv(req->session());
    calls_.Write(
        reply, Group(req->id()), std::move(cmd),
        [id = req->id()](kvpb::CommandResult& r, rpc::SagaCreateResponse* out) {
          const kvpb::SagaResult& res = r.saga();
          ToApi(res.header(), out->mutable_header());
          out->set_outcome(res.outcome() == kvpb::SagaResult::EXISTS
                               ? rpc::SagaCreateResponse::EXISTS
                               : rpc::SagaCreateResponse::CREATED);
          *out->mutable_record() =
              RecordToApi(id, res.record(), res.log_time_ms());
        });
    return reply;
  }

  grpc::ServerUnaryReactor* Transition(
      grpc::CallbackServerContext* ctx, const rpc::SagaTransitionRequest* req,
      rpc::SagaTransitionResponse* resp) override {
    auto* reply = new Reply<rpc::SagaTransitionResponse>(
        ctx, resp, &node_->rpcs, "SagaTransition");
    grpc::Status st = Check(Sagas::CheckId(req->id()));
    if (st.ok() && req->version() == 0) {
      st = Calls::Invalid("version must be set: the one the saga was read at");
    }
    if (st.ok() && (req->output().size() > kMaxSagaOutputBytes ||
                    req->error().size() > kMaxSagaOutputBytes)) {
      st = Calls::Invalid(absl::StrCat("a step's output and error are at most ",
                                       kMaxSagaOutputBytes, " bytes each"));
    }
    if (st.ok()) st = node_->auth.Check(*ctx, ToWrite(kSaga, req->id()));
    if (!st.ok()) return Calls::Finish(reply, st);
    kvpb::Command cmd;
    kvpb::SagaTransition* t = cmd.mutable_saga_transition();
    t->set_id(req->id());
    t->set_version(req->version());
    t->set_fence_token(req->fence_token());
    t->set_action(static_cast<kvpb::SagaTransition::Action>(req->action()));
    t->set_step(req->step());
    t->set_compensation(req->compensation());
    t->set_output(req->output());
    t->set_error(req->error());
    t->set_retryable(req->retryable());
    t->set_token(req->token());
    cmd.set_request_fingerprint(Fingerprint(*t));
    *cmd.mutable_session() = ToKv(req->session());
    calls_.Write(reply, Group(req->id()), std::move(cmd),
                 [id = req->id()](kvpb::CommandResult& r,
                                  rpc::SagaTransitionResponse* out) {
                   ToApi(r.saga().header(), out->mutable_header());
                   *out->mutable_record() = RecordToApi(id, r.saga().record(),
                                                        r.saga().log_time_ms());
                 });
    return reply;
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx,
                                const rpc::SagaGetRequest* req,
                                rpc::SagaGetResponse* resp) override {
    auto* reply =
        new Reply<rpc::SagaGetResponse>(ctx, resp, &node_->rpcs, "SagaGet");
    grpc::Status st = Check(Sagas::CheckId(req->id()));
    if (st.ok()) st = node_->auth.Check(*ctx, ToRead(kSaga, req->id()));
    if (!st.ok()) return Calls::Finish(reply, st);
    const uint64_t group = Group(req->id());
    const rpc::ReadMode mode = req->read_mode();
    calls_.Read(reply, group, mode, /*scan=*/false,
                [this, group, mode, id = req->id()](raft::Index index,
                                                    rpc::SagaGetResponse* out) {
                  const StateMachine* sm = node_->Machine(group);
                  auto rec = sm->sagas().Get(id);
                  if (!rec.ok()) return rpc::ToGrpc(rec.status());
                  out->set_found(rec->has_value());
                  if (*rec) {
                    *out->mutable_record() =
                        RecordToApi(id, **rec, sm->ProposalTimeMs());
                  }
                  calls_.Header(group, index, mode, out->mutable_header());
                  return grpc::Status::OK;
                });
    return reply;
  }

  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const rpc::SagaListRequest* req,
                                 rpc::SagaListResponse* resp) override {
    auto* reply =
        new Reply<rpc::SagaListResponse>(ctx, resp, &node_->rpcs, "SagaList");
    bool data_group = false;
    for (const auto& r : node_->layout.ranges()) {
      data_group = data_group || r.group() == req->group();
    }
    if (!data_group) {
      return Calls::Finish(reply,
                           Calls::Invalid(absl::StrCat(
                               "no shard has group ", req->group(),
                               "; the Ranges call names the shards' groups")));
    }
    // Every saga of the shard: a permission on all saga ids.
    if (grpc::Status st =
            node_->auth.Check(*ctx, ToRead(kSaga, "", AuthNoBound()));
        !st.ok()) {
      return Calls::Finish(reply, st);
    }
    const uint32_t limit = req->limit() == 0 || req->limit() > kMaxListLimit
                               ? kMaxListLimit
                               : req->limit();
    const uint64_t group = req->group();
    const rpc::ReadMode mode = req->read_mode();
    std::set<int> states(req->states().begin(), req->states().end());
    calls_.Read(reply, group, mode, /*scan=*/true,
                [this, group, mode, limit, states = std::move(states),
                 idle = req->idle_ms(), after = req->after()](
                    raft::Index index, rpc::SagaListResponse* out) {
                  const StateMachine* sm = node_->Machine(group);
                  const int64_t now = sm->ProposalTimeMs();
                  auto keep = [&](const kvpb::SagaRecord& r) {
                    return (states.empty() || states.contains(r.state())) &&
                           now - r.updated_ms() >= idle;
                  };
                  // One more than asked: whether more follow.
                  auto recs = sm->sagas().List(after, limit + 1, keep);
                  if (!recs.ok()) return rpc::ToGrpc(recs.status());
                  for (size_t i = 0; i < recs->size() && i < limit; ++i) {
                    *out->add_sagas() =
                        RecordToApi((*recs)[i].first, (*recs)[i].second, now);
                  }
                  out->set_more(recs->size() > limit);
                  calls_.Header(group, index, mode, out->mutable_header());
                  return grpc::Status::OK;
                });
    return reply;
  }

 private:
  uint64_t Group(const std::string& id) const {
    return node_->RangeFor(id).group();
  }

  Node* const node_;
  Calls calls_{node_};
};

}  // namespace

std::unique_ptr<grpc::Service> NewSagaService(Node* node) {
  return std::make_unique<SagaService>(node);
}

}  // namespace tally::kv::server
