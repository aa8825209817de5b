#!/usr/bin/env bash
# Tally with TLS on every port next to Tally in plaintext, on this machine:
# two local three-node clusters (deploy/local-cluster.sh), kvbench against
# each in turn (plaintext, TLS, plaintext, ...), medians of ROUNDS rounds.
# Prints a Markdown table: throughput, p99, and the CPU-seconds of the three
# server processes per 10,000 operations.
#   bench/compare-tls.sh   (ROUNDS=3 DURATION=10: about 4 minutes)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
work=$(mktemp -d /tmp/tally-bench-tls.XXXXXX)
plain_base=$((20000 + RANDOM % 5000))
tls_base=$((plain_base + 1000))
cluster() {  # cluster start|stop plain|tls
  local base=$plain_base tls=0
  [ "$2" = tls ] && base=$tls_base tls=1
  TALLY_BIN=$bin TALLY_PORT_BASE=$base TALLY_TLS=$tls \
    "$root/deploy/local-cluster.sh" "$1" "$work/$2" >/dev/null
}
cleanup() {
  cluster stop plain || true
  cluster stop tls || true
  rm -rf "$work"
}
trap cleanup EXIT
endpoints() { local b=$1; echo "127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"; }
pids() { cat "$work/$1"/n*.pid | paste -sd, -; }
cluster start plain
cluster start tls
tls_ca=$work/tls/certs/ca.pem

bench() {  # bench plain|tls label round kvbench options...
  local mode=$1 label=$2 round=$3 base=$plain_base ca=""
  shift 3
  [ "$mode" = tls ] && base=$tls_base ca=$tls_ca
  echo "bench: $label ($mode, round $round)" >&2
  KVCTL_TLS_CA=$ca "$bin/kvbench" --target tally --endpoints "$(endpoints $base)" \
    --duration "$duration" --warmup 2 --key-size 16 --value-size 256 \
    --keys 100000 --server-pids "$(pids "$mode")" "$@" 2>>"$work/kvbench.err" |
    sed "s/^{/{\"label\":\"$label\",\"mode\":\"$mode\",/" >>"$work/results.json"
}
for mode in plain tls; do
  bench "$mode" preload 0 --op put --clients 64 --preload --ops 1 >/dev/null
done
: >"$work/results.json"
workloads=(
  "put-256|--op put --clients 256"
  "get-256|--op get --clients 256"
  "serializable-get-256|--op get --read-mode serializable --clients 256"
)
for round in $(seq 1 "$rounds"); do
  for w in "${workloads[@]}"; do
    for mode in plain tls; do
      # shellcheck disable=SC2086
      bench "$mode" "${w%%|*}" "$round" ${w#*|}
    done
  done
done

/usr/bin/python3 - "$work/results.json" "$rounds" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(label, mode, f):
    v = [f(r) for r in rows if r["label"] == label and r["mode"] == mode]
    return statistics.median(v), min(v), max(v)
print(f"Tally, plaintext and TLS, medians of {sys.argv[2]} interleaved rounds (min-max)\n")
print("| workload | plaintext ops/s | TLS ops/s | TLS/plain | p99 ms plain / TLS | server CPU-s per 10k ops plain / TLS |")
print("| --- | --- | --- | --- | --- | --- |")
for label in dict.fromkeys(r["label"] for r in rows):
    p = med(label, "plain", lambda r: r["ops_per_sec"])
    t = med(label, "tls", lambda r: r["ops_per_sec"])
    p99p = med(label, "plain", lambda r: r["p99_ms"])[0]
    p99t = med(label, "tls", lambda r: r["p99_ms"])[0]
    cpu = lambda r: r["server_cpu_s"] / r["ops"] * 10000 if r["ops"] else 0
    cp = med(label, "plain", cpu)[0]
    ct = med(label, "tls", cpu)[0]
    print(f"| {label} | {p[0]:,.0f} ({p[1]:,.0f}-{p[2]:,.0f}) | {t[0]:,.0f} ({t[1]:,.0f}-{t[2]:,.0f}) "
          f"| {t[0] / p[0]:.2f}x | {p99p:.1f} / {p99t:.1f} | {cp:.2f} / {ct:.2f} |")
PY
