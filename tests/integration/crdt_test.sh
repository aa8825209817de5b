#!/usr/bin/env bash
# Integration test: CRDT tables on a real three-node cluster, driven with
# kvctl. Writes on every node converge; a node killed with -9 misses
# deltas (a removal among them) and catches up by anti-entropy after its
# restart, resurrecting nothing; a node alone, with the other two down and
# no raft leader anywhere, keeps accepting writes, which reach the others
# once they are back; garbage collection runs past a node that was stopped
# and retired, which resyncs when it comes back with its old disk and
# brings nothing collected back, as does a node whose store is put back
# from an older copy; a cas_register is compared and set through raft;
# bad input gets clear errors and changes
# nothing; a table dropped and created again starts empty. Bounded in time; stops
# what it started.
#   crdt_test.sh BIN_DIR
set -euo pipefail
bin=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dir=$(mktemp -d /tmp/tally-crdt.XXXXXX)
export TALLY_BIN=$bin TALLY_PORT_BASE=$((20000 + RANDOM % 12000))  # below the ephemeral ports
export TALLY_OWNER_PID=$$  # the nodes stop even if this script is killed
b=$TALLY_PORT_BASE
export KVCTL_ENDPOINTS="127.0.0.1:$((b + 1)),127.0.0.1:$((b + 2)),127.0.0.1:$((b + 3))"
cleanup() {
  "$root/deploy/local-cluster.sh" stop "$dir" >/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
kvctl() { "$bin/kvctl" "$@"; }
on() { local n=$1; shift; "$bin/kvctl" --endpoints "127.0.0.1:$((b + n))" "$@"; }
fail() { echo "FAIL: $*"; for f in "$dir"/n*.log; do echo "== $f"; tail -n 20 "$f"; done; exit 1; }
ok() { echo "ok: $*"; }
# Waits up to $1 seconds for every node's anti-entropy to find its peers'
# digests equal to its own (`crdt status`), then checks that rows $2..
# read the same on every node; prints the seconds until they were in sync.
converge() {
  local limit=$1; shift
  local start=$SECONDS
  while true; do
    if [ "$(kvctl crdt status 2>/dev/null | grep -c $'\tin sync')" = 6 ]; then
      local took=$((SECONDS - start)) same=1
      for row in "$@"; do
        local r1 r2 r3
        r1=$(on 1 crdt get carts "$row" 2>&1; echo "rc=$?")
        r2=$(on 2 crdt get carts "$row" 2>&1; echo "rc=$?")
        r3=$(on 3 crdt get carts "$row" 2>&1; echo "rc=$?")
        [ "$r1" = "$r2" ] && [ "$r2" = "$r3" ] || same=0
      done
      [ $same = 1 ] && { echo "$took"; return 0; }
    fi
    [ $((SECONDS - start)) -ge "$limit" ] && return 1
    sleep 0.2
  done
}
kill9() { kill -9 "$(cat "$dir/n$1.pid")"; }

"$root/deploy/local-cluster.sh" start "$dir" >/dev/null

# Bad input: clear errors, exit codes, nothing created.
out=$(kvctl crdt create carts items:blob 2>&1; echo "rc=$?")
[[ "$out" == *"must be NAME:TYPE"*"rc=2" ]] || fail "unknown type: $out"
out=$(kvctl crdt create Carts items:set 2>&1; echo "rc=$?")
[[ "$out" == *"table name \"Carts\" must be"*"rc=2" ]] || fail "bad name: $out"
kvctl crdt create carts items:set views:g_counter stock:pn_counter \
  note:mv_register owner:lww_register vip:flag >/dev/null || fail "create"
out=$(kvctl crdt alter carts items:g_counter 2>&1; echo "rc=$?")
[[ "$out" == *"column items is a set; a column's type never changes"*"rc=1" ]] ||
  fail "type change: $out"
out=$(on 1 crdt incr carts alice items 2>&1; echo "rc=$?")
[[ "$out" == *"column items is a set: use add or remove"*"rc=2" ]] || fail "wrong op: $out"
out=$(on 1 crdt add carts alice items "$(head -c 5000 /dev/zero | tr '\0' x)" 2>&1; echo "rc=$?")
[[ "$out" == *"4096-byte limit"*"rc=2" ]] || fail "oversized element: $out"
out=$(on 1 crdt incr carts alice views -1 2>&1; echo "rc=$?")
[[ "$out" == *"only grows"*"rc=2" ]] || fail "g_counter decrement: $out"
out=$(on 1 crdt add nosuch alice items x 2>&1; echo "rc=$?")
[[ "$out" == *"no CRDT table nosuch"*"rc=1" ]] || fail "unknown table: $out"
out=$(on 1 crdt get carts alice 2>&1; echo "rc=$?")
[[ "$out" == *"rc=1" ]] || fail "a row after bad input: $out"
ok "bad names, types, operations and sizes: clear errors, nothing written"

# Every node writes; every node sees it all.
for n in 1 2 3; do
  on $n crdt add carts alice items "from-n$n" >/dev/null
  on $n crdt incr carts alice views $n >/dev/null
  on $n crdt incr carts alice stock -$n >/dev/null
  on $n crdt set carts alice note "note-n$n" >/dev/null
done
on 1 crdt enable carts alice vip >/dev/null
secs=$(converge 10 alice) || fail "no convergence in 10 s: $(kvctl crdt status 2>&1)"
out=$(on 3 crdt get carts alice)
[[ "$out" == *'items	set	{"from-n1", "from-n2", "from-n3"}'* ]] || fail "set: $out"
[[ "$out" == *"views	g_counter	6"* && "$out" == *"stock	pn_counter	-6"* ]] || fail "counters: $out"
[[ "$out" == *"vip	flag	enabled"* ]] || fail "flag: $out"
ok "writes on every node converged in ${secs} s"

# Concurrent siblings of an mv_register, resolved with the context read.
[[ "$out" == *"(siblings)"* ]] || fail "no siblings: $out"
ctx=$(on 2 crdt get carts alice | sed -n 's/^  context: //p')
on 2 crdt set carts alice note resolved --context "$ctx" >/dev/null
converge 10 alice >/dev/null || fail "no convergence after resolving"
[[ "$(on 1 crdt get carts alice)" == *'note	mv_register	"resolved"'$'\n'* ]] ||
  fail "resolved: $(on 1 crdt get carts alice)"
ok "mv_register siblings resolved by a write with the context read"

# A map column, added to the table: each key an mv_register.
kvctl crdt alter carts prefs:map >/dev/null || fail "alter: add a map column"
out=$(on 1 crdt set carts bob prefs red 2>&1; echo "rc=$?")
[[ "$out" == *"column prefs is a map: name 1 key (--key) to reach a value"*"rc=2" ]] || fail "map set without a key: $out"
on 1 crdt set carts bob prefs --key color red >/dev/null
on 2 crdt set carts bob prefs --key size L >/dev/null
converge 10 bob >/dev/null || fail "no convergence of the map"
on 3 crdt set carts bob prefs --key color blue >/dev/null # blind: a sibling
converge 10 bob >/dev/null || fail "no convergence of the map"
out=$(on 1 crdt get carts bob)
[[ "$out" == *'prefs	map	{"color": "'*'"size": "L"}'* && "$out" == *'"red"'* &&
  "$out" == *'"blue"'* ]] || fail "map with siblings: $out"
ctx=$(on 2 crdt get carts bob | sed -n 's/^  context of "color": //p')
on 2 crdt set carts bob prefs --key color green --context "$ctx" >/dev/null
on 1 crdt remove carts bob prefs size >/dev/null
converge 10 bob >/dev/null || fail "no convergence of the map"
[[ "$(on 3 crdt get carts bob)" == *'prefs	map	{"color": "green"}'* ]] ||
  fail "map after resolving and removing: $(on 3 crdt get carts bob)"
ok "map keys: a blind write adds a sibling, a write with the key's context replaces them, a removed key is gone"

# Maps of sets and of maps of flags. Removing a key takes everything below
# it that its node saw; what is added below it afterwards stays.
kvctl crdt alter carts 'tags:map<set>' 'perms:map<map<flag>>' >/dev/null || fail "alter: nested maps"
[[ "$(kvctl crdt tables)" == *"tags:map<set> perms:map<map<flag>>"* ]] || fail "tables: $(kvctl crdt tables)"
on 1 crdt add carts dan tags --key fruit apple pear >/dev/null
on 1 crdt enable carts dan perms --key alice --key read >/dev/null
on 1 crdt enable carts dan perms --key bob --key read >/dev/null
converge 10 dan >/dev/null || fail "no convergence of nested maps"
on 2 crdt remove carts dan tags fruit >/dev/null
on 2 crdt remove carts dan perms --key bob read >/dev/null
on 3 crdt add carts dan tags --key fruit plum >/dev/null
converge 10 dan >/dev/null || fail "no convergence of nested maps"
out=$(on 1 crdt get carts dan)
[[ "$out" == *'tags	map	{"fruit": {"plum"}}'* && "$out" == *'perms	map	{"alice": {"read": enabled}}'* ]] ||
  fail "nested maps: $out"
out=$(on 1 crdt add carts dan tags apple 2>&1; echo "rc=$?")
[[ "$out" == *"column tags is a map<set>: name 1 key (--key) to reach a value"*"rc=2" ]] || fail "add to a map of sets without a key: $out"
ok "maps of sets and of maps of flags: a removed key takes what was seen below it"

# A cas_register: kept through raft, changed by compare-and-set only. Of
# two decided on the same version or value, one wins, whichever node each
# is sent to; a write without consensus is refused for it.
kvctl crdt create orders items:set status:cas_register >/dev/null || fail "create orders"
out=$(on 1 crdt cas orders o-1 status=open --version 0 2>&1; echo "rc=$?")
[[ "$out" == "OK (version "*"rc=0" ]] || fail "cas of a new row: $out"
out=$(on 2 crdt cas orders o-1 status=open --version 0 2>&1; echo "rc=$?")
[[ "$out" == *"NOT SET"*'status	"open"'*"rc=1" ]] || fail "a second cas at version 0: $out"
on 3 crdt cas orders o-1 status=paid --expect status=open >/dev/null || fail "checkout"
out=$(on 1 crdt cas orders o-1 status=paid-again --expect status=open 2>&1; echo "rc=$?")
[[ "$out" == *"NOT SET"*'status	"paid"'*"rc=1" ]] || fail "a second checkout: $out"
on 2 crdt add orders o-1 items apple >/dev/null || fail "add to a table with a cas_register"
out=$(on 2 crdt get orders o-1 --majority)
[[ "$out" == *'items	set	{"apple"}'*'status	cas_register	"paid"'*"version: "* ]] || fail "get: $out"
out=$(on 1 crdt set orders o-1 status x 2>&1; echo "rc=$?")
[[ "$out" == *"is a cas_register, kept through raft"*"rc=2" ]] || fail "a write of a cas_register without raft: $out"
out=$(kvctl crdt cas orders o-1 items=x 2>&1; echo "rc=$?")
[[ "$out" == *"only cas_register columns"*"rc=2" ]] || fail "cas of a set: $out"
out=$(kvctl crdt cas orders o-1 --expect status=paid 2>&1; echo "rc=$?")
[[ "$out" == *"nothing to set"*"rc=2" ]] || fail "cas setting nothing: $out"
out=$(kvctl crdt cas orders o-1 status 2>&1; echo "rc=$?")
[[ "$out" == *"must be COLUMN=VALUE"*"rc=2" ]] || fail "cas without a value: $out"
ok "a cas_register is compared and set through raft; one of two checkouts wins"

# n3 is killed; n1 removes what n3 holds and both others write more.
kill9 3
on 1 crdt remove carts alice items from-n3 >/dev/null
rows=()
for k in $(seq 1 30); do
  on $((k % 2 + 1)) crdt add carts "row$k" items "a$k" "b$k" >/dev/null
  on $((k % 2 + 1)) crdt incr carts "row$k" views 2 >/dev/null
  rows+=("row$k")
done
"$root/deploy/local-cluster.sh" start "$dir" >/dev/null
secs=$(converge 20 alice "${rows[@]}") || fail "n3 did not catch up in 20 s"
out=$(on 3 crdt get carts alice)
[[ "$out" == *'items	set	{"from-n1", "from-n2"}'* ]] || fail "n3 resurrected an element: $out"
[[ "$(on 3 crdt get carts row17)" == *"views	g_counter	2"* ]] || fail "row17 on n3"
st=$(on 1 crdt status)
[[ "$st" == *"n3	in sync"* ]] || fail "status after catching up: $st"
ok "n3, killed with -9, caught up by anti-entropy in ${secs} s; the removal held"

# n3 alone (no raft leader anywhere) keeps accepting writes.
kill9 1
kill9 2
out=$(on 3 crdt incr carts alone views 7 2>&1) || fail "a lone node refused a write: $out"
on 3 crdt add carts alone items solo >/dev/null || fail "a lone node refused an add"
out=$(on 3 crdt create other x:set 2>&1; echo "rc=$?")
[[ "$out" == *"rc=3" ]] || fail "a schema change without a majority: $out"
"$root/deploy/local-cluster.sh" start "$dir" >/dev/null
secs=$(converge 20 alone) || fail "the lone node's writes did not spread"
out=$(on 1 crdt get carts alone 2>&1 || true)
[[ "$out" == *"views	g_counter	7"* ]] || fail "alone on n1: $out; n3: $(on 3 crdt get carts alone 2>&1)"
ok "writes on a node alone were accepted and reached the others in ${secs} s"

# A majority read merges the row from a majority first.
out=$(on 2 -o json crdt get carts alice --majority)
[[ "$out" == *'"merged_from":2'* || "$out" == *'"merged_from":3'* ]] || fail "majority read: $out"
ok "a majority read merged the row from a majority"

# Garbage collection past a stopped node. n3 is stopped holding "gone";
# n1 removes it, and adds and removes "late" (a tombstone n3 never saw).
# n3 is retired, so the cut stops waiting for it: n1 and n2 collect both
# tombstones. n3 comes back with its old disk: it is refused, throws its
# rows away, resyncs under a new replica, and neither comes back.
on 1 crdt add carts gc items keep gone >/dev/null
converge 10 gc >/dev/null || fail "gc row did not converge"
kill9 3
on 1 crdt remove carts gc items gone >/dev/null
on 1 crdt add carts gc items late >/dev/null
on 1 crdt remove carts gc items late >/dev/null
out=$(on 1 crdt retire 3) || fail "retire: $out"
old=$(sed -n 's/.*retired replica \([0-9a-f]*\) of n3.*/\1/p' <<<"$out")
[ -n "$old" ] || fail "retire answer: $out"
start=$SECONDS
until on 1 crdt status | grep -q "gc: 0 tombstones.*[1-9][0-9]* collected" &&
      on 2 crdt status | grep -q "gc: 0 tombstones.*[1-9][0-9]* collected"; do
  [ $((SECONDS - start)) -ge 20 ] && fail "no collection past n3 in 20 s: $(kvctl crdt status 2>&1)"
  sleep 0.2
done
ok "n3 retired; n1 and n2 collected the tombstones past it in $((SECONDS - start)) s"
"$root/deploy/local-cluster.sh" start "$dir" >/dev/null
start=$SECONDS
until on 3 crdt status 2>/dev/null | grep -q "resynced 1x"; do
  [ $((SECONDS - start)) -ge 20 ] && fail "n3 did not resync: $(on 3 crdt status 2>&1)"
  sleep 0.2
done
converge 20 gc alice >/dev/null || fail "no convergence after n3's resync"
out=$(on 3 crdt get carts gc)
[[ "$out" == *'items	set	{"keep"}'* ]] || fail "collected elements came back on n3: $out"
out=$(on 1 crdt get carts gc)
[[ "$out" == *'items	set	{"keep"}'* ]] || fail "collected elements came back on n1: $out"
start=$SECONDS
while true; do  # the metadata group's leader registers it
  st=$(on 1 crdt status)
  new=$(sed -n 's/^  replica \([0-9a-f]*\) of n3 active$/\1/p' <<<"$st")
  [ -n "$new" ] && [ "$new" != "$old" ] && break
  [ $((SECONDS - start)) -ge 10 ] && fail "n3's new replica: $st"
  sleep 0.2
done
on 3 crdt incr carts gc views 1 >/dev/null || fail "n3 refused a write after its resync"
ok "n3 came back with its old disk, resynced as replica $new; nothing collected came back"

# A store put back from an older copy. n2's CRDT store is copied while n2
# is down, holding "old" (the only element of row rb); after n2 is back,
# n1 removes it, and every node collects the row away; n2 then comes back
# with the copy. Its store has less than it reported having seen: it
# resyncs, and "old" does not come back (no peer still holds row rb to
# correct it, so without the resync n2 would keep it).
on 1 crdt add carts rb items old >/dev/null
converge 10 rb >/dev/null || fail "rb did not converge"
kill9 2
cp -a "$dir/n2/crdt" "$dir/n2-crdt-copy"
"$root/deploy/local-cluster.sh" start "$dir" >/dev/null
on 1 crdt remove carts rb items old >/dev/null
on 1 crdt add carts rb2 items new >/dev/null
start=$SECONDS
until [ "$(kvctl crdt status 2>/dev/null | grep -c "gc: 0 tombstones")" = 3 ] &&
      [ "$(on 2 crdt get carts rb 2>&1; echo "rc=$?")" = "rc=1" ] &&
      converge 1 rb2 >/dev/null; do
  [ $((SECONDS - start)) -ge 20 ] && fail "rb was not collected everywhere: $(kvctl crdt status 2>&1)"
  sleep 0.2
done
sleep 3  # n2's report of what it has seen since its restart is committed
kill9 2
rm -rf "$dir/n2/crdt"
mv "$dir/n2-crdt-copy" "$dir/n2/crdt"
"$root/deploy/local-cluster.sh" start "$dir" >/dev/null
start=$SECONDS
until on 2 crdt status 2>/dev/null | grep -q "resynced 1x"; do
  [ $((SECONDS - start)) -ge 20 ] && fail "n2 with an old store did not resync: $(on 2 crdt status 2>&1)"
  sleep 0.2
done
converge 20 rb rb2 >/dev/null || fail "no convergence after n2's resync"
out=$(on 2 crdt get carts rb 2>&1; echo "rc=$?")
[ "$out" = "rc=1" ] || fail "a collected element came back on n2: $out"
[[ "$(on 2 crdt get carts rb2)" == *'{"new"}'* ]] || fail "rb2 on n2: $(on 2 crdt get carts rb2)"
ok "n2 back with an older copy of its store resynced; nothing collected came back"

# Dropped and created again: empty.
kvctl crdt drop carts >/dev/null
out=$(on 1 crdt get carts alice 2>&1; echo "rc=$?")
[[ "$out" == *"no CRDT table carts"*"rc=1" ]] || fail "dropped: $out"
kvctl crdt create carts items:set >/dev/null
sleep 0.5
out=$(on 2 crdt get carts alice 2>&1; echo "rc=$?")
[[ "$out" == *"rc=1" ]] || fail "a table created again is not empty: $out"
ok "a table dropped and created again starts empty"
