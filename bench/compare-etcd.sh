#!/usr/bin/env bash
# Tally next to etcd on this machine: the same kvbench workloads against a
# three-node Tally cluster and a three-node etcd 3.4 cluster on 127.0.0.1,
# both up at once, each workload run on Tally then on etcd, in
# BENCH_ROUNDS rounds (default 3); then the ceilings (single-node Tally)
# and the Multi-Raft scale runs. Prints a Markdown table (medians with min
# and max; CPU of the three server processes and of kvbench per 10,000
# operations) and, last,
#   bench: write_ratio=<x> read_ratio=<y> p99_write_ratio=<z>
#          cpu_per_write_ratio=<c> cpu_per_read_ratio=<d> endpoints=<mode> rounds=<n>
# (Tally / etcd medians, puts and linearizable gets with 256 clients; CPU:
# the three servers' per operation). Before the table: the machine's floor
# for a one-client put (a loopback round trip plus one fsync) and each
# store's put-1 p50 against it.
#
# BENCH_ENDPOINTS=leader (default): every request goes to a leader, in both
# stores (Tally's client routes to each range's leader; etcd gets only its
# leader's endpoint, from `etcdctl endpoint status`). BENCH_ENDPOINTS=all:
# etcd gets all three endpoints, spread over them as its clients do, so a
# follower forwards writes and pays a ReadIndex round trip for reads; Tally
# routes to leaders either way (its servers do not forward).
#
#   bench/compare-etcd.sh            # about 25 minutes
#   BENCH_DURATION=5 BENCH_SKIP_SCALE=1 bench/compare-etcd.sh
#   BENCH_ROUNDS=1 bench/compare-etcd.sh
#   BENCH_ONLY='^lock' bench/compare-etcd.sh   # only the workloads matching:
#                                              # no ceilings, no scale runs
#   BENCH_ONLY='^ranges' bench/compare-etcd.sh # only the Multi-Raft scale runs
#   BENCH_ONLY='^idle' bench/compare-etcd.sh   # only the idle-ranges run
#   BENCH_ONLY='^rss' bench/compare-etcd.sh    # only memory after 1,000,000
#                                              # puts (BENCH_RSS_PUTS), each store
#
# Installs etcd-server and etcd-client from Debian when etcd is missing.
# Everything runs under build/bench/<time>/ and only the processes this
# script started are stopped (by PID), also when it fails.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
duration=${BENCH_DURATION:-10}
warmup=${BENCH_WARMUP:-2}
rounds=${BENCH_ROUNDS:-3}
endpoint_mode=${BENCH_ENDPOINTS:-leader}
case "$endpoint_mode" in leader | all) ;; *)
  echo "bench: BENCH_ENDPOINTS must be leader or all, not '$endpoint_mode'" >&2
  exit 2
  ;;
esac
idle_ranges=${BENCH_IDLE_RANGES:-10000}
work="$root/build/bench/$(date +%Y%m%d-%H%M%S)"
results="$work/results.jsonl"
mkdir -p "$work"

[ -x "$bin/kvbench" ] || make -C "$root" build >/dev/null
if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
  echo "bench: installing etcd-server and etcd-client from Debian" >&2
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
    etcd-server etcd-client >/dev/null
fi

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT INT TERM

# --- clusters -------------------------------------------------------------
tally_endpoints="" tally_pids=""
start_tally() {  # start_tally <nodes> <dir> [split points]
  local n=$1 dir=$2 ranges=${3:-} initial="" i
  tally_endpoints="" tally_pids=""
  for i in $(seq 1 "$n"); do
    initial+="${initial:+,}n$i=127.0.0.1:$((7700 + i))"
    tally_endpoints+="${tally_endpoints:+,}127.0.0.1:$((7600 + i))"
  done
  mkdir -p "$dir"
  # Through a config file: 10,000 split points exceed the kernel's limit
  # on one command-line argument.
  printf 'initial-ranges = "%s"\n' "$ranges" >"$dir/ranges.toml"
  for i in $(seq 1 "$n"); do
    "$bin/kvd" --config "$dir/ranges.toml" --name "n$i" --data-dir "$dir/n$i" \
      --listen-client "127.0.0.1:$((7600 + i))" --listen-peer "127.0.0.1:$((7700 + i))" \
      --initial-cluster "$initial" \
      --log-level warn >>"$dir/n$i.log" 2>&1 &
    pids+=($!)
    tally_pids+="${tally_pids:+,}$!"
  done
  for _ in $(seq 1 600); do
    if "$bin/kvctl" --endpoints "$tally_endpoints" --timeout-ms 1000 get bench-probe \
        >/dev/null 2>&1 || [ $? -eq 1 ]; then return 0; fi
    sleep 0.5
  done
  echo "bench: the Tally cluster in $dir did not start" >&2
  exit 1
}

