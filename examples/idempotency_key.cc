// A service using Tally as its idempotency-key store, through the client
// library: the first request with a key claims it and stores its response;
// a duplicate (a client retry, a redelivered message) gets the stored
// response instead of charging the card twice.
//
//   build/bin/idempotency_key_example 127.0.0.1:7001,127.0.0.1:7002 order-42

#include <iostream>

#include "absl/strings/str_split.h"
#include "client/client.h"

namespace {

// Returns the response stored under `key`, storing `response` first if the
// key is new: atomically, "if the key does not exist (version 0), put our
// response, else read the stored one". A real service would do the work
// only when it won the key.
absl::StatusOr<std::string> Once(tally::client::Client& c,
                                 const std::string& key,
                                 const std::string& response) {
  tally::rpc::TxnRequest txn;
  auto* cmp = txn.add_compare();
  cmp->set_key("idem/" + key);
  cmp->set_target(tally::rpc::Compare::VERSION);
  cmp->set_version(0);
  auto* put = txn.add_success()->mutable_put();
  put->set_key("idem/" + key);
  put->set_value(response);
  txn.add_failure()->mutable_get()->set_key("idem/" + key);
  absl::StatusOr<tally::rpc::TxnResponse> r = c.Txn(txn);
  if (!r.ok()) return r.status();
  if (r->succeeded()) return response;
  return r->results(0).get().kv().value();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " ENDPOINTS KEY\n";
    return 2;
  }
  tally::client::ClientOptions opts;
  opts.endpoints = absl::StrSplit(argv[1], ',', absl::SkipEmpty());
  auto c = tally::client::Client::Connect(opts);
  if (!c.ok()) {
    std::cerr << c.status() << "\n";
    return 2;
  }
  for (const char* attempt : {"first", "retry"}) {
    absl::StatusOr<std::string> r = Once(**c, argv[2], "charged 10 EUR");
    if (!r.ok()) {
      std::cerr << attempt << ": " << r.status() << "\n";
      return 3;
    }
    std::cout << attempt << ": " << *r << "\n";
  }
  return 0;
}
