#!/usr/bin/env bash
# Usage: check-no-deps.sh BINARY NAME...
# Fails if BINARY needs, directly or through another library, a shared library
# whose name contains NAME, or holds a symbol in namespace NAME:: (a static
# link). Proves that the pure
# raft core, and what is built from it alone, stays free of gRPC and LevelDB.
set -euo pipefail
bin=$1
shift
needed=$(ldd "$bin" | awk '{print $1}')
symbols=$(nm -C "$bin" 2>/dev/null || true)
for name in "$@"; do
  if grep -qi -- "$name" <<<"$needed"; then
    echo "FAIL: $bin loads a shared library matching '$name':" >&2
    grep -i -- "$name" <<<"$needed" >&2
    exit 1
  fi
  if grep -q -- "$name::" <<<"$symbols"; then
    echo "FAIL: $bin contains symbols of $name::" >&2
    grep -m3 -- "$name::" <<<"$symbols" >&2
    exit 1
  fi
done
echo "ok: $(basename "$bin") links none of: $*"
