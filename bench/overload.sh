#!/usr/bin/env bash
# Overload: clients offering five times what the cluster can serve, with the
# client library's retry budget, throttling and breakers on, then off.
#
# A local three-node cluster runs in a CPU cgroup of SERVER_CPU cores
# (default 0.5), so that kvbench, on the same machine, can offer five times
# the cluster's capacity. First the best goodput is found (puts through the
# library at rising rates); then both runs offer 5x that, 1,000 leases kept
# alive alongside. For each run: goodput and its share of the best, the
# puts the servers received (their tally_rpc_total, refusals included) per
# put offered, and the leases lost. Prints a Markdown table; raw JSON lines
# in $OUT (default /tmp/tally-overload.json).
#   sudo bench/overload.sh   (root: the cgroup; about 3 minutes)
# SERVER_CPU, DURATION (s, default 10), LEASES (default 1000) change it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
server_cpu=${SERVER_CPU:-0.5}
duration=${DURATION:-10}
out=${OUT:-/tmp/tally-overload.json}
cgroup=/sys/fs/cgroup/cpu/tally-overload-$$
[ -d /sys/fs/cgroup/cpu ] || { echo "overload.sh: needs the cgroup v1 cpu controller" >&2; exit 2; }
work=$(mktemp -d /tmp/tally-overload.XXXXXX)
base=$((20000 + RANDOM % 5000))
endpoints="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
cluster() { TALLY_BIN=$bin TALLY_PORT_BASE=$base "$root/deploy/local-cluster.sh" "$1" "$work/c" >/dev/null; }
cleanup() {
  cluster stop || true
  if [ -d "$cgroup" ]; then
    # The nodes are gone; anything left goes back to the root group.
    while read -r p; do echo "$p" >/sys/fs/cgroup/cpu/cgroup.procs || true; done <"$cgroup/cgroup.procs"
    rmdir "$cgroup" || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
cluster start
mkdir "$cgroup"
echo 100000 >"$cgroup/cpu.cfs_period_us"
awk -v c="$server_cpu" 'BEGIN { printf "%d\n", c * 100000 }' >"$cgroup/cpu.cfs_quota_us"
for f in "$work"/c/n*.pid; do cat "$f" >"$cgroup/cgroup.procs"; done

# Puts the three servers answered so far (refusals included).
received() {
  local total=0 n
  for i in 1 2 3; do
    n=$(curl -sf "http://127.0.0.1:$((base + 200 + i))/metrics" |
      awk '/^tally_rpc_total\{method="Put"/ { s += $2 } END { printf "%d", s }')
    total=$((total + n))
  done
  echo "$total"
}
# run label rate threads [kvbench options]: one JSON line, with the servers'
# count of puts received over the run.
run() {
  local label=$1 rate=$2 threads=$3 before after
  shift 3
  echo "overload: $label, $rate puts/s offered by $threads threads" >&2
  sleep 5  # the previous run's backlog drains
  before=$(received)
  "$bin/kvbench" --target tally --endpoints "$endpoints" --op overload \
    --rate "$rate" --clients "$threads" --duration "$duration" --warmup "${WARM:-3}" \
    --timeout-ms 1000 --lease-ttl 6 \
    --value-size 256 --keys 100000 "$@" 2>"$work/kvbench.err" |
    sed "s/^{/{\"label\":\"$label\",/" >"$work/line.json" || true
  if [ ! -s "$work/line.json" ]; then
    echo "overload: kvbench failed:" >&2
    tail -3 "$work/kvbench.err" >&2
    exit 1
  fi
  after=$(received)
  sed "s/}\$/,\"server_received\":$((after - before))}/" "$work/line.json" | tee -a "$out"
}
: >"$out"
best=0
for rate in 400 800 1200 1600 2000 2400; do
  line=$(run capacity "$rate" 1000 --leases 0)
  goodput=$(echo "$line" | sed 's/.*"ops_per_sec":\([0-9]*\).*/\1/')
  [ "$goodput" -gt "$best" ] && best=$goodput
  # Past the capacity: a rate it did not keep up with.
  [ "$goodput" -lt $((rate * 9 / 10)) ] && break
done
offered=$((best * 5))
leases=${LEASES:-1000}
# Ten seconds of overload before measuring: the clients' throttling weighs
# the last ten seconds of answers.
WARM=10 run protected "$offered" $((offered + 1000)) --leases "$leases" >/dev/null
WARM=10 run unprotected "$offered" $((offered + 1000)) --leases "$leases" --no-protection >/dev/null

/usr/bin/python3 - "$out" "$best" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = int(sys.argv[2])
print(f"Best goodput (puts/s through the library): {best}\n")
print("| run | offered puts/s | goodput puts/s | of best | attempts per put | "
      "servers received per put | retries refused | throttled | leases lost | p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["label"] == "capacity":
        continue
    calls = r["offered_per_sec"] * r["seconds"]
    print(f"| {r['label']} | {r['offered_per_sec']:.0f} | {r['ops_per_sec']:.0f} | "
          f"{100 * r['ops_per_sec'] / best:.0f}% | {r['amplification']:.2f} | "
          f"{r['server_received'] / calls:.2f} | {r['retries_refused']} | "
          f"{r['throttled']} | {r['leases_lost']} of {r['leases']} | {r['p99_ms']:.0f} |")
EOF
