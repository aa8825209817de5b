#include "cmd/kvctl/lock_commands.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/election.h"
#include "client/lock_session.h"
#include "cmd/kvctl/child.h"
#include "cmd/kvctl/duration.h"
#include "cmd/kvctl/output.h"

namespace tally::kvctl {

namespace {

using std::chrono::milliseconds;

std::string Holder(const rpc::LockHolder& h) {
  return absl::StrCat("token ", h.token(), ", lease ", h.lease(),
                      ", generation ", h.generation(), ", held ", h.held_ms(),
                      " ms",
                      h.value().empty() ? "" : ", value \"" + h.value() + "\"");
}

}  // namespace

LockCommands::LockCommands(CLI::App& app) {
  auto* lease = app.add_subcommand(
      "lease",
      "leases: a TTL kept alive by its holder; its locks are "
      "released when it ends");
  lease->require_subcommand(1);
  lease_grant_ = lease->add_subcommand("grant", "grant a lease; prints its id");
  lease_grant_->add_option("ttl", ttl_, "e.g. 10s, 1500ms")->required();
  lease_revoke_ = lease->add_subcommand(
      "revoke", "end lease ID now (exit 1 if it has ended)");
  lease_keep_alive_ = lease->add_subcommand(
      "keep-alive",
      "keep leases ID... alive, with one message for all, until interrupted "
      "(exit 1 once one has ended)");
  lease_keep_alive_->add_option("ids", leases_, "at most 1000")->required();
  lease_keep_alive_->add_flag("--once", once_, "renew once and exit");
  lease_ttl_ = lease->add_subcommand(
      "ttl", "lease ID's TTL and time left (exit 1 if it has ended)");
  for (auto* c : {lease_revoke_, lease_ttl_}) {
    c->add_option("id", lease_)->required();
  }
  lease_list_ = lease->add_subcommand(
      "list", "every live lease: its id, TTL and time left");

  lock_ = app.add_subcommand(
      "lock",
      "kvctl lock NAME -- CMD [ARGS...]: run CMD holding lock NAME, with the "
      "fence token in $TALLY_FENCE_TOKEN; CMD is stopped (TERM, then KILL) "
      "if the lock is lost. Or one of the commands below");
  lock_->require_subcommand(0, 1);
  lock_->add_option("name", lock_name_, "the lock to hold");
  lock_->add_option("command", command_, "after --: the command to run");
  lock_->add_option("--ttl", ttl_, "the lease's TTL");
  lock_->add_option("--wait", wait_,
                    "give up after this long (default: wait as long as "
                    "--timeout-ms allows)");
  lock_->add_option("--kill-after", kill_after_,
                    "after the lock is lost: KILL this long after TERM");
  lock_acquire_ = lock_->add_subcommand(
      "acquire",
      "take lock NAME for lease --lease; prints the fence token (exit 1 with "
      "--try if held, 3 if the wait ran out)");
  lock_acquire_->add_option("name", name_)->required();
  lock_acquire_->add_option("--lease", lease_, "a live lease")->required();
  lock_acquire_->add_flag("--try", try_, "do not wait");
  lock_acquire_->add_option("--wait", wait_, "wait this long (default 10s)");
  lock_release_ = lock_->add_subcommand(
      "release", "release NAME if TOKEN holds it (exit 1 if not)");
  lock_release_->add_option("name", name_)->required();
  lock_release_->add_option("token", token_)->required();
  lock_inspect_ = lock_->add_subcommand(
      "inspect", "lock NAME's holder, token, lease time left and waiters");
  lock_inspect_->add_option("name", name_)->required();

  elect_ = app.add_subcommand(
      "elect",
      "kvctl elect NAME VALUE: campaign in election NAME as VALUE; once "
      "elected, print the leader's token and lead until interrupted (then "
      "resign) or until the lease is lost (exit 1). With --listen: print the "
      "leader (VALUE TOKEN, or \"no leader\") now and at every change");
  elect_->add_option("name", name_)->required();
  elect_->add_option("value", value_);
  elect_->add_flag("--listen", listen_, "observe instead of campaigning");
  elect_->add_option("--ttl", ttl_, "the lease's TTL");
  elect_->add_option("--wait", wait_, "give up after this long (default 1h)");

  auto* fence = app.add_subcommand(
      "fence", "fence floors: writes to a prefix must carry a lock's token");
  fence->require_subcommand(1);
  fence_bind_ = fence->add_subcommand(
      "bind",
      "from now on, every write to a key under PREFIX must carry a fence "
      "token (put --fence-token) no lower than the highest one accepted");
  fence_bind_->add_option("prefix", prefix_)->required();
  fence_bind_->add_option("lock", name_, "the lock whose tokens it takes")
      ->required();
  fence_unbind_ = fence->add_subcommand("unbind", "remove PREFIX's fence");
  fence_unbind_->add_option("prefix", prefix_)->required();
}

std::optional<int> LockCommands::Run(client::Client& c, const Output& out) {
  if (*lease_grant_) {
    auto ttl = ParseDuration(ttl_);
    if (!ttl.ok()) return Fail(ttl.status());
    auto r = c.GrantLease(*ttl);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else {
      std::cout << r->id() << "\n";
    }
    return kExitOk;
  }
  if (*lease_revoke_) {
    if (absl::Status st = c.RevokeLease(lease_); !st.ok()) return Fail(st);
    out.Ok({{"lease", JsonInt(lease_)}, {"revoked", true}});
    return kExitOk;
  }
  if (*lease_keep_alive_) {
    // Renewed every third of the shortest TTL among them.
    int64_t shortest_ms = INT64_MAX;
    for (uint64_t id : leases_) {
      auto ttl = c.LeaseTimeToLive(id);
      if (!ttl.ok()) return Fail(ttl.status());
      shortest_ms = std::min(shortest_ms, ttl->ttl_ms());
    }
    while (true) {
      auto left = c.KeepAlive(leases_);
      if (!left.ok()) {
        // Kept trying within the client's timeout: the leases may still
        // live, but this process cannot vouch for them.
        return Fail(left.status());
      }
      int rc = kExitOk;
      nlohmann::json kept = nlohmann::json::array();
      for (size_t i = 0; i < leases_.size(); ++i) {
        kept.push_back(
            {{"lease", JsonInt(leases_[i])}, {"ttl_ms", JsonInt((*left)[i])}});
        if ((*left)[i] == 0) {
          std::cerr << "kvctl: lease " << leases_[i] << " has ended\n";
          rc = kExitNo;
        } else if (!out.json()) {
          std::cout << "lease " << leases_[i] << " kept alive, TTL "
                    << (*left)[i] << " ms" << std::endl;
        }
      }
      if (out.json()) out.Print({{"leases", kept}});
      if (rc != kExitOk || once_) return rc;
      std::this_thread::sleep_for(milliseconds(shortest_ms / 3));
    }
  }
  if (*lease_ttl_) {
    auto r = c.LeaseTimeToLive(lease_);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else {
      std::cout << "lease " << r->id() << ": TTL " << r->ttl_ms() << " ms, "
                << r->remaining_ms() << " ms left\n";
    }
    return kExitOk;
  }
  if (*lease_list_) {
    auto r = c.ListLeases();
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
      return kExitOk;
    }
    Table t({"ID", "TTL", "LEFT"});
    for (const auto& l : r->leases()) {
      t.Add({absl::StrCat(l.id()), absl::StrCat(l.ttl_ms(), " ms"),
             absl::StrCat(l.remaining_ms(), " ms")});
    }
    t.Print(std::cout);
    return kExitOk;
  }
  if (*lock_acquire_) {
    auto wait =
        try_ ? milliseconds(0) : ParseDuration(wait_.empty() ? "10s" : wait_);
    if (!wait.ok()) return Fail(wait.status());
    auto r = c.Acquire(name_, lease_, *wait);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else if (r->acquired()) {
      std::cout << r->holder().token() << "\n";
    } else {
      std::cerr << "kvctl: lock \"" << name_ << "\" is held ("
                << Holder(r->holder()) << ")\n";
    }
    return r->acquired() ? kExitOk : kExitNo;
  }
  if (*lock_release_) {
    if (absl::Status st = c.Release(name_, token_); !st.ok()) return Fail(st);
    out.Ok({{"lock", name_}, {"token", JsonInt(token_)}, {"released", true}});
    return kExitOk;
  }
  if (*lock_inspect_) {
    auto r = c.Inspect(name_);
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else if (!r->has_holder()) {
      std::cout << "free\n";
    } else {
      std::cout << "held: " << Holder(r->holder()) << ", lease left "
                << r->lease_remaining_ms() << " ms\n"
                << "waiting leases: " << absl::StrJoin(r->waiters(), ", ")
                << "\n";
    }
    return kExitOk;
  }
  if (*fence_bind_ || *fence_unbind_) {
    auto r = c.BindFence(prefix_, *fence_bind_ ? name_ : "");
    if (!r.ok()) return Fail(r.status());
    if (out.json()) {
      out.Print(*r);
    } else {
      std::cout << "OK\n";
    }
    return kExitOk;
  }
  if (*lock_) return RunLocked(c);
  if (*elect_) return listen_ ? Listen(c, out) : RunElected(c, out);
  return std::nullopt;
}

