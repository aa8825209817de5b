// The raft loop's pass over every group with work: persist, send, apply,
// advance (the Ready contract of raft/raw_node.h), and log compaction.

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "raft/host/internal/group_state.h"
#include "raft/host/internal/slow_disk.h"
#include "raft/host/node_host.h"
#include "spdlog/spdlog.h"
#include "util/check.h"

namespace tally::raft::host {

namespace {

// A raft log write slower than this is logged.
constexpr auto kSlowWrite = std::chrono::milliseconds(100);

}  // namespace

void NodeHost::LogRoleChange(GroupState& g, const SoftState& now) {
  const Term term = g.raw->raft().term();
  if (now.role == g.logged_role.role && now.lead == g.logged_role.lead) return;
  switch (now.role) {
    case Role::kLeader:
      counters_.LeadershipWon();
      spdlog::info("[g={} n={} t={}] became leader", g.id, options_.id, term);
      break;
    case Role::kPreCandidate:
    case Role::kCandidate:
      spdlog::info("[g={} n={} t={}] became {}: {}", g.id, options_.id, term,
                   RoleName(now.role),
                   g.logged_role.lead == kNoNode
                       ? "no leader heard from within the election timeout"
                       : "lost touch with the leader, or was asked to take "
                         "over");
      break;
    default:
      if (now.lead != kNoNode) {
        spdlog::info("[g={} n={} t={}] follows n{}", g.id, options_.id, term,
                     now.lead);
      } else if (g.logged_role.role == Role::kLeader) {
        spdlog::info("[g={} n={} t={}] stepped down", g.id, options_.id, term);
      }
  }
  g.logged_role = now;
}

void NodeHost::ProcessReadies(bool after_work) {
  for (int round = 0; round < 8; ++round) {
    std::vector<std::pair<GroupState*, Ready>> readies;
    // Only work from the inbox can touch a quiet group (ticks skip it), and
    // work puts what it touches in attention_: after a tick alone, one
    // already found idle stays idle. With thousands of idle groups, asking
    // each for its Ready every pass was most of an idle node's CPU.
    for (GroupState* g : attention_) {
      if (!after_work && g->quiet && g->idle_checked) continue;
      if (g->raw->HasReady()) {
        g->idle_checked = false;
        Attend(*g);
        readies.emplace_back(g, g->raw->GetReady());
      } else {
        g->idle_checked = g->quiet;
      }
    }
    if (readies.empty()) return;
    SendMessages(readies, /*leader_appends=*/true);
    Persist(readies);
    SendMessages(readies, /*leader_appends=*/false);
    for (auto& [g, rd] : readies) {
      if (rd.soft_state) LogRoleChange(*g, *rd.soft_state);
      DeliverCommitted(*g, rd);
      TellLeadership(*g, rd);
      g->raw->Advance(rd);
      FinishTransfers(*g);
    }
    EnqueueApply(std::exchange(to_apply_, {}));
  }
}

// 1. Every group's entries and hard state in one batch, synced once, then
// visible to the cores through their MemoryStorage.
void NodeHost::Persist(std::vector<std::pair<GroupState*, Ready>>& readies) {
  std::vector<GroupWrite> writes;
  bool sync = false;
  for (auto& [g, rd] : readies) {
    if (!rd.hard_state && !rd.snapshot && rd.entries.empty()) continue;
    writes.push_back({g->id, rd.hard_state, rd.snapshot, rd.entries, {}, 0});
    const HardState& stored = g->storage->hard_state();
    const bool skip = options_.defects.leader_skips_sync &&
                      g->raw->raft().role() == Role::kLeader && !rd.snapshot &&
                      !(rd.hard_state && (rd.hard_state->term != stored.term ||
                                          rd.hard_state->vote != stored.vote));
    sync = sync || (rd.must_sync && !skip);
  }
  if (!writes.empty()) {
    const Clock::TimePoint start = clock_->Now();
    absl::Status st = log_->Write(writes, sync);
    if (!st.ok()) StorageFailed("writing the raft log", st);
    const auto took = clock_->Now() - start;
    size_t entries = 0;
    for (const GroupWrite& w : writes) entries += w.entries.size();
    if (sync) slow_disk_->Synced(took);
    counters_.LogWrite(std::chrono::duration<double>(took).count(), sync,
                       entries);
    if (took >= kSlowWrite) {
      spdlog::warn(
          "[n={}] slow raft log write: {} ms for {} groups, {} "
          "entries{}",
          options_.id,
          std::chrono::duration_cast<std::chrono::milliseconds>(took).count(),
          writes.size(), entries, sync ? ", synced" : "");
    }
  }
  for (auto& [g, rd] : readies) {
    if (rd.snapshot) {
      g->storage->ApplySnapshot(*rd.snapshot);
      g->conf_history.assign(
          1, {rd.snapshot->metadata.index, rd.snapshot->metadata.conf_state});
    }
    if (rd.hard_state) g->storage->SetHardState(*rd.hard_state);
    g->storage->Append(rd.entries);
  }
}

// 2. The messages of every group, batched per destination node. A
// leader's appends and heartbeats go first, before step 1 (dissertation
// §10.2.1): the followers write the entries while the leader does. Those
// early messages carry no commit index past what the leader has written (a
// leader with no other voter commits on its own copy at once), and a Ready
// that changes term or vote sends nothing early: a message must never
// speak of a term, vote or commit its sender could forget in a crash.
// Everything else (answers, votes) goes after the write it depends on.
void NodeHost::SendMessages(std::vector<std::pair<GroupState*, Ready>>& readies,
                            bool leader_appends) {
  std::map<NodeId, std::vector<GroupMessage>> out;
  const Clock::TimePoint now = clock_->Now();
  for (auto& [g, rd] : readies) {
    const HardState& stored = g->storage->hard_state();
    const bool may_send_early =
        g->raw->raft().role() == Role::kLeader &&
        !(rd.hard_state && (rd.hard_state->term != stored.term ||
                            rd.hard_state->vote != stored.vote));
    const Index written = g->storage->LastIndex();
    auto early = [&](const Message& m) {
      return may_send_early && (m.type == MessageType::kAppend ||
                                m.type == MessageType::kHeartbeat);
    };
    std::vector<Message> kept;
    for (Message& m : rd.messages) {
      if (early(m) != leader_appends) {
        kept.push_back(std::move(m));
        continue;
      }
      if (leader_appends) m.commit = std::min(m.commit, written);
      if (m.type == MessageType::kAppend && !m.entries.empty() &&
          g->raw->raft().role() == Role::kLeader) {
        slow_disk_->AppendSent(g->id, m.to, m.entries.back().index, now);
      }
      if (m.type == MessageType::kSnapshot) {
        counters_.SnapshotOffered();
        spdlog::info("[g={} n={} t={}] n{} needs a snapshot: offering index {}",
                     g->id, options_.id, m.term, m.to,
                     m.snapshot.metadata.index);
      }
      const NodeId to = m.to;
      out[to].push_back({g->id, std::move(m)});
    }
    rd.messages = std::move(kept);
  }
  for (auto& [to, msgs] : out) transport_->Send(to, std::move(msgs));
}

// 3. Committed entries go to the apply thread with their proposals'
// callbacks, queued at the end of the round with every other group's;
// membership changes reach the core here, on the raft loop.
// Read states wait for their index to be applied.
void NodeHost::DeliverCommitted(GroupState& g, const Ready& rd) {
  if (rd.snapshot) FailPendingCoveredBy(g, rd.snapshot->metadata.index);
  ApplyTask task;
  task.group = g.id;
  task.sm = g.sm;
  for (const Entry& e : rd.committed_entries) {
    ProposeCallback cb = TakeProposal(g, e);
    if (e.type == EntryType::kConfChange) {
      absl::StatusOr<ConfChange> cc = DecodeConfChange(e.data);
      TALLY_CHECK(cc.ok(), "undecodable membership change in the log");
      absl::StatusOr<ConfState> cs = g.raw->ApplyConfChange(*cc);
      if (cs.ok()) {
        g.conf_history.emplace_back(e.index, *cs);
        spdlog::info(
            "[g={} n={} t={}] membership change at index {} ({}): "
            "now {}",
            g.id, options_.id, g.raw->raft().term(), e.index, Describe(*cc),
            Describe(*cs));
      } else if (cb) {
        std::exchange(cb, nullptr)(cs.status());
      }
    }
    task.entries.push_back(e);
    task.callbacks.push_back(std::move(cb));
  }
  if (!task.entries.empty()) to_apply_.push_back(std::move(task));
  for (const ReadState& rs : rd.read_states) {
    auto r = g.reads.find(rs.context);
    if (r == g.reads.end()) continue;
    WaitApplied(g.id, rs.index, std::move(r->second));
    g.reads.erase(r);
  }
  if (rd.soft_state && rd.soft_state->role != Role::kLeader) {
    // Reads in flight at a deposed leader are never answered.
    for (auto& [ctx, r] : g.reads) {
      r(absl::UnavailableError("leadership changed during the read"));
    }
    g.reads.clear();
  }
}

void NodeHost::TellLeadership(GroupState& g, const Ready& rd) {
  const Term term = g.raw->raft().term();
  const bool leader = g.raw->raft().role() == Role::kLeader;
  auto tell = [&](Term t, bool leading) {
    ApplyTask task;
    task.group = g.id;
    task.run = [sm = g.sm, t, leading] { sm->OnLeadership(t, leading); };
    to_apply_.push_back(std::move(task));
  };
  if (g.told_leading != 0 && (!leader || term != g.told_leading)) {
    tell(std::exchange(g.told_leading, 0), false);
  }
  if (!leader) return;
  if (g.leading_term != term) {
    // Its first entry of the term (the empty one it appends on winning) is
    // in the Ready that makes it leader.
    g.leading_term = term;
    g.leading_from = g.raw->raft().log().LastIndex();
    for (const Entry& e : rd.entries) {
      if (e.term == term) {
        g.leading_from = e.index;
        break;
      }
    }
  }
  // Committed entries are handed to the apply thread in order: a task
  // queued after them runs once they are applied.
  const Index handed =
      rd.committed_entries.empty() ? 0 : rd.committed_entries.back().index;
  if (g.told_leading == 0 && handed >= g.leading_from) {
    g.told_leading = term;
    tell(term, true);
  }
}

void NodeHost::FailPendingCoveredBy(GroupState& g, Index snapshot_index) {
  auto end = g.pending.upper_bound(snapshot_index);
  for (auto it = g.pending.begin(); it != end; ++it) {
    it->second.done(absl::DeadlineExceededError(
        "a snapshot replaced the log before this node saw the entry commit; "
        "the outcome is unknown (retry with the same session to find out)"));
  }
  g.pending.erase(g.pending.begin(), end);
}

ProposeCallback NodeHost::TakeProposal(GroupState& g, const Entry& e) {
  auto p = g.pending.find(e.index);
  if (p == g.pending.end()) return nullptr;
  ProposeCallback cb = std::move(p->second.done);
  const bool ours = p->second.term == e.term;
  g.pending.erase(p);
  if (ours) return cb;
  cb(absl::UnavailableError(
      "leadership changed before the entry committed; it was not applied"));
  return nullptr;
}

void NodeHost::FinishTransfers(GroupState& g) {
  for (auto it = g.transfers.begin(); it != g.transfers.end();) {
    if (g.raw->raft().lead() == it->target) {
      it->done(absl::OkStatus());
    } else if (it->ticks_left <= 0) {
      it->done(absl::DeadlineExceededError(
          absl::StrCat("leadership of group ", g.id, " did not move to node ",
                       it->target, " in time")));
    } else {
      ++it;
      continue;
    }
    it = g.transfers.erase(it);
  }
}

void NodeHost::MaybeCompact(GroupState& g, Index durable) {
  // The state machine can be ahead of the core after installing a snapshot
  // exported from a later state than the one announced: never record a
  // snapshot past what the core has applied (and so committed).
  durable = std::min(durable, g.raw->raft().log().applied());
  if (durable <= g.storage->GetSnapshot()->metadata.index ||
      durable > g.storage->LastIndex()) {
    return;
  }
  ConfState conf;
  for (const auto& [index, cs] : g.conf_history) {
    if (index <= durable) conf = cs;
  }
  absl::Status st = g.storage->CreateSnapshot(durable, conf, "");
  if (!st.ok()) return;
  const Snapshot snap = *g.storage->GetSnapshot();
  const Index compact_to =
      durable > options_.compaction_lag ? durable - options_.compaction_lag : 0;
  std::vector<GroupWrite> w(1);
  w[0].group = g.id;
  w[0].compact = snap;
  w[0].compact_to = compact_to;
  st = log_->Write(w, /*sync=*/false);
  if (!st.ok()) StorageFailed("compacting the raft log", st);
  if (compact_to >= g.storage->FirstIndex()) {
    g.storage->Compact(compact_to).IgnoreError();
  }
  // Keep the configuration in force at the snapshot and what follows.
  std::vector<std::pair<Index, ConfState>> kept = {{durable, conf}};
  for (auto& h : g.conf_history) {
    if (h.first > durable) kept.push_back(h);
  }
  g.conf_history = std::move(kept);
}

}  // namespace tally::raft::host
