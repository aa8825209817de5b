#include "kv/server/internal/scan_gate.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tally::kv::server {

ScanGate::ScanGate(int places, absl::Duration most_wait)
    : places_(static_cast<uint64_t>(std::max(places, 1))),
      most_wait_(most_wait) {}

void ScanGate::Enter() {
  absl::MutexLock l(&mu_);
  if (!stopped_ && stats_.answering >= places_) {
    ++stats_.waited;
    auto free = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
      return stopped_ || stats_.answering < places_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&free), most_wait_)) {
      ++stats_.overtaken;
    }
  }
  if (stopped_) return;
  ++stats_.answering;
  ++stats_.entered;
}

void ScanGate::Leave() {
  absl::MutexLock l(&mu_);
  if (stats_.answering > 0) --stats_.answering;
}

void ScanGate::Stop() {
  absl::MutexLock l(&mu_);
  stopped_ = true;
}

ScanGate::Stats ScanGate::stats() const {
  absl::MutexLock l(&mu_);
  return stats_;
}

std::string ScanGate::Render() const {
  const Stats s = stats();
  return absl::StrCat(
      "# HELP tally_scans_answering Scans read or being answered now.\n"
      "# TYPE tally_scans_answering gauge\n"
      "tally_scans_answering ",
      s.answering, "\n",
      "# HELP tally_scans_waited_total Scans that waited for another's answer "
      "to be sent.\n"
      "# TYPE tally_scans_waited_total counter\n"
      "tally_scans_waited_total ",
      s.waited, "\n",
      "# HELP tally_scans_overtaken_total Scans that stopped waiting for a "
      "place after the longest wait (a client slow to read its answer).\n"
      "# TYPE tally_scans_overtaken_total counter\n"
      "tally_scans_overtaken_total ",
      s.overtaken, "\n");
}

}  // namespace tally::kv::server
