#!/usr/bin/env bash
# Overload: clients offering five times what the cluster can serve, with the
# client library's retry budget, throttling, in-flight limits and breakers
# on, then off.
#
# A local three-node cluster runs in a CPU cgroup of SERVER_CPU cores
# (default 0.5), so that kvbench, on the same machine, can offer five times
# the cluster's capacity. First the best goodput is found (puts through the
# library at rising rates); then both runs offer 5x that, 1,000 leases kept
# alive alongside. For each run: goodput and its share of the best, the
# puts the servers received (their tally_rpc_total, refusals included) per
# put offered, those that reached admission past their deadline, and the
# leases lost (or unknown: the cluster did not say within 30 s of the run
# whether it holds them). Prints a Markdown table; raw JSON lines in $OUT
# (default /tmp/tally-overload.json), with the nodes' write admissions.
#   sudo bench/overload.sh   (root: the cgroup; about 5 minutes)
# SERVER_CPU, DURATION (s, default 10), LEASES (default 1000), LEASE_TTL (s,
# default 6) change it;
# BEST=N skips the search for the best goodput; RUNS=protected leaves out
# the run without protection (RUNS="protected unlimited unprotected" adds
# one with the rest of the protection but no in-flight limits); THROTTLE=K
# sets the library's throttling factor; KEEP=1 keeps the nodes' logs and
# kvbench's stderr (the directory is printed).
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
  if [ -n "${KEEP:-}" ]; then echo "overload: logs in $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
cluster start
mkdir "$cgroup"
echo 100000 >"$cgroup/cpu.cfs_period_us"
awk -v c="$server_cpu" 'BEGIN { printf "%d\n", c * 100000 }' >"$cgroup/cpu.cfs_quota_us"
# Their half core comes first: kvbench's thousands of threads, each
# competing on its own with the group as a whole, would otherwise take part
# of it, and the cluster's capacity would fall as the load offered rises.
echo 262144 >"$cgroup/cpu.shares"
for f in "$work"/c/n*.pid; do cat "$f" >"$cgroup/cgroup.procs"; done

# Puts the three servers answered so far (refusals included), then their
# write-class admissions: admitted, shed (class full), late (deadline too
# near), expired (deadline passed), as "a b c d e".
received() {
  for i in 1 2 3; do
    curl -sf "http://127.0.0.1:$((base + 200 + i))/metrics" || true
  done | awk '
    /^tally_rpc_total\{method="Put"/ { n[0] += $2 }
    /^tally_admission_admitted_total\{class="write"/ { n[1] += $2 }
    /^tally_admission_shed_total\{class="write",reason="overload"/ { n[2] += $2 }
    /^tally_admission_shed_total\{class="write",reason="late"/ { n[3] += $2 }
    /^tally_admission_shed_total\{class="write",reason="expired"/ { n[4] += $2 }
    END { printf "%d %d %d %d %d", n[0], n[1], n[2], n[3], n[4] }'
}
# run label rate threads [kvbench options]: one JSON line, with the servers'
# count of puts received over the run.
run() {
  local label=$1 rate=$2 threads=$3 before after
  shift 3
  echo "overload: $label, $rate puts/s offered by $threads threads" >&2
  # The previous run's backlog drains, and its leases end.
  sleep $((5 + ${LEASE_TTL:-6}))
  read -r -a before <<<"$(received)"
  "$bin/kvbench" --target tally --endpoints "$endpoints" --op overload \
    --rate "$rate" --clients "$threads" --duration "$duration" --warmup "${WARM:-3}" \
    --timeout-ms 1000 --lease-ttl "${LEASE_TTL:-6}" \
    --value-size 256 --keys 100000 "$@" 2>"$work/kvbench.err" |
    sed "s/^{/{\"label\":\"$label\",/" >"$work/line.json" || true
  cat "$work/kvbench.err" >>"$work/kvbench-all.err"
  if [ ! -s "$work/line.json" ]; then
    echo "overload: kvbench failed:" >&2
    tail -3 "$work/kvbench.err" >&2
    exit 1
  fi
  read -r -a after <<<"$(received)"
  sed "s/}\$/,\"server_received\":$((after[0] - before[0])),\"admitted\":$((after[1] - before[1])),\"shed\":$((after[2] - before[2])),\"late\":$((after[3] - before[3])),\"expired\":$((after[4] - before[4]))}/" \
    "$work/line.json" | tee -a "$out"
}
: >"$out"
best=${BEST:-0}
leases=${LEASES:-1000}
# The best is found with the same leases kept alive as in the overload runs:
# their renewals take a share of the servers' half core in both.
[ "$best" -gt 0 ] || for rate in 400 800 1200 1600 2000 2400; do
  line=$(run capacity "$rate" 1000 --leases "$leases")
  goodput=$(echo "$line" | sed 's/.*"ops_per_sec":\([0-9]*\).*/\1/')
  [ "$goodput" -gt "$best" ] && best=$goodput
  # Past the capacity: a rate it did not keep up with.
  [ "$goodput" -lt $((rate * 9 / 10)) ] && break
done
offered=$((best * 5))
# Ten seconds of overload before measuring: the clients' throttling weighs
# the last ten seconds of answers.
for r in ${RUNS:-protected unprotected}; do
  protection=${THROTTLE:+--throttle $THROTTLE}
  [ "$r" = unprotected ] && protection=--no-protection
  [ "$r" = unlimited ] && protection="$protection --no-in-flight-limit"
  WARM=10 run "$r" "$offered" $((offered + 1000)) --leases "$leases" $protection >/dev/null
done

/usr/bin/python3 - "$out" "$best" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
best = int(sys.argv[2])
print(f"Best goodput (puts/s through the library): {best}\n")
print("| run | offered puts/s | goodput puts/s | of best | attempts per put | "
      "servers received per put | arrived past their deadline | retries refused | "
      "throttled | held in the client | leases lost | slowest renewal ms | p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    if r["label"] == "capacity":
        continue
    calls = r["offered_per_sec"] * r["seconds"]
    lost = f"{r['leases_lost']} of {r['leases']}"
    if r["leases_unrenewed"]:
        lost += f" ({r['leases_unrenewed']} unrenewed in time)"
    if r["leases_unknown"]:
        lost += f" ({r['leases_unknown']} unknown)"
    print(f"| {r['label']} | {r['offered_per_sec']:.0f} | {r['ops_per_sec']:.0f} | "
          f"{100 * r['ops_per_sec'] / best:.0f}% | {r['amplification']:.2f} | "
          f"{r['server_received'] / calls:.2f} | {r['expired']} | {r['retries_refused']} | "
          f"{r['throttled']} | {r.get('held', 0)} | {lost} | {r['lease_renewal_max_ms']:.0f} | "
          f"{r['p99_ms']:.0f} |")
EOF
