#!/usr/bin/env bash
# Whether scans slow writes down: the p99 of 16 writers alone, and again
# while 256 clients scan 1,000 keys each (linearizable), against one
# three-node Tally cluster on 127.0.0.1. A scan must never run on the raft
# loop, so the writers' p99 should barely move. Prints
#   bench: write_p99_alone_ms=<a> write_p99_with_scans_ms=<b> ratio=<b/a> scans_per_sec=<s>
#
#   bench/scan-isolation.sh                  # about a minute
#   BENCH_DURATION=20 bench/scan-isolation.sh
#   BENCH_SCANNER_NICE=19 bench/scan-isolation.sh
#   BENCH_SCAN_ARGS='--read-mode serializable' bench/scan-isolation.sh
#   BENCH_KVD_ARGS='--max-concurrent-scans 1000' bench/scan-isolation.sh
#
# BENCH_SCANNER_NICE runs the scanners' load generator at that nice value,
# so that on a small machine its own CPU (decoding 50-100 MB/s of scan
# results) competes less with the writers and the servers; in production
# the clients run elsewhere. The result line names the value used.
#
# Runs under build/bench/scan-<time>/ and stops only what it started.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
duration=${BENCH_DURATION:-10}
scanner_nice=${BENCH_SCANNER_NICE:-0}
warmup=${BENCH_WARMUP:-2}
keys=${BENCH_KEYS:-20000}
work="$root/build/bench/scan-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$work"
[ -x "$bin/kvbench" ] || make -C "$root" build >/dev/null

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

endpoints="" initial=""
for i in 1 2 3; do
  initial+="${initial:+,}n$i=127.0.0.1:$((7800 + i))"
  endpoints+="${endpoints:+,}127.0.0.1:$((7900 + i))"
done
for i in 1 2 3; do
  "$bin/kvd" --name "n$i" --data-dir "$work/n$i" \
    --listen-client "127.0.0.1:$((7900 + i))" --listen-peer "127.0.0.1:$((7800 + i))" \
    --initial-cluster "$initial" --log-level warn ${BENCH_KVD_ARGS:-} >>"$work/n$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do
  "$bin/kvctl" --endpoints "$endpoints" --timeout-ms 500 get probe >/dev/null 2>&1 && break
  [ $? -eq 1 ] && break  # NOT_FOUND: the cluster serves
  sleep 0.1
done

bench() { "$bin/kvbench" --target tally --endpoints "$endpoints" --keys "$keys" "$@"; }
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }

bench --op put --preload --clients 64 --duration 1 --warmup 0 >/dev/null
alone=$(bench --op put --clients 16 --duration "$duration" --warmup "$warmup" | tee "$work/alone.json")

nice -n "$scanner_nice" "$bin/kvbench" --target tally --endpoints "$endpoints" \
  --keys "$keys" --op scan --scan-size 1000 ${BENCH_SCAN_ARGS:-} --clients 256 --duration $((duration + 2 * warmup)) \
  --warmup 0 >"$work/scans.json" &
scanner=$!
pids+=($scanner)
sleep "$warmup"
with=$(bench --op put --clients 16 --duration "$duration" --warmup "$warmup" | tee "$work/with-scans.json")
wait "$scanner" || true

a=$(field p99_ms <<<"$alone")
b=$(field p99_ms <<<"$with")
s=$(field ops_per_sec <"$work/scans.json")
ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
echo "bench: write_p99_alone_ms=$a write_p99_with_scans_ms=$b ratio=$ratio scans_per_sec=${s:-0} scanner_nice=$scanner_nice"
