#!/usr/bin/env bash
# Integration test: TLS on every port (docs/security.md). A three-node
# cluster with certificates from deploy/gen-certs.sh, driven with kvctl:
# clients without the CA or with another CA are refused, a node with a
# certificate from another CA is refused by its peers, kvd refuses bad
# certificate files at startup, a renewed certificate is served without a
# restart, and --tls-client-auth requires a client certificate.
# Bounded in time; stops what it started, by PID.
#   tls_test.sh BIN_DIR
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir=$(mktemp -d /tmp/tally-tls.XXXXXX)
export TALLY_BIN=$bin TALLY_TLS=1
export TALLY_PORT_BASE=$((20000 + RANDOM % 12000)) # below the ephemeral ports
export TALLY_OWNER_PID=$$  # the nodes stop even if this script is killed
b=$TALLY_PORT_BASE
certs=$dir/certs
export KVCTL_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
export KVCTL_TLS_CA=$certs/ca.pem
cluster() { "$root/deploy/local-cluster.sh" "$1" "$dir" >/dev/null; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null || true; done
  cluster stop || true
  rm -rf "$dir"
}
trap cleanup EXIT
kvctl() { "$bin/kvctl" "$@"; }
fail() { echo "FAIL: $*"; for f in "$dir"/*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
# expect_fail CODE PATTERN CMD...: CMD exits CODE and its stderr holds PATTERN.
expect_fail() {
  local code=$1 pattern=$2 rc=0
  shift 2
  "$@" >/dev/null 2>"$dir/err" || rc=$?
  [ "$rc" -eq "$code" ] || fail "$* exited $rc, not $code: $(cat "$dir/err")"
  grep -q -- "$pattern" "$dir/err" || fail "$*: no '$pattern' in: $(cat "$dir/err")"
}
# kvd_n3 CERT KEY CA: starts n3 (its ports, its data dir) with these files.
kvd_n3() {
  "$bin/kvd" --name n3 --data-dir "$dir/n3" \
    --listen-client 127.0.0.1:$((b + 3)) --listen-peer 127.0.0.1:$((b + 103)) \
    --listen-http 127.0.0.1:$((b + 203)) \
    --initial-cluster "n1=127.0.0.1:$((b + 101)),n2=127.0.0.1:$((b + 102)),n3=127.0.0.1:$((b + 103))" \
    --tls-ca "$3" --tls-cert "$1" --tls-key "$2" >>"$dir/n3.log" 2>&1 &
  pids+=($!)
  n3=$!
}
stop_n3() { kill -9 "$n3"; wait "$n3" 2>/dev/null || true; }
# eventually SECONDS CMD...: CMD succeeds within SECONDS.
eventually() {
  local end=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}
n3_has() { [ "$(kvctl --endpoints 127.0.0.1:$((b + 3)) --tls-ca "$1" --timeout-ms 1000 get --read-mode serializable "$2" 2>/dev/null)" = "$3" ]; }

cluster start
for i in 1 2 3; do
  kvctl --endpoints 127.0.0.1:$((b + i)) put "k$i" "v$i" >/dev/null || fail "put through n$i"
done
for i in 1 2 3; do
  [ "$(kvctl --endpoints 127.0.0.1:$((b + i)) get "k$i")" = "v$i" ] || fail "get through n$i"
done
[ "$(kvctl cluster status | awk '$4 == "LEADER"' | wc -l)" -eq 2 ] || fail "cluster status over TLS"
ok "writes, reads and cluster status through every node over TLS"

expect_fail 3 "give the client its CA" env -u KVCTL_TLS_CA "$bin/kvctl" --timeout-ms 1500 get k1
ok "a plaintext client is refused, and told why"

"$root/deploy/gen-certs.sh" "$dir/other" n3 >/dev/null
expect_fail 3 "certificate verify failed" "$bin/kvctl" --tls-ca "$dir/other/ca.pem" --timeout-ms 1500 get k1
ok "a client trusting another CA refuses the nodes"

# kvd checks its files before it serves.
solo() {
  "$bin/kvd" --name n1 --data-dir "$dir/solo" --listen-client 127.0.0.1:$((b + 51)) \
    --listen-peer 127.0.0.1:$((b + 52)) --initial-cluster n1=127.0.0.1:$((b + 52)) "$@"
}
"$root/deploy/gen-certs.sh" "$dir/old" n1 >/dev/null
# Certificates made three days ago, with libfaketime preloaded. Not the
# faketime wrapper: it refuses to start where /dev/shm holds a semaphore
# under its pid, left there by a process killed under libfaketime.
# libfaketime keeps that semaphore and a memory segment for the first
# process of the tree it is preloaded into, and removes them when that
# process exits, not when it execs another program: run through its
# #!/usr/bin/env line, the script would leave env's behind.
faketime_lib=$(ls /usr/lib/*/faketime/libfaketime.so.1 /usr/lib/faketime/libfaketime.so.1 2>/dev/null | head -n 1 || true)
[ -n "$faketime_lib" ] || fail "libfaketime not found (apt-get install faketime)"
TALLY_CERT_DAYS=1 LD_PRELOAD=$faketime_lib FAKETIME=-3d bash "$root/deploy/gen-certs.sh" "$dir/old" n1 >/dev/null &
faked=$!
wait $faked || fail "gen-certs.sh under libfaketime failed"
for f in /dev/shm/sem.faketime_sem_$faked /dev/shm/faketime_shm_$faked; do
  [ ! -e "$f" ] || fail "libfaketime left $f behind"
