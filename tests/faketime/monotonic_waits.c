// Preloaded with libfaketime (jepsen's clock nemeses) when it fakes the
// monotonic clock too. libfaketime 0.9.10 then reports CLOCK_MONOTONIC on
// the wall clock's scale (about 1.8e9 s) and intercepts
// pthread_cond_timedwait, but not the waits that take an absolute
// CLOCK_MONOTONIC time straight to the kernel: pthread_cond_clockwait
// (std::condition_variable::wait_until on the steady clock) and the futex
// wait of std::future::wait_until. Those waited until the kernel's
// monotonic clock reached the faked time, that is forever, so every timer
// of a node slept until something woke it. This turns such a deadline into
// the kernel's: as far ahead of the kernel's monotonic time as the faked
// deadline is ahead of the faked time now.
//
// Waits on the wall clock are left alone: a process whose wall clock is
// set apart from the kernel's waits as one whose wall clock was stepped.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#if !defined(__x86_64__)
#error "monotonic_waits.c forwards system calls the x86-64 way"
#endif

// What glibc's syscall() does, without looking it up: the first calls come
// before any constructor of this library runs (tcmalloc's start-up).
static long RealSyscall(long n, long a1, long a2, long a3, long a4, long a5,
                        long a6) {
  register long r10 __asm__("r10") = a4;
  register long r8 __asm__("r8") = a5;
  register long r9 __asm__("r9") = a6;
  long ret;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"(n), "D"(a1), "S"(a2), "d"(a3), "r"(r10), "r"(r8),
                     "r"(r9)
                   : "rcx", "r11", "memory");
  if (ret < 0 && ret > -4096) {
    errno = (int)-ret;
    return -1;
  }
  return ret;
}

typedef int (*ClockWait)(pthread_cond_t*, pthread_mutex_t*, clockid_t,
                         const struct timespec*);

// The kernel's monotonic time at which the faked monotonic time `at` comes.
static struct timespec KernelTime(const struct timespec* at) {
  struct timespec faked, kernel;
  clock_gettime(CLOCK_MONOTONIC, &faked);  // libfaketime's
  RealSyscall(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&kernel, 0, 0, 0, 0);
  int64_t in = (int64_t)(at->tv_sec - faked.tv_sec) * 1000000000 +
               (at->tv_nsec - faked.tv_nsec);
  if (in < 0) in = 0;
  const int64_t ns = (int64_t)kernel.tv_nsec + in % 1000000000;
  struct timespec out;
  out.tv_sec = kernel.tv_sec + in / 1000000000 + ns / 1000000000;
  out.tv_nsec = ns % 1000000000;
  return out;
}

int pthread_cond_clockwait(pthread_cond_t* cond, pthread_mutex_t* mutex,
                           clockid_t clock, const struct timespec* at) {
  static ClockWait resolved;
  ClockWait real = __atomic_load_n(&resolved, __ATOMIC_ACQUIRE);
  if (real == NULL) {
    real = (ClockWait)dlsym(RTLD_NEXT, "pthread_cond_clockwait");
    __atomic_store_n(&resolved, real, __ATOMIC_RELEASE);
  }
  if (clock != CLOCK_MONOTONIC) return real(cond, mutex, clock, at);
  const struct timespec kernel = KernelTime(at);
  return real(cond, mutex, clock, &kernel);
}

long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; ++i) a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == SYS_futex) {
    const int op = (int)a[1];
    const struct timespec* at = (const struct timespec*)a[3];
    // An absolute wait on the monotonic clock (FUTEX_WAIT's is relative).
    if ((op & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET &&
        !(op & FUTEX_CLOCK_REALTIME) && at != NULL) {
      const struct timespec kernel = KernelTime(at);
      return RealSyscall(number, a[0], a[1], a[2], (long)&kernel, a[4], a[5]);
    }
  }
  return RealSyscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
