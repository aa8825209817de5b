#include "clocks/clock.h"

#include <chrono>

namespace tally::clocks {

int64_t SystemClock::NowMillis() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tally::clocks
