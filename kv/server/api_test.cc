// The client API onto kv/'s commands and back: every field arrives, and the
// bytes are those the log and the session tables held when commands
// embedded the API's own messages (so what is on disk reads the same).

#include "kv/server/internal/api.h"

#include "gtest/gtest.h"

namespace tally::kv::server {
namespace {

rpc::TxnRequest FullTxn() {
  rpc::TxnRequest t;
  rpc::Compare* c = t.add_compare();
  c->set_key("k");
  c->set_target(rpc::Compare::MOD_REVISION);
  c->set_op(rpc::Compare::GREATER);
  c->set_version(3);
  c->set_value("v");
  c->set_mod_revision(7);
  rpc::TxnOp* put = t.add_success();
  put->mutable_put()->set_key("p");
  put->mutable_put()->set_value("pv");
  t.add_success()->mutable_delete_()->set_key("d");
  t.add_failure()->mutable_get()->set_key("g");
  return t;
}

TEST(ApiTest, RequestsBecomeCommandsWithTheSameBytesSessionLeftOut) {
  rpc::PutRequest put;
  put.set_key("a");
  put.set_value("1");
  put.mutable_session()->set_client_id(9);
  kvpb::Put kput = ToKv(put);
  put.clear_session();
  EXPECT_EQ(kput.SerializeAsString(), put.SerializeAsString());

  rpc::DeleteRequest del;
  del.set_key("a");
  EXPECT_EQ(ToKv(del).SerializeAsString(), del.SerializeAsString());

  rpc::TxnRequest txn = FullTxn();
  EXPECT_EQ(ToKv(txn).SerializeAsString(), txn.SerializeAsString());

  rpc::Session s;
  s.set_client_id(1);
  s.set_sequence(2);
  s.set_first_incomplete(3);
  s.set_group(4);
  EXPECT_EQ(ToKv(s).SerializeAsString(), s.SerializeAsString());

  rpc::Member m;
  m.set_id(2);
  m.set_name("n2");
  m.set_peer_address("127.0.0.1:1");
  m.set_client_address("127.0.0.1:2");
  EXPECT_EQ(ToKv(m).SerializeAsString(), m.SerializeAsString());
  EXPECT_EQ(ToApi(ToKv(m)).SerializeAsString(), m.SerializeAsString());

  rpc::RangeDescriptor r;
  r.set_group(3);
  r.set_start("a");
  r.set_end("m");
  EXPECT_EQ(ToApi(ToKv(r)).SerializeAsString(), r.SerializeAsString());
}

TEST(ApiTest, ResultsBecomeResponsesWithEveryField) {
  kvpb::Applied h;
  h.set_revision(5);
  h.set_group(3);
  h.set_raft_index(40);
  h.set_replayed(true);
  kvpb::KeyValue kv;
  kv.set_key("k");
  kv.set_value("v");
  kv.set_create_revision(1);
  kv.set_mod_revision(4);
  kv.set_version(2);

  kvpb::TxnResult txn;
  *txn.mutable_header() = h;
  txn.set_succeeded(true);
  kvpb::PutResult* put = txn.add_results()->mutable_put();
  *put->mutable_header() = h;
  put->set_had_prev(true);
  *put->mutable_prev() = kv;
  kvpb::DeleteResult* del = txn.add_results()->mutable_delete_();
  *del->mutable_header() = h;
  del->set_deleted(true);
  kvpb::GetResult* get = txn.add_results()->mutable_get();
  *get->mutable_header() = h;
  get->set_found(true);
  *get->mutable_kv() = kv;
  const std::string bytes = txn.SerializeAsString();
  rpc::TxnResponse out;
  ToApi(std::move(txn), &out);
  EXPECT_EQ(out.SerializeAsString(), bytes);

  kvpb::OpenSessionResult open;
  *open.mutable_header() = h;
  open.set_client_id(77);
  open.set_ttl_ms(60000);
  const std::string open_bytes = open.SerializeAsString();
  rpc::OpenSessionResponse open_out;
  ToApi(std::move(open), &open_out);
  EXPECT_EQ(open_out.SerializeAsString(), open_bytes);
}

}  // namespace
}  // namespace tally::kv::server
