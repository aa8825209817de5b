// The lock clients of the host simulation, the leader duties that end their
// leases, and the check of what the holders believed.
//
// A lock client behaves as a service using client::LockSession: it keeps a
// lease alive, tries the lock now and then, holds it for a while and
// releases it. By its own reckoning it holds the lock from the grant's
// answer until it sends the release, or until its lease may have ended:
// the send time of the last confirmed keep-alive + TTL x (1 - drift) -
// margin. A client may pause past that. The check: no two clients ever
// believed they held the lock at the same time, and each holder's token was
// higher than the one before. The clients read the world's clock; the nodes
// read clocks that run at their own rates (Plan::drift), which the margin
// must cover.

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kv/kvpb/kvpb.pb.h"
#include "tests/hostsim/internal/world.h"

namespace tally::hostsim::internal {

namespace {

constexpr int64_t kUsPerMs = 1000;

// The end of validity, by the holder's reckoning, of a lease confirmed by a
// request sent at `sent_us`.
int64_t ValidUntil(int64_t sent_us) {
  return sent_us +
         static_cast<int64_t>(kLeaseTtlMs * (1 - kHolderDrift)) * kUsPerMs -
         kHolderMarginMs * kUsPerMs;
}

std::string Seconds(int64_t us) {
  return absl::StrCat(us / 1'000'000, ".",
                      absl::Dec(us % 1'000'000 / 1000, absl::kZeroPad3), "s");
}

std::string Describe(const kvpb::Command& cmd) {
  if (cmd.has_lease_grant()) return "lease grant";
  if (cmd.has_lease_renew()) {
    return absl::StrCat("keep-alive of lease ", cmd.lease_renew().ids(0));
  }
  if (cmd.has_lock_acquire()) {
    return absl::StrCat("acquire with lease ", cmd.lock_acquire().lease(),
                        " (request ", cmd.lock_acquire().request_id(), ")");
  }
  if (cmd.has_lock_release()) {
    return absl::StrCat("release of token ", cmd.lock_release().token());
  }
  if (cmd.has_put()) {
    return absl::StrCat("fenced write with token ", cmd.fence_token());
  }
  return cmd.ShortDebugString();
}

}  // namespace

void World::LeaderDuties() {
  for (auto& n : nodes_) {
    if (!Running(*n)) continue;
    std::vector<std::pair<GroupId, kv::StateMachine*>> groups;
    for (auto& [g, sm] : n->machines) groups.emplace_back(g, sm.get());
    n->duties->Run(groups);
  }
}

void World::LockClientsAct() {
  const int64_t now = now_us_;
  for (int c = 0; c < static_cast<int>(lock_clients_.size()); ++c) {
    LockClient& lc = lock_clients_[c];
    if (lc.lease != 0 && now >= lc.valid_until_us) {
      // The lease may have ended on the server: so may the lock.
      Trace(absl::StrCat("lc", c, " counts lease ", lc.lease, " as lost"));
      const uint64_t stale = lc.token;
      if (lc.token != 0) EndHold(lc, lc.valid_until_us);
      lc = LockClient{.target = lc.target,
                      .busy = lc.busy,
                      .request = lc.request,
                      .give_up_step = lc.give_up_step,
                      .paused_until_us = lc.paused_until_us,
                      .stale = stale};
    }
    if (now < lc.paused_until_us) continue;
    if (random_.Chance(plan_.lock_pause)) {
      ++result_.counts.lock_pauses;
      lc.paused_until_us =
          now + static_cast<int64_t>(200 + random_.Uniform(2800)) * kUsPerMs;
      Trace(
          absl::StrCat("lc", c, " pauses until ", Seconds(lc.paused_until_us)));
      continue;
    }
    if (lc.busy) {
      if (step_ < lc.give_up_step) continue;
      // Outcome unknown: an Acquire or a release is sent again as it was.
      Trace(absl::StrCat("lc", c, " gives up on request ", lc.request));
      lc.busy = false;
      ++lc.request;
      lc.target = 1 + random_.Uniform(nodes_.size());
    }
    kvpb::Command cmd;
    GroupId group = kLockGroup;
    auto fenced_write = [&](uint64_t token) {
      group = kFenceGroup;
      cmd.mutable_put()->set_key(kFencedKey);
      cmd.mutable_put()->set_value(absl::StrCat(token));
      cmd.set_fence_token(token);
    };
    if (lc.stale != 0 && fence_bound_) {
      // Back from a pause past its lease, a holder that does not look at
      // its lease first finishes the write it was making.
      fenced_write(lc.stale);
      lc.stale = 0;
    } else if (lc.lease == 0) {
      lc.stale = 0;
      cmd.mutable_lease_grant()->set_ttl_ms(kLeaseTtlMs);
    } else if (now >= lc.renew_at_us) {
      cmd.mutable_lease_renew()->add_ids(lc.lease);
    } else if (lc.releasing != 0) {
      cmd.mutable_lock_release()->set_name(kLockName);
      cmd.mutable_lock_release()->set_token(lc.releasing);
    } else if (lc.token != 0 && now < lc.release_at_us) {
      if (!fence_bound_) {
        group = kFenceGroup;
        cmd.mutable_fence_bind()->set_prefix(kFencePrefix);
        cmd.mutable_fence_bind()->set_lock(kLockName);
      } else if (random_.Chance(0.3)) {
        fenced_write(lc.token);
      } else {
        continue;
      }
    } else if (lc.token != 0) {
      // It stops using the lock as it asks to release it.
      lc.releasing = lc.token;
      EndHold(lc, now);
      cmd.mutable_lock_release()->set_name(kLockName);
      cmd.mutable_lock_release()->set_token(lc.releasing);
    } else if (random_.Chance(0.5)) {
      if (lc.acquire_id == 0) lc.acquire_id = ++next_request_id_;
      kvpb::LockAcquire* a = cmd.mutable_lock_acquire();
      a->set_name(kLockName);
      a->set_lease(lc.lease);
      a->set_request_id(lc.acquire_id);
    } else {
      continue;
    }
    LockInvoke(c, group, std::move(cmd));
  }
}

void World::LockInvoke(int c, GroupId g, kvpb::Command cmd) {
  LockClient& lc = lock_clients_[c];
  Node& n = node(lc.target);
  if (!Running(n)) {
    lc.target = 1 + random_.Uniform(nodes_.size());
    return;  // could not connect; tries again later
  }
  auto sm = n.machines.find(g);
  cmd.set_time_ms(sm == n.machines.end() ? 0 : sm->second->ProposalTimeMs());
  lc.busy = true;
  const uint64_t request = ++lc.request;
  lc.give_up_step = step_ + kOpTimeoutTicks * kStepsPerTick;
  const int64_t sent_us = now_us_;
  Trace(absl::StrCat("lc", c, " request ", request, ": ", Describe(cmd),
                     " at n", n.id, " (log time ", cmd.time_ms(), ")"));
  const std::string data = cmd.SerializeAsString();
  n.host->Propose(
      g, data,
      [this, c, request, sent_us,
       cmd = std::move(cmd)](absl::StatusOr<raft::host::Applied> a) {
        LockClient& lc = lock_clients_[c];
        if (!lc.busy || lc.request != request) return;  // given up on
        lc.busy = false;
        if (!a.ok()) return LockAnswered(c, cmd, sent_us, a.status());
        kvpb::CommandResult result;
        if (!result.ParseFromString(a->result)) {
          return Fail("undecodable lock command result");
        }
        absl::StatusOr<kvpb::CommandResult> r = std::move(result);
        if (r->error_code() != 0) {
          r = absl::Status(static_cast<absl::StatusCode>(r->error_code()),
                           r->error_message());
        }
        LockAnswered(c, cmd, sent_us, r);
      });
}

void World::LockAnswered(int c, const kvpb::Command& cmd, int64_t sent_us,
                         const absl::StatusOr<kvpb::CommandResult>& r) {
  LockClient& lc = lock_clients_[c];
  const int64_t now = now_us_;
  Trace(absl::StrCat("lc", c, " ", Describe(cmd), ": ",
                     r.ok() ? r->ShortDebugString() : r.status().ToString()));
  if (!r.ok()) {
    if (cmd.has_put() && absl::IsFailedPrecondition(r.status())) {
      ++result_.counts.stale_writes_refused;
      return;
    }
    if (cmd.has_lock_release() && absl::IsFailedPrecondition(r.status())) {
      lc.releasing = 0;  // not held under that token any more
      return;
    }
    if (cmd.has_lock_acquire() && absl::IsNotFound(r.status()) &&
        cmd.lock_acquire().lease() == lc.lease) {
      // The lease ended on the server: the client will take a new one.
      lc.valid_until_us = std::min(lc.valid_until_us, now);
      return;
    }
    // Follow the answering node's leader hint, as a client does.
    Node& n = node(lc.target);
    if (n.up && n.host != nullptr) {
      absl::StatusOr<raft::host::GroupInfo> info = n.host->Group(
          cmd.has_put() || cmd.has_fence_bind() ? kFenceGroup : kLockGroup);
      if (info.ok() && info->leader != raft::kNoNode &&
          info->leader != lc.target) {
        lc.target = info->leader;
        return;
      }
    }
    lc.target = 1 + random_.Uniform(nodes_.size());
    return;
  }
  if (cmd.has_lease_grant()) {
    if (lc.lease != 0) return;
    lc.lease = r->lease().id();
    lc.valid_until_us = ValidUntil(sent_us);
    lc.renew_at_us = sent_us + kLeaseTtlMs * kUsPerMs / 3;
  } else if (cmd.has_lease_renew()) {
    if (cmd.lease_renew().ids(0) != lc.lease) return;
    const auto& remaining = r->lease_renew().remaining_ms();
    auto it = remaining.find(lc.lease);
    if (it == remaining.end() || it->second <= 0) {
      lc.valid_until_us = std::min(lc.valid_until_us, now);
      return;  // ended on the server; counted as lost at the next tick
    }
    lc.valid_until_us = std::max(lc.valid_until_us, ValidUntil(sent_us));
    lc.renew_at_us = sent_us + kLeaseTtlMs * kUsPerMs / 3;
  } else if (cmd.has_lock_acquire()) {
    if (cmd.lock_acquire().lease() != lc.lease) return;
    lc.acquire_id = 0;
    // Granted too late to use: the lease will end it on the server.
    if (!r->lock().acquired() || now >= lc.valid_until_us) return;
    lc.token = r->lock().holder().token();
    lc.hold = holds_.size();
    holds_.push_back(Hold{.client = c, .token = lc.token, .from_us = now});
    ++result_.counts.locks_held;
    lc.release_at_us =
        now + static_cast<int64_t>(50 + random_.Uniform(1500)) * kUsPerMs;
    Trace(absl::StrCat("lc", c, " holds token ", lc.token, " (lease valid ",
                       "until ", Seconds(lc.valid_until_us), ")"));
  } else if (cmd.has_lock_release()) {
    lc.releasing = 0;
  } else if (cmd.has_fence_bind()) {
    fence_bound_ = true;
  } else if (cmd.has_put()) {
    ++result_.counts.fenced_writes;
    fenced_.push_back(FencedWrite{.client = c,
                                  .token = cmd.fence_token(),
                                  .index = r->put().header().raft_index()});
  }
}

void World::EndHold(LockClient& lc, int64_t at_us) {
  holds_[lc.hold].until_us = at_us;
  lc.token = 0;
}

void World::CheckHolds() {
  std::vector<Hold> holds;
  for (Hold h : holds_) {
    // Still held: by the holder's reckoning, until its lease's validity.
    if (h.until_us == INT64_MAX) {
      h.until_us = lock_clients_[h.client].valid_until_us;
    }
    if (h.until_us > h.from_us) holds.push_back(h);
  }
  std::sort(holds.begin(), holds.end(),
            [](const Hold& a, const Hold& b) { return a.from_us < b.from_us; });
  // With holds sorted by start, any overlap shows between neighbours.
  for (size_t i = 1; i < holds.size(); ++i) {
    const Hold& a = holds[i - 1];
    const Hold& b = holds[i];
    if (b.from_us < a.until_us) {
      return Fail(absl::StrCat(
          "mutual exclusion: lc", a.client, " held ", kLockName, " with token ",
          a.token, " from ", Seconds(a.from_us), " until ", Seconds(a.until_us),
          " by its reckoning, but lc", b.client, " was granted token ", b.token,
          " at ", Seconds(b.from_us)));
    }
    if (b.token <= a.token) {
      return Fail(absl::StrCat("fence tokens: lc", b.client, " was granted ",
                               kLockName, " with token ", b.token, " at ",
                               Seconds(b.from_us), ", after lc", a.client,
                               " held it with token ", a.token));
    }
  }
}

void World::CheckFencedWrites() {
  std::vector<FencedWrite> writes = fenced_;
  std::sort(writes.begin(), writes.end(),
            [](const FencedWrite& a, const FencedWrite& b) {
              return a.index < b.index;
            });
  for (size_t i = 1; i < writes.size(); ++i) {
    const FencedWrite& a = writes[i - 1];
    const FencedWrite& b = writes[i];
    if (b.token < a.token) {
      return Fail(absl::StrCat("fence: ", kFencedKey, " took lc", b.client,
                               "'s write with token ", b.token, " at index ",
                               b.index, " after lc", a.client, "'s with token ",
                               a.token, " at index ", a.index));
    }
  }
}

}  // namespace tally::hostsim::internal
