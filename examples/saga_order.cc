// An order placed by a saga of three steps, with the client library's
// SagaRunner: reserve the stock, charge the card, ship the parcel. When a
// step fails for good, what was done is undone in reverse: the parcel
// cancelled, the card refunded, the stock released. Kill this process at
// any moment and run `resume`: the saga goes on from its records in the
// store, and no step's work is done twice.
//
// Each step's work is a write to the store committed with the step's
// completion, under the step's idempotency key:
// saga/ID/STEP/effect/TOKEN (a compensation's: saga/ID/STEP/undo/effect/
// TOKEN). A step that ran twice would leave two. Each run of a step's code
// is also logged to $SAGA_CALL_LOG (a line "ID STEP attempt N"), which
// shows that a step finished before a crash is not run again.
//
//   build/bin/saga_order_example ENDPOINTS run ID [flags]
//   build/bin/saga_order_example ENDPOINTS resume [ID]
//
// Flags: --input TEXT (the order), --fail-ship (shipping refuses the
// order), --fail-refund (so does the refund: an incident for an operator),
// --charge-is-pivot (an invalid definition: ship, compensable, would follow
// the pivot), --crash-after STEP (kill -9
// itself once STEP is recorded), --crash-before-record STEP (once STEP's
// work is stored, before the saga records it), --step-ms N (each step
// takes N ms), --lock-ttl-ms N (the coordinator's lease).
//
// Exit codes: 0 the saga ended done or compensated, 5 it waits for an
// operator (incident), 6 another coordinator took it over, 2 bad usage,
// 1 an error.

#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tally/client.h"
#include "tally/saga.h"

