#include "raft/raw_node.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace tally::raft {

absl::StatusOr<std::unique_ptr<RawNode>> RawNode::Create(const Config& config) {
  absl::StatusOr<std::unique_ptr<Raft>> raft = Raft::Create(config);
  if (!raft.ok()) return raft.status();
  return std::unique_ptr<RawNode>(
      new RawNode(std::move(*raft), config.max_committed_size_per_ready));
}

RawNode::RawNode(std::unique_ptr<Raft> raft, uint64_t max_committed_size)
    : raft_(std::move(raft)),
      max_committed_size_per_ready_(max_committed_size),
      prev_soft_state_(raft_->soft_state()),
      prev_hard_state_(raft_->hard_state()) {}

absl::Status RawNode::Step(const Message& m) {
  if (m.to != raft_->id()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message for node ", m.to, " delivered to node ", raft_->id()));
  }
  raft_->Step(m);
  return absl::OkStatus();
}

bool RawNode::HasReady() const {
  const Raft& r = *raft_;
  return r.soft_state() != prev_soft_state_ ||
         r.hard_state() != prev_hard_state_ || r.HasMessages() ||
         r.HasReadStates() || r.log().UnstableSnapshot().has_value() ||
         r.log().HasUnstableEntries() || r.log().HasNextCommittedEntries();
}

Ready RawNode::GetReady() {
  Ready rd;
  Raft& r = *raft_;
  if (SoftState ss = r.soft_state(); ss != prev_soft_state_) rd.soft_state = ss;
  const HardState hs = r.hard_state();
  if (hs != prev_hard_state_) rd.hard_state = hs;
  rd.snapshot = r.log().UnstableSnapshot();
  rd.entries = r.log().UnstableEntries();
  rd.must_sync = rd.snapshot.has_value() || !rd.entries.empty() ||
                 hs.term != prev_hard_state_.term ||
                 hs.vote != prev_hard_state_.vote;
  rd.messages = r.TakeMessages();
  rd.read_states = r.TakeReadStates();
  rd.committed_entries =
      r.log().NextCommittedEntries(max_committed_size_per_ready_);
  return rd;
}

void RawNode::Advance(const Ready& rd) {
  if (rd.soft_state) prev_soft_state_ = *rd.soft_state;
  if (rd.hard_state) prev_hard_state_ = *rd.hard_state;
  RaftLog& log = raft_->mutable_log();
  if (rd.snapshot) log.StableSnapTo(rd.snapshot->metadata.index);
  if (!rd.entries.empty()) {
    log.StableTo(rd.entries.back().index, rd.entries.back().term);
  }
  if (!rd.committed_entries.empty()) {
    raft_->OnApplied(rd.committed_entries.back().index, rd.committed_entries);
  }
}

}  // namespace tally::raft
