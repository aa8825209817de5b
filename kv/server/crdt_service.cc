// The CRDT table service: schemas through the metadata group; updates and
// reads answered by this node's replica (internal/crdt_replication.h).

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "kv/crdt_table/cas_rows.h"
#include "kv/crdt_table/schema.h"
#include "kv/server/internal/api.h"
#include "kv/server/internal/calls.h"
#include "kv/server/internal/crdt_replication.h"
#include "kv/server/internal/node.h"
#include "kv/server/internal/reply.h"
#include "rpc/crdt.grpc.pb.h"

namespace tally::kv::server {

namespace {

static_assert(rpc::CRDT_G_COUNTER == static_cast<int>(kvpb::CRDT_G_COUNTER));
static_assert(rpc::CRDT_PN_COUNTER == static_cast<int>(kvpb::CRDT_PN_COUNTER));
static_assert(rpc::CRDT_LWW_REGISTER ==
              static_cast<int>(kvpb::CRDT_LWW_REGISTER));
static_assert(rpc::CRDT_MV_REGISTER ==
              static_cast<int>(kvpb::CRDT_MV_REGISTER));
static_assert(rpc::CRDT_FLAG == static_cast<int>(kvpb::CRDT_EW_FLAG));
static_assert(rpc::CRDT_SET == static_cast<int>(kvpb::CRDT_AW_SET));
static_assert(rpc::CRDT_MAP == static_cast<int>(kvpb::CRDT_AW_MAP));
static_assert(rpc::CRDT_CAS_REGISTER ==
              static_cast<int>(kvpb::CRDT_CAS_REGISTER));

using Columns = google::protobuf::RepeatedPtrField<kvpb::CrdtColumn>;

Columns ToKv(const google::protobuf::RepeatedPtrField<rpc::CrdtColumn>& in) {
  Columns out;
  for (const rpc::CrdtColumn& c : in) {
    kvpb::CrdtColumn* k = out.Add();
    k->set_name(c.name());
    k->set_type(static_cast<kvpb::CrdtColumnType>(c.type()));
    for (int t : c.value_types()) {
      k->add_value_types(static_cast<kvpb::CrdtColumnType>(t));
    }
  }
  return out;
}

rpc::CrdtTable ToApi(const kvpb::CrdtTable& t) {
  rpc::CrdtTable out;
  out.set_name(t.name());
  out.set_id(t.id());
  for (const kvpb::CrdtColumn& c : t.columns()) {
    rpc::CrdtColumn* a = out.add_columns();
    a->set_name(c.name());
    a->set_type(static_cast<rpc::CrdtType>(c.type()));
    for (int t : c.value_types()) {
      a->add_value_types(static_cast<rpc::CrdtType>(t));
    }
  }
  out.set_created_ms(t.created_ms());
  out.set_version(t.version());
  return out;
}

CrdtOp FromApi(const rpc::CrdtOp& in) {
  CrdtOp op;
  switch (in.kind()) {
    case rpc::CrdtOp::SET:
      op.kind = CrdtOp::kSet;
      break;
    case rpc::CrdtOp::ENABLE:
      op.kind = CrdtOp::kEnable;
      break;
    case rpc::CrdtOp::DISABLE:
      op.kind = CrdtOp::kDisable;
      break;
    case rpc::CrdtOp::ADD:
      op.kind = CrdtOp::kAdd;
      break;
    case rpc::CrdtOp::REMOVE:
      op.kind = CrdtOp::kRemove;
      break;
    default:
      op.kind = CrdtOp::kIncrement;
      break;
  }
  op.column = in.column();
  op.amount = in.amount();
  op.value = in.value();
  op.context = in.context();
  op.elements.assign(in.elements().begin(), in.elements().end());
  op.path.assign(in.path().begin(), in.path().end());
  if (!in.key().empty()) op.path.push_back(in.key());
  return op;
}

void ToApi(CrdtValue::Entry&& e, rpc::CrdtMapEntry* out) {
  out->set_key(std::move(e.key));
  for (std::string& s : e.values) out->add_values(std::move(s));
  out->set_context(std::move(e.context));
  out->set_enabled(e.enabled);
  for (std::string& s : e.elements) out->add_elements(std::move(s));
  for (CrdtValue::Entry& below : e.entries) {
    ToApi(std::move(below), out->add_entries());
  }
}

rpc::CrdtValue ToApi(CrdtValue&& v) {
  rpc::CrdtValue out;
  out.set_column(v.column);
  out.set_type(static_cast<rpc::CrdtType>(v.type));
  out.set_count(v.count);
  for (std::string& s : v.values) out.add_values(std::move(s));
  out.set_enabled(v.enabled);
  out.set_timestamp(v.timestamp);
  out.set_writer(v.writer);
  out.set_context(std::move(v.context));
  for (CrdtValue::Entry& e : v.entries) ToApi(std::move(e), out.add_entries());
  return out;
}

kvpb::CrdtCasValue ToKv(const rpc::CrdtCasValue& in) {
  kvpb::CrdtCasValue out;
  out.set_column(in.column());
  out.set_value(in.value());
  out.set_unset(in.unset());
  return out;
}

rpc::CrdtCasValue ToApi(const kvpb::CrdtCasValue& in) {
  rpc::CrdtCasValue out;
  out.set_column(in.column());
  out.set_value(in.value());
  out.set_unset(in.unset());
  return out;
}

grpc::Status Check(const absl::Status& s) { return rpc::ToGrpc(s); }

bool HasCasColumns(const kvpb::CrdtTable& t) {
  for (const kvpb::CrdtColumn& c : t.columns()) {
    if (c.type() == kvpb::CRDT_CAS_REGISTER) return true;
  }
  return false;
}

constexpr auto kTable = kvpb::AuthPermission::TABLE;

class CrdtService final : public rpc::Crdt::CallbackService {
 public:
  explicit CrdtService(Node* node) : node_(node), calls_(node) {}

