// Authentication and authorization through real nodes: every kind of call
// of a user without permission is refused; a user's roles allow what they
// name and nothing else; a revoked token stops working on every node within
// a second.

#include <algorithm>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "rpc/auth.grpc.pb.h"
#include "rpc/cluster.grpc.pb.h"
#include "rpc/crdt.grpc.pb.h"
#include "rpc/idem.grpc.pb.h"
#include "rpc/kv.grpc.pb.h"
#include "rpc/lock.grpc.pb.h"
#include "rpc/saga.grpc.pb.h"
#include "rpc/tls.h"
#include "tests/integration/test_cluster.h"

namespace tally {
namespace {

using Clock = std::chrono::system_clock;

// One call of one kind, made with `ctx` over `ch`.
using RawCall = std::function<grpc::Status(std::shared_ptr<grpc::Channel> ch,
                                           grpc::ClientContext* ctx)>;

template <typename Resp, typename Stub, typename Req, typename Method>
RawCall Unary(Method method, Req req) {
  return [method, req](std::shared_ptr<grpc::Channel> ch,
                       grpc::ClientContext* ctx) {
    auto stub = Stub::NewStub(ch);
    Resp resp;
    return ((*stub).*method)(ctx, req, &resp);
  };
}

// A server stream: its status once it ends (at once, when refused).
template <typename Resp, typename Stub, typename Req, typename Method>
RawCall Stream(Method method, Req req) {
  return [method, req](std::shared_ptr<grpc::Channel> ch,
                       grpc::ClientContext* ctx) {
    auto stub = Stub::NewStub(ch);
    auto reader = ((*stub).*method)(ctx, req);
    Resp resp;
    while (reader->Read(&resp)) ctx->TryCancel();  // allowed: stop it
    return reader->Finish();
  };
}

// Every kind of call a client makes, each with a well-formed request (a
// refusal must come from auth, not from validation). Data group `group`.
std::vector<std::pair<std::string, RawCall>> EveryCall(uint64_t group) {
  using rpc::KV;
  std::vector<std::pair<std::string, RawCall>> calls;
  auto add = [&](std::string name, RawCall c) {
    calls.emplace_back(std::move(name), std::move(c));
  };
  // KV
  rpc::GetRequest get;
  get.set_key("a");
  add("Get", Unary<rpc::GetResponse, KV>(&KV::Stub::Get, get));
  rpc::RangeRequest range;
  range.set_start("a");
  range.set_end("b");
  add("Range", Unary<rpc::RangeResponse, KV>(&KV::Stub::Range, range));
  rpc::PutRequest put;
  put.set_key("a");
  put.set_value("v");
  add("Put", Unary<rpc::PutResponse, KV>(&KV::Stub::Put, put));
  rpc::DeleteRequest del;
  del.set_key("a");
  add("Delete", Unary<rpc::DeleteResponse, KV>(&KV::Stub::Delete, del));
  rpc::TxnRequest txn;
  *txn.add_success()->mutable_put() = put;
  add("Txn", Unary<rpc::TxnResponse, KV>(&KV::Stub::Txn, txn));
  // Watch
  rpc::WatchRequest watch;
  watch.set_key("a");
  add("Watch",
      Stream<rpc::WatchResponse, rpc::Watch>(&rpc::Watch::Stub::Watch, watch));
  rpc::CompactRequest compact;
  compact.set_revision(1);
  add("Compact", Unary<rpc::CompactResponse, rpc::Watch>(
                     &rpc::Watch::Stub::Compact, compact));
  // Leases
  using rpc::Leases;
  rpc::LeaseGrantRequest grant;
  grant.set_ttl_ms(60'000);
  add("LeaseGrant",
      Unary<rpc::LeaseGrantResponse, Leases>(&Leases::Stub::Grant, grant));
  add("LeaseKeepAlive",
      [](std::shared_ptr<grpc::Channel> ch, grpc::ClientContext* ctx) {
        auto stream = Leases::NewStub(ch)->KeepAlive(ctx);
        rpc::LeaseKeepAliveRequest req;
        req.set_id(1);
        stream->Write(req);
        stream->WritesDone();
        rpc::LeaseKeepAliveResponse resp;
        while (stream->Read(&resp)) {
        }
        return stream->Finish();
      });
  rpc::LeaseRevokeRequest revoke;
  revoke.set_id(1);
  add("LeaseRevoke",
      Unary<rpc::LeaseRevokeResponse, Leases>(&Leases::Stub::Revoke, revoke));
  rpc::LeaseTimeToLiveRequest ttl;
  ttl.set_id(1);
  add("LeaseTimeToLive", Unary<rpc::LeaseTimeToLiveResponse, Leases>(
                             &Leases::Stub::TimeToLive, ttl));
  add("LeaseList", Unary<rpc::LeaseListResponse, Leases>(
                       &Leases::Stub::List, rpc::LeaseListRequest()));
  // Locks
  using rpc::Locks;
  rpc::AcquireRequest acquire;
  acquire.set_name("l");
  acquire.set_lease(1);
  acquire.set_request_id(1);
  add("LockAcquire",
      Unary<rpc::AcquireResponse, Locks>(&Locks::Stub::Acquire, acquire));
  rpc::ReleaseRequest release;
  release.set_name("l");
  release.set_token(1);
  add("LockRelease",
      Unary<rpc::ReleaseResponse, Locks>(&Locks::Stub::Release, release));
  rpc::ProclaimRequest proclaim;
  proclaim.set_name("l");
  proclaim.set_token(1);
  add("LockProclaim",
      Unary<rpc::ProclaimResponse, Locks>(&Locks::Stub::Proclaim, proclaim));
  rpc::ObserveRequest observe;
  observe.set_name("l");
  add("LockObserve",
      Stream<rpc::ObserveResponse, Locks>(&Locks::Stub::Observe, observe));
  rpc::InspectRequest inspect;
  inspect.set_name("l");
  add("LockInspect",
      Unary<rpc::InspectResponse, Locks>(&Locks::Stub::Inspect, inspect));
  rpc::BindFenceRequest bind;
  bind.set_prefix("p/");
  bind.set_lock("l");
  add("BindFence",
      Unary<rpc::BindFenceResponse, Locks>(&Locks::Stub::BindFence, bind));
  // Idempotency
  using rpc::Idempotency;
  rpc::IdemBeginRequest begin;
  begin.set_scope("s");
  begin.set_key("k");
  add("IdemBegin", Unary<rpc::IdemBeginResponse, Idempotency>(
                       &Idempotency::Stub::Begin, begin));
  rpc::IdemCompleteRequest complete;
  complete.set_scope("s");
  complete.set_key("k");
  complete.set_token(1);
  add("IdemComplete", Unary<rpc::IdemFinishResponse, Idempotency>(
                          &Idempotency::Stub::Complete, complete));
  rpc::IdemFailRequest fail;
  fail.set_scope("s");
  fail.set_key("k");
  fail.set_token(1);
  add("IdemFail", Unary<rpc::IdemFinishResponse, Idempotency>(
                      &Idempotency::Stub::Fail, fail));
  rpc::IdemRenewRequest renew;
  renew.set_scope("s");
  renew.set_key("k");
  renew.set_token(1);
  add("IdemRenew", Unary<rpc::IdemRenewResponse, Idempotency>(
                       &Idempotency::Stub::Renew, renew));
  rpc::IdemGetRequest idem_get;
  idem_get.set_scope("s");
  idem_get.set_key("k");
  add("IdemGet", Unary<rpc::IdemGetResponse, Idempotency>(
                     &Idempotency::Stub::Get, idem_get));
  rpc::IdemListRequest idem_list;
  idem_list.set_scope("s");
  idem_list.set_group(group);
  add("IdemList", Unary<rpc::IdemListResponse, Idempotency>(
                      &Idempotency::Stub::List, idem_list));
  rpc::IdemPurgeRequest purge;
  purge.set_scope("s");
  purge.set_key("k");
  add("IdemPurge", Unary<rpc::IdemPurgeResponse, Idempotency>(
                       &Idempotency::Stub::Purge, purge));
  // Sagas
  using rpc::Sagas;
  rpc::SagaCreateRequest create;
  create.set_id("s1");
  create.mutable_definition()->set_name("d");
  create.mutable_definition()->add_steps()->set_name("a");
  add("SagaCreate",
      Unary<rpc::SagaCreateResponse, Sagas>(&Sagas::Stub::Create, create));
  rpc::SagaTransitionRequest transition;
  transition.set_id("s1");
  transition.set_version(1);
  transition.set_action(rpc::SAGA_START);
  transition.set_fence_token(1);
  add("SagaTransition", Unary<rpc::SagaTransitionResponse, Sagas>(
                            &Sagas::Stub::Transition, transition));
  rpc::SagaGetRequest saga_get;
  saga_get.set_id("s1");
  add("SagaGet",
      Unary<rpc::SagaGetResponse, Sagas>(&Sagas::Stub::Get, saga_get));
  rpc::SagaListRequest saga_list;
  saga_list.set_group(group);
  add("SagaList",
      Unary<rpc::SagaListResponse, Sagas>(&Sagas::Stub::List, saga_list));
  // CRDT tables
  using rpc::Crdt;
  rpc::CrdtCreateTableRequest table;
  table.set_name("t");
  add("CrdtCreateTable",
      Unary<rpc::CrdtTableResponse, Crdt>(&Crdt::Stub::CreateTable, table));
  rpc::CrdtAlterTableRequest alter;
  alter.set_name("t");
  add("CrdtAlterTable",
      Unary<rpc::CrdtTableResponse, Crdt>(&Crdt::Stub::AlterTable, alter));
  rpc::CrdtDropTableRequest drop;
  drop.set_name("t");
  add("CrdtDropTable",
      Unary<rpc::CrdtTableResponse, Crdt>(&Crdt::Stub::DropTable, drop));
  rpc::CrdtUpdateRequest update;
  update.set_table("t");
  update.set_row("r");
  add("CrdtUpdate",
      Unary<rpc::CrdtUpdateResponse, Crdt>(&Crdt::Stub::Update, update));
  rpc::CrdtUpdateBatchRequest batch;
  *batch.add_updates() = update;
  add("CrdtUpdateBatch", Unary<rpc::CrdtUpdateBatchResponse, Crdt>(
                             &Crdt::Stub::UpdateBatch, batch));
  rpc::CrdtGetRequest crdt_get;
  crdt_get.set_table("t");
  crdt_get.set_row("r");
  add("CrdtGet", Unary<rpc::CrdtGetResponse, Crdt>(&Crdt::Stub::Get, crdt_get));
  rpc::CrdtCasRequest crdt_cas;
  crdt_cas.set_table("t");
  crdt_cas.set_row("r");
  add("CrdtCas", Unary<rpc::CrdtCasResponse, Crdt>(&Crdt::Stub::Cas, crdt_cas));
  rpc::CrdtCasGetRequest cas_get;
  cas_get.set_table("t");
  cas_get.set_row("r");
  add("CrdtCasGet",
      Unary<rpc::CrdtCasGetResponse, Crdt>(&Crdt::Stub::CasGet, cas_get));
  rpc::CrdtRetireRequest retire;
  retire.set_node(9);
  add("CrdtRetire",
      Unary<rpc::CrdtRetireResponse, Crdt>(&Crdt::Stub::Retire, retire));
  // Cluster administration
  using rpc::Cluster;
  rpc::BackupRequest backup;
  backup.set_group(group);
  add("Backup",
      Stream<rpc::BackupChunk, Cluster>(&Cluster::Stub::Backup, backup));
  rpc::AddLearnerRequest learner;
  learner.mutable_member()->set_id(9);
  learner.mutable_member()->set_peer_address("127.0.0.1:1");
  add("AddLearner", Unary<rpc::MembershipResponse, Cluster>(
                        &Cluster::Stub::AddLearner, learner));
  rpc::PromoteRequest promote;
  promote.set_id(9);
  add("Promote", Unary<rpc::MembershipResponse, Cluster>(
                     &Cluster::Stub::Promote, promote));
  rpc::RemoveMemberRequest remove;
  remove.set_id(9);
  add("RemoveMember", Unary<rpc::MembershipResponse, Cluster>(
                          &Cluster::Stub::RemoveMember, remove));
  add("TransferLeader",
      Unary<rpc::TransferLeaderResponse, Cluster>(
          &Cluster::Stub::TransferLeader, rpc::TransferLeaderRequest()));
  // Auth itself
  rpc::AuthChangeRequest change;
  change.set_user_add("mallory");
  add("AuthChange", Unary<rpc::AuthChangeResponse, rpc::Auth>(
                        &rpc::Auth::Stub::Change, change));
  return calls;
}

class AuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.Start());
    auto c = client::Client::Connect(cluster_.ClientOptions());
    ASSERT_TRUE(c.ok()) << c.status();
    anonymous_ = *std::move(c);
    rpc::AuthChangeRequest enable;
    enable.mutable_enable();
    auto r = anonymous_->AuthChange(enable);
    ASSERT_TRUE(r.ok()) << r.status();
    root_token_ = r->token();
    ASSERT_TRUE(root_token_.starts_with("tly-")) << root_token_;
    root_ = Connect(root_token_);
  }

