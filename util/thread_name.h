#ifndef TALLY_UTIL_THREAD_NAME_H_
#define TALLY_UTIL_THREAD_NAME_H_

#include <pthread.h>

#include <string>
#include <string_view>

namespace tally::util {

// Names the calling thread as top -H, perf and /proc/PID/task/TID/comm
// show it. Linux keeps the first 15 bytes.
inline void NameThisThread(std::string_view name) {
  const std::string n(name.substr(0, 15));
  pthread_setname_np(pthread_self(), n.c_str());
}

}  // namespace tally::util

#endif  // TALLY_UTIL_THREAD_NAME_H_
