#include "cmd/kvctl/saga_commands.h"

#include <iostream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "cmd/kvctl/duration.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {
namespace {

// "running", "compensating", ...: the enum's name without its prefix.
std::string Name(rpc::SagaState s) {
  return absl::AsciiStrToLower(rpc::SagaState_Name(s).substr(5));
}
std::string Name(rpc::SagaPhaseState s) {
  return absl::AsciiStrToLower(rpc::SagaPhaseState_Name(s).substr(6));
}
std::string Name(rpc::SagaStepKind k) {
  return absl::AsciiStrToLower(rpc::SagaStepKind_Name(k).substr(5));
}

std::string Ago(int64_t now, int64_t then) {
  return absl::StrCat((now - then) / 1000.0, " s ago");
}

// Where the saga is: the next step, or the one an incident is about.
std::string At(const rpc::SagaRecord& r) {
  const bool incident = r.state() == rpc::SAGA_INCIDENT;
  if (!incident && !r.has_next()) return "-";
  const uint32_t step = incident ? r.incident_step() : r.next_step();
  const bool undo =
      incident ? r.incident_compensation() : r.next_compensation();
  return absl::StrCat(undo ? "undo " : "", step + 1, "/", r.steps_size(), " ",
                      r.steps(step).name());
}

// ID STATE DEFINITION AT updated, tab-separated.
std::string Line(const rpc::SagaRecord& r) {
  return absl::StrCat(r.id(), "\t", Name(r.state()), "\t", r.definition(), "\t",
                      At(r), "\tupdated ", Ago(r.now_ms(), r.updated_ms()));
}

std::string Phase(const rpc::SagaPhase& p) {
  std::string out = Name(p.state());
  if (p.attempts() > 0) {
    absl::StrAppend(&out, " (", p.attempts(), " attempt",
                    p.attempts() == 1 ? "" : "s");
    if (p.state() == rpc::PHASE_PENDING || p.state() == rpc::PHASE_RUNNING) {
      absl::StrAppend(&out, ", ", p.attempts_left(), " left");
    }
    absl::StrAppend(&out, ")");
  }
  if (p.maybe_applied()) absl::StrAppend(&out, " maybe applied");
  if (!p.error().empty() && p.state() != rpc::PHASE_SUCCEEDED) {
    absl::StrAppend(&out, ": ", p.error());
  }
  return out;
}

void Show(const rpc::SagaRecord& r) {
  const int64_t now = r.now_ms();
  std::cout << "saga " << r.id() << " (" << r.definition()
            << "): " << Name(r.state()) << ", version " << r.version()
            << ", fence " << r.fence() << "\n";
  std::cout << "created " << Ago(now, r.created_ms()) << ", updated "
            << Ago(now, r.updated_ms());
  if (r.deadline_ms() > 0) {
    std::cout << ", deadline in " << (r.deadline_ms() - now) / 1000.0 << " s";
  }
  std::cout << "\n";
  if (!r.reason().empty()) std::cout << "compensating: " << r.reason() << "\n";
  if (!r.incident().empty()) std::cout << "incident: " << r.incident() << "\n";
  for (int i = 0; i < r.steps_size(); ++i) {
    const rpc::SagaStep& s = r.steps(i);
    std::cout << "  " << i + 1 << " " << s.name() << " [" << Name(s.kind())
              << "]\t" << Phase(s.forward());
    if (s.kind() == rpc::STEP_COMPENSABLE &&
        (s.compensation().attempts() > 0 ||
         s.compensation().state() != rpc::PHASE_PENDING)) {
      std::cout << "\tundo: " << Phase(s.compensation());
    }
    if (!s.forward().output().empty()) {
      std::cout << "\toutput: \"" << absl::CHexEscape(s.forward().output())
                << "\"";
    }
    std::cout << "\n";
  }
}

}  // namespace

