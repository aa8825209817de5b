#ifndef TALLY_RPC_TLS_H_
#define TALLY_RPC_TLS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

// TLS for every gRPC connection: clients to nodes, nodes to nodes. The
// certificate files are read again every kTlsReloadSeconds, so that a
// renewed certificate (or CA bundle) takes effect without a restart, for
// every connection made after it.
namespace tally::rpc {

inline constexpr unsigned kTlsReloadSeconds = 10;

// PEM files. All empty: plaintext.
struct TlsFiles {
  // The CA bundle that the other side's certificate must chain to: the
  // cluster's CA for nodes (peers, and clients that present one), the CA
  // that issued the nodes' certificates for clients.
  std::string ca;
  // This side's certificate chain and private key: required for a node;
  // for a client, only where nodes require client certificates.
  std::string cert;
  std::string key;

  bool enabled() const { return !ca.empty() || !cert.empty() || !key.empty(); }
};

// The files named by KVCTL_TLS_CA, KVCTL_TLS_CERT and KVCTL_TLS_KEY, which
// kvctl reads for --tls-ca, --tls-cert and --tls-key, and the other tools
// (kvbench, the examples, the tests' clients) read as well.
TlsFiles TlsFilesFromEnv();

// Checks the files before they are used, so that a mistake is one clear
// line at startup rather than failed handshakes later: each file readable
// and PEM; the certificate within its validity period, matching the key,
// and issued by the CA. `identity`: cert and key are required (a node).
// INVALID_ARGUMENT naming the file and what is wrong with it.
absl::Status CheckTlsFiles(const TlsFiles& files, bool identity);

// For a node's ports. Plaintext when !files.enabled(). Otherwise TLS with
// the node's certificate; the other side's certificate is verified against
// files.ca, and required when `require_client_cert` (the peer port: only
// holders of a certificate from the cluster's CA may talk raft), optional
// otherwise (clients without one are let in).
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const TlsFiles& files, bool require_client_cert);

// For a client's or a node's connections. Plaintext when !files.enabled().
// Otherwise the server's certificate must chain to files.ca and name the
// address dialled (a DNS name or IP address among its subject alternative
// names); cert and key, when set, are presented to it.
std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(
    const TlsFiles& files);

}  // namespace tally::rpc

#endif  // TALLY_RPC_TLS_H_
