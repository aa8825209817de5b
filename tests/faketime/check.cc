// Run under libfaketime faking the monotonic clock, with monotonic_waits
// preloaded after it (see monotonic_waits.c): a 200 ms wait on the steady
// clock, of a condition variable and of a future, lasts 200 ms of the
// kernel's time. Without the fix, both wait forever (ctest's timeout).

#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <mutex>

namespace {

// The kernel's monotonic time in seconds, past libfaketime.
double KernelSeconds() {
  timespec t;
  syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

bool Lasted(const char* what, double began) {
  const double took = KernelSeconds() - began;
  std::printf("%s: %.3f s\n", what, took);
  return took > 0.15 && took < 1.0;
}

}  // namespace

int main() {
  const auto faked = std::chrono::steady_clock::now().time_since_epoch();
  std::printf("steady clock (faked): %.3f s\n",
              std::chrono::duration<double>(faked).count());
  bool ok = true;
  {
    std::mutex mu;
    std::condition_variable cv;
    std::unique_lock<std::mutex> l(mu);
    const double began = KernelSeconds();
    cv.wait_until(
        l, std::chrono::steady_clock::now() + std::chrono::milliseconds(200));
    ok &= Lasted("condition variable", began);
  }
  {
    std::promise<int> never;
    std::future<int> f = never.get_future();
    const double began = KernelSeconds();
    f.wait_until(std::chrono::steady_clock::now() +
                 std::chrono::milliseconds(200));
    ok &= Lasted("future", began);
  }
  return ok ? 0 : 1;
}
