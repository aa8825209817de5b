#!/usr/bin/env bash
# Integration test: backup and restore. A three-node cluster with three
# ranges holds 100,000 keys (each value names its key); `kvctl snapshot
# save` copies them; a new cluster with the same ranges and another
# --initial-cluster-token (so another id) gets them back with `kvctl
# snapshot restore`, and every key and value is compared. A damaged file
# and a restore into a cluster that holds keys are refused, with nothing
# written. Bounded in time; stops what it started.
#   snapshot_test.sh BIN_DIR
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir=$(mktemp -d /tmp/tally-snapshot.XXXXXX)
export TALLY_BIN=$bin TALLY_PORT_BASE=$((20000 + RANDOM % 12000))  # below the ephemeral ports
export TALLY_OWNER_PID=$$  # the nodes stop even if this script is killed
b=$TALLY_PORT_BASE
export KVCTL_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
export TALLY_INITIAL_RANGES="k000000000033333,k000000000066666"
cluster() {  # cluster start|stop NAME [kvd flags]
  local action=$1 name=$2
  shift 2
  TALLY_KVD_ARGS="$*" "$root/deploy/local-cluster.sh" "$action" "$dir/$name" >/dev/null
}
cleanup() {
  for name in old new; do [ -d "$dir/$name" ] && cluster stop "$name" || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
kvctl() { timeout 120 "$bin/kvctl" --timeout-ms 30000 "$@"; }
fail() { echo "FAIL: $*"; for f in "$dir"/*/n*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
cluster_id() { kvctl -o json endpoint status |
  /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["result"]["endpoints"][0]["cluster_id"])'; }

cluster start old
timeout 300 "$bin/kvbench" --target tally --endpoints "$KVCTL_ENDPOINTS" --op put --clients 64 \
  --preload --ops 1 --keys 100000 --key-size 16 --value-size 64 --values-name-keys \
  --warmup 0 >/dev/null 2>"$dir/kvbench.err" || fail "preload: $(tail -3 "$dir/kvbench.err")"
[ "$(kvctl get k000000000012345)" = "k000000000012345=$(printf 'v%.0s' $(seq 1 47))" ] ||
  fail "preloaded value: $(kvctl get k000000000012345)"
kvctl get "" --prefix >"$dir/old.txt" || fail "listing the old cluster"
[ "$(wc -l <"$dir/old.txt")" -ge 100000 ] || fail "$(wc -l <"$dir/old.txt") keys listed, not 100000+"
old_id=$(cluster_id)
ok "a cluster of three ranges holds 100,000 keys"

out=$(kvctl snapshot save "$dir/backup.snap") || fail "snapshot save: $out"
grep -q "^saved $(wc -l <"$dir/old.txt") keys of 3 ranges to " <<<"$out" || fail "snapshot save said: $out"
[ ! -e "$dir/backup.snap.part" ] || fail "snapshot save left its .part file"
status=$(kvctl snapshot status "$dir/backup.snap") || fail "snapshot status: $status"
[ "$(grep -cE '^[0-9]+ +\[' <<<"$status")" = 3 ] || fail "snapshot status ranges: $status"
grep -q "restore into a cluster started with --initial-ranges \"$TALLY_INITIAL_RANGES\"" <<<"$status" ||
  fail "snapshot status does not name the ranges: $status"
ok "snapshot save: every key of the three ranges, checked by snapshot status"

# A damaged copy: one byte changed in the middle.
cp "$dir/backup.snap" "$dir/damaged.snap"
size=$(stat -c %s "$dir/damaged.snap")
printf 'X' | dd of="$dir/damaged.snap" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
set +e
out=$(kvctl snapshot status "$dir/damaged.snap" 2>&1); rc=$?
set -e
[ $rc -ne 0 ] && grep -q "is damaged: its SHA-256 is" <<<"$out" || fail "a damaged file: rc $rc: $out"
ok "a damaged snapshot is refused by its SHA-256"

cluster stop old
cluster start new --initial-cluster-token restored
new_id=$(cluster_id)
[ -n "$new_id" ] && [ "$new_id" != "$old_id" ] || fail "the new cluster's id '$new_id' must differ from '$old_id'"
set +e
out=$(kvctl snapshot restore "$dir/damaged.snap" 2>&1); rc=$?
set -e
[ $rc -ne 0 ] && [ -z "$(kvctl get "" --prefix --keys-only)" ] || fail "restore of a damaged file: rc $rc: $out"
out=$(kvctl snapshot restore "$dir/backup.snap") || fail "snapshot restore: $out"
grep -q "^restored $(wc -l <"$dir/old.txt") keys of 3 ranges" <<<"$out" || fail "snapshot restore said: $out"
kvctl get "" --prefix >"$dir/new.txt" || fail "listing the new cluster"
cmp -s "$dir/old.txt" "$dir/new.txt" ||
  fail "the restored keys differ: $(diff "$dir/old.txt" "$dir/new.txt" | head -5)"
ok "restored into a new cluster (id $new_id, was $old_id): every key and value the same"

set +e
out=$(kvctl snapshot restore "$dir/backup.snap" 2>&1); rc=$?
set -e
[ $rc -eq 1 ] && grep -q "already holds keys" <<<"$out" || fail "a second restore: rc $rc: $out"
ok "a restore into a cluster that holds keys is refused (exit 1)"

echo "$passed passed, 0 failed"
