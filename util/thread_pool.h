#ifndef TALLY_UTIL_THREAD_POOL_H_
#define TALLY_UTIL_THREAD_POOL_H_

#include <sys/resource.h>
#include <unistd.h>

#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "util/thread_name.h"

namespace tally::util {

// A fixed set of threads running posted work in order of arrival, with a
// bounded queue.
//
// Thread safety: thread-safe.
class ThreadPool {
 public:
  // `name`: the threads' name (util/thread_name.h). `nice` (0 to 19)
  // lowers the threads' scheduling priority below the rest of the process
  // (Linux nice values are per thread): background work that must not take
  // the CPU from latency-critical threads.
  ThreadPool(std::string name, int threads, size_t max_queued, int nice = 0)
      : max_queued_(max_queued) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this, name, nice] {
        NameThisThread(name);
        // Best effort: an unprivileged process may always lower its own
        // priority, and nothing breaks if it cannot.
        if (nice > 0) setpriority(PRIO_PROCESS, gettid(), nice);
        Run();
      });
    }
  }
  // Runs what was posted, then joins.
  ~ThreadPool() {
    {
      absl::MutexLock l(&mu_);
      stopping_ = true;
    }
    for (std::thread& t : threads_) t.join();
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // False (and `fn` dropped) when the queue is full or the pool stopping.
  [[nodiscard]] bool Post(std::function<void()> fn) {
    absl::MutexLock l(&mu_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(fn));
    return true;
  }

 private:
  void Run() {
    while (true) {
      std::function<void()> fn;
      {
        absl::MutexLock l(&mu_);
        auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
          return !queue_.empty() || stopping_;
        };
        mu_.Await(absl::Condition(&ready));
        if (queue_.empty()) return;
        fn = std::move(queue_.front());
        queue_.pop_front();
      }
      fn();
    }
  }

  const size_t max_queued_;
  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace tally::util

#endif  // TALLY_UTIL_THREAD_POOL_H_
