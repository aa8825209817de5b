#ifndef TALLY_CLOCKS_HYBRID_LOGICAL_CLOCK_H_
#define TALLY_CLOCKS_HYBRID_LOGICAL_CLOCK_H_

#include <compare>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/statusor.h"
#include "clocks/clock.h"

namespace tally::clocks {

// A hybrid logical clock timestamp: wall-clock milliseconds and a logical
// counter that orders events within one millisecond. Packs into 64 bits:
// 48 bits of milliseconds (until the year 10889), 16 of counter.
struct HlcTimestamp {
  int64_t physical_ms = 0;
  uint16_t logical = 0;

  auto operator<=>(const HlcTimestamp&) const = default;
  uint64_t Pack() const {
    return (static_cast<uint64_t>(physical_ms) << 16) | logical;
  }
  static HlcTimestamp Unpack(uint64_t v) {
    return {static_cast<int64_t>(v >> 16), static_cast<uint16_t>(v & 0xffff)};
  }
  std::string ToString() const;
};

// A hybrid logical clock (Kulkarni et al., "Logical Physical Clocks", 2014):
// timestamps respect causality like a Lamport clock and stay within the
// maximum clock offset of physical time.
//
// Restarts: the owner persists an upper bound on the physical part of what
// the clock may issue (SetLimit) and, after a restart, passes it to
// Restore, so no timestamp is ever issued twice or out of order.
//
// Thread safety: not thread-safe.
class HybridLogicalClock {
 public:
  // `clock` is not owned and must outlive this. A remote timestamp more
  // than `max_offset_ms` ahead of the local clock is refused.
  HybridLogicalClock(const Clock* clock, int64_t max_offset_ms);

  // A local event or a send. FAILED_PRECONDITION if it would pass the
  // limit (persist a higher one first).
  absl::StatusOr<HlcTimestamp> Now();
  // The receipt of `remote`. FAILED_PRECONDITION if `remote` is further
  // ahead of the local clock than the maximum offset (nothing changes),
  // or if it would pass the limit.
  absl::StatusOr<HlcTimestamp> Update(HlcTimestamp remote);

  // The clock issues no timestamp whose physical part is >= limit_ms.
  void SetLimit(int64_t limit_ms) { limit_ms_ = limit_ms; }
  int64_t limit() const { return limit_ms_; }
  // After a restart: `persisted_limit` is the last limit the owner
  // persisted; every timestamp from now on is above anything issued before.
  void Restore(int64_t persisted_limit);

  HlcTimestamp last() const { return last_; }

 private:
  // The next timestamp at physical part >= l: logical overflow moves to the
  // next millisecond.
  absl::StatusOr<HlcTimestamp> Issue(int64_t l, uint32_t c);

  const Clock* const clock_;
  const int64_t max_offset_ms_;
  int64_t limit_ms_ = std::numeric_limits<int64_t>::max();
  HlcTimestamp last_;
};

}  // namespace tally::clocks

#endif  // TALLY_CLOCKS_HYBRID_LOGICAL_CLOCK_H_
