#!/usr/bin/env bash
# Integration test: sagas on a real three-node cluster, coordinated by the
# order example (examples/saga_order.cc: reserve, charge, ship, each step's
# work a write committed with its idempotency record). Its coordinator is
# killed with kill -9 between steps, after a step's work was stored but
# before the saga recorded it, and at random moments; paused past its lease
# while another process takes over; a failing step compensates; a failing
# compensation waits for an operator (kvctl saga). After each, every step's
# work was done exactly once and no step's code ran again once done.
# Bounded in time; stops what it started.
#   saga_test.sh BIN_DIR
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir=$(mktemp -d /tmp/tally-saga.XXXXXX)
export TALLY_BIN=$bin TALLY_PORT_BASE=$((20000 + RANDOM % 12000))  # below the ephemeral ports
export TALLY_OWNER_PID=$$  # the nodes stop even if this script is killed
b=$TALLY_PORT_BASE
export KVCTL_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
export SAGA_CALL_LOG=$dir/calls.log
coordinator=
cleanup() {
  if [ -n "$coordinator" ]; then
    kill -CONT "$coordinator" 2>/dev/null || true
    kill -9 "$coordinator" 2>/dev/null || true
  fi
  "$root/deploy/local-cluster.sh" stop "$dir" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
kvctl() { "$bin/kvctl" "$@"; }
order() { "$bin/saga_order_example" "$KVCTL_ENDPOINTS" "$@"; }
fail() { echo "FAIL: $*"; for f in "$dir"/n*.log "$dir"/*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 20 "$f"; }; done; exit 1; }
ok() { echo "ok: $*"; }
# The effects saga $1's phase $2 ("charge", "charge/undo") committed.
effects() { kvctl scan "saga/$1/$2/effect/" "saga/$1/$2/effect0" | grep -c . || true; }
# How often the code of saga $1's phase $2 ran.
calls() { grep -c "^$1 $2 attempt" "$SAGA_CALL_LOG" || true; }
# Every step of saga $1 done once, by its code run once.
done_once() {
  local s
  [[ "$(kvctl saga show "$1")" == *"): done,"* ]] || fail "saga $1 is not done: $(kvctl saga show "$1")"
  for s in reserve charge ship; do
    [ "$(effects "$1" "$s")" = 1 ] || fail "saga $1, step $s: $(effects "$1" "$s") effects: $(kvctl scan "saga/$1/" "saga/$10")"
    [ "$(effects "$1" "$s/undo")" = 0 ] || fail "saga $1, step $s undone"
  done
}

"$root/deploy/local-cluster.sh" start "$dir" >/dev/null

# Straight through.
out=$(order run s1) || fail "s1: $out"
[ "$out" = "saga s1: DONE" ] || fail "s1 printed: $out"
done_once s1
for s in reserve charge ship; do [ "$(calls s1 $s)" = 1 ] || fail "s1 $s ran $(calls s1 $s) times"; done
ok "s1 ran reserve, charge, ship once each"

# The same saga again: resumed (here: already done), not run twice; with
# another input: refused.
out=$(order run s1) || fail "s1 again: $out"
[ "$(calls s1 charge)" = 1 ] || fail "s1 ran again"
out=$(order run s1 --input "4 shirts" 2>&1; echo "rc=$?")
[[ "$out" == *"ALREADY_EXISTS"*"exists for another request"*"rc=1" ]] || fail "s1 with another input: $out"
ok "s1 again: nothing ran; with another input: ALREADY_EXISTS"

# An invalid definition: refused by the cluster, nothing created.
out=$(order run bad --charge-is-pivot 2>&1; echo "rc=$?")
[[ "$out" == *"INVALID_ARGUMENT"*'"ship": a compensable step after the pivot (step 2)'*"rc=1" ]] ||
  fail "invalid definition: $out"
out=$(kvctl saga show bad 2>&1; echo "rc=$?")
[[ "$out" == *"no saga \"bad\""*"rc=1" ]] || fail "the invalid saga exists: $out"
ok "a compensable step after the pivot: INVALID_ARGUMENT, nothing created"

# kill -9 between steps: charge recorded, ship not begun. Another process
# resumes once the dead coordinator's lease (2 s) ran out.
rc=0; order run s2 --crash-after charge --lock-ttl-ms 2000 >"$dir/s2.out" 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "s2 was not killed (exit $rc): $(cat "$dir/s2.out")"
[[ "$(kvctl saga list --state running)" == *"s2	running	order	3/3 ship"* ]] ||
  fail "s2 after the kill: $(kvctl saga list)"
out=$(order resume s2) || fail "resuming s2: $out"
[ "$out" = "saga s2: DONE" ] || fail "s2 resumed: $out"
done_once s2
for s in reserve charge; do [ "$(calls s2 $s)" = 1 ] || fail "s2 $s ran again after the kill"; done
ok "s2, killed between charge and ship, resumed by another process: each step once"

# kill -9 after charge's work was stored, before the saga recorded it: the
# next coordinator replays the stored result instead of charging again.
rc=0; order run s3 --crash-before-record charge --lock-ttl-ms 2000 >"$dir/s3.out" 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "s3 was not killed (exit $rc)"
[[ "$(kvctl saga show s3)" == *"charge [compensable]	running"* ]] || fail "s3: $(kvctl saga show s3)"
[ "$(effects s3 charge)" = 1 ] || fail "s3's charge not stored before the kill"
out=$(order resume s3) || fail "resuming s3: $out"
done_once s3
[ "$(calls s3 charge)" = 1 ] || fail "s3's charge ran $(calls s3 charge) times"
[[ "$(kvctl saga show s3)" == *"charge [compensable]	succeeded (2 attempts"* ]] || fail "s3: $(kvctl saga show s3)"
ok "s3, killed after charging but before recording it: resumed without charging again"

# kill -9 at random moments, five times, each step taking 300 ms.
for round in 1 2 3 4 5; do
  "$bin/saga_order_example" "$KVCTL_ENDPOINTS" run s4 --step-ms 300 --lock-ttl-ms 1500 \
    >>"$dir/s4.out" 2>&1 &
  coordinator=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 "$coordinator" 2>/dev/null || true
  wait "$coordinator" 2>/dev/null || true
  coordinator=
done
out=$(order resume s4 --step-ms 300) || fail "resuming s4: $out"
done_once s4
ok "s4, killed at 5 random moments, then resumed: each step's work once ($(grep -c '^s4 ' "$SAGA_CALL_LOG") step runs)"

# A coordinator paused past its lease (1.5 s) in charge; another takes
# over and finishes; the first, resumed, changes nothing.
"$bin/saga_order_example" "$KVCTL_ENDPOINTS" run s5 --step-ms 1000 --lock-ttl-ms 1500 \
  >"$dir/s5a.out" 2>&1 &
coordinator=$!
for _ in $(seq 1 100); do [ "$(calls s5 charge)" = 1 ] && break; sleep 0.05; done
[ "$(calls s5 charge)" = 1 ] || fail "s5 never reached charge"
kill -STOP "$coordinator"
sleep 2.5  # past its lease and its claim on charge (2 s)
out=$(order resume s5) || fail "taking s5 over: $out"
[ "$out" = "saga s5: DONE" ] || fail "s5 taken over: $out"
kill -CONT "$coordinator"
rc=0; wait "$coordinator" || rc=$?
coordinator=
[ "$rc" = 6 ] || fail "the paused coordinator exited $rc, not 6: $(cat "$dir/s5a.out")"
grep -q "another coordinator" "$dir/s5a.out" || fail "the paused coordinator: $(cat "$dir/s5a.out")"
done_once s5
ok "s5: a coordinator paused past its lease was replaced; resumed, it was refused ($(tail -n 1 "$dir/s5a.out"))"

# A step that fails for good: the others are undone in reverse.
out=$(order run s6 --fail-ship) || fail "s6: $out"
[ "$out" = "saga s6: COMPENSATED" ] || fail "s6: $out"
for s in reserve charge; do
  [ "$(effects s6 "$s/undo")" = 1 ] || fail "s6 $s not undone once"
done
[ "$(effects s6 ship)" = 0 ] && [ "$(effects s6 ship/undo)" = 0 ] || fail "s6 shipped or undid ship"
[ "$(grep '^s6 ' "$SAGA_CALL_LOG" | cut -d' ' -f2 | tr '\n' ' ')" = "reserve charge charge/undo reserve/undo " ] ||
  fail "s6 order of calls: $(grep '^s6 ' "$SAGA_CALL_LOG")"
ok "s6: ship failed; charge, then reserve, undone once"

# A compensation that fails for good: an incident for an operator.
rc=0; out=$(order run s7 --fail-ship --fail-refund) || rc=$?
[ "$rc" = 5 ] && [ "$out" = "saga s7: INCIDENT" ] || fail "s7 (exit $rc): $out"
out=$(kvctl saga list --state incident)
[[ "$out" == "s7	incident	order	undo 2/3 charge"* ]] || fail "incident list: $out"
[[ "$(kvctl saga show s7)" == *'incident: the compensation of step "charge" failed after 1 attempt(s): the card issuer refuses the refund'* ]] ||
  fail "s7: $(kvctl saga show s7)"
out=$(kvctl saga retry s7) || fail "retry: $out"
[[ "$out" == "s7	compensating	order	undo 2/3 charge"* ]] || fail "retried: $out"
rc=0; order resume s7 --fail-refund >/dev/null || rc=$?
[ "$rc" = 5 ] || fail "s7 retried and failing again exited $rc"
out=$(kvctl saga mark-done s7 --output "refunded by phone") || fail "mark-done: $out"
[[ "$out" == "s7	compensating	order	undo 1/3 reserve"* ]] || fail "marked done: $out"
out=$(order resume s7) || fail "resuming s7: $out"
[ "$out" = "saga s7: COMPENSATED" ] || fail "s7 after the operator: $out"
[ "$(effects s7 charge/undo)" = 0 ] && [ "$(effects s7 reserve/undo)" = 1 ] || fail "s7 effects"
ok "s7: the refund failed, an operator retried, then marked it done; the saga compensated"

# Operator errors: clear, exit codes, nothing changed.
out=$(kvctl saga retry s1 2>&1; echo "rc=$?")
[[ "$out" == *'saga "s1" is done, not in an incident'*"rc=1" ]] || fail "retry of a done saga: $out"
out=$(kvctl saga show nope 2>&1; echo "rc=$?")
[[ "$out" == *"NOT_FOUND"*"rc=1" ]] || fail "show of no saga: $out"
out=$(kvctl saga list --state bogus 2>&1; echo "rc=$?")
[[ "$out" == *'unknown saga state "bogus"'*"rc=2" ]] || fail "bad state: $out"
ok "operator errors: a done saga, no saga, a bad state"
echo PASS
