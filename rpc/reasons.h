#ifndef TALLY_RPC_REASONS_H_
#define TALLY_RPC_REASONS_H_

// Machine-readable error reasons (rpc/kv.proto, "Errors"): trailing metadata
// "tally-reason" on the wire, an absl::Status payload of the same name in a
// process, CommandResult.error_reason in the log.
namespace tally::rpc {

inline constexpr char kReasonKey[] = "tally-reason";
// Other trailing metadata of a node's answers: the leader's client address
// with a redirect (UNAVAILABLE), the node that answered it, and with
// RESOURCE_EXHAUSTED the wait the node asks for before a retry (ms).
inline constexpr char kLeaderKey[] = "tally-leader";
inline constexpr char kNodeKey[] = "tally-node";
inline constexpr char kRetryAfterKey[] = "tally-retry-after-ms";
// The write may or may not have been applied (DEADLINE_EXCEEDED).
inline constexpr char kOutcomeUnknown[] = "outcome-unknown";
// The session ended or never existed; the request was not applied.
inline constexpr char kSessionExpired[] = "session-expired";
// The session belongs to another shard; the request was not applied.
inline constexpr char kSessionWrongGroup[] = "session-wrong-group";
// A learner to promote has not caught up yet; nothing changed.
inline constexpr char kLearnerBehind[] = "learner-behind";
// The lease has ended (expired or revoked) or never existed.
inline constexpr char kReasonLeaseNotFound[] = "lease-not-found";
// A lock's queue of waiters is at its bound; the wait was not queued.
// RESOURCE_EXHAUSTED, but the cluster's answer, not overload: not retried.
inline constexpr char kReasonLockQueueFull[] = "lock-queue-full";
// A lock wait that ran out: withdrawn through the log, nothing granted.
// DEADLINE_EXCEEDED, but a known outcome: not retried.
inline constexpr char kReasonLockWaitEnded[] = "lock-wait-ended";
// A lock release or wait under a token or request that does not hold it.
inline constexpr char kReasonLockNotHeld[] = "lock-not-held";
// A fenced write whose token is below the highest accepted for the key's
// fence; nothing of it was applied.
inline constexpr char kReasonFenceStale[] = "fence-stale";
// A write to a fenced key without a fence token; nothing was applied.
inline constexpr char kReasonFenceMissing[] = "fence-missing";
// An idempotency owner, or a saga coordinator, whose token was overtaken by
// a later one; nothing was applied.
inline constexpr char kReasonStaleToken[] = "stale-token";
// An idempotency owner's Finish or Renew of a key not claimed (anymore):
// it failed retryably, was reaped, or never began.
inline constexpr char kReasonNotClaimed[] = "not-claimed";
// A saga created again for another request (another fingerprint).
inline constexpr char kReasonMismatch[] = "mismatch";
// A saga transition decided on a version that is no longer the saga's;
// nothing was applied.
inline constexpr char kReasonVersionChanged[] = "version-changed";
// A saga transition that the saga's state does not allow (no step to run,
// another step next, no incident to resolve); nothing was applied.
inline constexpr char kReasonSagaState[] = "saga-state";

}  // namespace tally::rpc

#endif  // TALLY_RPC_REASONS_H_
