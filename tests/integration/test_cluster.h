#ifndef TALLY_TESTS_INTEGRATION_TEST_CLUSTER_H_
#define TALLY_TESTS_INTEGRATION_TEST_CLUSTER_H_

#include <chrono>
#include <string>

#include "client/client.h"

namespace tally::testing {

// A three-node cluster of real kvd processes on 127.0.0.1, run through
// deploy/local-cluster.sh in a fresh temporary directory on random ports.
// The destructor stops every node it started and removes the directory; if
// the process dies first (a crash, a timeout's kill), the script's watchdog
// stops the nodes within about a second (TALLY_OWNER_PID) and the directory
// stays, logs included.
class TestCluster {
 public:
  // `initial_ranges`: split points, e.g. "m,t" (see kvd --initial-ranges);
  // `kvd_args`: more flags for every node.
  explicit TestCluster(std::string initial_ranges = "",
                       std::string kvd_args = "");
  ~TestCluster();
  TestCluster(const TestCluster&) = delete;
  TestCluster& operator=(const TestCluster&) = delete;

  // Starts (or restarts) every node that is down; false if no leader came
  // up or a node does not serve within 10 s.
  bool Start();
  // kill -9 of node "n<id>"; returns once the process is gone.
  void Kill(int id);
  // kill -9 of every node at once; returns once they are all gone.
  void KillAll();
  // Waits up to `timeout` for process `pid` to exit; false if it still runs.
  static bool WaitForExit(int pid, std::chrono::milliseconds timeout);
  // Sends `signal` to node "n<id>" (SIGSTOP pauses it, SIGCONT resumes it).
  void Signal(int id, int signal);
  // The process id of node "n<id>", 0 if it is not running.
  int Pid(int id) const;
  // What node "n<id>" wrote to its stdout and stderr (its log).
  std::string LogPath(int id) const;
  // Node "n<id>"'s --data-dir.
  std::string DataDir(int id) const;
  // The node leading `group`, 0 if none is known.
  int Leader(uint64_t group);
  client::ClientOptions ClientOptions() const;

 private:
  int Script(const std::string& cmd) const;

  std::string dir_;
  int port_base_;
  std::string initial_ranges_;
  std::string kvd_args_;
};

}  // namespace tally::testing

#endif  // TALLY_TESTS_INTEGRATION_TEST_CLUSTER_H_
