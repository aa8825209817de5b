// Loaded with LD_PRELOAD: makes fsync and fdatasync slow, as a failing or
// overloaded disk makes them, for tests and benchmarks of a slow node. The
// delay, in milliseconds, is read from the file $TALLY_SLOW_SYNC.<pid>
// (none while it does not exist), at most every 100 ms: a test starts every
// node with the same environment, then slows one of them, and speeds it up
// again, while they run. A negative number -E makes them fail instead, with
// errno E (-5: EIO), as a dying disk does.
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

namespace {

std::atomic<long> delay_ms{0};
std::atomic<long long> checked_ns{-1000000000LL};

long DelayMs() {
  const char* base = getenv("TALLY_SLOW_SYNC");
  if (base == NULL) return 0;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  const long long ns = now.tv_sec * 1000000000LL + now.tv_nsec;
  long long last = checked_ns.load();
  if (ns - last >= 100000000LL &&
      checked_ns.compare_exchange_strong(last, ns)) {
    char path[4096];
    snprintf(path, sizeof(path), "%s.%d", base, static_cast<int>(getpid()));
    long ms = 0;
    FILE* f = fopen(path, "r");
    if (f != NULL) {
      if (fscanf(f, "%ld", &ms) != 1) ms = 0;
      fclose(f);
    }
    delay_ms.store(ms);
  }
  return delay_ms.load();
}

// Waits as told; false (errno set) if the call is to fail.
bool Delay() {
  const long ms = DelayMs();
  if (ms < 0) {
    errno = static_cast<int>(-ms);
    return false;
  }
  if (ms == 0) return true;
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
  return true;
}

using SyncFn = int (*)(int);

SyncFn Next(const char* name) {
  return reinterpret_cast<SyncFn>(dlsym(RTLD_NEXT, name));
}

}  // namespace

extern "C" int fsync(int fd) {
  static const SyncFn real = Next("fsync");
  return Delay() ? real(fd) : -1;
}

extern "C" int fdatasync(int fd) {
  static const SyncFn real = Next("fdatasync");
  return Delay() ? real(fd) : -1;
}