done
expect_fail 1 "certificate $dir/old/n1.pem: expired on" solo --tls-ca "$dir/old/ca.pem" --tls-cert "$dir/old/n1.pem" --tls-key "$dir/old/n1-key.pem"
expect_fail 1 "does not match certificate" solo --tls-ca "$certs/ca.pem" --tls-cert "$certs/n1.pem" --tls-key "$certs/n2-key.pem"
expect_fail 1 "is not issued by the CA" solo --tls-ca "$certs/ca.pem" --tls-cert "$dir/other/n3.pem" --tls-key "$dir/other/n3-key.pem"
expect_fail 1 "needs both the serverAuth and the clientAuth" solo --tls-ca "$certs/ca.pem" --tls-cert "$certs/client.pem" --tls-key "$certs/client-key.pem"
expect_fail 1 "cannot be read" solo --tls-ca "$certs/ca.pem" --tls-cert "$dir/missing.pem" --tls-key "$certs/n1-key.pem"
ok "kvd refuses an expired certificate, a wrong key, another CA's certificate, a client-only certificate and a missing file"

# n3 with a certificate from another CA: its peers refuse it, so it
# falls behind and loses its leader; with the cluster's, it catches up.
kill "$(cat "$dir/n3.pid")"
while kill -0 "$(cat "$dir/n3.pid")" 2>/dev/null; do sleep 0.1; done
kvd_n3 "$dir/other/n3.pem" "$dir/other/n3-key.pem" "$dir/other/ca.pem"
kvctl --endpoints "127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2))" put fenced-off 1 >/dev/null || fail "put without n3"
sleep 3
n3_has "$dir/other/ca.pem" fenced-off 1 && fail "n3 with another CA's certificate got the write"
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$((b + 203))/health)" = 503 ] ||
  fail "n3 cut off by its certificate reports healthy"
ok "a node with a certificate from another CA is refused by its peers (no write reaches it, /health 503)"
stop_n3
kvd_n3 "$certs/n3.pem" "$certs/n3-key.pem" "$certs/ca.pem"
eventually 15 n3_has "$certs/ca.pem" fenced-off 1 || fail "n3 did not catch up with the cluster's certificate"
ok "the same node with the cluster's certificate catches up"

# A renewed certificate is served without a restart.
serial() {
  local served
  served=$(openssl s_client -connect 127.0.0.1:$((b + 1)) -CAfile "$certs/ca.pem" \
    </dev/null 2>/dev/null) || true
  openssl x509 -noout -serial <<<"$served"
}
before=$(serial)
mkdir "$dir/renew"
cp "$certs/ca.pem" "$certs/ca-key.pem" "$certs/ca.srl" "$dir/renew/"
"$root/deploy/gen-certs.sh" "$dir/renew" n1 >/dev/null
cp "$dir/renew/n1-key.pem" "$certs/n1-key.pem.new"
cp "$dir/renew/n1.pem" "$certs/n1.pem.new"
mv "$certs/n1-key.pem.new" "$certs/n1-key.pem"
mv "$certs/n1.pem.new" "$certs/n1.pem"
renewed() { [ "$(serial)" != "$before" ] && [ -n "$(serial)" ]; }
eventually 30 renewed || fail "n1 still serves its old certificate"
[ "$(kvctl --endpoints 127.0.0.1:$((b + 1)) get k1)" = v1 ] || fail "get after renewal"
ok "a renewed certificate is served without a restart"

# --tls-client-auth: a client certificate from the CA is required.
"$bin/kvd" --name n1 --data-dir "$dir/solo" --listen-client 127.0.0.1:$((b + 51)) \
  --listen-peer 127.0.0.1:$((b + 52)) --initial-cluster n1=127.0.0.1:$((b + 52)) \
  --tls-ca "$certs/ca.pem" --tls-cert "$certs/n1.pem" --tls-key "$certs/n1-key.pem" \
  --tls-client-auth >>"$dir/solo.log" 2>&1 &
pids+=($!)
with_cert() { kvctl --endpoints 127.0.0.1:$((b + 51)) --tls-cert "$certs/client.pem" --tls-key "$certs/client-key.pem" --timeout-ms 1000 "$@"; }
eventually 10 with_cert put c 1 || fail "a client with a certificate"
expect_fail 3 "" "$bin/kvctl" --endpoints 127.0.0.1:$((b + 51)) --timeout-ms 1500 get c
ok "--tls-client-auth refuses a client without a certificate and serves one with"

echo "tls_test: $passed checks passed"
