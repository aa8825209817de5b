// An order service charging through an idempotency key, with the client
// library: however often a request is retried (a client's retry, a
// redelivered message, this process killed and restarted), the card is
// charged once and every attempt answers with the first one's response.
//
// The charge is a write to the store (orders/ID/charge/TOKEN) committed in
// the same raft entry as the completion that stores the response: both or
// neither. A process killed before completing leaves a claim that runs out;
// the next attempt takes over under a higher token and charges then.
//
//   build/bin/idempotency_key_example ENDPOINTS ORDER_ID AMOUNT
//   [--crash-before-complete|--crash-after-complete]
//
// Exit codes: 0 answered (charged now or before), 3 in progress elsewhere
// (retry later), 2 the order ID was used with another amount, 1 an error.

#include <signal.h>

#include <chrono>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"

namespace {

constexpr char kScope[] = "orders/";
constexpr auto kClaim = std::chrono::seconds(2);

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4 || argc > 5) {
    std::cerr << "usage: " << argv[0]
              << " ENDPOINTS ORDER_ID AMOUNT [--crash-before-complete|"
                 "--crash-after-complete]\n";
    return 2;
  }
  const std::string order = argv[2], amount = argv[3];
  const std::string crash = argc == 5 ? argv[4] : "";
  tally::client::ClientOptions opts;
  opts.endpoints = absl::StrSplit(argv[1], ',', absl::SkipEmpty());
  opts.tls = tally::rpc::TlsFilesFromEnv();  // as kvctl: KVCTL_TLS_*
  auto c = tally::client::Client::Connect(opts);
  if (!c.ok()) {
    std::cerr << c.status() << "\n";
    return 1;
  }

  tally::rpc::IdemBeginRequest begin;
  begin.set_scope(kScope);
  begin.set_key(order);
  begin.set_fingerprint("amount=" + amount);  // the request itself
  begin.set_claim_ttl_ms(std::chrono::milliseconds(kClaim).count());
  auto b = (*c)->IdemBegin(begin);
  if (!b.ok()) {
    std::cerr << "begin: " << b.status() << "\n";
    return 1;
  }
  switch (b->outcome()) {
    case tally::rpc::IdemBeginResponse::FINISHED:
      std::cout << b->record().response() << " (replayed)\n";
      return 0;
    case tally::rpc::IdemBeginResponse::IN_PROGRESS:
      std::cerr << "order " << order << " is being charged elsewhere; retry in "
                << b->retry_after_ms() << " ms\n";
      return 3;
    case tally::rpc::IdemBeginResponse::MISMATCH:
      std::cerr << "order " << order << " was placed with another amount\n";
      return 2;
    default:
      break;
  }
  const uint64_t token = b->token();
  if (crash == "--crash-before-complete") raise(SIGKILL);

  // The charge, and the response, in one entry.
  tally::rpc::TxnOp charge;
  charge.mutable_put()->set_key(absl::StrCat(kScope, order, "/charge/", token));
  charge.mutable_put()->set_value(amount);
  const std::string response = absl::StrCat("charged ", amount, " for order ",
                                            order, " (token ", token, ")");
  auto done = (*c)->IdemComplete(kScope, order, token, response, {charge});
  if (!done.ok()) {
    std::cerr << "complete: " << done.status() << "\n";
    return 1;
  }
  if (crash == "--crash-after-complete") raise(SIGKILL);
  std::cout << done->record().response() << "\n";
  return 0;
}
