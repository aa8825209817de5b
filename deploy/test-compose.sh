#!/usr/bin/env bash
# Runs the docker-compose cluster for real: builds the offline image, starts
# three kvd containers, writes and reads through the published ports, stops
# the leader's container, writes again, restarts it and checks it caught up,
# then removes everything. Installs Debian's docker.io and docker-compose if
# missing and starts dockerd if none runs (stopping only the one it started).
# Exits 77 (skipped) when no Docker engine can run here. Bounded in time.
# TALLY_COMPOSE_TLS=1: the same with deploy/docker-compose.tls.yml on top
# (certificates made for the run), and a plaintext client refused.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin=${TALLY_BIN:-$root/build/bin}
project=tally-compose-test-$$
# Apart from the integration tests' port bases (20000-31999).
base=$((12000 + RANDOM % 2000))
export TALLY_PORT_1=$((base + 1)) TALLY_PORT_2=$((base + 2)) TALLY_PORT_3=$((base + 3))
export TALLY_HTTP_PORT_1=$((base + 201)) TALLY_HTTP_PORT_2=$((base + 202)) \
  TALLY_HTTP_PORT_3=$((base + 203))
export KVCTL_ENDPOINTS="127.0.0.1:$TALLY_PORT_1,127.0.0.1:$TALLY_PORT_2,127.0.0.1:$TALLY_PORT_3"
files=(-f "$root/deploy/docker-compose.yml")
certs=""
if [ "${TALLY_COMPOSE_TLS:-0}" = 1 ]; then
  certs=$(mktemp -d /tmp/"$project"-certs.XXXXXX)
  "$root/deploy/gen-certs.sh" "$certs" kvd1 kvd2 kvd3 >/dev/null
  files+=(-f "$root/deploy/docker-compose.tls.yml")
  export TALLY_CERTS=$certs KVCTL_TLS_CA=$certs/ca.pem
fi
compose() { timeout 120 docker-compose -p "$project" "${files[@]}" "$@"; }
kvctl() { "$bin/kvctl" "$@"; }
skip() { echo "test-compose: SKIPPED: $*"; exit 77; }
started_dockerd=""

cleanup() {
  compose down -v >/dev/null 2>&1 || true
  [ -z "$certs" ] || rm -rf "$certs"
  if [ -n "$started_dockerd" ]; then
    kill "$started_dockerd" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$started_dockerd" 2>/dev/null || break; sleep 0.2; done
  fi
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  compose logs --tail 20 2>/dev/null || true
  exit 1
}

if ! command -v docker >/dev/null || ! command -v docker-compose >/dev/null ||
   ! command -v dockerd >/dev/null; then
  [ "$(id -u)" -eq 0 ] || skip "docker.io is not installed and this is not root"
  echo "test-compose: installing docker.io and docker-compose"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq docker.io docker-compose; } >/dev/null 2>&1 ||
    skip "could not install docker.io"
fi
if ! docker info >/dev/null 2>&1; then
  [ "$(id -u)" -eq 0 ] || skip "no Docker engine runs and this is not root"
  dockerd >/tmp/"$project"-dockerd.log 2>&1 &
  started_dockerd=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 ||
    skip "dockerd does not start here ($(tail -1 /tmp/"$project"-dockerd.log))"
fi

"$root/deploy/build-offline-image.sh" >/dev/null || fail "building the offline image"
compose up -d >/dev/null 2>&1 || fail "docker-compose up"
healthy() {
  for s in kvd1 kvd2 kvd3; do
    [ "$(docker inspect -f '{{.State.Health.Status}}' "$(compose ps -q "$s")" 2>/dev/null)" = healthy ] || return 1
  done
}
for _ in $(seq 1 60); do healthy && break; sleep 1; done
healthy || fail "containers not healthy after 60 s"
echo "ok: three healthy containers"
for i in 1 2 3; do
  port_var=TALLY_HTTP_PORT_$i
  [ "$(curl -s "http://127.0.0.1:${!port_var}/health")" = SERVING ] || fail "kvd$i HTTP /health"
  # Read whole, then matched (under pipefail, `curl | grep -q` fails if grep
  # exits before curl's last write); a failure says what came back.
  metrics=$(curl -s "http://127.0.0.1:${!port_var}/metrics") || true
  grep -q '^tally_serving 1$' <<<"$metrics" ||
    fail "kvd$i HTTP /metrics: $(grep '^tally_serving' <<<"$metrics" || echo "no tally_serving line in ${#metrics} bytes")"
done
echo "ok: HTTP health and metrics of every container"

kvctl put greeting hello >/dev/null || fail "put"
[ "$(kvctl get greeting)" = hello ] || fail "get"
echo "ok: put and get through the published ports"
passed=4
if [ -n "$certs" ]; then
  if out=$(KVCTL_TLS_CA= kvctl --timeout-ms 2000 get greeting 2>&1); then
    fail "a plaintext client read from the TLS cluster: $out"
  fi
  echo "ok: a plaintext client is refused ($out)"
  passed=5
fi

leader=$(kvctl cluster status | awk '$3==2 && $4=="LEADER" {print $2}' | head -1)
[ -n "$leader" ] || fail "no leader of group 2"
svc=kvd${leader#n}
compose stop "$svc" >/dev/null 2>&1 || fail "stopping $svc"
kvctl put after-stop yes >/dev/null || fail "write with the leader's container stopped"
echo "ok: wrote with $svc (the leader) stopped"
compose start "$svc" >/dev/null 2>&1 || fail "starting $svc"
port_var=TALLY_PORT_${leader#n}
for _ in $(seq 1 100); do
  [ "$(kvctl --endpoints "127.0.0.1:${!port_var}" get after-stop --read-mode serializable 2>/dev/null)" = yes ] && break
  sleep 0.2
done
[ "$(kvctl --endpoints "127.0.0.1:${!port_var}" get after-stop --read-mode serializable 2>/dev/null)" = yes ] ||
  fail "$svc did not catch up after its restart"
echo "ok: $svc caught up after its restart"

compose down -v >/dev/null 2>&1 || fail "docker-compose down -v"
echo "$passed passed, 0 failed"