  std::unique_ptr<client::Client> Connect(const std::string& token) {
    client::ClientOptions o = cluster_.ClientOptions();
    o.token = token;
    auto c = client::Client::Connect(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  void Change(const std::function<void(rpc::AuthChangeRequest*)>& fill) {
    rpc::AuthChangeRequest req;
    fill(&req);
    auto r = root_->AuthChange(req);
    ASSERT_TRUE(r.ok()) << req.ShortDebugString() << ": " << r.status();
  }
  // A token for `user`, lasting `ttl_ms` (0: the default).
  std::string Issue(const std::string& user, int64_t ttl_ms = 0) {
    rpc::AuthChangeRequest req;
    req.mutable_token_issue()->set_user(user);
    req.mutable_token_issue()->set_ttl_ms(ttl_ms);
    auto r = root_->AuthChange(req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->token() : "";
  }
  // One call on node `i` (0..2) with `token`.
  grpc::StatusCode Raw(int i, const std::string& token, const RawCall& call) {
    const client::ClientOptions o = cluster_.ClientOptions();
    auto ch =
        grpc::CreateChannel(o.endpoints[i], rpc::ChannelCredentials(o.tls));
    grpc::ClientContext ctx;
    ctx.set_deadline(Clock::now() + std::chrono::seconds(5));
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    return call(ch, &ctx).error_code();
  }

  testing::TestCluster cluster_;
  std::unique_ptr<client::Client> anonymous_, root_;
  std::string root_token_;
};

TEST_F(AuthTest, AUserWithoutPermissionIsRefusedOnEveryKindOfCall) {
  Change([](auto* r) { r->set_user_add("nobody"); });
  const std::string token = Issue("nobody");
  auto ranges = root_->Ranges();
  ASSERT_TRUE(ranges.ok()) << ranges.status();
  ASSERT_FALSE(ranges->ranges().empty());
  const uint64_t group = ranges->ranges(0).group();
  int checked = 0;
  for (const auto& [name, call] : EveryCall(group)) {
    EXPECT_EQ(Raw(checked % 3, token, call),
              grpc::StatusCode::PERMISSION_DENIED)
        << name;
    // Without a token: not even who is calling is known.
    EXPECT_EQ(Raw(checked % 3, "", call), grpc::StatusCode::UNAUTHENTICATED)
        << name;
    ++checked;
  }
  EXPECT_EQ(checked, 44);
  // Root may: the same Get is answered (by any node: serializable).
  rpc::GetRequest get;
  get.set_key("a");
  get.set_read_mode(rpc::SERIALIZABLE);
  EXPECT_EQ(Raw(0, root_token_,
                Unary<rpc::GetResponse, rpc::KV>(&rpc::KV::Stub::Get, get)),
            grpc::StatusCode::OK);
}

TEST_F(AuthTest, ARoleAllowsWhatItNamesAndNothingElse) {
  Change([](auto* r) { r->set_user_add("alice"); });
  Change([](auto* r) { r->set_role_add("app"); });
  Change([](auto* r) {
    auto* g = r->mutable_role_permission();
    g->set_name("app");
    g->mutable_permission()->set_kind(rpc::AuthPermission::KEY);
    g->mutable_permission()->set_prefix("app/");
    g->mutable_permission()->set_read(true);
    g->mutable_permission()->set_write(true);
  });
  Change([](auto* r) {
    r->mutable_user_role()->set_name("alice");
    r->mutable_user_role()->set_role("app");
  });
  auto alice = Connect(Issue("alice"));
  ASSERT_NE(alice, nullptr);
  EXPECT_TRUE(alice->Put("app/x", "1").ok());
  auto got = alice->Get("app/x");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kv().value(), "1");
  auto scan = alice->Scan("app/", "app0", 0);
  EXPECT_TRUE(scan.ok()) << scan.status();
  // A serializable read refused for good is not sent again (hedged reads
  // send at most a second copy once the client knows its latencies).
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(alice->Get("app/x", rpc::SERIALIZABLE).ok());
  }
  const uint64_t attempts = alice->call_stats().attempts;
  EXPECT_EQ(alice->Get("other", rpc::SERIALIZABLE).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_LE(alice->call_stats().attempts - attempts, 2u);
  absl::Status other = alice->Put("other", "1").status();
  EXPECT_EQ(other.code(), absl::StatusCode::kPermissionDenied) << other;
  EXPECT_NE(other.message().find("alice"), std::string::npos) << other;
  EXPECT_FALSE(root_->Get("other")->found()) << "a refused write was applied";
  // A transaction with one key outside: nothing of it applies.
  rpc::TxnRequest txn;
  auto* p1 = txn.add_success()->mutable_put();
  p1->set_key("app/y");
  p1->set_value("1");
  auto* p2 = txn.add_success()->mutable_put();
  p2->set_key("app0");
  p2->set_value("1");
  EXPECT_EQ(alice->Txn(txn).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(root_->Get("app/y")->found());
  // Taking the role away ends it, on the node leading the key's shard too
  // once it applies the change (within a heartbeat).
  Change([](auto* r) {
    r->mutable_user_role()->set_name("alice");
    r->mutable_user_role()->set_role("app");
    r->mutable_user_role()->set_revoke(true);
  });
  const auto taken = std::chrono::steady_clock::now();
  absl::StatusCode code = absl::StatusCode::kOk;
  while (code == absl::StatusCode::kOk &&
         std::chrono::steady_clock::now() - taken < std::chrono::seconds(1)) {
    code = alice->Get("app/x").status().code();
  }
  EXPECT_EQ(code, absl::StatusCode::kPermissionDenied);
}

TEST_F(AuthTest, ARevokedTokenStopsWorkingOnEveryNodeWithinASecond) {
  Change([](auto* r) { r->set_user_add("bob"); });
  Change([](auto* r) {
    r->mutable_user_role()->set_name("bob");
    r->mutable_user_role()->set_role("root");
  });
  const std::string token = Issue("bob");
  rpc::GetRequest get;  // answered by any node
  get.set_key("a");
  get.set_read_mode(rpc::SERIALIZABLE);
  const RawCall read =
      Unary<rpc::GetResponse, rpc::KV>(&rpc::KV::Stub::Get, get);
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(Raw(i, token, read), grpc::StatusCode::OK) << "n" << i + 1;
  }
  const std::string id = token.substr(4, token.find('-', 4) - 4);
  const auto revoked = std::chrono::steady_clock::now();
  Change([&](auto* r) { r->set_token_revoke(id); });
  // Every node at once, each until it refuses (the acknowledgement came
  // from the leader; followers apply within a heartbeat).
  bool refused[3] = {false, false, false};
  std::chrono::milliseconds after[3] = {};
  std::vector<std::thread> probes;
  for (int i = 0; i < 3; ++i) {
    probes.emplace_back([&, i] {
      while (std::chrono::steady_clock::now() - revoked <
             std::chrono::seconds(5)) {
        // When the call was sent: a refusal may wait for the node to catch
        // up before it is answered.
        const auto sent = std::chrono::steady_clock::now();
        if (Raw(i, token, read) == grpc::StatusCode::UNAUTHENTICATED) {
          refused[i] = true;
          after[i] = std::chrono::duration_cast<std::chrono::milliseconds>(
              sent - revoked);
          return;
        }
      }
    });
  }
  for (auto& t : probes) t.join();
  const std::chrono::milliseconds slowest =
      std::max({after[0], after[1], after[2]});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(refused[i]) << "n" << i + 1;
  EXPECT_LT(slowest.count(), 1000);
  std::cout << "a call sent " << slowest.count()
            << " ms after the revocation is refused by every node\n";
}

TEST_F(AuthTest, ExpiredAndMalformedTokensAreRefusedWithTheReason) {
  const std::string brief = Issue("root", 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto c = Connect(brief);
  absl::Status st = c->Get("a").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnauthenticated) << st;
  EXPECT_NE(st.message().find("expired"), std::string::npos) << st;
  st = Connect("tly-0000-nope")->Get("a").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnauthenticated) << st;
  st = Connect("something-else")->Get("a").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kUnauthenticated) << st;
  // Disabled again: everyone may.
  Change([](auto* r) { r->set_disable(true); });
  absl::Status put = anonymous_->Put("a", "1").status();
  EXPECT_TRUE(put.ok()) << put;
}

}  // namespace
}  // namespace tally
