// A service with a Tally node in its own process (EmbeddedNode), using
// leases, a fencing-token lock, an idempotency key and a saga through the
// installed API. The node is a cluster of its own, or member ID of the
// cluster INITIAL_CLUSTER ("1=127.0.0.1:7101,2=...": peer addresses).
//   embedded_service DATA_DIR CLIENT_PORT PEER_PORT [ID INITIAL_CLUSTER]
// Prints what it did and "OK", or what went wrong (exit 1).

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

#include "tally/tally.h"

namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  std::cout << (ok ? "ok: " : "FAIL: ") << what << std::endl;
  if (!ok) ++failures;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && argc != 6) {
    std::cerr << "usage: " << argv[0]
              << " DATA_DIR CLIENT_PORT PEER_PORT [ID INITIAL_CLUSTER]\n";
    return 2;
  }
  tally::EmbeddedNodeOptions o;
  o.data_dir = argv[1];
  o.client_address = std::string("127.0.0.1:") + argv[2];
  o.peer_address = std::string("127.0.0.1:") + argv[3];
  if (argc == 6) {
    o.id = std::stoull(argv[4]);
    std::stringstream members(argv[5]);
    for (std::string m; std::getline(members, m, ',');) {
      const size_t eq = m.find('=');
      o.initial_cluster[std::stoull(m.substr(0, eq))] = m.substr(eq + 1);
    }
  }
  auto node = tally::EmbeddedNode::Start(o);
  if (!node.ok()) {
    std::cerr << "start: " << node.status() << "\n";
    return 1;
  }
  auto c = (*node)->Connect(std::chrono::seconds(10));
  if (!c.ok()) {
    std::cerr << "connect: " << c.status() << "\n";
    return 1;
  }
  tally::Client& client = **c;

  Check(client.Put("greeting", "hello").ok(), "put");
  auto got = client.Get("greeting");
  Check(got.ok() && *got == "hello", "get what was put");

  auto lease = client.GrantLease(std::chrono::seconds(5));
  Check(lease.ok(), "lease granted");
  auto grant = client.Acquire("jobs", lease.ok() ? *lease : 0,
                              std::chrono::milliseconds(0));
  Check(grant.ok() && grant->acquired && grant->token > 0, "lock acquired");

  auto begun = client.IdemBegin("orders/", "o-1", "amount=5");
  Check(begun.ok() && begun->outcome == tally::IdemOutcome::kStarted,
        "idempotency key claimed");
  Check(begun.ok() && client
                          .IdemComplete("orders/", "o-1", begun->token,
                                        "charged 5", {{"orders/o-1", "paid"}})
                          .ok(),
        "completed with an effect");
  auto again = client.IdemBegin("orders/", "o-1", "amount=5");
  Check(again.ok() && again->outcome == tally::IdemOutcome::kFinished &&
            again->response == "charged 5",
        "a retry replays the stored response");
  auto other = client.IdemBegin("orders/", "o-1", "amount=6");
  Check(other.ok() && other->outcome == tally::IdemOutcome::kMismatch,
        "another request under the key: mismatch");

  tally::SagaRunner runner(&client, {});
  int undone = 0;
  tally::SagaDefinition def{"transfer", {}};
  for (const char* name : {"debit", "credit"}) {
    tally::SagaStep s;
    s.name = name;
    s.action = [](const tally::StepContext& ctx) {
      if (ctx.input == "fail" && ctx.step == "credit") {
        return tally::StepResult::Fail("account closed");
      }
      return tally::StepResult::Ok(ctx.step + " done");
    };
    s.compensation = [&undone](const tally::StepContext&) {
      ++undone;
      return tally::StepResult::Ok("undone");
    };
    def.steps.push_back(std::move(s));
  }
  Check(runner.Register(def).ok(), "saga registered");
  auto done = runner.Run("transfer", "t-1", "ok");
  Check(done.ok() && done->state == tally::SagaState::kDone &&
            done->steps[1].forward.output == "credit done",
        "saga done");
  auto undone_saga = runner.Run("transfer", "t-2", "fail");
  Check(undone_saga.ok() &&
            undone_saga->state == tally::SagaState::kCompensated && undone == 1,
        "failing saga compensated (debit undone)");
  tally::SagaDefinition bad{"bad", {}};
  bad.steps.push_back(
      {"pay", tally::StepKind::kCompensable,
       [](const tally::StepContext&) { return tally::StepResult::Ok(""); }});
  auto refused = runner.Register(bad);
  Check(!refused.ok() && refused.code() == absl::StatusCode::kInvalidArgument,
        "a compensable step without compensation refused: " +
            std::string(refused.message()));

  c->reset();
  (*node)->Shutdown();
  if (failures > 0) return 1;
  std::cout << "OK" << std::endl;
  return 0;
}