  grpc::ServerUnaryReactor* CreateTable(grpc::CallbackServerContext* ctx,
                                        const rpc::CrdtCreateTableRequest* req,
                                        rpc::CrdtTableResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtTableResponse>(ctx, resp, &node_->rpcs,
                                                    "CrdtCreateTable");
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    kvpb::Command cmd;
    cmd.mutable_crdt_table_create()->set_name(req->name());
    *cmd.mutable_crdt_table_create()->mutable_columns() = ToKv(req->columns());
    absl::Status s = CrdtSchema::CheckName("table", req->name());
    if (s.ok()) {
      s = CrdtSchema::CheckColumns(cmd.crdt_table_create().columns(), {});
    }
    if (!s.ok()) return Calls::Finish(reply, Check(s));
    return WriteSchema(reply, std::move(cmd));
  }

  grpc::ServerUnaryReactor* AlterTable(grpc::CallbackServerContext* ctx,
                                       const rpc::CrdtAlterTableRequest* req,
                                       rpc::CrdtTableResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtTableResponse>(ctx, resp, &node_->rpcs,
                                                    "CrdtAlterTable");
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    kvpb::Command cmd;
    cmd.mutable_crdt_table_alter()->set_name(req->name());
    *cmd.mutable_crdt_table_alter()->mutable_add_columns() =
        ToKv(req->add_columns());
    absl::Status s = CrdtSchema::CheckName("table", req->name());
    if (s.ok()) {
      s = CrdtSchema::CheckColumns(cmd.crdt_table_alter().add_columns(), {});
    }
    if (!s.ok()) return Calls::Finish(reply, Check(s));
    return WriteSchema(reply, std::move(cmd));
  }

  grpc::ServerUnaryReactor* DropTable(grpc::CallbackServerContext* ctx,
                                      const rpc::CrdtDropTableRequest* req,
                                      rpc::CrdtTableResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtTableResponse>(ctx, resp, &node_->rpcs,
                                                    "CrdtDropTable");
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    if (absl::Status s = CrdtSchema::CheckName("table", req->name()); !s.ok()) {
      return Calls::Finish(reply, Check(s));
    }
    kvpb::Command cmd;
    cmd.set_crdt_table_drop(req->name());
    return WriteSchema(reply, std::move(cmd));
  }

