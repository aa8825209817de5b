#!/usr/bin/env bash
# libFuzzer runs of every fuzz target in fuzz/ (docs/security.md), with
# AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   scripts/fuzz.sh [SECONDS]   each target for SECONDS (default 20)
#
# Builds with clang in $FUZZ_DIR (default build-fuzz), starts from the seed
# corpus (fuzz_seeds), the inputs kept from earlier runs ($FUZZ_DIR/corpus)
# and the regression inputs (fuzz/regressions/<target>/), runs $JOBS targets
# at a time, and prints per target the inputs tried and the corpus size.
# A crash fails the run; its input is copied to fuzz/regressions/<target>/
# (commit it with the fix: every build replays it, ctest fuzz_*_replay).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECONDS_EACH=${1:-20}
FUZZ_DIR=${FUZZ_DIR:-$ROOT/build-fuzz}
JOBS=${JOBS:-2}
TARGETS=(raft_message log_store segment_log crdt_codec state_machine snapshot_import)

mkdir -p "$FUZZ_DIR"
if ! {
  if [ ! -f "$FUZZ_DIR/CMakeCache.txt" ]; then
    CC=clang CXX=clang++ cmake -S "$ROOT" -B "$FUZZ_DIR" -G Ninja \
      -DTALLY_FUZZ=ON -DTALLY_WERROR=OFF
  fi
  cmake --build "$FUZZ_DIR" -j "$JOBS" --target fuzz_seeds \
    "${TARGETS[@]/#/fuzz_}"
} >"$FUZZ_DIR/build.log" 2>&1; then
  tail -30 "$FUZZ_DIR/build.log" >&2
  echo "fuzz: the build failed (log: $FUZZ_DIR/build.log)" >&2
  exit 1
fi
rm -rf "$FUZZ_DIR/seeds"
"$FUZZ_DIR/bin/fuzz_seeds" "$FUZZ_DIR/seeds"

run() {
  local t=$1 corpus=$FUZZ_DIR/corpus/$1 crashes=$FUZZ_DIR/crashes/$1
  local inputs=("$corpus" "$FUZZ_DIR/seeds/$t")
  [ -d "$ROOT/fuzz/regressions/$t" ] && inputs+=("$ROOT/fuzz/regressions/$t")
  mkdir -p "$corpus" "$crashes"
  rm -f "$crashes"/*
  # -timeout: one input taking 10 s is a hang; -rss_limit_mb: a leak or a
  # huge allocation. Both count as crashes.
  if "$FUZZ_DIR/bin/fuzz_$t" -max_total_time="$SECONDS_EACH" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$crashes/" "${inputs[@]}" >"$FUZZ_DIR/$t.log" 2>&1; then
    local runs size
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$FUZZ_DIR/$t.log")
    size=$(find "$corpus" -type f | wc -l)
    echo "fuzz $t: ${runs:-?} inputs in ${SECONDS_EACH} s, corpus $size, no crash"
  else
    echo "fuzz $t: CRASH (log: $FUZZ_DIR/$t.log)"
    grep -m5 -E 'ERROR|fuzz check failed|runtime error|SUMMARY' \
      "$FUZZ_DIR/$t.log" | sed 's/^/  /' || true
    mkdir -p "$ROOT/fuzz/regressions/$t"
    for f in "$crashes"/*; do
      [ -f "$f" ] || continue
      cp "$f" "$ROOT/fuzz/regressions/$t/"
      echo "  input kept: fuzz/regressions/$t/$(basename "$f")"
    done
    return 1
  fi
}

pids=() failed=0
for t in "${TARGETS[@]}"; do
  run "$t" &
  pids+=($!)
  if [ ${#pids[@]} -ge "$JOBS" ]; then
    wait "${pids[0]}" || failed=1
    pids=("${pids[@]:1}")
  fi
done
for p in "${pids[@]}"; do wait "$p" || failed=1; done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target crashed (see above)" >&2
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, ${SECONDS_EACH} s each, no crash"
