#include "client/lease_keeper.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "util/thread_name.h"

namespace tally::client {

namespace {

// Leases per keep-alive message, as the server allows.
constexpr size_t kMaxPerMessage = 1000;

}  // namespace

LeaseKeeper::LeaseKeeper(Client* client)
    : client_(client), thread_([this] {
        util::NameThisThread("lease-keeper");
        Run();
      }) {}

LeaseKeeper::~LeaseKeeper() {
  {
    absl::MutexLock l(&mu_);
    stop_ = true;
  }
  sleep_.Stop();
  thread_.join();
}

void LeaseKeeper::Add(uint64_t lease, std::chrono::milliseconds ttl,
                      Steady::time_point sent, Steady::time_point valid_until,
                      Callbacks callbacks) {
  {
    absl::MutexLock l(&mu_);
    leases_[lease] =
        Entry{ttl, sent + ttl / 3, valid_until, std::move(callbacks)};
  }
  sleep_.Wake();  // it may be due before the keeper's next wake
}

void LeaseKeeper::Remove(uint64_t lease) {
  absl::MutexLock l(&mu_);
  leases_.erase(lease);
  mu_.Await(absl::Condition(
      +[](bool* calling) { return !*calling; }, &calling_));
}

void LeaseKeeper::Run() {
  absl::MutexLock l(&mu_);
  while (!stop_) {
    Steady::time_point wake = Steady::time_point::max();
    for (const auto& [id, e] : leases_) {
      wake = std::min({wake, e.next, e.valid_until});
    }
    mu_.Unlock();
    // By the steady clock: a lease's validity is steady time, and a timed
    // absl::Mutex wait would follow the wall clock. With no lease, until
    // Add.
    const bool stopping = sleep_.SleepUntil(
        std::min(wake, Steady::now() + std::chrono::hours(1)));
    mu_.Lock();
    if (stopping || stop_) return;

    // Leases no longer valid are lost; if any is due, it goes with those
    // due within a sixth of their TTL.
    const Steady::time_point now = Steady::now();
    std::vector<std::function<void()>> lost;
    bool any_due = false;
    for (auto it = leases_.begin(); it != leases_.end();) {
      if (now >= it->second.valid_until) {
        lost.push_back(std::move(it->second.callbacks.lost));
        it = leases_.erase(it);
        continue;
      }
      any_due = any_due || now >= it->second.next;
      ++it;
    }
    std::vector<uint64_t> due;
    for (const auto& [id, e] : leases_) {
      if (any_due && now >= e.next - e.ttl / 6) due.push_back(id);
    }
    if (lost.empty() && due.empty()) continue;

    calling_ = true;
    mu_.Unlock();
    for (auto& fn : lost) fn();
    for (size_t first = 0; first < due.size(); first += kMaxPerMessage) {
      const std::vector<uint64_t> ids(
          due.begin() + first,
          due.begin() + std::min(due.size(), first + kMaxPerMessage));
      const Steady::time_point sent = Steady::now();
      absl::StatusOr<std::vector<int64_t>> ttls = client_->KeepAlive(ids);
      for (size_t i = 0; i < ids.size(); ++i) {
        Callbacks cb;
        {
          absl::MutexLock l2(&mu_);
          auto e = leases_.find(ids[i]);
          if (e == leases_.end()) continue;  // removed meanwhile
          if (!ttls.ok()) {
            // Again soon, while the lease may still be valid.
            e->second.next = Steady::now() + std::max<Steady::duration>(
                                                 e->second.ttl / 20,
                                                 std::chrono::milliseconds(50));
            continue;
          }
          if ((*ttls)[i] > 0) {
            e->second.next = sent + e->second.ttl / 3;
            cb.renewed = e->second.callbacks.renewed;
          } else {
            cb.lost = std::move(e->second.callbacks.lost);
            leases_.erase(e);
          }
        }
        if (cb.lost) cb.lost();
        if (!cb.renewed) continue;
        const Steady::time_point valid_until = cb.renewed(sent, (*ttls)[i]);
        absl::MutexLock l2(&mu_);
        auto e = leases_.find(ids[i]);
        if (e != leases_.end()) {
          e->second.valid_until = std::max(e->second.valid_until, valid_until);
        }
      }
    }
    mu_.Lock();
    calling_ = false;
  }
}

}  // namespace tally::client
