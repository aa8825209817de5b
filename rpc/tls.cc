#include "rpc/tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <cstdlib>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace tally::rpc {

namespace {

// gRPC advances a connection attempt only from a call waiting on the
// channel, from a gRPC server's polling threads in the same process, or
// from its backup poller, every 5 s by default. Client calls fail fast, so
// in a process without a server a channel that met a refused connection (a
// node restarting, or started after its clients) took one handshake step
// per backup poll: over TLS, the node was reached 15-20 s after it
// listened. gRPC reads the interval once, at its first initialisation,
// hence a static initialiser here: every process that makes credentials
// links this file. An interval already in the environment is left as is.
[[maybe_unused]] const bool kBackupPollIntervalSet = [] {
  return setenv("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50",
                /*overwrite=*/0) == 0;
}();

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};
using Bio = std::unique_ptr<BIO, BioFree>;
using Cert = std::unique_ptr<X509, X509Free>;

absl::StatusOr<Bio> OpenFile(const std::string& path, const char* what) {
  Bio bio(BIO_new_file(path.c_str(), "r"));
  if (bio == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": cannot be read"));
  }
  return bio;
}

// Every certificate in a PEM file, first (the leaf of a chain) first.
absl::StatusOr<std::vector<Cert>> ReadCerts(const std::string& path,
                                            const char* what) {
  absl::StatusOr<Bio> bio = OpenFile(path, what);
  if (!bio.ok()) return bio.status();
  std::vector<Cert> out;
  while (X509* x = PEM_read_bio_X509(bio->get(), nullptr, nullptr, nullptr)) {
    out.emplace_back(x);
  }
  ERR_clear_error();  // the end of the file reads as an error
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": no PEM certificate in it"));
  }
  return out;
}

std::string Time(const ASN1_TIME* t) {
  Bio bio(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(bio.get(), t);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::Status CheckValidity(const X509* cert, const std::string& path,
                           const char* what) {
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", path, ": expired on ", Time(X509_get0_notAfter(cert))));
  }
  if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": not valid before ",
                     Time(X509_get0_notBefore(cert))));
  }
  return absl::OkStatus();
}

}  // namespace

TlsFiles TlsFilesFromEnv() {
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr ? v : "");
  };
  return {env("KVCTL_TLS_CA"), env("KVCTL_TLS_CERT"), env("KVCTL_TLS_KEY")};
}

absl::Status CheckTlsFiles(const TlsFiles& f, bool identity) {
  if (!f.enabled()) return absl::OkStatus();
  if (f.ca.empty()) {
    return absl::InvalidArgumentError(
        "TLS needs the CA certificate (--tls-ca) to verify the other side");
  }
  if (f.cert.empty() != f.key.empty() || (identity && f.cert.empty())) {
    return absl::InvalidArgumentError(
        "TLS needs both a certificate (--tls-cert) and its private key "
        "(--tls-key)");
  }
  absl::StatusOr<std::vector<Cert>> ca = ReadCerts(f.ca, "CA certificate");
  if (!ca.ok()) return ca.status();
  for (const Cert& c : *ca) {
    if (absl::Status s = CheckValidity(c.get(), f.ca, "CA certificate");
        !s.ok()) {
      return s;
    }
  }
  if (f.cert.empty()) return absl::OkStatus();

  absl::StatusOr<std::vector<Cert>> chain = ReadCerts(f.cert, "certificate");
  if (!chain.ok()) return chain.status();
  X509* leaf = chain->front().get();
  if (absl::Status s = CheckValidity(leaf, f.cert, "certificate"); !s.ok()) {
    return s;
  }
  // A node presents its certificate both when serving and when dialling
  // its peers: an extended key usage, if any, must allow both.
  if (identity && (X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) != 0) {
    const uint32_t usage = X509_get_extended_key_usage(leaf);
    if ((usage & XKU_SSL_SERVER) == 0 || (usage & XKU_SSL_CLIENT) == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "certificate ", f.cert,
          ": a node's certificate needs both the serverAuth and the "
          "clientAuth extended key usage (it also dials its peers)"));
    }
  }
  absl::StatusOr<Bio> key_bio = OpenFile(f.key, "private key");
  if (!key_bio.ok()) return key_bio.status();
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(key_bio->get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "private key ", f.key, ": no unencrypted PEM private key in it"));
  }
  if (X509_check_private_key(leaf, key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "private key ", f.key, " does not match certificate ", f.cert));
  }

  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  for (const Cert& c : *ca) X509_STORE_add_cert(store.get(), c.get());
  STACK_OF(X509)* untrusted = sk_X509_new_null();
  for (size_t i = 1; i < chain->size(); ++i) {
    sk_X509_push(untrusted, (*chain)[i].get());
  }
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted);
  const bool verified = X509_verify_cert(ctx.get()) == 1;
  const int err = X509_STORE_CTX_get_error(ctx.get());
  sk_X509_free(untrusted);
  ERR_clear_error();
  if (!verified) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate ", f.cert, " is not issued by the CA in ",
                     f.ca, ": ", X509_verify_cert_error_string(err)));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const TlsFiles& f, bool require_client_cert) {
  if (!f.enabled()) return grpc::InsecureServerCredentials();
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          f.key, f.cert, f.ca, kTlsReloadSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  options.watch_root_certs();
  options.set_cert_request_type(
      require_client_cert
          ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
          : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials(
    const TlsFiles& f) {
  if (!f.enabled()) return grpc::InsecureChannelCredentials();
  std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider;
  if (f.cert.empty()) {
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            f.ca, kTlsReloadSeconds);
  } else {
    provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            f.key, f.cert, f.ca, kTlsReloadSeconds);
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  options.watch_root_certs();
  if (!f.cert.empty()) options.watch_identity_key_cert_pairs();
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace tally::rpc