etcd_endpoints="" etcd_pids=""
start_etcd() {  # start_etcd <dir>
  local dir=$1 initial="" i
  etcd_endpoints="" etcd_pids=""
  for i in 1 2 3; do
    initial+="${initial:+,}e$i=http://127.0.0.1:$((24380 + i))"
    etcd_endpoints+="${etcd_endpoints:+,}127.0.0.1:$((24370 + i))"
  done
  for i in 1 2 3; do
    mkdir -p "$dir"
    etcd --name "e$i" --data-dir "$dir/e$i" \
      --listen-client-urls "http://127.0.0.1:$((24370 + i))" \
      --advertise-client-urls "http://127.0.0.1:$((24370 + i))" \
      --listen-peer-urls "http://127.0.0.1:$((24380 + i))" \
      --initial-advertise-peer-urls "http://127.0.0.1:$((24380 + i))" \
      --initial-cluster "$initial" --initial-cluster-state new \
      --initial-cluster-token tally-bench --log-level error >>"$dir/e$i.log" 2>&1 &
    pids+=($!)
    etcd_pids+="${etcd_pids:+,}$!"
  done
  for _ in $(seq 1 120); do
    if ETCDCTL_API=3 etcdctl --endpoints "$etcd_endpoints" endpoint health \
        >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "bench: the etcd cluster in $dir did not start" >&2
  exit 1
}

# The endpoint of etcd's current leader.
etcd_leader() {
  ETCDCTL_API=3 etcdctl --endpoints "$etcd_endpoints" endpoint status -w json |
    /usr/bin/python3 -c 'import json, sys
for e in json.load(sys.stdin):
    if e["Status"]["leader"] == e["Status"]["header"]["member_id"]:
        print(e["Endpoint"])'
}

# --- runs -----------------------------------------------------------------
run() {  # run <label> <target> <endpoints> <server pids> <round> kvbench options...
  local label=$1 target=$2 endpoints=$3 server_pids=$4 round=$5
  shift 5
  echo "bench: $label ($target, round $round)" >&2
  "$bin/kvbench" --target "$target" --endpoints "$endpoints" --duration "$duration" \
    --warmup "$warmup" --key-size 16 --value-size 256 --keys 100000 \
    ${server_pids:+--server-pids "$server_pids"} "$@" 2>>"$work/kvbench.err" |
    sed "s/^{/{\"label\":\"$label\",\"round\":$round,\"endpoints\":\"$endpoint_mode\",/" >>"$results"
}

preload() {  # preload <target> <endpoints>
  "$bin/kvbench" --target "$1" --endpoints "$2" --op put --clients 64 --preload \
    --ops 1 --keys 100000 --key-size 16 --value-size 256 --warmup 0 >/dev/null 2>&1
}

# label and kvbench options of each workload, Tally and etcd alike
workloads=(
  "put-1|--op put --clients 1"
  "put-16|--op put --clients 16"
  "put-64|--op put --clients 64"
  "put-256|--op put --clients 256"
  "get-1|--op get --clients 1"
  "get-64|--op get --clients 64"
  "get-256|--op get --clients 256"
  "serializable-get-256|--op get --read-mode serializable --clients 256"
  "mixed-256|--op mixed --read-ratio 0.9 --clients 256"
  "lock-64|--op lock --clients 64"
  "lock-hot-64|--op lock-hot --clients 64"
  "keep-alive-10k|--op keep-alive --leases 10000 --lease-ttl 30 --clients 64"
  "idem-256|--op idem --clients 256"
  # watch-<watchers>x<puts per second>
  "watch-1000x1000|--op watch --watchers 1000 --write-rate 1000 --clients 16"
  "watch-100x1000|--op watch --watchers 100 --write-rate 1000 --clients 16"
  "watch-1000x100|--op watch --watchers 1000 --write-rate 100 --clients 16"
)

# fsync latency of the disk the data dirs are on.
dd if=/dev/zero of="$work/fsync-probe" bs=4k count=500 oflag=dsync 2>"$work/fsync.txt" || true
rm -f "$work/fsync-probe"
# A loopback round trip: the median of 2,000 ping-pongs of 300 bytes over
# TCP on 127.0.0.1. With one fsync it is the floor of a one-client put.
/usr/bin/python3 - >"$work/rtt.txt" <<'PY' || true
import socket, statistics, threading, time
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)
def echo():
    c, _ = srv.accept(); c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (d := c.recv(4096)): c.sendall(d)
threading.Thread(target=echo, daemon=True).start()
s = socket.create_connection(srv.getsockname()); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
msg, times = b"x" * 300, []
for _ in range(2000):
    t = time.perf_counter(); s.sendall(msg); n = 0
    while n < len(msg): n += len(s.recv(4096))
    times.append(time.perf_counter() - t)
print(f"rtt_ms={1000 * statistics.median(times):.3f}")
PY

