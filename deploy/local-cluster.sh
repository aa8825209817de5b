#!/usr/bin/env bash
# Runs a three-node Tally cluster on 127.0.0.1 in the background.
#   deploy/local-cluster.sh start [DIR]   start (or restart) n1..n3, wait for a leader
#   deploy/local-cluster.sh stop [DIR]    stop the nodes this script started
#   deploy/local-cluster.sh status [DIR]
# DIR (default .tally-cluster) holds each node's data dir, log and PID file.
# Ports: clients 127.0.0.1:7001-7003, peers 127.0.0.1:7101-7103, HTTP
# (/health, /ready, /live, /metrics) 127.0.0.1:7201-7203
# (TALLY_PORT_BASE=7000 moves them all). TALLY_INITIAL_RANGES=m,t splits a new
# cluster's keyspace into shards at those keys. TALLY_TLS=1 runs every port
# with TLS, with a CA and certificates made once in DIR/certs
# (deploy/gen-certs.sh); kvctl then needs KVCTL_TLS_CA=DIR/certs/ca.pem.
# TALLY_OWNER_PID=PID ties the nodes to that process: once it is gone (a test
# that crashed or was killed), a watchdog started with the nodes stops them.
set -euo pipefail
cmd=${1:-}
dir=${2:-.tally-cluster}
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
base=${TALLY_PORT_BASE:-7000}
endpoints="127.0.0.1:$((base + 1)),127.0.0.1:$((base + 2)),127.0.0.1:$((base + 3))"
initial="n1=127.0.0.1:$((base + 101)),n2=127.0.0.1:$((base + 102)),n3=127.0.0.1:$((base + 103))"

# Whether the kvd of PID file $1 runs. A killed node whose parent has not
# reaped it yet is a zombie, and a reused PID is another program: both count
# as stopped.
running() {
  [ -f "$1" ] || return 1
  local stat
  stat=$(awk '{print $2, $3}' "/proc/$(cat "$1")/stat" 2>/dev/null) || return 1
  [ "${stat% *}" = "(kvd)" ] && [ "${stat#* }" != Z ]
}

# The start time of process $1 (field 22 of /proc/PID/stat, after the
# command name, which may hold spaces), empty if it does not run or has
# exited and waits to be reaped (a zombie).
started_at() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  awk '$1 != "Z" {print $20}' <<<"$stat"
}

# Starts the watchdog of TALLY_OWNER_PID (this script's `watchdog` command)
# unless one runs.
watch_owner() {
  local owner=$1 since pidfile="$dir/watchdog.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then return; fi
  since=$(started_at "$owner")
  [ -n "$since" ] || { echo "local-cluster: TALLY_OWNER_PID=$owner does not run" >&2; exit 1; }
  setsid "$root/deploy/local-cluster.sh" watchdog "$dir" "$owner" "$since" \
    </dev/null >/dev/null 2>&1 &
  echo $! >"$pidfile"
}

tls=()
probe_tls=()
if [ "${TALLY_TLS:-0}" = 1 ]; then
  probe_tls=(--tls-ca "$dir/certs/ca.pem")
fi

case "$cmd" in
  start)
    mkdir -p "$dir"
    if [ "${TALLY_TLS:-0}" = 1 ] && [ ! -f "$dir/certs/n3.pem" ]; then
      "$root/deploy/gen-certs.sh" "$dir/certs" n1 n2 n3 >/dev/null
    fi
    if [ -n "${TALLY_OWNER_PID:-}" ]; then watch_owner "$TALLY_OWNER_PID"; fi
    # A port another process listens on (another cluster's node), checked
    # before any node starts: kvd would refuse it, but the probe below
    # would reach that process and report this cluster up.
    for i in 1 2 3; do
      if running "$dir/n$i.pid"; then continue; fi
      for port in $((base + i)) $((base + 100 + i)) $((base + 200 + i)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
          echo "local-cluster: 127.0.0.1:$port is in use (another cluster? TALLY_PORT_BASE moves the ports)" >&2
          exit 1
        fi
      done
    done
    for i in 1 2 3; do
      pidfile="$dir/n$i.pid"
      if running "$pidfile"; then continue; fi
      if [ "${TALLY_TLS:-0}" = 1 ]; then
        tls=(--tls-ca "$dir/certs/ca.pem" --tls-cert "$dir/certs/n$i.pem"
          --tls-key "$dir/certs/n$i-key.pem")
      fi
      # setsid: the nodes outlive this shell and its terminal.
      setsid "$bin/kvd" --name "n$i" --data-dir "$dir/n$i" \
        --listen-client "127.0.0.1:$((base + i))" \
        --listen-peer "127.0.0.1:$((base + 100 + i))" \
        --listen-http "127.0.0.1:$((base + 200 + i))" \
        --initial-cluster "$initial" --initial-ranges "${TALLY_INITIAL_RANGES:-}" \
        "${tls[@]}" ${TALLY_KVD_ARGS:-} >>"$dir/n$i.log" 2>&1 &
      echo $! >"$pidfile"
    done
    for _ in $(seq 1 100); do
      if "$bin/kvctl" --endpoints "$endpoints" --timeout-ms 500 "${probe_tls[@]}" \
          get tally-cluster-probe >/dev/null 2>&1 || [ $? -eq 1 ]; then
        echo "Tally cluster is up (logs and data in $dir)."
        echo "export KVCTL_ENDPOINTS=$endpoints"
        if [ "${TALLY_TLS:-0}" = 1 ]; then
          echo "export KVCTL_TLS_CA=$(cd "$dir" && pwd)/certs/ca.pem"
        fi
        exit 0
      fi
      for i in 1 2 3; do
        if ! running "$dir/n$i.pid"; then
          echo "local-cluster: n$i exited; its log ($dir/n$i.log) ends with:" >&2
          tail -5 "$dir/n$i.log" >&2
          exit 1
        fi
      done
      sleep 0.1
    done
    echo "local-cluster: no leader after 10 s; see $dir/n*.log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$dir/watchdog.pid" ]; then
      kill "$(cat "$dir/watchdog.pid")" 2>/dev/null || true
      rm -f "$dir/watchdog.pid"
    fi
    for i in 1 2 3; do
      pidfile="$dir/n$i.pid"
      if running "$pidfile"; then
        # It may exit between the check and the signals (set -e).
        kill "$(cat "$pidfile")" 2>/dev/null || true
        kill -CONT "$(cat "$pidfile")" 2>/dev/null || true  # a paused node shuts down too
        for _ in $(seq 1 50); do running "$pidfile" || break; sleep 0.1; done
        if running "$pidfile"; then kill -9 "$(cat "$pidfile")" 2>/dev/null || true; fi
      fi
      rm -f "$pidfile"
    done
    echo "stopped"
    ;;
  watchdog)  # watchdog DIR OWNER_PID OWNER_START_TIME: once a second
    # checks the owner; when it is gone (or its PID was reused), stops the nodes.
    while [ "$(started_at "$3")" = "$4" ]; do sleep 1; done
    rm -f "$dir/watchdog.pid"
    exec "$root/deploy/local-cluster.sh" stop "$dir"
    ;;
  status)
    for i in 1 2 3; do
      if running "$dir/n$i.pid"; then echo "n$i running (pid $(cat "$dir/n$i.pid"))"; else echo "n$i stopped"; fi
    done
    ;;
  *)
    echo "usage: $0 start|stop|status [DIR]" >&2
    exit 2
    ;;
esac
