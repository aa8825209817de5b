#!/usr/bin/env bash
# Integration test: a real three-node cluster of kvd processes on
# 127.0.0.1, driven with kvctl. Bounded in time; stops what it started.
#   cluster_test.sh BIN_DIR
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir=$(mktemp -d /tmp/tally-it.XXXXXX)
export TALLY_BIN=$bin TALLY_PORT_BASE=$((20000 + RANDOM % 12000))  # below the ephemeral ports
export TALLY_OWNER_PID=$$  # the nodes stop even if this script is killed
b=$TALLY_PORT_BASE
export KVCTL_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
cluster() { "$root/deploy/local-cluster.sh" "$1" "$dir" >/dev/null; }
solo=
owner=
cleanup() {
  [ -n "$solo" ] && kill -9 "$solo" 2>/dev/null || true
  [ -n "$owner" ] && kill -9 "$owner" 2>/dev/null || true
  "$root/deploy/local-cluster.sh" stop "$dir/owned" >/dev/null 2>&1 || true
  cluster stop || true
  [ -f "$dir/n4.pid" ] && kill -9 "$(cat "$dir/n4.pid")" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
kvctl() { "$bin/kvctl" "$@"; }
fail() { echo "FAIL: $*"; for f in "$dir"/n*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
passed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }

[[ "$("$bin/kvd" --version)" =~ ^kvd\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "kvd --version"
[[ "$(kvctl --version)" =~ ^kvctl\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "kvctl --version"
ok "kvd and kvctl --version"

# The sample config file parses and runs a node (a cluster of one here).
"$bin/kvd" --config "$root/deploy/kvd.toml" --name n1 --data-dir "$dir/solo" \
  --listen-client 127.0.0.1:$((b + 51)) --listen-peer 127.0.0.1:$((b + 52)) \
  --listen-http 127.0.0.1:$((b + 53)) --initial-cluster n1=127.0.0.1:$((b + 52)) \
  >>"$dir/solo.log" 2>&1 &
solo=$!
for _ in $(seq 1 50); do
  kvctl --endpoints 127.0.0.1:$((b + 51)) --timeout-ms 500 put x 1 >/dev/null 2>&1 && break
  sleep 0.1
done
[ "$(kvctl --endpoints 127.0.0.1:$((b + 51)) get x)" = 1 ] || fail "kvd --config deploy/kvd.toml"
kill -9 $solo
wait $solo 2>/dev/null || true
solo=
ok "kvd runs from the sample config deploy/kvd.toml"

# --initial-cluster-token: one manifest, two tokens, two cluster ids; a data
# dir keeps its cluster's token.
solo_id() {  # solo_id <data dir> <token>: starts a one-node cluster, prints its id
  "$bin/kvd" --name n1 --data-dir "$1" --listen-client 127.0.0.1:$((b + 51)) \
    --listen-peer 127.0.0.1:$((b + 52)) --initial-cluster n1=127.0.0.1:$((b + 52)) \
    --initial-cluster-token "$2" >>"$dir/solo.log" 2>&1 &
  solo=$!
  local id=""
  for _ in $(seq 1 50); do
    id=$(kvctl --endpoints 127.0.0.1:$((b + 51)) --timeout-ms 500 -o json endpoint status 2>/dev/null |
      /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin)["result"]["endpoints"][0]["cluster_id"])' 2>/dev/null) && break
    sleep 0.1
  done
  kill -9 $solo; wait $solo 2>/dev/null || true; solo=
  echo "$id"
}
id_a=$(solo_id "$dir/token-a" blue)
id_b=$(solo_id "$dir/token-b" green)
[ -n "$id_a" ] && [ -n "$id_b" ] && [ "$id_a" != "$id_b" ] ||
  fail "--initial-cluster-token: ids '$id_a' and '$id_b' must differ"
[ "$(solo_id "$dir/token-a" blue)" = "$id_a" ] || fail "the same token must give the same id"
set +e
out=$("$bin/kvd" --name n1 --data-dir "$dir/token-a" --listen-client 127.0.0.1:$((b + 51)) \
  --listen-peer 127.0.0.1:$((b + 52)) --initial-cluster n1=127.0.0.1:$((b + 52)) \
  --initial-cluster-token green 2>&1)
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "belongs to cluster $id_a" <<<"$out" ||
  fail "a data dir started with another token: $out"
ok "--initial-cluster-token: one manifest, two ids; a data dir keeps its token"

# TALLY_OWNER_PID: nodes whose owner dies without stopping them (a test that
# crashed or was killed) do not stay behind holding their ports.
sleep 300 &
owner=$!
TALLY_OWNER_PID=$owner TALLY_PORT_BASE=$((b + 300)) \
  "$root/deploy/local-cluster.sh" start "$dir/owned" >/dev/null || fail "start of the owned cluster"
owned=$(cat "$dir"/owned/n*.pid)
kill -9 "$owner"
owner=
for _ in $(seq 1 100); do
  left=$(for p in $owned; do if kill -0 "$p" 2>/dev/null; then echo "$p"; fi; done)
  [ -z "$left" ] && break
  sleep 0.1
done
[ -z "$left" ] || fail "nodes" $left "still run 10 s after their owner was killed"
ok "the nodes of a cluster stop once its TALLY_OWNER_PID is gone"

cluster start
kvctl put a 1 >/dev/null || fail "put"
for i in 1 2 3; do
  [ "$(kvctl --endpoints 127.0.0.1:$((b + i)) get a)" = 1 ] || fail "get through n$i"
done
ok "put once, read 1 through every node"
# A node started on a port another node listens on refuses to start and
# names the port; it does not share the port with it (SO_REUSEPORT, which
# gRPC and cpp-httplib set unless told not to, lets both listen and the
# kernel split the connections between them).
for ports in "$((b + 1)) $((b + 61)) $((b + 62))" "$((b + 61)) $((b + 101)) $((b + 62))" \
  "$((b + 61)) $((b + 62)) $((b + 201))"; do
  read -r c p h <<<"$ports"
  set +e
  out=$(timeout 10 "$bin/kvd" --name n1 --data-dir "$dir/second" --listen-client 127.0.0.1:$c \
    --listen-peer 127.0.0.1:$p --listen-http 127.0.0.1:$h \
    --initial-cluster n1=127.0.0.1:$p 2>&1)
  rc=$?
  set -e
  rm -rf "$dir/second"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "in use" <<<"$out" ||
    fail "a second kvd on a port in use (client $c, peer $p, http $h) exited $rc: $(tail -n 3 <<<"$out")"
done
[ "$(kvctl get a)" = 1 ] || fail "the cluster after a second kvd tried its ports"
ok "kvd refuses a client, peer or HTTP port another node listens on"
set +e
out=$("$root/deploy/local-cluster.sh" start "$dir/other" 2>&1)
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "127.0.0.1:$((b + 1)) is in use" <<<"$out" ||
  fail "a second local cluster on the same ports exited $rc: $out"
ok "local-cluster.sh refuses to start a cluster on ports another one listens on"
[ "$(KVCTL_OUTPUT=json kvctl get a | head -c 1)" = "{" ] || fail "KVCTL_OUTPUT=json"
[ "$(KVCTL_OUTPUT=json kvctl -o table get a)" = 1 ] || fail "a flag must win over KVCTL_OUTPUT"
ok "kvctl options from KVCTL_* variables, flags first"

for i in 1 2 3; do
  http=http://127.0.0.1:$((b + 200 + i))
  for _ in $(seq 1 20); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$http/health")" = 200 ] && break
    sleep 0.25
  done
  [ "$(curl -s "$http/health")" = SERVING ] || fail "n$i /health: $(curl -s "$http/health")"
  [ "$(curl -s "$http/live")" = SERVING ] || fail "n$i /live"
  # Read whole, then matched (under pipefail, `curl | grep -q` fails if grep
  # exits before curl's last write).
  metrics=$(curl -s "$http/metrics") || true
  grep -q '^tally_raft_has_leader{group="1"} 1$' <<<"$metrics" ||
    fail "n$i /metrics: $(head -20 <<<"$metrics")"
done
ok "HTTP /health, /live and /metrics on every node"

# A scan (a range of more than 64 keys: a prefix read) holds one of its
# node's places for scan answers until its answer is sent (--max-concurrent-
# scans 1): if the place were not given back, each later scan would wait
# the longest wait (1 s) and go ahead beyond the bound ("overtaken").
for i in $(seq 1 8); do kvctl get --prefix "" >/dev/null || fail "scan $i"; done
for i in 1 2 3; do
  for _ in $(seq 1 20); do
    metrics=$(curl -s "http://127.0.0.1:$((b + 200 + i))/metrics") || true
    grep -q '^tally_scans_answering 0$' <<<"$metrics" && break
    sleep 0.1
  done
  grep -q '^tally_scans_answering 0$' <<<"$metrics" &&
    grep -q '^tally_scans_overtaken_total 0$' <<<"$metrics" ||
    fail "n$i holds scan places after its scans: $(grep tally_scans <<<"$metrics")"
done
ok "a scan gives its node's place for scan answers back once answered"

# Each thread of kvd's own carries a name (top -H, perf, /proc/PID/task).
names=$(cat /proc/"$(cat "$dir/n1.pid")"/task/*/comm)
# (peer-send-N: one per node it has sent to; a follower sends to its
# leader only.)
for want in raft-loop raft-apply kv-read kv-scan 'peer-send-[23]' health leader-duties; do
  grep -qx -- "$want" <<<"$names" || fail "no thread named $want in n1: $(sort -u <<<"$names" | tr '\n' ' ')"
done
ok "kvd names its threads"

kvctl put app/a 1 >/dev/null && kvctl put app/b 2 >/dev/null && kvctl put apq 3 >/dev/null ||
  fail "puts under app/"
printf 'from stdin' | kvctl put app/c >/dev/null || fail "put from stdin"
[ "$(kvctl get app/c)" = "from stdin" ] || fail "value read from stdin: $(kvctl get app/c)"
[ "$(kvctl get app/ --prefix)" = "$(printf 'app/a\t1\napp/b\t2\napp/c\tfrom stdin')" ] ||
  fail "get --prefix: $(kvctl get app/ --prefix)"
[ "$(kvctl get app/ --prefix --keys-only)" = "$(printf 'app/a\napp/b\napp/c')" ] ||
  fail "get --prefix --keys-only"
[ -z "$(kvctl get none/ --prefix)" ] || fail "get --prefix of nothing printed something"
members=$(kvctl member list)
for i in 1 2 3; do
  grep -q "^n$i  *voter  *127.0.0.1:$((b + 100 + i))  *127.0.0.1:$((b + i))$" <<<"$members" ||
    fail "member list: $members"
done
printf 'a\tb\nc\\' | kvctl put esc/x >/dev/null || fail "put esc/x"
[ "$(kvctl get esc/ --prefix)" = 'esc/x	a\tb\nc\\' ] ||
  fail "listing must escape tab, newline and backslash: $(kvctl get esc/ --prefix)"
[ "$(kvctl get esc/x)" = "$(printf 'a\tb\nc\\')" ] || fail "get prints the value as is"
ok "put from stdin, get --prefix [--keys-only] (escaped), member list"

set +e
kvctl put "" x 2>/dev/null; [ $? -eq 2 ] || fail "empty key must exit 2"
kvctl get missing 2>/dev/null; [ $? -eq 1 ] || fail "missing key must exit 1"
kvctl cas a 0 2 2>/dev/null; [ $? -eq 1 ] || fail "failed compare must exit 1"
set -e
[ "$(kvctl get a)" = 1 ] || fail "a rejected request changed a"
ok "bad input rejected with exit 2, missing key and failed compare exit 1"

# A preload whose keys cannot all be written fails (values over the 1 MiB
# limit here): a test reading them back must not find fewer than it wrote.
set +e
timeout 60 "$bin/kvbench" --target tally --endpoints "$KVCTL_ENDPOINTS" --op put \
  --clients 2 --preload --keys 4 --value-size 1100000 --ops 1 --warmup 0 \
  >/dev/null 2>"$dir/kvbench.err"
rc=$?
set -e
[ $rc -eq 1 ] && grep -q "4 of 4 keys could not be written" "$dir/kvbench.err" ||
  fail "kvbench preload of unwritable keys: exit $rc, $(tail -1 "$dir/kvbench.err")"
ok "kvbench --preload fails when a key cannot be written"

status=$(kvctl endpoint status) || fail "endpoint status with every node up"
[ "$(head -1 <<<"$status" | tr -s ' ')" = "ENDPOINT NODE CLUSTER GROUPS LEADER OF LEARNER IN MAX APPLY LAG IN FLIGHT REFUSED ERROR" ] ||
  fail "endpoint status header: $status"
[ "$(grep -c '^127.0.0.1:' <<<"$status")" = 3 ] || fail "endpoint status rows: $status"
# Aligned: every line has its NODE column at the same place.
[ "$(awk '{print index($0, $2)}' <<<"$status" | sort -u | wc -l)" = 1 ] ||
  fail "endpoint status columns not aligned: $status"
[ "$(kvctl -o json endpoint status | /usr/bin/python3 -c 'import json,sys; print(sorted(json.load(sys.stdin)["result"]["endpoints"][0]))')" = \
  "['admission', 'cluster_id', 'endpoint', 'groups', 'leader_of', 'learner_in', 'max_apply_lag', 'node']" ] ||
  fail "endpoint status -o json: $(kvctl -o json endpoint status)"
[ "$(kvctl -o json endpoint status | /usr/bin/python3 -c 'import json,sys; e = json.load(sys.stdin)["result"]["endpoints"][0]; print([(a["name"], int(a["admitted"]) >= 0) for a in e["admission"]])')" = \
  "[('control', True), ('write', True), ('read', True), ('scan', True)]" ] ||
  fail "endpoint status admission classes: $(kvctl -o json endpoint status)"
kvctl endpoint health >/dev/null || fail "endpoint health with every node up"
ok "endpoint status (an aligned table, or JSON) and endpoint health exit 0"

leader=$(kvctl cluster status | awk '$3==2 && $4=="LEADER" {print $2}' | head -1)
[ -n "$leader" ] || fail "no leader of group 2"
kill -9 "$(cat "$dir/$leader.pid")"
start=$(date +%s%N)
kvctl --timeout-ms 2000 put b 2 >/dev/null || fail "write after killing leader $leader"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
ok "write succeeded ${ms} ms after kill -9 of leader $leader"

set +e
for cmd in "endpoint status" "endpoint health" "cluster status" health; do
  # shellcheck disable=SC2086
  out=$(kvctl --timeout-ms 1000 $cmd 2>&1); rc=$?
  [ $rc -eq 3 ] || fail "kvctl $cmd with $leader down exited $rc, not 3: $out"
  grep -q "127.0.0.1:$((b + ${leader#n})).*UNAVAILABLE\|127.0.0.1:$((b + ${leader#n})).*unreachable" <<<"$out" ||
    fail "kvctl $cmd does not name the unreachable endpoint: $out"
done
set -e
ok "endpoint status|health, cluster status and health exit 3 naming the node that is down"

cluster start
n=${leader#n}
for _ in $(seq 1 50); do
  [ "$(kvctl --endpoints 127.0.0.1:$((b + n)) get b --read-mode serializable 2>/dev/null)" = 2 ] && break
  sleep 0.1
done
[ "$(kvctl --endpoints 127.0.0.1:$((b + n)) get b --read-mode serializable 2>/dev/null)" = 2 ] ||
  fail "restarted $leader did not catch up"
ok "restarted $leader caught up"
for i in $(seq 1 30); do kvctl put "k$i" "v$i" >/dev/null || fail "put k$i"; done
kill -9 $(cat "$dir"/n*.pid)
cluster start
[ "$(kvctl get k30)" = v30 ] || fail "k30 lost after kill -9 of all nodes"
[ "$(kvctl scan k "" | wc -l)" = 30 ] || fail "acknowledged writes lost after kill -9 of all nodes"
[ "$(kvctl get b)" = 2 ] || fail "b lost"
ok "no acknowledged write lost after kill -9 of all three nodes"

# A follower loses its disk: remove it, add a new node in its place, which
# catches up by snapshot and then by log.
kill -9 "$(cat "$dir/n3.pid")"
set +e
out=$("$bin/kvd" --name n3 --data-dir "$dir/n3" --listen-client 127.0.0.1:$((b + 91)) \
  --listen-peer 127.0.0.1:$((b + 92)) --initial-cluster n3=127.0.0.1:1,n2=127.0.0.1:2 2>&1)
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "belongs to cluster" <<<"$out" || fail "kvd started on another cluster's data dir: $out"
ok "kvd refuses a data dir of another cluster"

kvctl member remove n3 >/dev/null || fail "member remove n3"
rm -rf "$dir/n3"
set +e
kvctl member add n3 127.0.0.1:$((b + 103)) 2>/dev/null; rc=$?
set -e
[ $rc -ne 0 ] || fail "a removed member's id was reused"
kvctl member add n4 127.0.0.1:$((b + 104)) >/dev/null || fail "member add n4"
again=$(kvctl member add n4 127.0.0.1:$((b + 104))) || fail "member add n4, sent again"
grep -q changed <<<"$(grep -v 'already in effect' <<<"$again" | grep '^group')" &&
  fail "a repeated member add changed a group again: $again"
ok "a repeated member add changes nothing and succeeds"
setsid "$bin/kvd" --name n4 --data-dir "$dir/n4" --listen-client 127.0.0.1:$((b + 4)) \
  --listen-peer 127.0.0.1:$((b + 104)) --join 127.0.0.1:$((b + 1)) >>"$dir/n4.log" 2>&1 &
echo $! >"$dir/n4.pid"
kvctl member promote n4 >/dev/null || fail "member promote n4"
kvctl put after-join yes >/dev/null || fail "put after the join"
for _ in $(seq 1 50); do
  [ "$(kvctl --endpoints 127.0.0.1:$((b + 4)) get after-join --read-mode serializable 2>/dev/null)" = yes ] && break
  sleep 0.1
done
[ "$(kvctl --endpoints 127.0.0.1:$((b + 4)) get k30 --read-mode serializable 2>/dev/null)" = v30 ] || fail "n4 did not catch up"
[ "$(kvctl --endpoints 127.0.0.1:$((b + 4)) get after-join --read-mode serializable 2>/dev/null)" = yes ] || fail "n4 did not follow the log"
grep -q "installed snapshot" "$dir/n4.log" || fail "n4 caught up without a snapshot"
kill -9 "$(cat "$dir/n1.pid")"
kvctl --timeout-ms 3000 put with-n4 yes >/dev/null || fail "no quorum of n2 and n4"
ok "a wiped follower replaced by a new member catches up by snapshot and votes"

echo "$passed passed, 0 failed"
