#include "tests/integration/test_cluster.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"

namespace tally::testing {

namespace {
const char* Env(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}
}  // namespace

TestCluster::TestCluster(std::string initial_ranges, std::string kvd_args)
    : initial_ranges_(std::move(initial_ranges)),
      kvd_args_(std::move(kvd_args)) {
  char tmpl[] = "/tmp/tally-it-XXXXXX";
  dir_ = mkdtemp(tmpl);
  // Below Linux's ephemeral ports (32768 and up), which outgoing
  // connections, the cluster's own included, may hold: the nodes use
  // base+1..base+203.
  port_base_ = 20000 + std::random_device{}() % 12000;
}

TestCluster::~TestCluster() {
  Script("stop");
  std::filesystem::remove_all(dir_);
}

int TestCluster::Script(const std::string& cmd) const {
  // The nodes keep the kernel's clock when a test runs under libfaketime
  // (a client's wall clock set apart from the servers': without FAKETIME,
  // the library the nodes inherit in LD_PRELOAD fakes nothing; LD_PRELOAD
  // itself stays, as slow_disk_test passes its own library through it),
  // and stop once this process is gone, even if it crashed or was killed
  // before the destructor ran.
  const std::string line = absl::StrCat(
      "env -u FAKETIME -u FAKETIME_TIMESTAMP_FILE TALLY_BIN=",
      Env("TALLY_BIN", "build/bin"), " TALLY_OWNER_PID=", ::getpid(),
      " TALLY_PORT_BASE=", port_base_,
      " TALLY_INITIAL_RANGES=", initial_ranges_, " TALLY_KVD_ARGS='", kvd_args_,
      "' ", Env("TALLY_ROOT", "."), "/deploy/local-cluster.sh ", cmd, " ", dir_,
      " >/dev/null");
  return std::system(line.c_str());
}

bool TestCluster::Start() {
  if (Script("start") != 0) return false;
  // The script is done once the cluster answers; a node it restarted may
  // still be opening its stores. Wait until each one serves.
  absl::StatusOr<std::unique_ptr<client::Client>> c =
      client::Client::Connect(ClientOptions());
  if (!c.ok()) return false;
  const auto until =
      std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (const std::string& ep : (*c)->endpoints()) {
    while (!(*c)->Health(ep).ok()) {
      if (std::chrono::steady_clock::now() > until) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return true;
}

int TestCluster::Pid(int id) const {
  std::ifstream in(absl::StrCat(dir_, "/n", id, ".pid"));
  int pid = 0;
  return in >> pid && pid > 0 ? pid : 0;
}

std::string TestCluster::LogPath(int id) const {
  return absl::StrCat(dir_, "/n", id, ".log");
}

void TestCluster::Signal(int id, int signal) {
  if (const int pid = Pid(id); pid > 0) ::kill(pid, signal);
}

std::string TestCluster::DataDir(int id) const {
  return absl::StrCat(dir_, "/n", id);
}

bool TestCluster::WaitForExit(int pid, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (pid > 0 && ::kill(pid, 0) == 0) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

void TestCluster::Kill(int id) {
  const int pid = Pid(id);
  Signal(id, SIGKILL);
  WaitForExit(pid, std::chrono::seconds(10));
}

void TestCluster::KillAll() {
  int pids[3];
  for (int id = 1; id <= 3; ++id) pids[id - 1] = Pid(id);
  for (int id = 1; id <= 3; ++id) Signal(id, SIGKILL);
  for (const int pid : pids) WaitForExit(pid, std::chrono::seconds(10));
}

int TestCluster::Leader(uint64_t group) {
  absl::StatusOr<std::unique_ptr<client::Client>> c =
      client::Client::Connect(ClientOptions());
  if (!c.ok()) return 0;
  for (const std::string& ep : (*c)->endpoints()) {
    absl::StatusOr<rpc::StatusResponse> s = (*c)->Status(ep);
    if (!s.ok()) continue;
    for (const auto& g : s->groups()) {
      if (g.group() == group && g.role() == "LEADER") {
        return static_cast<int>(s->node());
      }
    }
  }
  return 0;
}

client::ClientOptions TestCluster::ClientOptions() const {
  client::ClientOptions o;
  o.tls = rpc::TlsFilesFromEnv();  // a TLS run of the suite (make test-tls)
  for (int i = 1; i <= 3; ++i) {
    o.endpoints.push_back(absl::StrCat("127.0.0.1:", port_base_ + i));
  }
  return o;
}

}  // namespace tally::testing
