#!/usr/bin/env bash
# Integration test: idempotency keys on a real three-node cluster, driven
# with `kvctl idem run`. A runs under a key with a 2 s claim and is
# SIGSTOPped past it while its command finishes; B, a retry, takes the key
# over and completes; A resumes and its Complete is refused naming B's
# token; every later run prints B's stored output. Then replays, a
# fingerprint mismatch, a retry while one runs, failures retryable and
# cached, listing and purging, bad input, and the order example killed
# halfway. Bounded in time; stops what it started.
#   idem_test.sh BIN_DIR
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir=$(mktemp -d /tmp/tally-idem.XXXXXX)
export TALLY_BIN=$bin TALLY_PORT_BASE=$((20000 + RANDOM % 12000))  # below the ephemeral ports
export TALLY_OWNER_PID=$$  # the nodes stop even if this script is killed
b=$TALLY_PORT_BASE
# Two data shards: pay/k2 in the first, pay/k3 and on in the second.
export TALLY_INITIAL_RANGES=pay/k3
export KVCTL_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
owner=
cleanup() {
  if [ -n "$owner" ]; then
    kill -CONT "$owner" 2>/dev/null || true
    kill -9 "$owner" 2>/dev/null || true
  fi
  "$root/deploy/local-cluster.sh" stop "$dir" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
kvctl() { "$bin/kvctl" "$@"; }
fail() { echo "FAIL: $*"; for f in "$dir"/n*.log "$dir"/*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 20 "$f"; }; done; exit 1; }
ok() { echo "ok: $*"; }

"$root/deploy/local-cluster.sh" start "$dir" >/dev/null

# Bad input: a clear error, exit 2, nothing claimed.
out=$(kvctl idem run pay/ k1 --claim-ttl 100ms -- true 2>&1; echo "rc=$?")
[[ "$out" == *"claim TTL of 100 ms is outside 1000 ms"*"rc=2" ]] || fail "short claim: $out"
out=$(kvctl idem run "" k1 -- true 2>&1; echo "rc=$?")
[[ "$out" == *"scope must be 1 to 128 bytes"*"rc=2" ]] || fail "empty scope: $out"
out=$(kvctl idem get pay/ k1 2>&1; echo "rc=$?")
[[ "$out" == *"no record"*"rc=1" ]] || fail "a record after bad input: $out"
ok "short claim TTL, empty scope: clear errors, nothing claimed"

# A claims the key with a 2 s claim; its command writes its token, then
# finishes 3 s later. A is paused (kvctl alone: the command runs on).
"$bin/kvctl" idem run pay/ order-7 --claim-ttl 2s --fingerprint order-7 -- \
  sh -c 'echo "$TALLY_IDEM_TOKEN" > "$0/a.token"; sleep 3; echo "charged by A"' "$dir" \
  >"$dir/a.out" 2>&1 &
owner=$!
for _ in $(seq 1 100); do [ -s "$dir/a.token" ] && break; sleep 0.05; done
[ -s "$dir/a.token" ] || fail "A never started"
a=$(cat "$dir/a.token")
out=$(kvctl idem run pay/ order-7 --fingerprint order-7 -- echo B 2>&1; echo "rc=$?")
[[ "$out" == *"in progress elsewhere"*"rc=3" ]] || fail "a retry while A runs: $out"
kill -STOP "$owner"
ok "A runs under token $a; a retry meanwhile exits 3 (in progress)"

sleep 2.5  # past A's claim
out=$("$bin/kvctl" idem run pay/ order-7 --claim-ttl 2s --fingerprint order-7 -- \
  sh -c 'echo "$TALLY_IDEM_TOKEN" > "$0/b.token"; echo "charged by B"' "$dir" 2>&1) ||
  fail "B did not take over: $out"
[ "$out" = "charged by B" ] || fail "B printed: $out"
bt=$(cat "$dir/b.token")
[ "$bt" -gt "$a" ] || fail "B's token $bt is not above A's $a"
ok "B took the key over with token $bt > $a and completed"

sleep 1  # A's command finishes while A is stopped
kill -CONT "$owner"
rc=0
wait "$owner" || rc=$?
owner=
[ "$rc" = 1 ] || fail "A exited $rc, not 1: $(cat "$dir/a.out")"
grep -q "not stored: token $a no longer owns" "$dir/a.out" ||
  fail "A's refusal: $(cat "$dir/a.out")"
grep -q "completed under token $bt" "$dir/a.out" || fail "A's refusal does not name B's token: $(cat "$dir/a.out")"
grep -q "charged by A" "$dir/a.out" && fail "A printed its unstored result"
out=$(kvctl idem run pay/ order-7 --fingerprint order-7 -- echo again) || fail "replay: $out"
[ "$out" = "charged by B" ] || fail "the stored response is not B's: $out"
[[ "$(kvctl idem get pay/ order-7)" == COMPLETED*"attempts 2"* ]] || fail "record: $(kvctl idem get pay/ order-7)"
ok "A resumed: its Complete is refused naming token $bt; every run prints B's output"

# Replays and mismatches, by command line (the default fingerprint).
[ "$(kvctl idem run pay/ k2 -- echo once)" = once ] || fail "first run"
[ "$(kvctl idem run pay/ k2 -- echo once)" = once ] || fail "replay"
out=$(kvctl idem run pay/ k2 -- echo twice 2>&1; echo "rc=$?")
[[ "$out" == *"was used for another request"*"rc=2" ]] || fail "mismatch: $out"
ok "a replay prints the stored output; another command under the key exits 2"

# A failure is not kept unless asked; a kept one is replayed with exit 1.
rc=0; kvctl idem run pay/ k3 -- sh -c 'echo declined; exit 7' >/dev/null || rc=$?
[ "$rc" = 7 ] || fail "failing command exit $rc"
kvctl idem get pay/ k3 >/dev/null 2>&1 && fail "a retryable failure was kept"
rc=0; kvctl idem run pay/ k3 --cache-failure -- sh -c 'echo declined; exit 7' >/dev/null || rc=$?
[ "$rc" = 7 ] || fail "failing command exit $rc"
rc=0; out=$(kvctl idem run pay/ k3 --cache-failure -- sh -c 'echo declined; exit 7') || rc=$?
[ "$rc" = 1 ] && [ "$out" = declined ] || fail "cached failure: rc=$rc out=$out"
ok "failures: retried unless --cache-failure, then replayed with exit 1"

# Listing a scope gathers both shards; an operator's purge lets the key run
# again.
out=$(kvctl idem list pay/)
[ "$(cut -f1,2 <<<"$out")" = "$(printf 'k2\tCOMPLETED\nk3\tFAILED\norder-7\tCOMPLETED')" ] ||
  fail "idem list: $out"
[ "$(kvctl idem list pay/ --prefix k --limit 1 | cut -f1)" = k2 ] || fail "idem list --prefix --limit"
kvctl idem purge pay/ k2 >/dev/null || fail "purge"
out=$(kvctl idem purge pay/ k2 2>&1; echo "rc=$?")
[[ "$out" == *"no record"*"rc=1" ]] || fail "second purge: $out"
[ "$(kvctl idem run pay/ k2 -- echo anew)" = anew ] || fail "a purged key did not run again"
ok "idem list shows the scope's records; a purged key runs again"

# The order example: the charge is a write committed with the completion.
# Killed (SIGKILL) after claiming the order, then again after completing it:
# the order is charged exactly once and every attempt answers the same.
order() { "$bin/idempotency_key_example" "$KVCTL_ENDPOINTS" o-9 "$@"; }
rc=0; order 10EUR --crash-before-complete 2>/dev/null || rc=$?
[ "$rc" = 137 ] || fail "the example was not killed before completing (exit $rc)"
[ -z "$(kvctl get --prefix orders/o-9/charge/)" ] || fail "charged before completing"
rc=0; out=$(order 10EUR 2>&1) || rc=$?
[ "$rc" = 3 ] && [[ "$out" == *"being charged elsewhere"* ]] || fail "retry during the dead claim: rc=$rc $out"
sleep 2.2  # the dead process's claim runs out
rc=0; order 10EUR --crash-after-complete >/dev/null 2>&1 || rc=$?
[ "$rc" = 137 ] || fail "the example was not killed after completing (exit $rc)"
first=$(order 10EUR) || fail "retry after the completion"
[[ "$first" == "charged 10EUR for order o-9 (token "*") (replayed)" ]] || fail "replay: $first"
[ "$(order 10EUR)" = "$first" ] || fail "a second replay differs"
charges=$(kvctl get --prefix orders/o-9/charge/ | grep -c 10EUR || true)
[ "$charges" = 1 ] || fail "order o-9 was charged $charges times: $(kvctl get --prefix orders/o-9/charge/)"
rc=0; order 20EUR 2>/dev/null || rc=$?
[ "$rc" = 2 ] || fail "another amount under the same order: exit $rc"
ok "the order example, killed before and after completing, charged once: $first"
echo "PASS"
