#!/usr/bin/env bash
# Integration test: locks, leases and fence floors on a real three-node
# cluster, driven with kvctl. Holder A (`kvctl lock ... -- sleep`) is
# SIGSTOPped past its lease; B acquires with a higher token and writes under
# the fence; A resumes: its command is stopped, and its fenced write is
# refused naming B's token. Keys attached to a lease go when it ends;
# several leases are kept alive by one kvctl. Then leader election (`kvctl
# elect`): a paused leader is succeeded by the next candidate, an observer
# sees each leader in turn. Bounded in time; stops what it started.
#   lock_test.sh BIN_DIR
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir=$(mktemp -d /tmp/tally-lock.XXXXXX)
export TALLY_BIN=$bin TALLY_PORT_BASE=$((20000 + RANDOM % 12000))  # below the ephemeral ports
export TALLY_OWNER_PID=$$  # the nodes stop even if this script is killed
b=$TALLY_PORT_BASE
export KVCTL_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
holder=
others=()
cleanup() {
  if [ -n "$holder" ]; then
    kill -CONT -- "-$holder" 2>/dev/null || true
    kill -9 -- "-$holder" 2>/dev/null || true
  fi
  for p in "${others[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill -9 "$p" 2>/dev/null || true; done
  "$root/deploy/local-cluster.sh" stop "$dir" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
kvctl() { "$bin/kvctl" "$@"; }
fail() { echo "FAIL: $*"; for f in "$dir"/n*.log "$dir"/*.out; do [ -f "$f" ] && { echo "== $f"; tail -n 20 "$f"; }; done; exit 1; }
ok() { echo "ok: $*"; }

"$root/deploy/local-cluster.sh" start "$dir" >/dev/null

# Bad input: a clear error, exit 2, nothing granted.
out=$(kvctl lease grant 100ms 2>&1) && fail "a 100 ms lease was granted"
[[ "$out" == *"below the minimum of 1000 ms"* ]] || fail "short TTL: $out"
out=$(kvctl lock acquire "" --lease 1 2>&1; echo "rc=$?")
[[ "$out" == *"must not be empty"*"rc=2" ]] || fail "empty lock name: $out"
out=$(kvctl lock acquire job --lease 999999 2>&1; echo "rc=$?")
[[ "$out" == *"NOT_FOUND: lease 999999 not found"*"rc=1" ]] || fail "unknown lease: $out"
ok "short TTL, empty lock name, unknown lease: clear errors"

# Several leases kept alive together, past their TTL; one that ends is named.
l1=$(kvctl lease grant 2s)
l2=$(kvctl lease grant 2s)
kvctl lease keep-alive "$l1" "$l2" >"$dir/keep.out" 2>&1 &
keeper=$!
others+=("$keeper")
sleep 3
kvctl lease ttl "$l1" >/dev/null || fail "lease $l1 ended while kept alive"
kvctl lease ttl "$l2" >/dev/null || fail "lease $l2 ended while kept alive"
grep -q "lease $l2 kept alive, TTL 2000 ms" "$dir/keep.out" || fail "keep-alive output: $(cat "$dir/keep.out")"
kvctl lease revoke "$l2" >/dev/null
wait "$keeper" && fail "keep-alive went on after lease $l2 ended"
grep -q "lease $l2 has ended" "$dir/keep.out" || fail "ended lease not named: $(cat "$dir/keep.out")"
out=$(kvctl lease keep-alive --once "$l1" 2>&1) || fail "keep-alive --once: $out"
[ "$out" = "lease $l1 kept alive, TTL 2000 ms" ] || fail "keep-alive --once: $out"
kvctl lease revoke "$l1" >/dev/null
ok "kvctl lease keep-alive keeps several leases alive; names one that ended"

kvctl fence bind acct/ job >/dev/null
out=$(kvctl put acct/balance 1 2>&1; echo "rc=$?")
[[ "$out" == *"must carry the lock's fence token"*"rc=1" ]] || fail "unfenced write: $out"
ok "a write to a fenced prefix without a token is refused"

# A holds the lock with a 2 s lease and records its token.
setsid "$bin/kvctl" lock job --ttl 2s -- \
  sh -c 'echo "$TALLY_FENCE_TOKEN" > "$0/a.token"; exec sleep 60' "$dir" \
  >"$dir/holder.out" 2>&1 &
holder=$!
for _ in $(seq 1 100); do [ -s "$dir/a.token" ] && break; sleep 0.05; done
[ -s "$dir/a.token" ] || fail "A never got the lock"
a=$(cat "$dir/a.token")
kvctl put --fence-token "$a" acct/balance A1 >/dev/null || fail "A's first fenced write"
ok "A holds the lock under token $a and writes under the fence"

# A pauses past its lease (kvctl and its command alike).
kill -STOP -- "-$holder"
lease_b=$(kvctl lease grant 30s)
start=$(date +%s%N)
bt=$(kvctl lock acquire job --lease "$lease_b" --wait 10s) || fail "B did not get the lock"
waited=$((($(date +%s%N) - start) / 1000000))
[ "$bt" -gt "$a" ] || fail "B's token $bt is not above A's $a"
kvctl put --fence-token "$bt" acct/balance B1 >/dev/null || fail "B's fenced write"
ok "B acquired after ${waited} ms with token $bt > $a and wrote under the fence"

kill -CONT -- "-$holder"
rc=0
wait "$holder" || rc=$?
holder=
[ "$rc" -ne 0 ] || fail "A's command ran on after the lock was lost"
grep -q 'lost' "$dir/holder.out" || fail "A did not report the lost lock"
ok "A resumed, saw the lock lost and stopped its command (exit $rc)"

out=$(kvctl put --fence-token "$a" acct/balance A2 2>&1; echo "rc=$?")
[[ "$out" == *"fence token $a is stale"*"token $bt was accepted"*"rc=1" ]] \
  || fail "A's late write: $out"
[ "$(kvctl get acct/balance)" = B1 ] || fail "the data shows A's write"
ok "A's late fenced write is refused naming B's token $bt; the data shows only B's"

# The same fence for a file outside the store (client::FenceGuard).
guard() { TALLY_FENCE_TOKEN=$1 "$bin/fenced_file_example" "$dir/report.fence" "$dir/report.txt" "$2"; }
guard "$bt" "from B" || fail "B's guarded file write"
out=$(guard "$a" "from A" 2>&1; echo "rc=$?")
[[ "$out" == *"token $bt was admitted"*"rc=1" ]] || fail "A's guarded write: $out"
[ "$(cat "$dir/report.txt")" = "from B" ] || fail "the file shows A's line"
ok "a file guarded by FenceGuard takes B's line and turns A's away"

out=$(kvctl lock release job "$a" 2>&1; echo "rc=$?")
[[ "$out" == *"held under token $bt"*"rc=1" ]] || fail "A's release: $out"
kvctl lock release job "$bt" >/dev/null || fail "B's release"
[ "$(kvctl lock inspect job)" = free ] || fail "lock not free after B's release"
ok "a stale release is refused; B's releases the lock"

# `kvctl lock` exits with its command's code and releases the lock.
rc=0
kvctl lock job -- sh -c 'exit 7' || rc=$?
[ "$rc" = 7 ] || fail "kvctl lock exit code $rc, not 7"
[ "$(kvctl lock inspect job)" = free ] || fail "lock held after its command ended"
ok "kvctl lock -- CMD exits with CMD's code and releases the lock"

# Keys attached to a lease go when it ends: expired (no keep-alive) or
# revoked. Leases live in the metadata group, the keys in a data shard.
out=$(kvctl put --lease 999999 svc/x 1 2>&1; echo "rc=$?")
[[ "$out" == *"lease 999999 not found"*"rc=1" ]] || fail "put with an unknown lease: $out"
short=$(kvctl lease grant 1s)
long=$(kvctl lease grant 60s)
kvctl put --lease "$short" svc/short 1 >/dev/null || fail "put with lease $short"
kvctl put --lease "$long" svc/long 1 >/dev/null || fail "put with lease $long"
kvctl put svc/plain 1 >/dev/null
start=$(date +%s%N)
for _ in $(seq 1 100); do kvctl get svc/short >/dev/null 2>&1 || break; sleep 0.05; done
gone=$((($(date +%s%N) - start) / 1000000))
kvctl get svc/short >/dev/null 2>&1 && fail "svc/short outlived its 1 s lease"
kvctl get svc/long >/dev/null || fail "svc/long went with another lease"
kvctl lease revoke "$long" >/dev/null
for _ in $(seq 1 40); do kvctl get svc/long >/dev/null 2>&1 || break; sleep 0.05; done
kvctl get svc/long >/dev/null 2>&1 && fail "svc/long outlived its revoked lease"
kvctl get svc/plain >/dev/null || fail "svc/plain (no lease) was deleted"
ok "keys go with their lease: expired (${gone} ms after the put, 1 s TTL) or revoked"

# Leader election: alpha leads; beta waits; alpha pauses past its lease and
# beta takes over with a higher token; an observer sees every change.
out=$(kvctl elect svc 2>&1; echo "rc=$?")
[[ "$out" == *"usage"*"rc=2" ]] || fail "elect without a value: $out"
"$bin/kvctl" elect svc --listen >"$dir/listen.out" 2>&1 &
others+=($!)
for _ in $(seq 1 100); do grep -q "no leader" "$dir/listen.out" && break; sleep 0.05; done
"$bin/kvctl" elect svc alpha --ttl 2s >"$dir/alpha.out" 2>&1 &
alpha=$!; others+=("$alpha")
for _ in $(seq 1 100); do grep -q elected "$dir/alpha.out" && break; sleep 0.05; done
grep -q "elected: svc = alpha" "$dir/alpha.out" || fail "alpha was not elected"
ta=$(sed -n 's/.*token //p' "$dir/alpha.out")
"$bin/kvctl" elect svc beta --ttl 30s >"$dir/beta.out" 2>&1 &
beta=$!; others+=("$beta")
sleep 1
grep -q elected "$dir/beta.out" && fail "beta was elected while alpha leads"
[[ "$(kvctl lock inspect svc)" == *"value \"alpha\""* ]] || fail "inspect does not show alpha"
kill -STOP "$alpha"
for _ in $(seq 1 200); do grep -q elected "$dir/beta.out" && break; sleep 0.05; done
grep -q "elected: svc = beta" "$dir/beta.out" || fail "beta was not elected after alpha paused"
tb=$(sed -n 's/.*token //p' "$dir/beta.out")
[ "$tb" -gt "$ta" ] || fail "beta's token $tb is not above alpha's $ta"
kill -CONT "$alpha"
rc=0; wait "$alpha" || rc=$?
[ "$rc" = 1 ] && grep -q "lost" "$dir/alpha.out" || fail "alpha did not report its lost leadership (exit $rc)"
ok "alpha (token $ta) paused past its lease; beta leads with token $tb; alpha exits 1"
kill -TERM "$beta"
rc=0; wait "$beta" || rc=$?
[ "$rc" = 0 ] || fail "beta exited $rc after TERM"
for _ in $(seq 1 100); do [ "$(tail -n 1 "$dir/listen.out")" = "no leader" ] && [ "$(wc -l <"$dir/listen.out")" -ge 4 ] && break; sleep 0.05; done
expected=$(printf 'no leader\nalpha\t%s\nbeta\t%s\nno leader' "$ta" "$tb")
[ "$(cat "$dir/listen.out")" = "$expected" ] || fail "the observer saw: $(cat "$dir/listen.out")"
ok "beta resigned on TERM; the observer saw: no leader, alpha, beta, no leader"
echo "PASS"
