#ifndef TALLY_CMD_KVBENCH_TARGETS_H_
#define TALLY_CMD_KVBENCH_TARGETS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "cmd/kvbench/workload.h"
#include "grpcpp/grpcpp.h"
#include "rpc/tls.h"

namespace tally::kvbench {

// One request in flight: its completion's tag on the completion queue.
struct Call {
  virtual ~Call() = default;
  grpc::ClientContext ctx;
  grpc::Status status;
  uint64_t group = 0;     // Tally: the raft group the key belongs to
  void* owner = nullptr;  // the logical client that sent it
};

// A store under test, driven through its asynchronous gRPC API.
class Target {
 public:
  enum class Result : uint8_t {
    kOk,
    kRetry,  // redirected to another node: send the operation again there
    kError,
  };

  virtual ~Target() = default;
  // Sends one operation; `slot` (the logical client) picks the connection.
  virtual Call* Start(Op op, const std::string& key, const std::string& value,
                      size_t slot, grpc::CompletionQueue* cq) = 0;
  // What a completed call means; learns from redirects.
  virtual Result Finish(Call* call) = 0;
};

struct TargetOptions {
  std::vector<std::string> endpoints;
  int connections = 1;  // TCP connections per endpoint
  ReadMode read_mode = ReadMode::kLinearizable;
  int timeout_ms = 5000;
  // Scans: keys read from the chosen key on.
  uint32_t scan_size = 1000;
  // Tally: create the CRDT table that crdt-incr writes (and wait for every
  // endpoint to know it).
  bool crdt = false;
  // Tally: TLS (empty: plaintext). etcd is always dialled in plaintext.
  rpc::TlsFiles tls;
  // Tally: a bearer token, for a cluster with auth enabled (empty: none).
  std::string token;
};

// A channel to `address` with a TCP connection of its own: channels made
// with different `i` share none.
// Its calls carry `token` as a bearer token (none when empty).
std::shared_ptr<grpc::Channel> NewChannel(
    const std::string& address, int i,
    std::shared_ptr<grpc::ChannelCredentials> credentials =
        grpc::InsecureChannelCredentials(),
    const std::string& token = "");

// Tally: each key's range and its leader from the cluster's routing table
// (Cluster.Ranges, through the client library), updated from redirects.
absl::StatusOr<std::unique_ptr<Target>> NewTallyTarget(
    const TargetOptions& options);

// etcd 3.4's v3 KV API: Put, Range (serializable or not) and Txn.
absl::StatusOr<std::unique_ptr<Target>> NewEtcdTarget(
    const TargetOptions& options);

}  // namespace tally::kvbench

#endif  // TALLY_CMD_KVBENCH_TARGETS_H_
