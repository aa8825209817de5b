#!/usr/bin/env bash
# Anti-entropy after a partition (docs/crdt.md): n3 is cut off (SIGSTOP: unreachable, its
# connections hanging like a partition's) for 30 s while the other two
# change 100,000 rows of a 200,000-row CRDT table; then it comes back. What
# reaches it until every node is in sync again (deltas still queued for it,
# and what its anti-entropy pulls: digests, row hashes, rows) is set
# against the bytes of the changed rows. One JSON line on stdout.
#   bench/crdt-anti-entropy.sh            (about 2 minutes)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
dir=$(mktemp -d /tmp/tally-crdt-ae.XXXXXX)
export TALLY_BIN=$bin TALLY_PORT_BASE=$((20000 + RANDOM % 12000))
b=$TALLY_PORT_BASE
all="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
two="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2))"
export KVCTL_ENDPOINTS=$all
cleanup() {
  [ -f "$dir/n3.pid" ] && kill -CONT "$(cat "$dir/n3.pid")" 2>/dev/null || true
  "$root/deploy/local-cluster.sh" stop "$dir" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
in_sync() {  # waits up to $1 s for every node to be in sync with its peers
  for _ in $(seq 1 $(($1 * 5))); do
    [ "$("$bin/kvctl" crdt status 2>/dev/null | grep -c $'\tin sync')" = 6 ] && return 0
    sleep 0.2
  done
  return 1
}
status() { "$bin/kvctl" --endpoints "$1" -o json crdt status; }

"$root/deploy/local-cluster.sh" start "$dir" >/dev/null
"$bin/kvbench" --target tally --endpoints "$all" --op crdt-incr --keys 200000 \
  --preload --clients 64 --duration 1 --warmup 0 >/dev/null
in_sync 60 || { echo "crdt-anti-entropy: the preloaded rows never synced" >&2; exit 1; }
before1=$(status "127.0.0.1:$((b + 1))")
before2=$(status "127.0.0.1:$((b + 2))")
before3=$(status "127.0.0.1:$((b + 3))")
kill -STOP "$(cat "$dir/n3.pid")"
start=$SECONDS
"$bin/kvbench" --target tally --endpoints "$two" --op crdt-incr --keys 100000 \
  --preload --clients 64 --duration 1 --warmup 0 >/dev/null
while [ $((SECONDS - start)) -lt 30 ]; do sleep 1; done
kill -CONT "$(cat "$dir/n3.pid")"
t0=$(date +%s.%N)
in_sync 120 || { echo "crdt-anti-entropy: no sync within 120 s of healing" >&2; exit 1; }
t1=$(date +%s.%N)
/usr/bin/python3 - "$before1" "$before2" "$before3" \
  "$(status "127.0.0.1:$((b + 1))")" "$(status "127.0.0.1:$((b + 2))")" \
  "$(status "127.0.0.1:$((b + 3))")" "$t0" "$t1" <<'PY'
import json, sys
b1, b2, b3, a1, a2, a3 = (json.loads(x)["result"]["endpoints"][0] for x in sys.argv[1:7])
t0, t1 = float(sys.argv[7]), float(sys.argv[8])
def peer(s, node):
    return next(p for p in s.get("peers", []) if int(p["node"]) == node)
def num(p, k):
    return int(p.get(k, 0))
pushed = sum(num(peer(a, 3), "bytes_pushed") - num(peer(b, 3), "bytes_pushed")
             for a, b in ((a1, b1), (a2, b2)))
pulled = sum(num(peer(a3, n), "bytes_pulled") - num(peer(b3, n), "bytes_pulled")
             for n in (1, 2))
rows = sum(num(peer(a3, n), "rows_pulled") - num(peer(b3, n), "rows_pulled")
           for n in (1, 2))
row_bytes = int(a1["bytes"]) / max(1, int(a1["entries"]))  # one entry per row
changed = 100000 * row_bytes
print(json.dumps({"changed_rows": 100000, "changed_row_bytes": round(changed),
                  "pushed_after_healing_bytes": pushed, "anti_entropy_bytes": pulled,
                  "rows_pulled": rows,
                  "ratio": round((pushed + pulled) / changed, 2),
                  "in_sync_after_s": round(t1 - t0, 1)}))
PY
