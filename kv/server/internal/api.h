#ifndef TALLY_KV_SERVER_INTERNAL_API_H_
#define TALLY_KV_SERVER_INTERNAL_API_H_

#include "kv/kvpb/kvpb.pb.h"
#include "rpc/cluster.pb.h"
#include "rpc/kv.pb.h"

// The client API (rpc/kv.proto, rpc/cluster.proto) onto kv/'s commands and
// records (kv/kvpb/kvpb.proto), and kv/'s results back onto responses.
// Sessions are left out of the operations: a command carries its own.
namespace tally::kv::server {

kvpb::Session ToKv(const rpc::Session& s);
kvpb::Put ToKv(const rpc::PutRequest& req);
kvpb::Delete ToKv(const rpc::DeleteRequest& req);
kvpb::Txn ToKv(const rpc::TxnRequest& req);
kvpb::Member ToKv(const rpc::Member& m);
kvpb::RangeDescriptor ToKv(const rpc::RangeDescriptor& r);

rpc::Member ToApi(const kvpb::Member& m);
rpc::RangeDescriptor ToApi(const kvpb::RangeDescriptor& r);
void ToApi(const kvpb::Applied& h, rpc::ResponseHeader* out);
// Moves the key and value.
rpc::KeyValue ToApi(kvpb::KeyValue&& kv);
// The response's header gets what the state machine knows (revision,
// group, index, replayed); the server adds the node and read mode.
void ToApi(kvpb::PutResult&& r, rpc::PutResponse* out);
void ToApi(kvpb::DeleteResult&& r, rpc::DeleteResponse* out);
void ToApi(kvpb::TxnResult&& r, rpc::TxnResponse* out);
void ToApi(kvpb::OpenSessionResult&& r, rpc::OpenSessionResponse* out);

}  // namespace tally::kv::server

#endif  // TALLY_KV_SERVER_INTERNAL_API_H_
