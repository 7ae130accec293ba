#!/usr/bin/env bash
# The whole test suite, in steps:
#   step_main      unit, integration and packaging tests through ctest, in
#                  build-test/ with warnings as errors
#   step_hiredis1  the same against hiredis 1.2.0 built from source into
#                  build-hiredis1/prefix (scripts/hiredis1.sh), in
#                  build-hiredis1/build
#   step_sanitize  unit, integration and packaging tests built with ASan +
#                  UBSan (clang, flags as a consumer passes them), in
#                  build-asan/
#   step_valgrind  every unit test and a TLS integration subset under
#                  valgrind memcheck, from build-test/
#   step_fuzz      the libFuzzer targets' short deterministic runs over their
#                  seed corpora and regressions, in build-fuzz/
#   step_analyze   clang-tidy (.clang-tidy) and cppcheck over lib/
#
# Usage: scripts/test.sh [STEP...]     (default: every step, in that order)
# Environment: JOBS (default 2) for the builds and for ctest.
# Exits non-zero if any step fails; prints each step's duration.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
JOBS=${JOBS:-2}

"$ROOT/scripts/deps.sh"

# tests/sigv4/node_modules: the AWS SDK's SigV4 signer at the versions
# pinned (with integrity hashes) in tests/sigv4/package-lock.json, for
# integration.sigv4_smithy. Every step that runs the integration tests calls
# this first; it installs once per run. npm's cache (~/.npm) makes a repeat
# quick and lets it work offline once filled. A failed install fails the step.
SIGV4_MODULES_READY=0
sigv4_node_modules() {
  if [[ $SIGV4_MODULES_READY -eq 1 ]]; then
    return 0
  fi
  echo "-- npm ci --prefix tests/sigv4"
  npm ci --prefix "$ROOT/tests/sigv4" --no-audit --no-fund --prefer-offline --loglevel=error
  SIGV4_MODULES_READY=1
}

# Each step is a function; they run in order and the first failure stops
# the run. Later steps (a sanitizer build, the fuzz targets' corpus
# replay, valgrind) are added as functions and listed in STEPS.
step_main() {
  local build="$ROOT/build-test"
  cmake -S "$ROOT" -B "$build" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DREDTLS_WERROR=ON \
    -DREDTLS_BUILD_TESTS=ON \
    -DREDTLS_BUILD_EXAMPLES=ON \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
  # The normal build links libredtls.so with -Wl,--no-undefined; the root
  # CMakeLists drops it only where a probe shows it cannot work (sanitizers).
  if ! grep -qx 'REDTLS_LINK_NO_UNDEFINED:INTERNAL=TRUE' "$build/CMakeCache.txt"; then
    echo "main: libredtls.so is not linked with -Wl,--no-undefined (see $build/CMakeFiles/redtls-no-undefined.log)" >&2
    return 1
  fi
  cmake --build "$build" -j"$JOBS"
  sigv4_node_modules
  # Integration tests start their own servers on random loopback ports, so
  # they run in parallel too.
  ctest --test-dir "$build" --output-on-failure -j"$JOBS" --no-tests=error
}

