#include "clocks/hybrid_logical_clock.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::clocks {

std::string HlcTimestamp::ToString() const {
  return absl::StrCat(physical_ms, ".", logical);
}

HybridLogicalClock::HybridLogicalClock(const Clock* clock,
                                       int64_t max_offset_ms)
    : clock_(clock), max_offset_ms_(max_offset_ms) {}

absl::StatusOr<HlcTimestamp> HybridLogicalClock::Issue(int64_t l, uint32_t c) {
  if (c > std::numeric_limits<uint16_t>::max()) {
    // 65,536 events in one millisecond: borrow the next millisecond. The
    // clock then runs at most a little ahead of physical time.
    ++l;
    c = 0;
  }
  if (l >= limit_ms_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "hybrid clock reached its limit ", limit_ms_,
        " ms: persist a higher limit before issuing more timestamps"));
  }
  last_ = {l, static_cast<uint16_t>(c)};
  return last_;
}

absl::StatusOr<HlcTimestamp> HybridLogicalClock::Now() {
  const int64_t pt = clock_->NowMillis();
  const int64_t l = std::max(last_.physical_ms, pt);
  return Issue(l, l == last_.physical_ms ? last_.logical + 1u : 0u);
}

absl::StatusOr<HlcTimestamp> HybridLogicalClock::Update(HlcTimestamp remote) {
  const int64_t pt = clock_->NowMillis();
  if (remote.physical_ms - pt > max_offset_ms_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "remote timestamp ", remote.ToString(), " is ", remote.physical_ms - pt,
        " ms ahead of the local clock, beyond the ", max_offset_ms_,
        " ms maximum offset; check the clocks"));
  }
  const int64_t l = std::max({last_.physical_ms, remote.physical_ms, pt});
  uint32_t c = 0;
  if (l == last_.physical_ms && l == remote.physical_ms) {
    c = std::max(last_.logical, remote.logical) + 1u;
  } else if (l == last_.physical_ms) {
    c = last_.logical + 1u;
  } else if (l == remote.physical_ms) {
    c = remote.logical + 1u;
  }
  return Issue(l, c);
}

void HybridLogicalClock::Restore(int64_t persisted_limit) {
  if (persisted_limit > last_.physical_ms) last_ = {persisted_limit, 0};
}

}  // namespace tally::clocks
