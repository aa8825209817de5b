#include "raft/progress.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "util/check.h"

namespace tally::raft {

void Inflights::Add(Index last_index, uint64_t bytes) {
  TALLY_CHECK(!Full(), "adding to a full inflight window");
  TALLY_CHECK(entries_.empty() || entries_.back().last_index < last_index,
              "inflight indexes must increase");
  entries_.push_back({last_index, bytes});
  bytes_ += bytes;
}

void Inflights::FreeLE(Index index) {
  while (!entries_.empty() && entries_.front().last_index <= index) {
    bytes_ -= entries_.front().bytes;
    entries_.pop_front();
  }
}

void Inflights::FreeFirstOne() {
  if (entries_.empty()) return;
  bytes_ -= entries_.front().bytes;
  entries_.pop_front();
}

void Inflights::Reset() {
  entries_.clear();
  bytes_ = 0;
}

bool Inflights::Full() const {
  return entries_.size() >= max_count_ ||
         (max_bytes_ > 0 && bytes_ >= max_bytes_);
}

const char* ProgressStateName(Progress::State state) {
  switch (state) {
    case Progress::State::kProbe:
      return "probe";
    case Progress::State::kReplicate:
      return "replicate";
    case Progress::State::kSnapshot:
      return "snapshot";
  }
  return "?";
}

void Progress::BecomeProbe() {
  // Coming back from a snapshot, the follower has at least the snapshot.
  if (state_ == State::kSnapshot) {
    next_ = std::max(match_ + 1, pending_snapshot_ + 1);
  } else {
    next_ = match_ + 1;
  }
  state_ = State::kProbe;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  inflights_.Reset();
}

void Progress::BecomeReplicate() {
  state_ = State::kReplicate;
  next_ = match_ + 1;
  probe_sent_ = false;
  pending_snapshot_ = 0;
  inflights_.Reset();
}

void Progress::BecomeSnapshot(Index snapshot_index) {
  state_ = State::kSnapshot;
  pending_snapshot_ = snapshot_index;
  probe_sent_ = false;
  inflights_.Reset();
}

bool Progress::MaybeUpdate(Index index) {
  bool updated = false;
  if (match_ < index) {
    match_ = index;
    updated = true;
    probe_sent_ = false;
  }
  next_ = std::max(next_, index + 1);
  inflights_.FreeLE(index);
  return updated;
}

void Progress::SentEntries(Index last_index, uint64_t bytes) {
  switch (state_) {
    case State::kReplicate:
      if (last_index >= next_) {
        next_ = last_index + 1;
        inflights_.Add(last_index, bytes);
      }
      break;
    case State::kProbe:
      probe_sent_ = true;
      break;
    case State::kSnapshot:
      TALLY_CHECK(false, "sending entries to a follower awaiting a snapshot");
  }
}

bool Progress::MaybeDecreaseTo(Index rejected, Index hint) {
  if (state_ == State::kReplicate) {
    // Only a rejection of something past match is news; anything else is an
    // old, reordered message.
    if (rejected <= match_) return false;
    next_ = match_ + 1;
    return true;
  }
  // In probe the rejection must concern the last probe, i.e. next - 1.
  if (next_ == 0 || next_ - 1 != rejected) return false;
  next_ = std::max(std::min(rejected, hint + 1), match_ + 1);
  probe_sent_ = false;
  return true;
}

void Progress::OnHeartbeatResponse() {
  probe_sent_ = false;
  if (state_ == State::kReplicate && inflights_.Full()) {
    inflights_.FreeFirstOne();
  }
}

bool Progress::IsPaused() const {
  switch (state_) {
    case State::kProbe:
      return probe_sent_;
    case State::kReplicate:
      return inflights_.Full();
    case State::kSnapshot:
      return true;
  }
  return true;
}

std::string Progress::DebugString() const {
  std::string out = absl::StrCat(ProgressStateName(state_), " match=", match_,
                                 " next=", next_);
  if (state_ == State::kReplicate) {
    absl::StrAppend(&out, " inflight=", inflights_.count());
  }
  if (state_ == State::kProbe && probe_sent_) absl::StrAppend(&out, " paused");
  if (state_ == State::kSnapshot) {
    absl::StrAppend(&out, " pending_snapshot=", pending_snapshot_);
  }
  return out;
}

}  // namespace tally::raft