namespace {

using tally::SagaStep;
using tally::StepContext;
using tally::StepResult;

struct Flags {
  std::string input = "3 shirts";
  bool fail_ship = false, fail_refund = false, charge_is_pivot = false;
  std::string crash_after, crash_before_record;
  int step_ms = 0;
  int lock_ttl_ms = 10'000;
};

// The step's work: logged as a call, then stored as a write committed with
// the step's completion.
StepResult Work(const StepContext& ctx, const Flags& flags,
                const std::string& what) {
  if (const char* log = std::getenv("SAGA_CALL_LOG")) {
    std::ofstream(log, std::ios::app)
        << ctx.saga_id << " " << ctx.step << (ctx.compensation ? "/undo" : "")
        << " attempt " << ctx.attempt << std::endl;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(flags.step_ms));
  tally::Write effect{
      absl::StrCat(ctx.idem_scope, ctx.idem_key, "/effect/", ctx.idem_token),
      what};
  return StepResult::Ok(what, {effect});
}

tally::SagaDefinition Order(const Flags& flags) {
  auto step = [&flags](std::string name, std::string done, std::string undone) {
    SagaStep s;
    s.name = name;
    s.max_attempts = 3;
    s.action = [&flags, done](const StepContext& ctx) {
      if (ctx.step == "ship" && flags.fail_ship) {
        return StepResult::Fail("the carrier refuses the address");
      }
      return Work(ctx, flags, absl::StrCat(done, " for ", ctx.input));
    };
    s.compensation = [&flags, undone](const StepContext& ctx) {
      if (ctx.step == "charge" && flags.fail_refund) {
        return StepResult::Fail("the card issuer refuses the refund");
      }
      return Work(ctx, flags, absl::StrCat(undone, " for ", ctx.input));
    };
    return s;
  };
  tally::SagaDefinition order{
      "order",
      {step("reserve", "stock reserved", "stock released"),
       step("charge", "card charged", "card refunded"),
       step("ship", "parcel shipped", "parcel cancelled")}};
  if (flags.charge_is_pivot) {
    // Not undone once done; the cluster refuses a compensable step after
    // it (ship), as it should.
    order.steps[1].kind = tally::StepKind::kPivot;
    order.steps[1].compensation = nullptr;
  }
  return order;
}

int Usage(const char* argv0) {
  std::cerr << "usage: " << argv0
            << " ENDPOINTS run ID [--input TEXT] [--fail-ship] "
               "[--fail-refund] [--charge-is-pivot] [--crash-after STEP] "
               "[--crash-before-record STEP] [--step-ms N] [--lock-ttl-ms N]\n"
               "       "
            << argv0 << " ENDPOINTS resume [ID]\n";
  return 2;
}

int Report(const absl::StatusOr<tally::SagaStatus>& r) {
  if (!r.ok()) {
    std::cerr << r.status() << "\n";
    return r.status().code() == absl::StatusCode::kAborted ? 6 : 1;
  }
  std::cout << "saga " << r->id << ": " << absl::AsciiStrToUpper(Name(r->state))
            << "\n";
  return r->state == tally::SagaState::kIncident ? 5 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage(argv[0]);
  const std::string cmd = argv[2];
  std::string id;
  Flags flags;
  int i = 3;
  if (cmd == "run") {
    if (argc < 4) return Usage(argv[0]);
    id = argv[i++];
  } else if (cmd == "resume") {
    if (argc > 3 && argv[3][0] != '-') id = argv[i++];
  } else {
    return Usage(argv[0]);
  }
  for (; i < argc; ++i) {
    const std::string f = argv[i];
    const bool has_value = i + 1 < argc;
    if (f == "--fail-ship") {
      flags.fail_ship = true;
    } else if (f == "--fail-refund") {
      flags.fail_refund = true;
    } else if (f == "--charge-is-pivot") {
      flags.charge_is_pivot = true;
    } else if (f == "--input" && has_value) {
      flags.input = argv[++i];
    } else if (f == "--crash-after" && has_value) {
      flags.crash_after = argv[++i];
    } else if (f == "--crash-before-record" && has_value) {
      flags.crash_before_record = argv[++i];
    } else if (f == "--step-ms" && has_value &&
               absl::SimpleAtoi(argv[i + 1], &flags.step_ms)) {
      ++i;
    } else if (f == "--lock-ttl-ms" && has_value &&
               absl::SimpleAtoi(argv[i + 1], &flags.lock_ttl_ms)) {
      ++i;
    } else {
      return Usage(argv[0]);
    }
  }
  tally::ClientOptions opts;
  opts.endpoints = absl::StrSplit(argv[1], ',', absl::SkipEmpty());
  // TLS as kvctl takes it from the environment.
  auto env = [](const char* name) {
    const char* v = std::getenv(name);
    return std::string(v != nullptr ? v : "");
  };
  opts.tls_ca = env("KVCTL_TLS_CA");
  opts.tls_cert = env("KVCTL_TLS_CERT");
  opts.tls_key = env("KVCTL_TLS_KEY");
  auto c = tally::Client::Connect(opts);
  if (!c.ok()) {
    std::cerr << c.status() << "\n";
    return 1;
  }

  tally::SagaRunner::Options ro;
  ro.lock_ttl = std::chrono::milliseconds(flags.lock_ttl_ms);
  ro.claim_ttl = std::chrono::seconds(2);
  ro.on_transition = [&flags](const tally::SagaStatus& r) {
    for (const tally::StepStatus& s : r.steps) {
      if (s.name == flags.crash_after &&
          s.forward.state == tally::PhaseState::kSucceeded) {
        raise(SIGKILL);
      }
    }
  };
  ro.on_step_stored = [&flags](const StepContext& ctx, const StepResult&) {
    if (ctx.step == flags.crash_before_record && !ctx.compensation) {
      raise(SIGKILL);
    }
  };
  tally::SagaRunner runner(c->get(), ro);
  if (absl::Status st = runner.Register(Order(flags)); !st.ok()) {
    std::cerr << st << "\n";
    return 1;
  }
  if (cmd == "run") return Report(runner.Run("order", id, flags.input));
  if (!id.empty()) return Report(runner.Resume(id));
  absl::StatusOr<size_t> n = runner.ResumeAll(std::chrono::milliseconds(0));
  if (!n.ok()) {
    std::cerr << n.status() << "\n";
    return 1;
  }
  std::cout << "resumed " << *n << " saga(s)\n";
  return 0;
}
