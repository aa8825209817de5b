#include "raft/host/internal/slow_disk.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::raft::host {

namespace {

// Appends remembered per group and follower while unanswered: a follower
// that answers nothing must not grow them.
constexpr size_t kMostUnanswered = 64;

double Ms(SlowDiskDetector::Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

void SlowDiskDetector::Synced(Duration took) {
  if (options_.factor > 0) syncs_.push_back(took);
}

void SlowDiskDetector::AppendSent(GroupId group, NodeId peer, Index last,
                                  TimePoint at) {
  if (options_.factor <= 0) return;
  auto& q = sent_[{group, peer}];
  if (!q.empty() && q.back().first >= last) return;  // sent again
  if (q.size() == kMostUnanswered) q.pop_front();
  q.emplace_back(last, at);
}

void SlowDiskDetector::AppendAcked(GroupId group, NodeId peer, Index index,
                                   TimePoint at) {
  auto it = sent_.find({group, peer});
  if (it == sent_.end()) return;
  // The answer covers every append up to `index`; the latest of them was
  // the one just answered, the earlier ones waited behind it.
  auto& q = it->second;
  TimePoint sent{};
  bool found = false;
  while (!q.empty() && q.front().first <= index) {
    sent = q.front().second;
    found = true;
    q.pop_front();
  }
  if (found && at >= sent) round_trips_[peer].push_back(at - sent);
}

SlowDiskDetector::Duration SlowDiskDetector::Median(std::vector<Duration>* v) {
  auto mid = v->begin() + static_cast<std::ptrdiff_t>(v->size() / 2);
  std::nth_element(v->begin(), mid, v->end());
  return *mid;
}

SlowDiskDetector::Change SlowDiskDetector::Check(TimePoint now) {
  if (options_.factor <= 0) return Change::kNone;
  if (window_start_ == TimePoint{}) window_start_ = now;
  if (now - window_start_ < options_.window) return Change::kNone;
  window_start_ = now;
  std::vector<Duration> syncs = std::move(syncs_);
  syncs_.clear();
  auto round_trips = std::move(round_trips_);
  round_trips_.clear();

  Duration fastest = Duration::max();
  for (auto& [peer, rtts] : round_trips) {
    if (rtts.size() < options_.min_samples) continue;
    const Duration m = Median(&rtts);
    if (m < fastest) {
      fastest = m;
      fastest_peer_ = peer;
    }
  }
  if (fastest != Duration::max()) peer_round_trip_ = fastest;
  if (syncs.size() < options_.min_samples) return Change::kNone;
  own_sync_ = Median(&syncs);
  // Without a follower's round trip ever measured, nothing to compare with.
  if (peer_round_trip_ == Duration{}) return Change::kNone;
  const bool slow_now = own_sync_ > options_.floor &&
                        Ms(own_sync_) > options_.factor * Ms(peer_round_trip_);
  if (slow_now) {
    slow_windows_ = std::min(slow_windows_ + 1, options_.windows);
    if (!slow_ && slow_windows_ >= options_.windows) {
      slow_ = true;
      return Change::kSlow;
    }
    return Change::kNone;
  }
  slow_windows_ = 0;
  if (slow_) {
    slow_ = false;
    return Change::kRecovered;
  }
  return Change::kNone;
}

std::string SlowDiskDetector::Describe() const {
  return absl::StrCat("raft log syncs take ", absl::SixDigits(Ms(own_sync_)),
                      " ms (median of the "
                      "last window), while n",
                      fastest_peer_, " answers an append in ",
                      absl::SixDigits(Ms(peer_round_trip_)), " ms");
}

}  // namespace tally::raft::host
