#include "cmd/kvctl/idem_commands.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <iostream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/fingerprint.h"
#include "cmd/kvctl/child.h"
#include "cmd/kvctl/duration.h"
#include "cmd/kvctl/output.h"
#include "util/waker.h"

namespace tally::kvctl {

namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

// As client::LockSession reckons a lease: a claim renewed by a call sent at
// t holds until t + TTL x (1 - drift) - margin, by this machine's clock.
constexpr double kDrift = 0.02;
constexpr milliseconds kMargin(100);
// The most a record stores (IdemCompleteRequest.response).
constexpr size_t kMaxResponseBytes = 1 << 20;

std::string Describe(const std::string& scope, const std::string& key) {
  return absl::StrCat("idempotency key \"", key, "\" of scope \"", scope, "\"");
}

// The command line, hashed: the same command under the same key is the same
// request.
std::string FingerprintOf(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& a : argv) line.append(a.data(), a.size() + 1);
  return client::Fingerprint(line);
}

// An owner's claim, renewed every third of its TTL on a thread of its own
// until Stop (or destruction).
class Claim {
 public:
  // `sent`: when the Begin that started it was sent.
  Claim(client::Client* c, std::string scope, std::string key, uint64_t token,
        milliseconds ttl, SteadyClock::time_point sent)
      : c_(c),
        scope_(std::move(scope)),
        key_(std::move(key)),
        token_(token),
        ttl_(ttl),
        holds_until_(HoldsUntil(sent)),
        renewer_([this] { Renew(); }) {}
  ~Claim() { Stop(); }

  // Why the claim is lost, or "" while it holds: a renewal was refused, or
  // none was confirmed in time.
  std::string Lost() {
    absl::MutexLock l(&mu_);
    if (lost_.empty() && SteadyClock::now() >= holds_until_) {
      lost_ = "no renewal confirmed within the claim's TTL";
    }
    return lost_;
  }
  void Stop() {
    sleep_.Stop();
    if (renewer_.joinable()) renewer_.join();
  }

 private:
  SteadyClock::time_point HoldsUntil(SteadyClock::time_point sent) const {
    return sent + ttl_ - kMargin -
           std::chrono::duration_cast<milliseconds>(ttl_ * kDrift);
  }
  void Renew() {
    // By the steady clock, as the claim is reckoned (util::Waker).
    while (!sleep_.SleepFor(ttl_ / 3)) {
      const auto sent = SteadyClock::now();
      auto r = c_->IdemRenew(scope_, key_, token_, ttl_);
      absl::MutexLock l(&mu_);
      if (r.ok()) {
        holds_until_ = HoldsUntil(sent);
      } else if (absl::IsFailedPrecondition(r.status())) {
        lost_ = std::string(r.status().message());
      }
      if (!lost_.empty()) return;  // refused, or found lost by Lost()
    }
  }

  client::Client* const c_;
  const std::string scope_, key_;
  const uint64_t token_;
  const milliseconds ttl_;
  absl::Mutex mu_;
  SteadyClock::time_point holds_until_ ABSL_GUARDED_BY(mu_);
  std::string lost_ ABSL_GUARDED_BY(mu_);
  util::Waker sleep_;
  std::thread renewer_;
};

// STATE, attempts, age, claim left (in progress) and expiry, tab-separated.
std::string Summary(const rpc::IdemRecord& rec) {
  std::string out =
      absl::StrCat(rpc::IdemState_Name(rec.state()).substr(5), "\tattempts ",
                   rec.attempts(), "\tage ", rec.age_ms(), " ms");
  if (rec.state() == rpc::IDEM_IN_PROGRESS) {
    absl::StrAppend(&out, "\tclaim left ", rec.claim_remaining_ms(), " ms");
  }
  absl::StrAppend(&out, "\texpires in ", rec.expires_in_ms(), " ms");
  return out;
}

}  // namespace