int LockCommands::Listen(client::Client& c, const Output& out) {
  absl::Status st = c.Observe(name_, [&](const rpc::ObserveResponse& r) {
    if (out.json()) {
      out.Print(r);
    } else if (r.has_holder()) {
      std::cout << r.holder().value() << "\t" << r.holder().token()
                << std::endl;
    } else {
      std::cout << "no leader" << std::endl;
    }
    return true;
  });
  if (!st.ok()) return Fail(st);
  return kExitOk;
}

int LockCommands::RunElected(client::Client& c, const Output& out) {
  if (value_.empty()) {
    std::cerr << "kvctl: usage: kvctl elect NAME VALUE (or --listen)\n";
    return kExitBadInput;
  }
  auto ttl = ParseDuration(ttl_);
  if (!ttl.ok()) return Fail(ttl.status());
  auto wait = ParseDuration(wait_.empty() ? "1h" : wait_);
  if (!wait.ok()) return Fail(wait.status());
  client::LockSession::Options o;
  o.ttl = *ttl;
  auto session = client::LockSession::Open(&c, o);
  if (!session.ok()) return Fail(session.status());
  client::Election election(&c, session->get(), name_);
  auto token = election.Campaign(value_, *wait);
  if (!token.ok()) return Fail(token.status());
  // Leading: an interrupt or TERM resigns, so that the next candidate
  // leads at once rather than after the lease's TTL.
  CatchSignals();
  if (out.json()) {
    out.Print({{"name", name_}, {"value", value_}, {"token", JsonInt(*token)}});
  } else {
    std::cout << "elected: " << name_ << " = " << value_ << ", token " << *token
              << std::endl;
  }
  while (!SignalCaught() && !(*session)->lost()) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  if ((*session)->lost()) {
    std::cerr << "kvctl: leadership of \"" << name_ << "\" lost (lease "
              << (*session)->lease() << " not confirmed alive)\n";
    return kExitNo;
  }
  if (absl::Status st = election.Resign(); !st.ok()) return Fail(st);
  return kExitOk;
}

