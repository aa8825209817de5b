#ifndef TALLY_KV_SESSION_SESSION_H_
#define TALLY_KV_SESSION_SESSION_H_

#include <cstdint>
#include <functional>
#include <string>

#include "kv/module.h"

namespace tally::kv {

// A session ends once this long passes without a request from it, unless it
// was opened with another TTL. The time is log time (state_machine.h).
inline constexpr int64_t kSessionTtlMs = 10 * 60 * 1000;
// Ended sessions' records are removed whenever log time enters a new period
// of this length (the records of ended sessions are garbage either way: a
// request under an ended session is refused whether or not it is there).
inline constexpr int64_t kSessionSweepMs = 60 * 1000;
// Saved results kept per session, for requests still in flight.
inline constexpr size_t kMaxResultsPerSession = 4096;

// Exactly-once client sessions (Raft dissertation §6.3), around any module:
// a client opens a session through the log (the entry's index is its id),
// numbers its requests, and a retried request is answered from the saved
// result instead of running again. Key space 's'.
//
// Whether a session has ended is decided per entry, from that entry's log
// time, so every replica decides alike whatever its apply batches; the
// sweep only removes records that every later entry would find ended anyway.
//
// Thread safety: the apply thread only.
class Sessions final : public Module {
 public:
  // Not owned.
  explicit Sessions(const Keyspace* keys) : keys_(keys) {}

  // Opening a session.
  bool Handles(const kvpb::Command& cmd) const override;
  kvpb::CommandResult Apply(ApplyContext& ctx,
                            const kvpb::Command& cmd) override;
  void OnLogTime(ApplyContext& ctx, int64_t before) override;

  // Runs `cmd`, which carries a session, with `run` unless that session has
  // run its sequence already (then the saved result, marked replayed), or
  // the session has ended, belongs to another group, or reuses a sequence
  // for another request (then a refusal; nothing runs).
  kvpb::CommandResult RunOnce(ApplyContext& ctx, const kvpb::Command& cmd,
                              const std::function<kvpb::CommandResult()>& run);

 private:
  const Keyspace* const keys_;
};

}  // namespace tally::kv

#endif  // TALLY_KV_SESSION_SESSION_H_
