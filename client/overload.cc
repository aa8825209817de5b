#include "client/internal/overload.h"

#include <algorithm>
#include <vector>

#include "util/waker.h"

namespace tally::client::internal {

namespace {

int64_t SecondOf(SteadyClock::time_point now) {
  return std::chrono::duration_cast<std::chrono::seconds>(
             now.time_since_epoch())
      .count();
}

}  // namespace

void WindowCounts::Add(SteadyClock::time_point now, uint64_t first,
                       uint64_t second) {
  const int64_t at = SecondOf(now);
  Slot& slot = slots_[static_cast<size_t>(at % kSlots)];
  if (slot.second != at) slot = Slot{at, {0, 0}};
  slot.counts[0] += first;
  slot.counts[1] += second;
}

std::array<uint64_t, 2> WindowCounts::Sum(SteadyClock::time_point now) const {
  const int64_t at = SecondOf(now);
  std::array<uint64_t, 2> sum{};
  for (const Slot& slot : slots_) {
    if (slot.second > at - kSlots && slot.second <= at) {
      sum[0] += slot.counts[0];
      sum[1] += slot.counts[1];
    }
  }
  return sum;
}

void InFlightLimit::Answered(uint64_t seq, bool congested,
                             std::chrono::microseconds latency) {
  // The limit in use: the node was given as many calls as allowed.
  const bool in_use = static_cast<double>(in_flight_) >= limit_ / 2;
  --in_flight_;
  if (congested) {
    if (seq <= decreased_after_) return;  // this round's decrease is made
    congested_ever_ = true;
    limit_ = std::max(o_.least, limit_ * o_.decrease);
    decreased_after_ = sent_;
    return;
  }
  const bool queued =
      fastest_ != std::chrono::microseconds::max() && latency > 2 * fastest_;
  fastest_ = std::min(fastest_, latency);
  if (!in_use) return;
  const double step = congested_ever_ || queued ? 1 / limit_ : 1;
  limit_ = std::min(o_.most, limit_ + step);
}

std::optional<uint64_t> CallGate::Enter(Clock::time_point deadline) {
  const SteadyClock::time_point until = util::SteadyAt(deadline);
  std::unique_lock<std::mutex> l(mu_);
  if (limit_.HasRoom() && waiting_.empty()) return limit_.Sent();
  if (static_cast<double>(waiting_.size()) >=
      kWaitingPerPlace * limit_.limit()) {
    Waiter* oldest = waiting_.front();
    waiting_.pop_front();
    oldest->dropped = true;
    oldest->cv.notify_one();
  }
  Waiter w;
  waiting_.push_back(&w);
  if (!w.cv.wait_until(l, until,
                       [&w] { return w.seq.has_value() || w.dropped; })) {
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &w));
    return std::nullopt;
  }
  return w.seq;
}

void CallGate::Leave(uint64_t seq, bool congested,
                     std::chrono::microseconds latency) {
  std::lock_guard<std::mutex> l(mu_);
  limit_.Answered(seq, congested, latency);
  while (limit_.HasRoom() && !waiting_.empty()) {
    Waiter* w = waiting_.back();
    waiting_.pop_back();
    w->seq = limit_.Sent();
    w->cv.notify_one();
  }
}

CallGate::State CallGate::state() const {
  std::lock_guard<std::mutex> l(mu_);
  return {limit_.limit(), limit_.in_flight(), waiting_.size()};
}

bool RetryBudget::Withdraw(SteadyClock::time_point now) {
  const auto [calls, retries] = counts_.Sum(now);
  if (static_cast<double>(retries) + 1 > ratio_ * calls + floor_) return false;
  counts_.Add(now, 0, 1);
  return true;
}

double Throttle::RefuseProbability(SteadyClock::time_point now) const {
  const auto [attempts, accepted] = counts_.Sum(now);
  return std::max(0.0, (attempts - k_ * accepted) / (attempts + 1.0));
}

bool CircuitBreaker::Allow(SteadyClock::time_point now) {
  switch (state_) {
    case State::kClosed:
      return true;
    case State::kOpen:
      if (now < since_) return false;
      state_ = State::kHalfOpen;
      since_ = now;
      return true;
    case State::kHalfOpen:
      // A probe that never reported does not keep the endpoint shut.
      if (now - since_ < open_for_) return false;
      since_ = now;
      return true;
  }
  return true;
}

void CircuitBreaker::Answered() {
  state_ = State::kClosed;
  failures_ = 0;
  open_for_ = kFirstOpen;
}

void CircuitBreaker::Failed(SteadyClock::time_point now) {
  if (state_ == State::kHalfOpen) {
    open_for_ = std::min<std::chrono::milliseconds>(open_for_ * 2, kMostOpen);
  } else if (++failures_ < failures_to_open_) {
    return;
  }
  state_ = State::kOpen;
  since_ = now + open_for_;
}

const char* BreakerStateName(CircuitBreaker::State s) {
  switch (s) {
    case CircuitBreaker::State::kClosed:
      return "closed";
    case CircuitBreaker::State::kOpen:
      return "open";
    case CircuitBreaker::State::kHalfOpen:
      return "half-open";
  }
  return "?";
}

void LatencyQuantile::Add(std::chrono::microseconds latency) {
  samples_[count_ % kSamples] = latency.count();
  ++count_;
}

std::chrono::microseconds LatencyQuantile::Get() {
  if (count_ < kLeastSamples) return std::chrono::microseconds(0);
  if (cached_at_ == 0 || count_ - cached_at_ >= kSamples / 8) {
    const size_t n = std::min(count_, kSamples);
    std::vector<int64_t> v(samples_.begin(), samples_.begin() + n);
    const size_t k = std::min(n - 1, static_cast<size_t>(q_ * n));
    std::nth_element(v.begin(), v.begin() + k, v.end());
    cached_ = v[k];
    cached_at_ = count_;
  }
  return std::chrono::microseconds(cached_);
}

}  // namespace tally::client::internal