int LockCommands::RunLocked(client::Client& c) {
  if (lock_name_.empty() || command_.empty()) {
    std::cerr << "kvctl: usage: kvctl lock NAME -- CMD [ARGS...]\n";
    return kExitBadInput;
  }
  auto ttl = ParseDuration(ttl_);
  if (!ttl.ok()) return Fail(ttl.status());
  auto kill_after = ParseDuration(kill_after_);
  if (!kill_after.ok()) return Fail(kill_after.status());
  client::LockSession::Options o;
  o.ttl = *ttl;
  auto session = client::LockSession::Open(&c, o);
  if (!session.ok()) return Fail(session.status());
  // Without --wait, as long as the client's timeout allows.
  absl::StatusOr<milliseconds> wait = milliseconds(0);
  if (!wait_.empty()) wait = ParseDuration(wait_);
  if (!wait.ok()) return Fail(wait.status());
  auto grant = (*session)->Acquire(
      lock_name_, wait_.empty() ? milliseconds(3'600'000) : *wait);
  if (!grant.ok()) return Fail(grant.status());
  if (!grant->acquired()) {
    std::cerr << "kvctl: lock \"" << lock_name_ << "\" is held ("
              << Holder(grant->holder()) << ")\n";
    return kExitNo;
  }
  const uint64_t token = grant->holder().token();
  // kvctl outlives its command: an interrupt or TERM goes to the command,
  // and kvctl releases the lock once it has exited.
  CatchSignals();
  absl::StatusOr<pid_t> spawned =
      Spawn(command_, {{"TALLY_FENCE_TOKEN", absl::StrCat(token)},
                       {"TALLY_LOCK_NAME", lock_name_},
                       {"TALLY_LEASE", absl::StrCat((*session)->lease())}});
  if (!spawned.ok()) return Fail(spawned.status());
  const pid_t child = *spawned;
  int status = 0;
  bool lost = false;
  std::chrono::steady_clock::time_point kill_at;
  while (waitpid(child, &status, WNOHANG) == 0) {
    if (int sig = TakeSignal(); sig != 0) kill(child, sig);
    if (!lost && (*session)->lost()) {
      lost = true;
      std::cerr << "kvctl: lock \"" << lock_name_ << "\" lost (lease "
                << (*session)->lease()
                << " not confirmed alive); stopping the command\n";
      kill(child, SIGTERM);
      kill_at = std::chrono::steady_clock::now() + *kill_after;
    }
    if (lost && std::chrono::steady_clock::now() >= kill_at) {
      kill(child, SIGKILL);
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  if (!lost) {
    if (absl::Status st = (*session)->Release(lock_name_, token); !st.ok()) {
      std::cerr << "kvctl: releasing lock \"" << lock_name_
                << "\": " << st.message() << "\n";
    }
  }
  session->reset();  // revokes the lease
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

}  // namespace tally::kvctl
