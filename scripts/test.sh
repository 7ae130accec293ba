#!/usr/bin/env bash
# The whole test suite: unit, integration and packaging tests through ctest,
# in build-test/ with warnings as errors.
#
# Usage: scripts/test.sh
# Environment: JOBS (default 2) for the build and for ctest.
# Exits with ctest's status (non-zero if any step fails).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-2}

"$ROOT/scripts/deps.sh"

# Each step is a function; they run in order and the first failure stops
# the run. Later steps (a sanitizer build, the fuzz targets' corpus
# replay, valgrind) are added as functions and listed in STEPS.
step_main() {
  local build="$ROOT/build-test"
  cmake -S "$ROOT" -B "$build" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DREDTLS_WERROR=ON \
    -DREDTLS_BUILD_TESTS=ON \
    -DREDTLS_BUILD_EXAMPLES=ON
  cmake --build "$build" -j"$JOBS"
  # Integration tests start their own servers on random loopback ports, so
  # they run in parallel too.
  ctest --test-dir "$build" --output-on-failure -j"$JOBS" --no-tests=error
}

STEPS=(step_main)

# Steps run under set -e (never inside `||` or `if`, which would switch it
# off), so the first failing command ends the run with its own status.
for step in "${STEPS[@]}"; do
  echo "== test.sh: $step"
  "$step"
done