IdemCommands::IdemCommands(CLI::App& app) {
  auto* idem = app.add_subcommand(
      "idem",
      "idempotency keys: kvctl idem run SCOPE KEY -- CMD [ARGS...] runs CMD "
      "at most once per key and prints its output, the first run's again "
      "for every later one. Or one of the commands below");
  idem->require_subcommand(1);
  run_ = idem->add_subcommand(
      "run",
      "run CMD once for KEY: if it already ran, print its stored output "
      "(exit 0, or 1 if it failed and --cache-failure kept it); if it runs "
      "elsewhere now, exit 3; if KEY was used for another command, exit 2. "
      "CMD sees $TALLY_IDEM_TOKEN and is stopped (TERM, then KILL) if the "
      "claim is lost; a failure is not kept unless --cache-failure");
  run_->add_option("scope", scope_, "e.g. payments/")->required();
  run_->add_option("key", key_, "the idempotency key")->required();
  run_->add_option("command", command_, "after --: the command to run")
      ->required();
  run_->add_option("--claim-ttl", claim_ttl_,
                   "how long the claim holds without renewal (kvctl renews "
                   "it every third)");
  run_->add_option("--retention", retention_, "how long the record is kept");
  run_->add_option("--fingerprint", fingerprint_,
                   "what identifies the request (default: the command line)");
  run_->add_flag("--cache-failure", cache_failure_,
                 "keep a failure (nonzero exit) like a result: later runs "
                 "print its output and exit 1");
  run_->add_option("--kill-after", kill_after_,
                   "after the claim is lost: KILL this long after TERM");
  get_ = idem->add_subcommand(
      "get", "KEY's record: state, attempts, age, time left (exit 1 if none)");
  get_->add_option("scope", scope_)->required();
  get_->add_option("key", key_)->required();
  list_ = idem->add_subcommand(
      "list", "SCOPE's records, every shard's: KEY STATE attempts age expiry");
  list_->add_option("scope", scope_)->required();
  list_->add_option("--prefix", prefix_, "only keys starting with this");
  list_->add_option("--limit", limit_, "at most this many (0: all)");
  purge_ = idem->add_subcommand(
      "purge",
      "remove KEY's record whatever its state: the next run starts afresh, "
      "an owner in progress can no longer complete (exit 1 if none)");
  purge_->add_option("scope", scope_)->required();
  purge_->add_option("key", key_)->required();
}

std::optional<int> IdemCommands::Run(client::Client& c, const Output& out) {
  if (*run_) return RunOnce(c);
  if (*get_) {
    auto r = c.IdemGet(scope_, key_);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else if (!r->found()) {
      std::cerr << "kvctl: no record of " << Describe(scope_, key_) << "\n";
    } else {
      std::cout << Summary(r->record()) << "\n";
    }
    return r->found() ? kExitOk : kExitNo;
  }
  if (*list_) {
    std::vector<rpc::ResponseHeader> headers;
    auto r = c.IdemList(scope_, prefix_, limit_, rpc::LINEARIZABLE, &headers);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print({{"records", ToJson(*r)}}, headers);
      return kExitOk;
    }
    for (const rpc::IdemListEntry& e : *r) {
      std::cout << e.key() << "\t" << Summary(e.record()) << "\n";
    }
    return kExitOk;
  }
  if (*purge_) {
    auto r = c.IdemPurge(scope_, key_);
    if (!r.ok()) return Fail(r.status());
    if (!*r) {
      std::cerr << "kvctl: no record of " << Describe(scope_, key_) << "\n";
      return kExitNo;
    }
    out.Ok({{"scope", scope_}, {"key", key_}, {"purged", true}});
    return kExitOk;
  }
  return std::nullopt;
}

