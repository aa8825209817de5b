#ifndef TALLY_CMD_KVCTL_CHILD_H_
#define TALLY_CMD_KVCTL_CHILD_H_

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace tally::kvctl {

// The command kvctl runs on a user's behalf (`kvctl lock`, `kvctl idem
// run`): kvctl outlives it, passes on the signals it receives, and decides
// what happens once it exits.

inline std::atomic<int> g_forwarded_signal{0};

// From now on INT, TERM and HUP are kept for TakeSignal instead of ending
// kvctl.
inline void CatchSignals() {
  auto on = [](int sig) { g_forwarded_signal = sig; };
  signal(SIGINT, on);
  signal(SIGTERM, on);
  signal(SIGHUP, on);
}

// The signal caught since the last call, 0 if none.
inline int TakeSignal() { return g_forwarded_signal.exchange(0); }
// Whether a signal was caught (and not taken).
inline bool SignalCaught() { return g_forwarded_signal != 0; }

// Runs `argv` with `env` added to kvctl's environment and, if `stdout_fd` is
// not -1, its standard output on that descriptor (`close_fd`, if not -1,
// closed in the child). Returns the child's pid.
inline absl::StatusOr<pid_t> Spawn(
    std::vector<std::string> argv,
    const std::vector<std::pair<std::string, std::string>>& env,
    int stdout_fd = -1, int close_fd = -1) {
  const pid_t child = fork();
  if (child < 0) {
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (child > 0) return child;
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  signal(SIGHUP, SIG_DFL);
  if (stdout_fd != -1) {
    dup2(stdout_fd, STDOUT_FILENO);
    close(stdout_fd);
  }
  if (close_fd != -1) close(close_fd);
  for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  execvp(args[0], args.data());
  std::cerr << "kvctl: cannot run " << argv[0] << ": " << strerror(errno)
            << "\n";
  _exit(127);
}

}  // namespace tally::kvctl

#endif  // TALLY_CMD_KVCTL_CHILD_H_