splits() {  # splits <ranges>: split points of kvbench's 100k keys
  local r=$1 i out=""
  for i in $(seq 1 $((r - 1))); do out+="${out:+,}$(printf 'k%015d' $((100000 * i / r)))"; done
  echo "$out"
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# Memory and disk of each store's nodes after rss_puts puts of 256 random
# bytes (which no store compresses), each to a key of its own, on a fresh
# cluster: Tally, then etcd.
rss_puts=${BENCH_RSS_PUTS:-1000000}
rss_after_puts() {
  local target dir endpoints server_pids t0 p i rss disk
  for target in tally etcd; do
    dir="$work/$target-rss"
    if [ "$target" = tally ]; then
      start_tally 3 "$dir"; endpoints=$tally_endpoints; server_pids=$tally_pids
    else
      start_etcd "$dir"; endpoints=$(etcd_leader); server_pids=$etcd_pids
    fi
    echo "bench: rss-$rss_puts ($target)" >&2
    t0=$SECONDS
    "$bin/kvbench" --target "$target" --endpoints "$endpoints" --op put --clients 256 \
      --preload --ops 1 --keys "$rss_puts" --key-size 16 --value-size 256 --random-values \
      --warmup 0 \
      >/dev/null 2>>"$work/kvbench.err"
    t0=$((SECONDS - t0))
    sleep 5  # applies and flushes behind the last acknowledgement settle
    rss="" disk="" i=0
    for p in ${server_pids//,/ }; do
      i=$((i + 1))
      rss+="${rss:+,}$(($(rss_kb "$p") / 1024))"
      disk+="${disk:+,}$(du -sm "$dir/$([ "$target" = tally ] && echo n || echo e)$i" | cut -f1)"
    done
    echo "{\"label\":\"rss-$rss_puts\",\"target\":\"$target\",\"puts\":$rss_puts,\
\"seconds\":$t0,\"rss_mb\":[$rss],\"disk_mb\":[$disk]}" >>"$results"
    cleanup
  done
}

# Multi-Raft scale: put-256 over 1, 8 and 64 ranges (Tally alone).
scale() {
  local r
  for r in 1 8 64; do
    start_tally 3 "$work/tally3-r$r" "$(splits "$r")"
    run "ranges-$r-put-256" tally "$tally_endpoints" "$tally_pids" 1 --op put --clients 256
    cleanup
  done
}

# Idle ranges: CPU and memory of a cluster with nothing to do.
idle() {
  start_tally 3 "$work/tally3-idle" "$(splits "$idle_ranges")"
  sleep 20  # elections settle and groups go quiet
  local ticks c0 c1 rss p
  ticks=$(getconf CLK_TCK)
  cpu() { local s=0 p; for p in "${pids[@]}"; do
    s=$((s + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$s"; }
  c0=$(cpu); sleep 30; c1=$(cpu)
  rss=0; for p in "${pids[@]}"; do rss=$((rss + $(rss_kb "$p"))); done
  /usr/bin/python3 -c "import json; print(json.dumps({'label': 'idle-$idle_ranges', \
'cpu_percent_of_core': round(100.0 * ($c1 - $c0) / $ticks / 30, 2), 'rss_mb': round($rss / 1024)}))" \
    >>"$results"
  cleanup
}

start_tally 3 "$work/tally3"
start_etcd "$work/etcd3"
preload tally "$tally_endpoints"
preload etcd "$etcd_endpoints"
for round in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    label=${w%%|*}
    [[ "$label" =~ ${BENCH_ONLY:-.} ]] || continue
    read -r -a opts <<<"${w#*|}"
    run "$label" tally "$tally_endpoints" "$tally_pids" "$round" "${opts[@]}"
    etcd_target=$etcd_endpoints
    [ "$endpoint_mode" = all ] || etcd_target=$(etcd_leader)
    # Watchers spread over every member in both stores (Tally's by
    # default: its endpoints are all three); the puts go to the leader.
    [[ "$label" != watch* ]] || opts+=(--watch-endpoints "$etcd_endpoints")
    run "$label" etcd "$etcd_target" "$etcd_pids" "$round" "${opts[@]}"
  done
  [ -n "${BENCH_ONLY:-}" ] || run "lease-get-256" tally "$tally_endpoints" \
    "$tally_pids" "$round" --op get --read-mode lease --clients 256
done
cleanup
if [ -n "${BENCH_ONLY:-}" ]; then
  if [[ "ranges-64-put-256" =~ $BENCH_ONLY ]]; then scale; fi
  if [[ "idle-$idle_ranges" =~ $BENCH_ONLY ]]; then idle; fi
  if [[ "rss-$rss_puts" =~ $BENCH_ONLY ]]; then rss_after_puts; fi
  /usr/bin/python3 "$root/bench/report.py" "$results" "$work/fsync.txt" "$work/rtt.txt" | tee "$work/report.md"
  exit 0
fi

# Ceilings: no replication; reads from one node's applied state.
start_tally 1 "$work/tally1"
run "ceiling-put-256" tally "$tally_endpoints" "$tally_pids" 1 --op put --clients 256
preload tally "$tally_endpoints"
run "ceiling-serializable-get-256" tally "$tally_endpoints" "$tally_pids" 1 --op get \
  --read-mode serializable --clients 256
cleanup

if [ "${BENCH_SKIP_SCALE:-0}" != 1 ]; then
  scale
  idle
  rss_after_puts
fi

/usr/bin/python3 "$root/bench/report.py" "$results" "$work/fsync.txt" "$work/rtt.txt" | tee "$work/report.md"
