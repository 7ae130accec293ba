#!/usr/bin/env bash
# Long libFuzzer run of one target, beyond the short deterministic replay
# that `ctest -L fuzz` (scripts/test.sh step_fuzz) does.
#
# Usage: scripts/fuzz-long.sh TARGET SECONDS     (TARGET: fuzz_reply, fuzz_url, fuzz_topology, fuzz_redirect)
# Environment:
#   FUZZ_JOBS   parallel fuzzing processes (default 1)
#   FUZZ_BUILD  build folder (default build-fuzz)
#
# The working corpus lives in $FUZZ_BUILD/long/TARGET/corpus and grows from
# run to run (seeded from tests/fuzz/corpus/TARGET); crashes are written to
# $FUZZ_BUILD/long/TARGET/artifacts/. To keep a crash as a regression, copy
# the file to tests/fuzz/regressions/TARGET/ (the ctest run replays it).
# Prints the total number of executions. Exits non-zero on a crash.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 TARGET SECONDS" >&2
  exit 2
fi
TARGET=$1
SECONDS_=$2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
JOBS=${FUZZ_JOBS:-1}

if [[ ! -d "$ROOT/tests/fuzz/corpus/$TARGET" ]]; then
  echo "fuzz-long: unknown target '$TARGET'" >&2
  exit 2
fi

cmake -S "$ROOT" -B "$BUILD" -DCMAKE_C_COMPILER=clang -DREDTLS_FUZZ=ON \
  -DREDTLS_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" --target "$TARGET" -j2 >/dev/null

WORK="$BUILD/long/$TARGET"
mkdir -p "$WORK/corpus" "$WORK/artifacts" "$WORK/logs"
cp -n "$ROOT/tests/fuzz/corpus/$TARGET"/* "$WORK/corpus/"
extra=()
if [[ -d "$ROOT/tests/fuzz/regressions/$TARGET" ]]; then
  extra+=("$ROOT/tests/fuzz/regressions/$TARGET")
fi
rm -f "$WORK/logs"/fuzz-*.log

status=0
# With -jobs each process writes WORK/logs/fuzz-N.log and runs for SECONDS.
(cd "$WORK/logs" && "$BUILD/tests/fuzz/$TARGET" -jobs="$JOBS" -workers="$JOBS" \
  -max_total_time="$SECONDS_" -max_len=4096 -rss_limit_mb=2048 -timeout=10 \
  -print_final_stats=1 -artifact_prefix="$WORK/artifacts/" \
  "$WORK/corpus" "${extra[@]}") || status=$?

total=0
for log in "$WORK/logs"/fuzz-*.log; do
  n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  total=$((total + ${n:-0}))
done
echo "fuzz-long: $TARGET: $total executions in ${SECONDS_}s x $JOBS job(s), corpus $(ls "$WORK/corpus" | wc -l) files"
if ls "$WORK/artifacts"/crash-* "$WORK/artifacts"/leak-* "$WORK/artifacts"/timeout-* \
     "$WORK/artifacts"/oom-* >/dev/null 2>&1; then
  echo "fuzz-long: $TARGET found a problem; see $WORK/artifacts and $WORK/logs" >&2
  exit 1
fi
if [[ $status -ne 0 ]]; then
  echo "fuzz-long: $TARGET stopped early (status $status) without a crash artifact; see $WORK/logs" >&2
  exit "$status"
fi
