#!/usr/bin/env bash
# Installs the build into a temporary prefix (cmake --install), checks that
# the installed headers name no generated Protobuf or gRPC header, builds a
# service out of tree with find_package(Tally) (tests/install) and runs it
# against a node embedded in its own process, then builds a program with
# pkg-config alone. Bounded in time; removes what it made.
#   test-install.sh BUILD_DIR
set -euo pipefail
build=$1
here="$(cd "$(dirname "$0")" && pwd)"
tmp=$(mktemp -d /tmp/tally-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
[ -f "$tmp/prefix/include/tally/tally.h" ] || fail "no include/tally/tally.h installed"
ls "$tmp"/prefix/lib*/libtally.so* >/dev/null 2>&1 || fail "no libtally.so installed"
if grep -rn -E '#include ".*(\.pb\.h|grpc)' "$tmp/prefix/include"; then
  fail "installed headers include generated Protobuf or gRPC headers (above)"
fi
echo "ok: installed $(cd "$tmp/prefix" && find . -type f | sort | tr '\n' ' ')"

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S "$here" -B "$tmp/consumer" "${gen[@]}" "${launcher[@]}" \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >"$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log"; fail "configuring the consumer"; }
cmake --build "$tmp/consumer" -j 2 >"$tmp/build.log" 2>&1 ||
  { tail -n 40 "$tmp/build.log"; fail "building the consumer"; }
echo "ok: built with find_package(Tally)"

port=$((20000 + RANDOM % 12000))  # below the ephemeral ports
timeout 60 "$tmp/consumer/embedded_service" "$tmp/data" "$port" "$((port + 1))" ||
  fail "the embedded service, a cluster of its own"
echo "ok: an embedded node alone"

# The embedded node as member 1 of a cluster with two kvd processes (the
# installed ones), which then serve what it wrote after it has stopped.
peers="1=127.0.0.1:$((port + 11)),2=127.0.0.1:$((port + 12)),3=127.0.0.1:$((port + 13))"
kvds=()
stop_kvds() { for p in "${kvds[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; }
trap 'stop_kvds; rm -rf "$tmp"' EXIT
for i in 2 3; do
  "$tmp/prefix/bin/kvd" --name "n$i" --data-dir "$tmp/kvd$i" \
    --listen-client "127.0.0.1:$((port + 20 + i))" --listen-peer "127.0.0.1:$((port + 10 + i))" \
    --initial-cluster "n1=127.0.0.1:$((port + 11)),n2=127.0.0.1:$((port + 12)),n3=127.0.0.1:$((port + 13))" \
    >"$tmp/kvd$i.log" 2>&1 &
  kvds+=($!)
done
timeout 60 "$tmp/consumer/embedded_service" "$tmp/member" "$((port + 21))" "$((port + 11))" 1 "$peers" ||
  { tail -n 5 "$tmp"/kvd*.log; fail "the embedded service, a member of a cluster"; }
out=$("$tmp/prefix/bin/kvctl" --endpoints "127.0.0.1:$((port + 22)),127.0.0.1:$((port + 23))" get greeting)
[ "$out" = hello ] || fail "the kvd members do not serve what the embedded member wrote: $out"
echo "ok: an embedded node as a member of a cluster with two kvd processes"
out=$("$tmp/consumer/saga_order" 2>&1 || true)
[[ "$out" == usage:* ]] || fail "the saga example built out of tree: $out"

pc="$tmp/prefix/$(cd "$tmp/prefix" && ls -d lib*/pkgconfig | head -n 1)"
cat >"$tmp/pc.cc" <<'CC'
#include "tally/tally.h"
int main() { return tally::Name(tally::SagaState::kDone)[0] == 'd' ? 0 : 1; }
CC
# shellcheck disable=SC2046
g++ -std=c++20 "$tmp/pc.cc" -o "$tmp/pc" $(PKG_CONFIG_PATH="$pc" pkg-config --cflags --libs tally) ||
  fail "building with pkg-config"
LD_LIBRARY_PATH="$(dirname "$pc")" "$tmp/pc" || fail "the pkg-config build"
echo "ok: built and ran with pkg-config tally"
echo PASS
