#!/usr/bin/env bash
# ThreadSanitizer run of the threaded code: raft/host, kv, kv/storage,
# kv/server, the gRPC transport, and the host simulator's tests.
#
#   scripts/tsan.sh            (make tsan; about 15 minutes the first time)
#
# Debian's abseil is built without -fsanitize=thread, so ThreadSanitizer
# cannot see absl::Mutex (ours and gRPC's) and reports every access it
# guards as a race. This script builds abseil's synchronization library
# from Debian's own source package (same version, same patches, same ABI)
# with ThreadSanitizer, once, into $TSAN_DIR/absl, and runs the tests with
# it ahead of the system's on LD_LIBRARY_PATH.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TSAN_DIR=${TSAN_DIR:-$ROOT/build-tsan}
JOBS=${JOBS:-2}
ABSL_LIB=$TSAN_DIR/absl/lib
TESTS=(raft_host_test kv_test kv_storage_test kv_server_test
  rpc_transport_test host_sim_test)

# apt and /etc/apt need root: sudo when not root already.
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

build_absl() {
  local src=$TSAN_DIR/absl/src
  if ! ls "$src"/abseil-*/CMakeLists.txt >/dev/null 2>&1; then
    if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list \
      /etc/apt/sources.list.d/; then
      echo "tsan: adding Debian's source package index (deb-src)"
      if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed 's/^Types: deb$/Types: deb-src/' \
          /etc/apt/sources.list.d/debian.sources |
          as_root tee /etc/apt/sources.list.d/tally-deb-src.sources >/dev/null
      elif grep -qs '^deb ' /etc/apt/sources.list; then
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list |
          as_root tee /etc/apt/sources.list.d/tally-deb-src.list >/dev/null
      else
        echo "tsan: no Debian package source found to derive deb-src from" >&2
        exit 1
      fi
      as_root apt-get update -qq
    fi
    command -v dpkg-source >/dev/null || as_root apt-get install -y -qq dpkg-dev
    mkdir -p "$src"
    (cd "$src" && apt-get source -qq "abseil=$(dpkg-query -W \
      -f='${Version}' libabsl-dev)" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
  fi
  local dir
  dir=$(ls -d "$src"/abseil-*/ | head -1)
  echo "tsan: building abseil's synchronization with ThreadSanitizer ($dir)"
  cmake -S "$dir" -B "$TSAN_DIR/absl/build" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_STANDARD=17 \
    -DBUILD_SHARED_LIBS=ON -DCMAKE_CXX_FLAGS=-fsanitize=thread >/dev/null
  cmake --build "$TSAN_DIR/absl/build" -j "$JOBS" --target synchronization
  mkdir -p "$ABSL_LIB"
  find "$TSAN_DIR/absl/build" -name 'libabsl_*.so*' -exec cp -P {} "$ABSL_LIB" \;
}

[ -e "$ABSL_LIB/libabsl_synchronization.so.20220623" ] || build_absl

echo "tsan: building the tests with -fsanitize=thread in $TSAN_DIR"
cmake -S "$ROOT" -B "$TSAN_DIR" -G Ninja -DTALLY_SANITIZE=thread \
  -DTALLY_WERROR=ON >/dev/null
cmake --build "$TSAN_DIR" -j "$JOBS" --target "${TESTS[@]}"

# ignore_noninstrumented_modules: interceptors (free, memcpy, sendmsg, ...)
# called from a library built without the sanitizer report nothing. gRPC
# hands buffers and calls between its threads with atomics the sanitizer
# cannot see, so its own frees and sends would otherwise be reported as
# racing each other. Our code's accesses are instrumented and still checked.
failed=0
for t in "${TESTS[@]}"; do
  log=$TSAN_DIR/tsan-$t.log
  if LD_LIBRARY_PATH=$ABSL_LIB \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ignore_noninstrumented_modules=1 suppressions=$ROOT/scripts/tsan.supp" \
    timeout 900 "$TSAN_DIR/bin/$t" >"$log" 2>&1; then
    echo "tsan: $t passed"
  else
    echo "tsan: $t FAILED (log: $log)"
    grep -m1 -A30 'WARNING: ThreadSanitizer' "$log" || tail -20 "$log"
    failed=1
  fi
done
exit $failed