SagaCommands::SagaCommands(CLI::App& app) {
  auto* saga = app.add_subcommand(
      "saga",
      "sagas: see them, and resolve one stopped in an incident (a step "
      "after the pivot, or a compensation, that failed for good)");
  saga->require_subcommand(1);
  list_ = saga->add_subcommand(
      "list", "sagas of every shard: ID STATE DEFINITION STEP UPDATED");
  list_
      ->add_option("--state", states_,
                   "only these: running, compensating, done, compensated, "
                   "incident (repeat or comma-separate)")
      ->delimiter(',');
  list_->add_option("--idle", idle_,
                    "only sagas unchanged for this long (e.g. 30s)");
  list_->add_option("--limit", limit_, "at most this many (0: all)");
  show_ = saga->add_subcommand(
      "show", "a saga's state, steps, attempts and errors (exit 1 if none)");
  show_->add_option("id", id_)->required();
  retry_ = saga->add_subcommand(
      "retry",
      "give the failed step (or compensation) of saga ID its attempts "
      "again; a coordinator (SagaRunner::ResumeAll) runs it on");
  skip_ = saga->add_subcommand(
      "skip",
      "leave the failed step (or compensation) of saga ID undone and go on");
  mark_done_ = saga->add_subcommand(
      "mark-done",
      "record that the failed step (or compensation) of saga ID was done by "
      "hand, and go on");
  mark_done_->add_option("--output", output_, "the step's output, if any");
  for (auto* c : {retry_, skip_, mark_done_}) {
    c->add_option("id", id_)->required();
  }
}

std::optional<int> SagaCommands::Run(client::Client& c, const Output& out) {
  if (*list_) {
    std::vector<rpc::SagaState> states;
    for (const std::string& s : states_) {
      rpc::SagaState st;
      if (!rpc::SagaState_Parse("SAGA_" + absl::AsciiStrToUpper(s), &st)) {
        return Fail(absl::InvalidArgumentError(absl::StrCat(
            "unknown saga state \"", s,
            "\" (running, compensating, done, compensated, incident)")));
      }
      states.push_back(st);
    }
    auto idle = ParseDuration(idle_);
    if (!idle.ok()) return Fail(idle.status());
    std::vector<rpc::ResponseHeader> headers;
    auto r = c.SagaList(states, *idle, limit_, rpc::LINEARIZABLE, &headers);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print({{"sagas", ToJson(*r)}}, headers);
      return kExitOk;
    }
    for (const rpc::SagaRecord& s : *r) std::cout << Line(s) << "\n";
    return kExitOk;
  }
  if (*show_) {
    auto r = c.SagaGet(id_);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else {
      Show(*r);
    }
    return kExitOk;
  }
  if (*retry_) return Resolve(c, rpc::SAGA_RETRY, out);
  if (*skip_) return Resolve(c, rpc::SAGA_SKIP, out);
  if (*mark_done_) return Resolve(c, rpc::SAGA_MARK_DONE, out);
  return std::nullopt;
}

int SagaCommands::Resolve(client::Client& c, rpc::SagaAction action,
                          const Output& out) {
  auto r = c.SagaGet(id_);
  if (!r.ok()) return Fail(r.status());
  if (r->state() != rpc::SAGA_INCIDENT) {
    return Fail(absl::FailedPreconditionError(
        absl::StrCat("saga \"", id_, "\" is ", Name(r->state()),
                     ", not in an incident: nothing to resolve")));
  }
  rpc::SagaTransitionRequest req;
  req.set_id(id_);
  req.set_version(r->version());
  req.set_action(action);
  req.set_step(r->incident_step());
  req.set_compensation(r->incident_compensation());
  req.set_output(output_);
  auto done = c.SagaTransition(req);
  if (!done.ok()) return Fail(done.status());
  if (out.json()) {
    out.Print(*done);
  } else {
    std::cout << Line(done->record()) << "\n";
  }
  return kExitOk;
}

}  // namespace tally::kvctl