# The system's hiredis is 0.14 (Debian 12); redtls supports 1.x too, whose
# redisReply, reader and error texts differ. hiredis 1.2.0 is built into a
# private prefix (test-only, never a dependency of the library) and the whole
# suite runs against it: pkg-config finds it through PKG_CONFIG_PATH, and
# the build tree's RPATH makes every test program load it.
step_hiredis1() {
  local dir="$ROOT/build-hiredis1"
  local prefix="$dir/prefix" build="$dir/build"
  JOBS="$JOBS" "$ROOT/scripts/hiredis1.sh" "$dir"
  # Local to this step: the steps after it build against the system's hiredis.
  local -x PKG_CONFIG_PATH="$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
  cmake -S "$ROOT" -B "$build" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DREDTLS_WERROR=ON \
    -DREDTLS_BUILD_TESTS=ON \
    -DREDTLS_BUILD_EXAMPLES=ON
  # pkg-config's answer is cached: a build folder configured against another
  # hiredis keeps it.
  local version includes
  version=$(sed -n 's/^REDTLS_HIREDIS_VERSION:INTERNAL=//p' "$build/CMakeCache.txt")
  includes=$(sed -n 's/^REDTLS_HIREDIS_INCLUDE_DIRS:INTERNAL=//p' "$build/CMakeCache.txt")
  if [[ "$version" != 1.2.0 || "$includes" != *"$prefix/include"* ]]; then
    echo "hiredis1: $build is configured against hiredis '$version' ($includes), not $prefix; remove $build" >&2
    return 1
  fi
  cmake --build "$build" -j"$JOBS"
  # libredtls.so and every program that loads a libhiredis (a few unit
  # tests use no hiredis function and do not) must load the 1.2.0 one, not
  # the system's 0.14.
  local bin lib deps loading=0 other=0
  lib=$(ldd "$build/libredtls.so" | awk '$1 ~ /^libhiredis\.so/ { print $3 }')
  if [[ "$lib" != "$prefix/lib/libhiredis.so.1."* ]]; then
    echo "hiredis1: libredtls.so loads libhiredis from '$lib', not $prefix/lib" >&2
    return 1
  fi
  for bin in "$build"/tests/unit_* "$build"/tests/integration_* "$build"/examples/*; do
    [[ -f "$bin" && -x "$bin" ]] || continue
    deps=$(ldd "$bin" | awk '$1 ~ /^libhiredis\.so/ { print $3 }')
    if [[ -z "$deps" ]]; then
      other=$((other + 1))
      continue
    fi
    if [[ "$deps" != "$lib" ]]; then
      echo "hiredis1: $bin loads another libhiredis than $lib:" >&2
      ldd "$bin" >&2
      return 1
    fi
    loading=$((loading + 1))
  done
  echo "hiredis1: using hiredis $version from $prefix: libredtls.so and $loading test and example" \
    "programs load $lib ($other programs load no libhiredis)"
  sigv4_node_modules
  ctest --test-dir "$build" --output-on-failure -j"$JOBS" --no-tests=error
  # The TLS matrices and the rotation walks again, every connection on
  # RESP3 (HELLO 3 set-up): REDTLS_TEST_PROTOCOL=3 (tests/harness/lab_client.h).
  REDTLS_TEST_PROTOCOL=3 ctest --test-dir "$build" --output-on-failure -j"$JOBS" --no-tests=error \
    -R 'integration\.(certs|tls_matrix|async_matrix|auth_rotation)$'
  echo "hiredis1: the suite passed against hiredis $version ($prefix), and the TLS matrices and rotation walks on RESP3"
}

# Built the way a project that vendors redtls builds its ASan job: clang, the
# sanitizer flags in CMAKE_C_FLAGS and every linker flags variable, not
# REDTLS_SANITIZE. -fno-sanitize-recover=all makes the first UBSan report
# fail the test instead of scrolling by.
SANITIZE_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
step_sanitize() {
  local build="$ROOT/build-asan"
  cmake -S "$ROOT" -B "$build" \
    -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS="$SANITIZE_FLAGS" \
    -DCMAKE_EXE_LINKER_FLAGS="$SANITIZE_FLAGS" \
    -DCMAKE_SHARED_LINKER_FLAGS="$SANITIZE_FLAGS" \
    -DREDTLS_WERROR=ON \
    -DREDTLS_BUILD_TESTS=ON \
    -DREDTLS_BUILD_EXAMPLES=OFF
  cmake --build "$build" -j"$JOBS"
  sigv4_node_modules
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir "$build" --output-on-failure -j"$JOBS" --no-tests=error -L 'unit|integration|packaging'
}

# Valgrind sees what ASan cannot: uninitialised reads, and leaks in the
# uninstrumented build users actually get. Integration tests fork servers;
# only the test process itself is checked (--trace-children=no).
# commands and resilience assert sub-second timings valgrind cannot meet;
# hostile stretches its deadlines by REDTLS_TEST_TIME_SCALE.
# The asynchronous API: its small integration tests whole, and the
# matrix on the built-in loop only (the adapters' cases add time, not
# paths of the library: name=filter runs the cases matching a cmocka
# pattern). The cluster adapters with the asynchronous cluster client:
# frees from callbacks and the handle's own timer, on both loops.
VALGRIND_INTEGRATION=(tls_matrix auth_rotation hostile handshake_steps async async_fd_reuse async_reply_status
                      async_errmsg async_idle_close 'async_matrix=*built-in' pubsub adapter_cluster_libuv
                      adapter_cluster_libevent)
step_valgrind() {
  local build="$ROOT/build-test"
  local vg=(valgrind --quiet --error-exitcode=1 --leak-check=full
            --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect
            --trace-children=no --child-silent-after-fork=yes
            --suppressions="$ROOT/tests/valgrind.supp")
  local failed=()
  for bin in "$build"/tests/unit_*; do
    [[ -f "$bin" && -x "$bin" ]] || continue
    echo "-- valgrind $(basename "$bin")"
    # Not `if !` / `||` around the call: keep going, then report every failure.
    set +e
    (cd "$build/tests" && timeout 600 "${vg[@]}" "$bin" >"$build/tests/$(basename "$bin").valgrind.log" 2>&1)
    local rc=$?
    set -e
    if [[ $rc -ne 0 ]]; then
      failed+=("$(basename "$bin")")
      tail -n 40 "$build/tests/$(basename "$bin").valgrind.log"
    fi
  done
  local entry filter
  for entry in "${VALGRIND_INTEGRATION[@]}"; do
    name=${entry%%=*}
    filter=""
    [[ $entry == *=* ]] && filter=${entry#*=}
    echo "-- valgrind integration_$name${filter:+ ($filter)}"
    set +e
    (cd "$build/tests" && \
      REDTLS_TEST_SCRIPTS="$ROOT/scripts" REDTLS_TEST_CERTS="$build/tests/certs" \
      REDTLS_TEST_WORKDIR="$build/tests/work/valgrind-$name" REDTLS_TEST_TIME_SCALE=10 REDTLS_TEST_NO_RSS_BOUND=1 \
      REDTLS_TEST_FILTER="$filter" \
      timeout 900 "${vg[@]}" "./integration_$name" >"$build/tests/integration_$name.valgrind.log" 2>&1)
    local rc=$?
    set -e
    if [[ $rc -ne 0 ]]; then
      failed+=("integration_$name")
      tail -n 60 "$build/tests/integration_$name.valgrind.log"
    fi
  done
  if [[ ${#failed[@]} -gt 0 ]]; then
    echo "valgrind: failures in ${failed[*]} (logs: $build/tests/*.valgrind.log)" >&2
    return 1
  fi
}

# Short, deterministic libFuzzer runs (-runs, -seed=1) over a copy of each
# seed corpus plus tests/fuzz/regressions; scripts/fuzz-long.sh for real
# fuzzing.
step_fuzz() {
  local build="$ROOT/build-fuzz"
  cmake -S "$ROOT" -B "$build" \
    -DCMAKE_C_COMPILER=clang \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DREDTLS_FUZZ=ON \
    -DREDTLS_WERROR=ON \
    -DREDTLS_BUILD_EXAMPLES=OFF
  cmake --build "$build" -j"$JOBS" --target fuzz_targets
  ctest --test-dir "$build" --output-on-failure -j"$JOBS" --no-tests=error -L fuzz
}

# Static analysis of the library: clang-tidy with the checks in .clang-tidy
# (compile flags from build-test's compile_commands.json, so step_main runs
# first) and cppcheck. Any finding fails the step.
step_analyze() {
  local db="$ROOT/build-test"
  if [[ ! -f "$db/compile_commands.json" ]]; then
    step_main
  fi
  local rc_tidy rc_cppcheck
  echo "-- clang-tidy"
  # Both tools run before the step fails, so one run lists every finding.
  set +e
  find "$ROOT/lib" -name "*.c" | sort | \
    xargs -P "$JOBS" -n 1 clang-tidy -p "$db" --quiet --warnings-as-errors='*' 2>/dev/null
  rc_tidy=$?
  echo "-- cppcheck"
  cppcheck --std=c11 --enable=warning,style,performance,portability --inline-suppr --quiet \
    --error-exitcode=1 --suppressions-list="$ROOT/tests/cppcheck-suppressions.txt" \
    -I "$ROOT/include" -I "$db/include" $(find "$ROOT/lib" -mindepth 1 -type d -printf '-I %p ') \
    -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -DREDTLS_BUILDING \
    --template='{file}:{line}: {severity}: {message} [{id}]' "$ROOT/lib"
  rc_cppcheck=$?
  set -e
  if [[ $rc_tidy -ne 0 || $rc_cppcheck -ne 0 ]]; then
    echo "analyze: findings (clang-tidy status $rc_tidy, cppcheck status $rc_cppcheck)" >&2
    return 1
  fi
}

STEPS=(step_main step_hiredis1 step_sanitize step_valgrind step_fuzz step_analyze)
if [[ $# -gt 0 ]]; then
  STEPS=()
  for name in "$@"; do
    STEPS+=("step_${name#step_}")
  done
fi

# Steps run under set -e (never inside `||` or `if`, which would switch it
# off), so the first failing command ends the run with its own status.
for step in "${STEPS[@]}"; do
  echo "== test.sh: $step"
  start=$SECONDS
  "$step"
  echo "== test.sh: $step passed in $((SECONDS - start)) s"
done
