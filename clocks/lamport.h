#ifndef TALLY_CLOCKS_LAMPORT_H_
#define TALLY_CLOCKS_LAMPORT_H_

#include <algorithm>
#include <cstdint>

namespace tally::clocks {

// A Lamport clock (Lamport 1978): if a happened before b, then
// time(a) < time(b).
//
// Thread safety: not thread-safe.
class LamportClock {
 public:
  explicit LamportClock(uint64_t time = 0) : time_(time) {}
  // A local event or a send: the new time.
  uint64_t Tick() { return ++time_; }
  // A receive of a message stamped `remote`: the new time.
  uint64_t Observe(uint64_t remote) {
    time_ = std::max(time_, remote) + 1;
    return time_;
  }
  uint64_t time() const { return time_; }

 private:
  uint64_t time_;
};

}  // namespace tally::clocks

#endif  // TALLY_CLOCKS_LAMPORT_H_