int IdemCommands::RunOnce(client::Client& c) {
  auto ttl = ParseDuration(claim_ttl_);
  if (!ttl.ok()) return Fail(ttl.status());
  auto retention = ParseDuration(retention_);
  if (!retention.ok()) return Fail(retention.status());
  auto kill_after = ParseDuration(kill_after_);
  if (!kill_after.ok()) return Fail(kill_after.status());

  rpc::IdemBeginRequest req;
  req.set_scope(scope_);
  req.set_key(key_);
  req.set_fingerprint(fingerprint_.empty() ? FingerprintOf(command_)
                                           : fingerprint_);
  req.set_claim_ttl_ms(ttl->count());
  req.set_retention_ms(retention->count());
  const auto sent = SteadyClock::now();
  auto begun = c.IdemBegin(req);
  if (!begun.ok()) return Fail(begun.status());
  const rpc::IdemRecord& rec = begun->record();
  switch (begun->outcome()) {
    case rpc::IdemBeginResponse::MISMATCH:
      std::cerr << "kvctl: " << Describe(scope_, key_)
                << " was used for another request " << rec.age_ms()
                << " ms ago (its fingerprint differs)\n";
      return kExitBadInput;
    case rpc::IdemBeginResponse::IN_PROGRESS:
      std::cerr << "kvctl: " << Describe(scope_, key_)
                << " is in progress elsewhere (attempt " << rec.attempts()
                << "); its claim runs out in " << begun->retry_after_ms()
                << " ms: retry later\n";
      return kExitUnavailable;
    case rpc::IdemBeginResponse::FINISHED:
      std::cout << rec.response() << std::flush;
      return rec.state() == rpc::IDEM_COMPLETED ? kExitOk : kExitNo;
    default:
      break;
  }
  const uint64_t token = begun->token();

  Claim claim(&c, scope_, key_, token, *ttl, sent);
  int out[2];
  if (pipe(out) != 0) {
    return Fail(absl::InternalError(absl::StrCat("pipe: ", strerror(errno))));
  }
  CatchSignals();
  absl::StatusOr<pid_t> spawned = Spawn(
      command_, {{"TALLY_IDEM_TOKEN", absl::StrCat(token)}}, out[1], out[0]);
  if (!spawned.ok()) return Fail(spawned.status());
  const pid_t child = *spawned;
  close(out[1]);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  std::string output;
  bool too_long = false;
  std::string why_lost;
  SteadyClock::time_point kill_at;
  int status = 0;
  bool exited = false;
  bool open = true;
  while (!exited || open) {
    if (open) {
      pollfd p{out[0], POLLIN, 0};
      poll(&p, 1, 20);
      char buf[65536];
      ssize_t n;
      while ((n = read(out[0], buf, sizeof(buf))) > 0) {
        if (output.size() + n > kMaxResponseBytes) too_long = true;
        if (!too_long) output.append(buf, n);
      }
      if (n == 0) open = false;
    } else {
      std::this_thread::sleep_for(milliseconds(20));
    }
    if (!exited) exited = waitpid(child, &status, WNOHANG) == child;
    if (int sig = TakeSignal(); sig != 0 && !exited) kill(child, sig);
    if (why_lost.empty() && !exited) {
      why_lost = claim.Lost();
      if (!why_lost.empty()) {
        std::cerr << "kvctl: the claim on " << Describe(scope_, key_)
                  << " is lost (" << why_lost << "); stopping the command\n";
        kill(child, SIGTERM);
        kill_at = SteadyClock::now() + *kill_after;
      }
    }
    if (!why_lost.empty() && !exited && SteadyClock::now() >= kill_at) {
      kill(child, SIGKILL);
    }
  }
  close(out[0]);
  claim.Stop();
  if (!why_lost.empty()) return kExitNo;
  const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  const int code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (too_long) {
    std::cerr << "kvctl: the command's output exceeds " << kMaxResponseBytes
              << " bytes and cannot be stored; the key is released\n";
    (void)c.IdemFail(scope_, key_, token, /*retryable=*/true, "");
    return ok ? kExitNo : code;
  }
  absl::StatusOr<rpc::IdemFinishResponse> done =
      ok ? c.IdemComplete(scope_, key_, token, output)
         : c.IdemFail(scope_, key_, token, !cache_failure_, output);
  if (!done.ok()) {
    if (absl::IsFailedPrecondition(done.status())) {
      std::cerr << "kvctl: this run's result was not stored: "
                << done.status().message() << "\n";
      return kExitNo;
    }
    return Fail(done.status());
  }
  std::cout << output << std::flush;
  return code;
}

}  // namespace tally::kvctl
