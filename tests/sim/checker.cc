#include "tests/sim/checker.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "raft/conf_change.h"

namespace tally::sim {
namespace {

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

uint64_t Mix(uint64_t h, uint64_t v) {
  h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h * 0xff51afd7ed558ccdULL;
}

uint64_t EntryHash(uint64_t prev, const raft::Entry& e) {
  return Mix(Mix(Mix(prev, e.term), e.index), Fnv1a(e.data));
}

}  // namespace

std::string EncodeOp(const Op& op) {
  if (op.kind == Op::Kind::kWrite) {
    return absl::StrCat(op.id, " w ", op.key, " ", op.value);
  }
  return absl::StrCat(op.id, " r ", op.key);
}

std::optional<Op> DecodeOp(const std::string& data) {
  std::vector<absl::string_view> f = absl::StrSplit(data, ' ');
  Op op;
  if (f.size() < 3 || !absl::SimpleAtoi(f[0], &op.id) ||
      !absl::SimpleAtoi(f[2], &op.key)) {
    return std::nullopt;
  }
  if (f[1] == "w" && f.size() == 4 && absl::SimpleAtoi(f[3], &op.value)) {
    op.kind = Op::Kind::kWrite;
    return op;
  }
  if (f[1] == "r" && f.size() == 3) {
    op.kind = Op::Kind::kRead;
    return op;
  }
  return std::nullopt;
}

Checker::Checker(int nodes)
    : digests_(nodes + 1, std::vector<Digest>{{0, 0}}),
      known_commit_(nodes + 1, 0),
      snapshot_index_(nodes + 1, 0) {}

void Checker::Fail(std::string what) {
  if (!violation_) violation_ = std::move(what);
}

void Checker::OnBecomeLeader(raft::NodeId id, raft::Term term,
                             const raft::RaftLog& log,
                             const raft::ConfState& conf) {
  if (!conf.IsVoter(id)) {
    Fail(absl::StrCat("membership: node ", id, " leads term ", term,
                      " but is not a voter of ", raft::Describe(conf)));
    return;
  }
  auto [it, inserted] = leaders_.emplace(term, id);
  if (!inserted && it->second != id) {
    Fail(absl::StrCat("election safety: nodes ", it->second, " and ", id,
                      " are both leader in term ", term));
    return;
  }
  for (size_t i = 0; i < committed_.size(); ++i) {
    const Committed& c = committed_[i];
    if (c.commit_term >= term) continue;
    const raft::Index index = i + 1;
    if (index + 1 < log.FirstIndex()) continue;  // compacted into a snapshot
    if (log.TermAt(index) != c.term) {
      Fail(absl::StrCat("leader completeness: node ", id, " leads term ", term,
                        " without entry ", index, "/", c.term,
                        " committed by term ", c.commit_term));
      return;
    }
  }
}

void Checker::OnPersist(raft::NodeId id,
                        const std::vector<raft::Entry>& entries) {
  if (entries.empty()) return;
  std::vector<Digest>& d = digests_[id];
  d.resize(entries.front().index);
  for (const raft::Entry& e : entries) {
    d.push_back({e.term, EntryHash(d.back().prefix_hash, e)});
  }
  for (const raft::Entry& e : entries) {
    for (raft::NodeId other = 1; other < digests_.size(); ++other) {
      if (other == id) continue;
      const std::vector<Digest>& od = digests_[other];
      if (e.index >= od.size() || od[e.index].term != e.term) continue;
      if (od[e.index].prefix_hash != d[e.index].prefix_hash) {
        Fail(absl::StrCat("log matching: nodes ", id, " and ", other,
                          " hold entry ", e.index, "/", e.term,
                          " after different logs"));
        return;
      }
    }
  }
}

void Checker::OnRestart(raft::NodeId id, raft::Index snapshot_index,
                        const std::vector<raft::Entry>& durable) {
  ResetDigestsTo(id, snapshot_index);
  OnPersist(id, durable);
  known_commit_[id] = snapshot_index;
}

void Checker::OnSnapshotInstalled(raft::NodeId id, raft::Index index) {
  ResetDigestsTo(id, index);
  known_commit_[id] = std::max(known_commit_[id], index);
}

void Checker::ResetDigestsTo(raft::NodeId id, raft::Index index) {
  std::vector<Digest>& d = digests_[id];
  d.resize(1);
  for (raft::Index i = 1; i <= index && i <= committed_.size(); ++i) {
    d.push_back({committed_[i - 1].term, committed_[i - 1].prefix_hash});
  }
  snapshot_index_[id] = index;
}

bool Checker::Holds(raft::NodeId id, raft::Index index, raft::Term term) const {
  const std::vector<Digest>& d = digests_[id];
  return index < d.size() && d[index].term == term;
}

void Checker::OnLeaderCommit(raft::NodeId id, const raft::ConfState& conf,
                             raft::Index commit) {
  if (commit == 0 || commit > committed_.size()) return;
  const raft::Term term = committed_[commit - 1].term;
  for (const std::vector<raft::NodeId>* half :
       {&conf.voters, &conf.voters_outgoing}) {
    if (half->empty()) continue;
    size_t holding = 0;
    for (raft::NodeId v : *half) {
      holding += v < digests_.size() && Holds(v, commit, term);
    }
    if (holding <= half->size() / 2) {
      Fail(absl::StrCat("commit quorum: leader ", id, " committed ", commit,
                        "/", term, " held by only ", holding, " of ",
                        half->size(), " voters of ", raft::Describe(conf)));
      return;
    }
  }
}

void Checker::OnStateHash(raft::NodeId id, raft::Index index, uint64_t hash) {
  auto [it, inserted] = state_hashes_.emplace(index, hash);
  if (!inserted && it->second != hash) {
    Fail(absl::StrCat("state divergence: node ", id,
                      " has a different state after applying ", index));
  }
}

void Checker::OnCommit(raft::NodeId id, raft::Term term, raft::Index commit,
                       const raft::RaftLog& log) {
  raft::Index& known = known_commit_[id];
  const std::vector<Digest>& d = digests_[id];
  for (raft::Index i = known + 1; i <= commit; ++i) {
    const std::optional<raft::Term> t = log.TermAt(i);
    const uint64_t prefix = i < d.size() ? d[i].prefix_hash : 0;
    if (i > committed_.size()) {
      committed_.push_back(
          {t.value_or(0), term, prefix, 0, false, std::nullopt});
      continue;
    }
    Committed& c = committed_[i - 1];
    if (c.prefix_hash == 0) c.prefix_hash = prefix;
    if (!t && i + 1 < log.FirstIndex()) continue;  // compacted
    if (t != c.term) {
      Fail(absl::StrCat("committed entry changed: node ", id, " commits entry ",
                        i, " of term ", t.value_or(0), " but entry ", i, "/",
                        c.term, " was committed"));
      return;
    }
    c.commit_term = std::min(c.commit_term, term);
  }
  known = std::max(known, commit);
}

void Checker::OnApply(raft::NodeId id, const raft::Entry& e) {
  if (e.index > committed_.size()) {
    Fail(absl::StrCat("node ", id, " applies entry ", e.index,
                      " beyond every commit index seen"));
    return;
  }
  Committed& c = committed_[e.index - 1];
  const uint64_t h = Fnv1a(e.data);
  if (!c.applied_seen) {
    if (c.term != e.term) {
      Fail(absl::StrCat("state machine safety: node ", id, " applies ", e.index,
                        "/", e.term, " but ", e.index, "/", c.term,
                        " was committed"));
      return;
    }
    c.data_hash = h;
    c.applied_seen = true;
    c.op = DecodeOp(e.data);
    ExtendModel();
  } else if (c.term != e.term || c.data_hash != h) {
    Fail(absl::StrCat("state machine safety: node ", id, " applies ", e.index,
                      "/", e.term,
                      " differently from a node that applied it before"));
  }
}

void Checker::ExtendModel() {
  // Replays the committed entries, in order, through a model of the
  // registers, recording what each read must return.
  while (model_applied_ < committed_.size() &&
         committed_[model_applied_].applied_seen) {
    const Committed& c = committed_[model_applied_++];
    if (!c.op) continue;  // a leader's no-op
    const Op& op = *c.op;
    if (op.kind == Op::Kind::kWrite) {
      model_[op.key] = op.value;
    } else {
      expected_reads_[model_applied_] = model_[op.key];
    }
  }
}

void Checker::OnAck(const Op& op, raft::Index index, raft::Term term,
                    uint64_t read_value) {
  ++acked_;
  if (index <= op.must_follow) {
    Fail(absl::StrCat("linearizability: op ", op.id, " acknowledged at index ",
                      index,
                      " but an op acknowledged before it was invoked "
                      "is at index ",
                      op.must_follow));
    return;
  }
  if (index > committed_.size() || committed_[index - 1].term != term) {
    Fail(absl::StrCat("acknowledged op ", op.id, " at ", index, "/", term,
                      " is not the committed entry"));
    return;
  }
  if (op.kind == Op::Kind::kRead) {
    auto it = expected_reads_.find(index);
    if (it == expected_reads_.end()) {
      Fail(absl::StrCat("read op ", op.id, " acknowledged at ", index,
                        " before its entry was applied"));
      return;
    }
    if (it->second != read_value) {
      Fail(absl::StrCat("linearizability: read op ", op.id, " of key ", op.key,
                        " returned ", read_value, ", expected ", it->second));
      return;
    }
  }
  max_acked_index_ = std::max(max_acked_index_, index);
}

}  // namespace tally::sim
