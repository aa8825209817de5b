// Loaded with LD_PRELOAD: makes fsync and fdatasync slow, as a failing or
// overloaded disk makes them, for tests and benchmarks of a slow node. The
// delay, in milliseconds, is read from the file $TALLY_SLOW_SYNC.<pid>
// (none while it does not exist), at most every 100 ms: a test starts every
// node with the same environment, then slows one of them, and speeds it up
// again, while they run. A negative number -E makes them fail instead, with
// errno E (-5: EIO), as a dying disk does. A second number -E makes writes
// to regular files (bar stdout and stderr, the node's log) fail with errno
// E (-28: ENOSPC, a full disk): "0 -28".
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

namespace {

std::atomic<long> delay_ms{0};
std::atomic<long> write_errno{0};
std::atomic<long long> checked_ns{-1000000000LL};

// Reads the control file, at most every 100 ms.
void Refresh() {
  const char* base = getenv("TALLY_SLOW_SYNC");
  if (base == NULL) return;
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  const long long ns = now.tv_sec * 1000000000LL + now.tv_nsec;
  long long last = checked_ns.load();
  if (ns - last >= 100000000LL &&
      checked_ns.compare_exchange_strong(last, ns)) {
    char path[4096];
    snprintf(path, sizeof(path), "%s.%d", base, static_cast<int>(getpid()));
    long ms = 0, writes = 0;
    FILE* f = fopen(path, "r");
    if (f != NULL) {
      const int n = fscanf(f, "%ld %ld", &ms, &writes);
      if (n < 1) ms = 0;
      if (n < 2) writes = 0;
      fclose(f);
    }
    delay_ms.store(ms);
    write_errno.store(writes < 0 ? -writes : 0);
  }
}

long DelayMs() {
  Refresh();
  return delay_ms.load();
}

// True (errno set) if a write to `fd` is to fail.
bool FailWrite(int fd) {
  if (fd <= 2) return false;
  Refresh();
  const long e = write_errno.load();
  if (e == 0) return false;
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return false;
  errno = static_cast<int>(e);
  return true;
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

extern "C" ssize_t write(int fd, const void* buf, size_t n) {
  using WriteFn = ssize_t (*)(int, const void*, size_t);
  static const WriteFn real =
      reinterpret_cast<WriteFn>(dlsym(RTLD_NEXT, "write"));
  return FailWrite(fd) ? -1 : real(fd, buf, n);
}

extern "C" ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  using PwriteFn = ssize_t (*)(int, const void*, size_t, off_t);
  static const PwriteFn real =
      reinterpret_cast<PwriteFn>(dlsym(RTLD_NEXT, "pwrite"));
  return FailWrite(fd) ? -1 : real(fd, buf, n, offset);
}
