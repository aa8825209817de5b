#ifndef TALLY_RAFT_HOST_STATS_H_
#define TALLY_RAFT_HOST_STATS_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tally::raft::host {

// Upper bounds (ms) of the raft log write latency buckets; one more bucket
// counts the rest.
inline constexpr std::array<double, 10> kLogWriteBucketsMs = {
    0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000};
// Upper bounds of the entries-per-log-write buckets; one more counts the
// rest.
inline constexpr std::array<uint64_t, 9> kLogBatchBuckets = {
    1, 2, 4, 8, 16, 32, 64, 128, 256};

// What a node host has done since it started: counters for metrics.
struct HostStats {
  // Times one of this node's groups made it leader.
  uint64_t leaderships_won = 0;
  // Proposals taken into the raft log here, and refused as overload
  // (RESOURCE_EXHAUSTED) before reaching it.
  uint64_t proposals = 0;
  uint64_t proposals_shed = 0;
  uint64_t entries_applied = 0;
  // Raft log batch writes (every group's in one), those synced, and their
  // latency (sync included): a count per kLogWriteBucketsMs bucket, not
  // cumulative, the last for the rest.
  uint64_t log_writes = 0;
  uint64_t log_syncs = 0;
  std::array<uint64_t, kLogWriteBucketsMs.size() + 1> log_write_buckets{};
  double log_write_seconds = 0;
  // Entries per log write (every group's): a count per kLogBatchBuckets
  // bucket, not cumulative, and their sum.
  std::array<uint64_t, kLogBatchBuckets.size() + 1> log_batch_buckets{};
  uint64_t log_entries = 0;
  // Snapshots offered to followers, and installed here.
  uint64_t snapshots_offered = 0;
  uint64_t snapshots_installed = 0;
  // Whether this node's disk is now the slow part of replication
  // (HostOptions::slow_disk_factor), and the leaderships it handed off for
  // it.
  bool slow_disk = false;
  uint64_t slow_disk_handoffs = 0;
};

// The counters behind HostStats, updated from the host's threads.
//
// Thread safety: thread-safe.
class HostCounters {
 public:
  void LeadershipWon() { Add(leaderships_won_); }
  void Proposed() { Add(proposals_); }
  void Shed() { Add(proposals_shed_); }
  void Applied(size_t entries) { Add(entries_applied_, entries); }
  void LogWrite(double seconds, bool synced, size_t entries) {
    Add(log_writes_);
    if (synced) Add(log_syncs_);
    size_t b = 0;
    while (b < kLogWriteBucketsMs.size() &&
           seconds * 1000 > kLogWriteBucketsMs[b]) {
      ++b;
    }
    Add(log_write_buckets_[b]);
    Add(log_write_us_, static_cast<uint64_t>(seconds * 1e6));
    b = 0;
    while (b < kLogBatchBuckets.size() && entries > kLogBatchBuckets[b]) ++b;
    Add(log_batch_buckets_[b]);
    Add(log_entries_, entries);
  }
  void SnapshotOffered() { Add(snapshots_offered_); }
  void SnapshotInstalled() { Add(snapshots_installed_); }
  void SlowDisk(bool slow) {
    slow_disk_.store(slow, std::memory_order_relaxed);
  }
  void HandedOff() { Add(slow_disk_handoffs_); }

  HostStats Get() const {
    HostStats s;
    s.leaderships_won = leaderships_won_.load(std::memory_order_relaxed);
    s.proposals = proposals_.load(std::memory_order_relaxed);
    s.proposals_shed = proposals_shed_.load(std::memory_order_relaxed);
    s.entries_applied = entries_applied_.load(std::memory_order_relaxed);
    s.log_writes = log_writes_.load(std::memory_order_relaxed);
    s.log_syncs = log_syncs_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < s.log_write_buckets.size(); ++i) {
      s.log_write_buckets[i] =
          log_write_buckets_[i].load(std::memory_order_relaxed);
    }
    s.log_write_seconds =
        static_cast<double>(log_write_us_.load(std::memory_order_relaxed)) /
        1e6;
    for (size_t i = 0; i < s.log_batch_buckets.size(); ++i) {
      s.log_batch_buckets[i] =
          log_batch_buckets_[i].load(std::memory_order_relaxed);
    }
    s.log_entries = log_entries_.load(std::memory_order_relaxed);
    s.snapshots_offered = snapshots_offered_.load(std::memory_order_relaxed);
    s.snapshots_installed =
        snapshots_installed_.load(std::memory_order_relaxed);
    s.slow_disk = slow_disk_.load(std::memory_order_relaxed);
    s.slow_disk_handoffs = slow_disk_handoffs_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  static void Add(std::atomic<uint64_t>& c, uint64_t n = 1) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
  std::atomic<uint64_t> leaderships_won_{0};
  std::atomic<uint64_t> proposals_{0};
  std::atomic<uint64_t> proposals_shed_{0};
  std::atomic<uint64_t> entries_applied_{0};
  std::atomic<uint64_t> log_writes_{0};
  std::array<std::atomic<uint64_t>, kLogBatchBuckets.size() + 1>
      log_batch_buckets_{};
  std::atomic<uint64_t> log_entries_{0};
  std::atomic<uint64_t> log_syncs_{0};
  std::array<std::atomic<uint64_t>, kLogWriteBucketsMs.size() + 1>
      log_write_buckets_{};
  std::atomic<uint64_t> log_write_us_{0};
  std::atomic<uint64_t> snapshots_offered_{0};
  std::atomic<uint64_t> snapshots_installed_{0};
  std::atomic<bool> slow_disk_{false};
  std::atomic<uint64_t> slow_disk_handoffs_{0};
};

}  // namespace tally::raft::host

#endif  // TALLY_RAFT_HOST_STATS_H_
