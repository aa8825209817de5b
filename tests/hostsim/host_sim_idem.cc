// The idempotency clients of the host simulation: they retry Begin on a few
// keys, and the one that owns a key completes it with an effect (a put
// committed with the completion) after doing its "work", renewing its claim
// meanwhile; some pause past the claim and complete anyway. Checked at the
// end against the replicas: per key at most one owner's completion
// accepted, the stored response and the single effect are that owner's,
// and every replay returned the stored response.

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "tests/hostsim/internal/world.h"

namespace tally::hostsim::internal {

namespace {

constexpr int64_t kUsPerMs = 1000;

std::string EffectPrefix(const std::string& key) {
  return absl::StrCat(kIdemScope, key, "/e/");
}

}  // namespace

void World::IdemClientsAct() {
  const int64_t now = now_us_;
  for (int c = 0; c < static_cast<int>(idem_clients_.size()); ++c) {
    IdemClient& ic = idem_clients_[c];
    if (now < ic.paused_until_us) continue;
    if (random_.Chance(plan_.lock_pause)) {
      ic.paused_until_us =
          now + static_cast<int64_t>(200 + random_.Uniform(1800)) * kUsPerMs;
      continue;
    }
    if (ic.busy) {
      if (step_ < ic.give_up_step) continue;
      ic.busy = false;  // outcome unknown
      ic.token = 0;     // an owner that lost track starts over
      ic.target = 1 + random_.Uniform(nodes_.size());
    }
    kvpb::Command cmd;
    if (ic.token != 0 && now >= ic.finish_at_us) {
      kvpb::IdemFinish* f = cmd.mutable_idem_finish();
      f->set_scope(kIdemScope);
      f->set_key(ic.key);
      f->set_token(ic.token);
      f->set_response(absl::StrCat("ic", c, ":", ic.token));
      kvpb::Put* effect = f->mutable_effects()->add_success()->mutable_put();
      effect->set_key(absl::StrCat(EffectPrefix(ic.key), ic.token));
      effect->set_value(absl::StrCat(c));
    } else if (ic.token != 0 && now >= ic.renew_at_us) {
      cmd.mutable_idem_renew()->set_scope(kIdemScope);
      cmd.mutable_idem_renew()->set_key(ic.key);
      cmd.mutable_idem_renew()->set_token(ic.token);
      cmd.mutable_idem_renew()->set_ttl_ms(kIdemClaimMs);
    } else if (ic.token == 0 && random_.Chance(0.15)) {
      // A new handful of keys every few seconds: most Begins race for keys
      // not yet completed.
      ic.key = absl::StrCat("i", now / (kIdemKeyEpochMs * kUsPerMs), "-",
                            random_.Uniform(kIdemKeys));
      idem_keys_.insert(ic.key);
      kvpb::IdemBegin* b = cmd.mutable_idem_begin();
      b->set_scope(kIdemScope);
      b->set_key(ic.key);
      b->set_fingerprint("same request");
      b->set_ttl_ms(kIdemClaimMs);
      b->set_retention_ms(3'600'000);
      b->set_attempt_id(++next_request_id_);
    } else {
      continue;
    }
    IdemInvoke(c, std::move(cmd));
  }
}

void World::IdemInvoke(int c, kvpb::Command cmd) {
  IdemClient& ic = idem_clients_[c];
  Node& n = node(ic.target);
  if (!Running(n)) {
    ic.target = 1 + random_.Uniform(nodes_.size());
    return;
  }
  auto sm = n.machines.find(kIdemGroup);
  cmd.set_time_ms(sm == n.machines.end() ? 0 : sm->second->ProposalTimeMs());
  ic.busy = true;
  const uint64_t request = ++ic.request;
  ic.give_up_step = step_ + kOpTimeoutTicks * kStepsPerTick;
  const int64_t sent_us = now_us_;
  Trace(absl::StrCat("ic", c, " request ", request, ": ",
                     cmd.ShortDebugString(), " at n", n.id));
  const std::string data = cmd.SerializeAsString();  // before cmd moves
  n.host->Propose(kIdemGroup, data,
                  [this, c, request, sent_us, cmd = std::move(cmd)](
                      absl::StatusOr<raft::host::Applied> a) {
                    IdemClient& ic = idem_clients_[c];
                    if (!ic.busy || ic.request != request)
                      return;  // given up on
                    ic.busy = false;
                    kvpb::CommandResult r;
                    if (a.ok() && !r.ParseFromString(a->result)) {
                      return Fail("undecodable idempotency command result");
                    }
                    Trace(absl::StrCat(
                        "ic", c, " answer to ", request, ": ",
                        a.ok() ? r.ShortDebugString() : a.status().ToString()));
                    IdemAnswered(c, cmd, sent_us, a.ok() ? &r : nullptr);
                  });
}

void World::IdemAnswered(int c, const kvpb::Command& cmd, int64_t sent_us,
                         const kvpb::CommandResult* r) {
  IdemClient& ic = idem_clients_[c];
  if (r == nullptr) {
    // Not applied (no leader here, a leader change): an owner's claim may
    // still stand; a Begin is simply tried again later.
    ic.target = 1 + random_.Uniform(nodes_.size());
    return;
  }
  const int64_t now = now_us_;
  if (cmd.has_idem_begin()) {
    const kvpb::IdemResult& res = r->idem();
    if (res.outcome() == kvpb::IdemResult::STARTED) {
      ic.token = res.record().token();
      ic.renew_at_us = sent_us + kIdemClaimMs * kUsPerMs / 3;
      ic.finish_at_us =
          now + static_cast<int64_t>(20 + random_.Uniform(600)) * kUsPerMs;
    } else if (res.outcome() == kvpb::IdemResult::FINISHED) {
      ++result_.counts.idem_replays;
      idem_replays_.emplace_back(cmd.idem_begin().key(),
                                 res.record().response());
    }
  } else if (cmd.has_idem_renew()) {
    if (r->error_code() == 0) {
      ic.renew_at_us = sent_us + kIdemClaimMs * kUsPerMs / 3;
    } else {
      ic.token = 0;  // taken over
    }
  } else if (cmd.has_idem_finish()) {
    if (r->error_code() == 0) {
      ++result_.counts.idem_completed;
      idem_completed_.insert(
          {cmd.idem_finish().key(), cmd.idem_finish().token()});
    } else if (r->error_reason() == "stale-token") {
      ++result_.counts.idem_stale_refused;
    }
    ic.token = 0;
  }
}

void World::CheckIdempotency() {
  std::vector<Node*> members = Members(kIdemGroup);
  if (members.empty()) return Fail("idempotency: no leader to read from");
  const kv::StateMachine& sm = *members[0]->machines.at(kIdemGroup);
  std::map<std::string, std::set<uint64_t>> completed;
  for (const auto& [key, token] : idem_completed_) completed[key].insert(token);
  for (const std::string& key : idem_keys_) {
    auto rec = sm.idempotency().Get(kIdemScope, key);
    bool more = false;
    auto effects = sm.kv().Range(EffectPrefix(key), EffectPrefix(key) + "\xff",
                                 100, &more);
    if (!rec.ok() || !effects.ok()) return Fail("idempotency: read failed");
    const std::set<uint64_t>& tokens = completed[key];
    if (tokens.size() > 1) {
      return Fail(absl::StrCat("idempotency: key ", key, " completed by ",
                               tokens.size(), " owners (tokens ",
                               *tokens.begin(), ", ", *tokens.rbegin(), ")"));
    }
    std::string stored;
    uint64_t stored_token = 0;
    if (*rec && (*rec)->state() == kvpb::IdemRecord::COMPLETED) {
      stored = (*rec)->response();
      stored_token = (*rec)->token();
      if (!tokens.empty() && *tokens.begin() != stored_token) {
        return Fail(absl::StrCat("idempotency: key ", key, " stores token ",
                                 stored_token, "'s response, but token ",
                                 *tokens.begin(), " completed it"));
      }
    } else if (!tokens.empty()) {
      return Fail(absl::StrCat("idempotency: key ", key, " completed by token ",
                               *tokens.begin(), " is not completed"));
    }
    std::vector<std::string> want;
    if (stored_token != 0) {
      want.push_back(absl::StrCat(EffectPrefix(key), stored_token));
    }
    std::vector<std::string> got;
    for (const kvpb::KeyValue& kv : *effects) got.push_back(kv.key());
    if (got != want) {
      return Fail(absl::StrCat("idempotency: key ", key, " has ", got.size(),
                               " effects, not exactly its completer's (token ",
                               stored_token, ")"));
    }
    for (const auto& [replayed_key, response] : idem_replays_) {
      if (replayed_key == key && response != stored) {
        return Fail(absl::StrCat("idempotency: key ", key, " replayed \"",
                                 response, "\", stores \"", stored, "\""));
      }
    }
  }
}

}  // namespace tally::hostsim::internal