  grpc::ServerUnaryReactor* Tables(grpc::CallbackServerContext* ctx,
                                   const rpc::CrdtTablesRequest*,
                                   rpc::CrdtTablesResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtTablesResponse>(ctx, resp, &node_->rpcs,
                                                     "CrdtTables");
    if (grpc::Status st = node_->auth.Known(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    StateMachine* meta = node_->Machine(kMetaGroup);
    if (meta == nullptr) {
      return Calls::Finish(
          reply, Check(absl::UnavailableError(
                     "this node has no replica of the metadata group yet")));
    }
    absl::StatusOr<std::vector<kvpb::CrdtTable>> tables =
        meta->crdt_schema().List();
    if (!tables.ok()) return Calls::Finish(reply, Check(tables.status()));
    for (const kvpb::CrdtTable& t : *tables) *resp->add_tables() = ToApi(t);
    resp->set_node(node_->id);
    return Calls::Finish(reply, grpc::Status::OK);
  }

  grpc::ServerUnaryReactor* Update(grpc::CallbackServerContext* ctx,
                                   const rpc::CrdtUpdateRequest* req,
                                   rpc::CrdtUpdateResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtUpdateResponse>(ctx, resp, &node_->rpcs,
                                                     "CrdtUpdate");
    if (grpc::Status st =
            node_->auth.Check(*ctx, ToWrite(kTable, req->table()));
        !st.ok()) {
      return Calls::Finish(reply, st);
    }
    TableCache tables;
    std::vector<Pending> updates;
    updates.push_back(Prepare(*req, &tables));
    Apply(std::move(updates), DeadlineOf(*ctx),
          [this, s = reply->shared()](std::vector<absl::Status> results) {
            Reply<rpc::CrdtUpdateResponse>::Answer(
                s, [&](auto*, rpc::CrdtUpdateResponse* out) {
                  if (!results[0].ok()) return Check(results[0]);
                  out->set_node(node_->id);
                  out->set_replica(node_->crdt->replica().id());
                  return grpc::Status::OK;
                });
          });
    return reply;
  }

  grpc::ServerUnaryReactor* UpdateBatch(
      grpc::CallbackServerContext* ctx, const rpc::CrdtUpdateBatchRequest* req,
      rpc::CrdtUpdateBatchResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtUpdateBatchResponse>(
        ctx, resp, &node_->rpcs, "CrdtUpdateBatch");
    if (req->updates().empty() ||
        req->updates_size() > static_cast<int>(kMaxBatchUpdates)) {
      return Calls::Finish(
          reply, Calls::Invalid(absl::StrCat("a batch holds 1 to ",
                                             kMaxBatchUpdates, " updates")));
    }
    std::vector<AuthNeed> needs;
    for (const rpc::CrdtUpdateRequest& u : req->updates()) {
      needs.push_back(ToWrite(kTable, u.table()));
    }
    if (grpc::Status st = node_->auth.Check(*ctx, needs); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    TableCache tables;
    std::vector<Pending> updates;
    for (const rpc::CrdtUpdateRequest& u : req->updates()) {
      updates.push_back(Prepare(u, &tables));
    }
    Apply(std::move(updates), DeadlineOf(*ctx),
          [this, s = reply->shared()](std::vector<absl::Status> results) {
            Reply<rpc::CrdtUpdateBatchResponse>::Answer(
                s, [&](auto*, rpc::CrdtUpdateBatchResponse* out) {
                  out->set_node(node_->id);
                  out->set_replica(node_->crdt->replica().id());
                  for (const absl::Status& r : results) {
                    rpc::CrdtUpdateResult* o = out->add_results();
                    o->set_code(static_cast<int>(r.code()));
                    o->set_message(std::string(r.message()));
                  }
                  return grpc::Status::OK;
                });
          });
    return reply;
  }

  grpc::ServerUnaryReactor* Retire(grpc::CallbackServerContext* ctx,
                                   const rpc::CrdtRetireRequest* req,
                                   rpc::CrdtRetireResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtRetireResponse>(ctx, resp, &node_->rpcs,
                                                     "CrdtRetire");
    if (grpc::Status st = node_->auth.Admin(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    if (req->node() == 0) {
      return Calls::Finish(reply, Calls::Invalid("name the node to retire"));
    }
    kvpb::Command cmd;
    cmd.set_crdt_retire(req->node());
    calls_.Write(reply, kMetaGroup, std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::CrdtRetireResponse* out) {
                   server::ToApi(r.crdt_members().header(),
                                 out->mutable_header());
                   out->set_replica(r.crdt_members().retired_replica());
                 });
    return reply;
  }

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx,
                                const rpc::CrdtGetRequest* req,
                                rpc::CrdtGetResponse* resp) override {
    auto* reply =
        new Reply<rpc::CrdtGetResponse>(ctx, resp, &node_->rpcs, "CrdtGet");
    if (grpc::Status st = node_->auth.Check(*ctx, ToRead(kTable, req->table()));
        !st.ok()) {
      return Calls::Finish(reply, st);
    }
    CrdtReplication* crdt = node_->crdt.get();
    Run(reply, [this, crdt, req, deadline = DeadlineOf(*ctx)](
                   auto*, rpc::CrdtGetResponse* out) {
      absl::StatusOr<kvpb::CrdtTable> t =
          crdt->CurrentTable(req->table(), deadline);
      if (!t.ok()) return Check(t.status());
      if (req->row().empty() || req->row().size() > kMaxCrdtRowBytes) {
        return Calls::Invalid(absl::StrCat("a row key must be 1 to ",
                                           kMaxCrdtRowBytes, " bytes"));
      }
      if (req->mode() == rpc::CRDT_MAJORITY) {
        absl::StatusOr<uint32_t> n =
            crdt->MergeFromMajority(*t, req->row(), deadline);
        if (!n.ok()) return Check(n.status());
        out->set_merged_from(*n);
      }
      absl::StatusOr<std::vector<CrdtValue>> values =
          crdt->replica().Read(*t, req->row());
      if (!values.ok()) return Check(values.status());
      for (CrdtValue& v : *values) *out->add_values() = ToApi(std::move(v));
      if (HasCasColumns(*t)) {
        if (absl::Status s = AddCasColumns(*t, req->row(), out); !s.ok()) {
          return Check(s);
        }
      }
      out->set_node(node_->id);
      return grpc::Status::OK;
    });
    return reply;
  }

  grpc::ServerUnaryReactor* Cas(grpc::CallbackServerContext* ctx,
                                const rpc::CrdtCasRequest* req,
                                rpc::CrdtCasResponse* resp) override {
    auto* reply =
        new Reply<rpc::CrdtCasResponse>(ctx, resp, &node_->rpcs, "CrdtCas");
    if (grpc::Status st =
            node_->auth.Check(*ctx, ToWrite(kTable, req->table()));
        !st.ok()) {
      return Calls::Finish(reply, st);
    }
    const uint64_t group = node_->RangeFor(req->row()).group();
    absl::StatusOr<kvpb::CrdtTable> t = node_->crdt->Table(req->table());
    if (absl::IsNotFound(t.status())) {
      // Created through another node, perhaps: the rest waits for this
      // node to catch up, on a worker thread.
      if (!calls_.Admit(reply, /*write=*/true, /*scan=*/false)) return reply;
      Run(reply, [this, req, group, deadline = DeadlineOf(*ctx)](
                     auto* ctx, rpc::CrdtCasResponse* out) {
        absl::StatusOr<kvpb::CrdtTable> t =
            node_->crdt->CurrentTable(req->table(), deadline);
        if (!t.ok()) return Check(t.status());
        absl::StatusOr<kvpb::Command> cmd = CasCommand(*req, *t);
        if (!cmd.ok()) return Check(cmd.status());
        absl::StatusOr<kvpb::CommandResult> r =
            node_->Write(group, *std::move(cmd), deadline);
        if (!r.ok()) return node_->Refuse(ctx, group, r.status());
        FillCas(*r, out);
        out->mutable_header()->set_node(node_->id);
        return grpc::Status::OK;
      });
      return reply;
    }
    if (!t.ok()) return Calls::Finish(reply, Check(t.status()));
    absl::StatusOr<kvpb::Command> cmd = CasCommand(*req, *t);
    if (!cmd.ok()) return Calls::Finish(reply, Check(cmd.status()));
    calls_.Write(reply, group, *std::move(cmd), FillCas);
    return reply;
  }

  grpc::ServerUnaryReactor* CasGet(grpc::CallbackServerContext* ctx,
                                   const rpc::CrdtCasGetRequest* req,
                                   rpc::CrdtCasGetResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtCasGetResponse>(ctx, resp, &node_->rpcs,
                                                     "CrdtCasGet");
    if (grpc::Status st = node_->auth.Check(*ctx, ToRead(kTable, req->table()));
        !st.ok()) {
      return Calls::Finish(reply, st);
    }
    if (req->row().empty() || req->row().size() > kMaxCrdtRowBytes) {
      return Calls::Finish(
          reply, Calls::Invalid(absl::StrCat("a row key must be 1 to ",
                                             kMaxCrdtRowBytes, " bytes")));
    }
    const uint64_t group = node_->RangeFor(req->row()).group();
    const rpc::ReadMode mode = req->read_mode();
    // The row of table `id` as this node applied it at `index`.
    auto serve = [this, group, mode, row = req->row()](
                     uint64_t id, raft::Index index,
                     rpc::CrdtCasGetResponse* out) {
      StateMachine* m = node_->Machine(group);
      absl::StatusOr<kvpb::CrdtCasRow> r = m->crdt_cas_rows().Get(id, row);
      if (!r.ok()) return Check(r.status());
      out->set_version(r->version());
      for (const kvpb::CrdtCasValue& v : r->values()) {
        *out->add_values() = ToApi(v);
      }
      calls_.Header(group, index, mode, out->mutable_header());
      return grpc::Status::OK;
    };
    absl::StatusOr<kvpb::CrdtTable> t = node_->crdt->Table(req->table());
    if (absl::IsNotFound(t.status())) {
      // Created through another node, perhaps: the rest waits for this
      // node to catch up, on a worker thread (a lease read is made
      // linearizable).
      if (!calls_.Admit(reply, /*write=*/false, /*scan=*/false)) return reply;
      Run(reply, [this, req, group, mode, serve, deadline = DeadlineOf(*ctx)](
                     auto* ctx, rpc::CrdtCasGetResponse* out) {
        absl::StatusOr<kvpb::CrdtTable> t =
            node_->crdt->CurrentTable(req->table(), deadline);
        if (!t.ok()) return Check(t.status());
        StateMachine* m = node_->Machine(group);
        absl::StatusOr<raft::Index> index =
            mode == rpc::SERIALIZABLE && m != nullptr
                ? m->applied()
                : node_->Read(group, deadline);
        if (!index.ok()) return node_->Refuse(ctx, group, index.status());
        return serve(t->id(), *index, out);
      });
      return reply;
    }
    if (!t.ok()) return Calls::Finish(reply, Check(t.status()));
    calls_.Read(
        reply, group, mode, false,
        [serve, id = t->id()](raft::Index index, rpc::CrdtCasGetResponse* out) {
          return serve(id, index, out);
        });
    return reply;
  }

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx,
                                   const rpc::CrdtStatusRequest*,
                                   rpc::CrdtStatusResponse* resp) override {
    auto* reply = new Reply<rpc::CrdtStatusResponse>(ctx, resp, &node_->rpcs,
                                                     "CrdtStatus");
    if (grpc::Status st = node_->auth.Known(*ctx); !st.ok()) {
      return Calls::Finish(reply, st);
    }
    *resp = node_->crdt->Status();
    return Calls::Finish(reply, grpc::Status::OK);
  }

 private:
  static constexpr size_t kMaxBatchUpdates = 1000;

  // One row's update, its table looked up.
  struct Pending {
    std::string table_name;
    absl::StatusOr<kvpb::CrdtTable> table;
    std::string row;
    std::vector<CrdtOp> ops;
  };
  using Applied = std::function<void(std::vector<absl::Status>)>;

  // The tables looked up for the updates of one call, by name.
  using TableCache = std::map<std::string, absl::StatusOr<kvpb::CrdtTable>>;

  Pending Prepare(const rpc::CrdtUpdateRequest& req, TableCache* tables) {
    auto it = tables->find(req.table());
    if (it == tables->end()) {
      it = tables->emplace(req.table(), node_->crdt->Table(req.table())).first;
    }
    Pending p{req.table(), it->second, req.row(), {}};
    for (const rpc::CrdtOp& op : req.ops()) p.ops.push_back(FromApi(op));
    return p;
  }

  // The raft command of `req` on table `t`; INVALID_ARGUMENT when it does
  // not fit the table.
  static absl::StatusOr<kvpb::Command> CasCommand(
      const rpc::CrdtCasRequest& req, const kvpb::CrdtTable& t) {
    kvpb::Command cmd;
    kvpb::CrdtCas* c = cmd.mutable_crdt_cas();
    c->set_table_id(t.id());
    c->set_row(req.row());
    c->set_check_version(req.check_version());
    c->set_version(req.version());
    for (const rpc::CrdtCasValue& v : req.compare()) {
      *c->add_compares() = ToKv(v);
    }
    for (const rpc::CrdtCasValue& v : req.set()) *c->add_sets() = ToKv(v);
    if (absl::Status s = CrdtCasRows::Check(t, *c); !s.ok()) return s;
    cmd.set_request_fingerprint(Fingerprint(*c));
    *cmd.mutable_session() = server::ToKv(req.session());
    return cmd;
  }

  static void FillCas(kvpb::CommandResult& r, rpc::CrdtCasResponse* out) {
    const kvpb::CrdtCasResult& res = r.crdt_cas();
    server::ToApi(res.header(), out->mutable_header());
    out->set_succeeded(res.succeeded());
    out->set_version(res.row().version());
    for (const kvpb::CrdtCasValue& v : res.row().values()) {
      *out->add_values() = ToApi(v);
    }
  }

  // When the call's wait for other nodes ends: its deadline, at most
  // Calls::kDefaultTimeout away.
  static Calls::Clock::time_point DeadlineOf(
      const grpc::CallbackServerContext& ctx) {
    return std::min(ctx.deadline(),
                    Calls::Clock::now() + Calls::kDefaultTimeout);
  }

  // Looks the tables this node did not know up again, each name once: the
  // first after catching up with the metadata group (CurrentTable), the
  // others as they are then.
  static void LookUpMissing(CrdtReplication* crdt,
                            std::vector<Pending>* updates,
                            Calls::Clock::time_point deadline) {
    TableCache again;
    bool caught_up = false;
    for (Pending& u : *updates) {
      if (!absl::IsNotFound(u.table.status())) continue;
      auto [it, fresh] = again.try_emplace(u.table_name, u.table);
      if (fresh) {
        it->second = caught_up ? crdt->Table(u.table_name)
                               : crdt->CurrentTable(u.table_name, deadline);
        caught_up = true;
      }
      u.table = it->second;
    }
  }

  // Applies each update on this node's replica on its own and spreads what
  // changed to the peers; `done` gets one status per update once every
  // applied one is durable (on the replica's commit thread).
  void Apply(std::vector<Pending> updates, Calls::Clock::time_point deadline,
             Applied done) {
    CrdtReplication* crdt = node_->crdt.get();
    // Shared by the completions; the last one answers.
    struct Batch {
      std::vector<Pending> updates;
      Applied done;
      absl::Mutex mu;
      size_t left ABSL_GUARDED_BY(mu) = 0;
      std::vector<absl::Status> results ABSL_GUARDED_BY(mu);

      void Set(size_t i, absl::Status s) {
        std::vector<absl::Status> all;
        {
          absl::MutexLock l(&mu);
          results[i] = std::move(s);
          if (--left > 0) return;
          all = std::move(results);
        }
        done(std::move(all));
      }
    };
    auto b = std::make_shared<Batch>();
    const size_t n = updates.size();
    b->updates = std::move(updates);
    b->done = std::move(done);
    {
      absl::MutexLock l(&b->mu);
      b->left = n;
      b->results.resize(n);
    }
    auto apply = [crdt, b, n] {
      for (size_t i = 0; i < n; ++i) {
        const Pending& u = b->updates[i];
        if (!u.table.ok()) {
          b->Set(i, u.table.status());
          continue;
        }
        crdt->replica().UpdateAsync(
            *u.table, u.row, u.ops,
            [crdt, b, i](absl::StatusOr<CrdtRowChange> change) {
              if (change.ok()) crdt->Spread(*b->updates[i].table, *change);
              b->Set(i, change.status());
            });
      }
    };
    const bool missing = std::any_of(
        b->updates.begin(), b->updates.end(),
        [](const Pending& u) { return absl::IsNotFound(u.table.status()); });
    if (!missing && crdt->registered()) return apply();
    // A table this node does not know (created through another node, perhaps)
    // is looked up again, and a node just started (or resyncing) waits for
    // its replica to be registered, on a worker thread.
    bool posted = crdt->workers().Post([crdt, b, n, apply, deadline] {
      LookUpMissing(crdt, &b->updates, deadline);
      if (absl::Status st = crdt->Writable(); !st.ok()) {
        return b->done(std::vector<absl::Status>(n, st));
      }
      apply();
    });
    if (!posted) {
      b->done(std::vector<absl::Status>(
          n, absl::ResourceExhaustedError(
                 "too many CRDT calls waiting; back off and retry")));
    }
  }

  // Adds the row's cas_register columns, as this node's replica of the row
  // key's shard holds them (if it holds one), to `out`, in column order
  // with the others.
  absl::Status AddCasColumns(const kvpb::CrdtTable& t, const std::string& row,
                             rpc::CrdtGetResponse* out) {
    out->set_has_cas_columns(true);
    StateMachine* m = node_->Machine(node_->RangeFor(row).group());
    if (m == nullptr) return absl::OkStatus();
    absl::StatusOr<kvpb::CrdtCasRow> r = m->crdt_cas_rows().Get(t.id(), row);
    if (!r.ok()) return r.status();
    out->set_cas_version(r->version());
    for (const kvpb::CrdtCasValue& v : r->values()) {
      rpc::CrdtValue* o = out->add_values();
      o->set_column(v.column());
      o->set_type(rpc::CRDT_CAS_REGISTER);
      o->add_values(v.value());
    }
    std::sort(out->mutable_values()->begin(), out->mutable_values()->end(),
              [](const rpc::CrdtValue& a, const rpc::CrdtValue& b) {
                return a.column() < b.column();
              });
    return absl::OkStatus();
  }

  grpc::ServerUnaryReactor* WriteSchema(Reply<rpc::CrdtTableResponse>* reply,
                                        kvpb::Command cmd) {
    calls_.Write(reply, kMetaGroup, std::move(cmd),
                 [](kvpb::CommandResult& r, rpc::CrdtTableResponse* out) {
                   server::ToApi(r.crdt_table().header(),
                                 out->mutable_header());
                   *out->mutable_table() = ToApi(r.crdt_table().table());
                 });
    return reply;
  }

  // Answers with `fn(ctx, response)`, run on the CRDT worker threads (it may
  // wait for other nodes); RESOURCE_EXHAUSTED when too many calls wait
  // already.
  template <typename Resp, typename Fn>
  void Run(Reply<Resp>* reply, Fn fn) {
    auto s = reply->shared();
    bool posted = node_->crdt->workers().Post([s, fn] {
      Reply<Resp>::Answer(s,
                          [&](auto* ctx, Resp* out) { return fn(ctx, out); });
    });
    if (!posted) {
      Reply<Resp>::Answer(s, [](auto*, Resp*) {
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                            "too many CRDT calls waiting; back off and retry");
      });
    }
  }

  Node* const node_;
  Calls calls_;
};

}  // namespace

std::unique_ptr<grpc::Service> NewCrdtService(Node* node) {
  return std::make_unique<CrdtService>(node);
}

}  // namespace tally::kv::server
