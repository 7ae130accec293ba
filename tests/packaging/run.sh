#!/usr/bin/env bash
# Builds and runs tests/packaging/consumer against redtls in one of three ways,
# or tests/packaging/consumer_adapters (the event-loop adapters) likewise.
#
# Usage: run.sh MODE SRC_DIR BUILD_DIR
#   MODE       add_subdirectory | find_package | pkg_config |
#              adapters_add_subdirectory | adapters_find_package | adapters_pkg_config
#   SRC_DIR    the redtls source tree
#   BUILD_DIR  a configured and built redtls build tree (installed from in
#              the find_package and pkg_config modes)
# Environment: CC, CMAKE_BUILD_TYPE, REDTLS_CONSUMER_CFLAGS (extra flags for
# the consumer, e.g. the sanitizer flags the library was built with),
# REDTLS_HIREDIS_VERSION and REDTLS_HIREDIS_LIBRARY (the hiredis the library
# was built with: the consumer must compile against its headers and load
# that library file), PKG_CONFIG_PATH (where the consumer's pkg-config looks for
# hiredis.pc), REDTLS_PACKAGING_URL (passed on to the consumer, which then
# PINGs it), REDTLS_PACKAGING_ADAPTERS (adapters_* modes: the adapters the
# build has, e.g. "libuv libevent").
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 [adapters_]add_subdirectory|find_package|pkg_config SRC_DIR BUILD_DIR" >&2
  exit 2
fi
MODE=$1
SRC=$(cd "$2" && pwd)
BUILD=$(cd "$3" && pwd)
CONSUMER="$SRC/tests/packaging/consumer"
CONSUMER_ADAPTERS="$SRC/tests/packaging/consumer_adapters"
read -r -a ADAPTERS <<<"${REDTLS_PACKAGING_ADAPTERS:-}"
WORK="$BUILD/tests/packaging/$MODE"
CFLAGS_EXTRA=${REDTLS_CONSUMER_CFLAGS:-}
BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo}
HIREDIS_VERSION=${REDTLS_HIREDIS_VERSION:?set REDTLS_HIREDIS_VERSION to the hiredis version redtls was built with}
HIREDIS_LIBRARY=${REDTLS_HIREDIS_LIBRARY:?set REDTLS_HIREDIS_LIBRARY to the libhiredis.so redtls was built with}
if [[ ! "$HIREDIS_VERSION" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]]; then
  echo "run.sh: REDTLS_HIREDIS_VERSION '$HIREDIS_VERSION' is not MAJOR.MINOR.PATCH" >&2
  exit 2
fi
EXPECT_HIREDIS=(-DEXPECT_HIREDIS_MAJOR="${BASH_REMATCH[1]}" -DEXPECT_HIREDIS_MINOR="${BASH_REMATCH[2]}"
                -DEXPECT_HIREDIS_PATCH="${BASH_REMATCH[3]}")

rm -rf "$WORK"
mkdir -p "$WORK"

cmake_consumer() {
  cmake -S "$CONSUMER" -B "$WORK/build" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DCMAKE_C_FLAGS="$CFLAGS_EXTRA" -DCMAKE_EXE_LINKER_FLAGS="$CFLAGS_EXTRA" \
    -DCMAKE_SHARED_LINKER_FLAGS="$CFLAGS_EXTRA" \
    -DREDTLS_EXPECT_HIREDIS_VERSION="$HIREDIS_VERSION" "$@"
  cmake --build "$WORK/build" -j2
}

# The consumer must load the libhiredis of the hiredis redtls was built with
# (resolved as it runs: LD_LIBRARY_PATH as set by the caller).
check_hiredis_lib() {
  local bin=$1 got want
  got=$(ldd "$bin" | awk '$1 ~ /^libhiredis\.so/ { print $3 }')
  [[ -n "$got" && -f "$got" ]] || { echo "$MODE: $bin does not load libhiredis:" >&2; ldd "$bin" >&2; exit 1; }
  want=$(realpath "$HIREDIS_LIBRARY")
  if [[ "$(realpath "$got")" != "$want" ]]; then
    echo "$MODE: $bin loads $got, not $want ($HIREDIS_LIBRARY), which redtls was built with" >&2
    exit 1
  fi
  echo "$MODE: $(basename "$bin") loads $got"
}

# Installs the main build into $WORK/stage and checks the installed tree.
stage_install() {
  STAGE="$WORK/stage"
  cmake --install "$BUILD" --prefix "$STAGE" >/dev/null
  local f
  for f in include/redtls/redtls.h include/redtls/version.h; do
    [[ -f "$STAGE/$f" ]] || { echo "install: $f missing" >&2; exit 1; }
  done
  LIBDIR=$(dirname "$(find "$STAGE" -name 'libredtls.so.*' -type f | head -n1)")
  [[ -d "$LIBDIR" && "$LIBDIR" != "." ]] || { echo "install: libredtls.so.* missing" >&2; exit 1; }
  [[ -f "$LIBDIR/libredtls.a" ]] || { echo "install: libredtls.a missing" >&2; exit 1; }
  PCDIR="$LIBDIR/pkgconfig"
  [[ -f "$PCDIR/redtls.pc" ]] || { echo "install: $PCDIR/redtls.pc missing" >&2; exit 1; }
  [[ -f "$LIBDIR/cmake/redtls/redtlsConfig.cmake" ]] || { echo "install: redtlsConfig.cmake missing" >&2; exit 1; }
  # An installed tree must not point back into the source or build tree
  # (the stage itself lies inside the build tree, so its own path is fine).
  local text bad=0
  while IFS= read -r -d '' f; do
    text=$(<"$f")
    text=${text//"$STAGE"/}
    if [[ "$text" == *"$SRC/"* || "$text" == *"$BUILD/"* ]]; then
      echo "install: $f refers to the source or build tree" >&2
      bad=1
    fi
  done < <(find "$LIBDIR/cmake" "$PCDIR" "$STAGE/include" -type f -print0)
  # Nor may its CMake and pkg-config files name hiredis by a path on this
  # machine (a library file, an include folder): they find hiredis on the
  # consumer's machine.
  while IFS= read -r -d '' f; do
    text=$(<"$f")
    text=${text//"$STAGE"/}
    if grep -Eq '/[^[:space:]";]*hiredis' <<<"$text"; then
      echo "install: $f names hiredis by a path:" >&2
      grep -Eo '/[^[:space:]";]*hiredis[^[:space:]";]*' <<<"$text" | sort -u | sed 's/^/  /' >&2
      bad=1
    fi
  done < <(find "$LIBDIR/cmake" "$PCDIR" -type f -print0)
  [[ $bad -eq 0 ]] || exit 1
}

run_consumer() {
  echo "+ $*"
  "$@"
}

# tests/packaging/consumer_adapters, for the adapters this build has.
cmake_adapters_consumer() {
  local IFS=';'
  cmake -S "$CONSUMER_ADAPTERS" -B "$WORK/build" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DCMAKE_C_FLAGS="$CFLAGS_EXTRA" -DCMAKE_EXE_LINKER_FLAGS="$CFLAGS_EXTRA" \
    -DCMAKE_SHARED_LINKER_FLAGS="$CFLAGS_EXTRA" -DREDTLS_CONSUMER_ADAPTERS="${ADAPTERS[*]}" "$@"
  cmake --build "$WORK/build" -j2
}

# The program links the loop library itself (through redtls::<adapter> or
# redtls-<adapter>.pc); libredtls does not (check_symbols.sh, and below for
# the installed one).
check_loop_lib() {
  local bin=$1 adapter=$2 pattern
  case "$adapter" in
    libuv) pattern='^libuv\.so' ;;
    libevent) pattern='^libevent([-_.]|$)' ;;
    *) echo "$MODE: unknown adapter '$adapter'" >&2; exit 2 ;;
  esac
  if ! ldd "$bin" | awk '{ print $1 }' | grep -Eq "$pattern"; then
    echo "$MODE: $bin does not load $adapter:" >&2
    ldd "$bin" >&2
    exit 1
  fi
}

# What the stage holds for the adapters.
check_staged_adapters() {
  local adapter lib f
  for adapter in "${ADAPTERS[@]}"; do
    for f in "include/redtls/async_$adapter.h" "${LIBDIR#"$STAGE"/}/cmake/redtls/redtls-$adapter-targets.cmake" \
             "${LIBDIR#"$STAGE"/}/pkgconfig/redtls-$adapter.pc"; do
      [[ -f "$STAGE/$f" ]] || { echo "install: $f missing" >&2; exit 1; }
    done
  done
  lib=$(find "$LIBDIR" -name 'libredtls.so.*' -type f | head -n1)
  if readelf -d "$lib" | grep -E '\(NEEDED\).*\[lib(uv|event)[-_.]' >&2; then
    echo "install: $lib depends on an event-loop library" >&2
    exit 1
  fi
}

case "$MODE" in
  add_subdirectory)
    cmake_consumer -DREDTLS_CONSUMER_MODE=subdirectory -DREDTLS_SOURCE_DIR="$SRC"
    run_consumer "$WORK/build/consumer"
    check_hiredis_lib "$WORK/build/consumer"
    ;;
  find_package)
    stage_install
    cmake_consumer -DREDTLS_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$STAGE"
    LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" run_consumer "$WORK/build/consumer"
    run_consumer "$WORK/build/consumer_static"
    LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" check_hiredis_lib "$WORK/build/consumer"
    check_hiredis_lib "$WORK/build/consumer_static"
    ;;
  pkg_config)
    stage_install
    # pkg-config must find the staged redtls.pc and nothing else of ours;
    # hiredis.pc (Requires: of redtls.pc) where PKG_CONFIG_PATH says.
    export PKG_CONFIG_PATH="$PCDIR${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    PKG_FLAGS=$(pkg-config --cflags --libs redtls)
    echo "pkg-config --cflags --libs redtls: $PKG_FLAGS"
    # shellcheck disable=SC2086 # the flags are meant to be split
    "${CC:-cc}" -std=c11 -Wall -Wextra -Wpedantic -Werror $CFLAGS_EXTRA "${EXPECT_HIREDIS[@]}" \
      -o "$WORK/consumer" "$CONSUMER/main.c" $PKG_FLAGS
    # Without an rpath, the run-time search path is the consumer's to set:
    # libredtls from the stage, libhiredis from the libdir pkg-config names.
    RUN_PATH="$LIBDIR:$(pkg-config --variable=libdir hiredis)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    LD_LIBRARY_PATH="$RUN_PATH" run_consumer "$WORK/consumer"
    LD_LIBRARY_PATH="$RUN_PATH" ldd "$WORK/consumer" | grep -F "$LIBDIR/libredtls.so" >/dev/null \
      || { echo "pkg_config: consumer is not linked against the staged libredtls.so" >&2; exit 1; }
    LD_LIBRARY_PATH="$RUN_PATH" check_hiredis_lib "$WORK/consumer"
    ;;
  adapters_*)
    if [[ ${#ADAPTERS[@]} -eq 0 ]]; then
      echo "run.sh: $MODE: set REDTLS_PACKAGING_ADAPTERS to the adapters the build has" >&2
      exit 2
    fi
    ;;&
  adapters_add_subdirectory)
    cmake_adapters_consumer -DREDTLS_CONSUMER_MODE=subdirectory -DREDTLS_SOURCE_DIR="$SRC"
    for adapter in "${ADAPTERS[@]}"; do
      run_consumer "$WORK/build/consumer_$adapter"
      check_loop_lib "$WORK/build/consumer_$adapter" "$adapter"
    done
    ;;
  adapters_find_package)
    stage_install
    check_staged_adapters
    cmake_adapters_consumer -DREDTLS_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$STAGE"
    # The adapter targets reach hiredis through redtls::redtls, not by a
    # path of their own, so the consumer has no run path to it: a hiredis
    # outside the system's (the hiredis 1.x step) is found through
    # LD_LIBRARY_PATH, as in the pkg-config mode.
    RUN_PATH="$LIBDIR:$(pkg-config --variable=libdir hiredis)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    for adapter in "${ADAPTERS[@]}"; do
      LD_LIBRARY_PATH="$RUN_PATH" run_consumer "$WORK/build/consumer_$adapter"
      LD_LIBRARY_PATH="$RUN_PATH" check_loop_lib "$WORK/build/consumer_$adapter" "$adapter"
    done
    # On a machine whose pkg-config finds hiredis but no loop library, the
    # package is still found and offers no adapter.
    mkdir -p "$WORK/pkgconfig-no-loops"
    ln -sf "$(pkg-config --variable=pcfiledir hiredis)/hiredis.pc" "$WORK/pkgconfig-no-loops/hiredis.pc"
    PKG_CONFIG_LIBDIR="$WORK/pkgconfig-no-loops" PKG_CONFIG_PATH="" \
      cmake -S "$CONSUMER_ADAPTERS" -B "$WORK/build-no-loops" -DREDTLS_CONSUMER_MODE=package_without_loops \
        -DCMAKE_PREFIX_PATH="$STAGE"
    ;;
  adapters_pkg_config)
    stage_install
    check_staged_adapters
    export PKG_CONFIG_PATH="$PCDIR${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
    for adapter in "${ADAPTERS[@]}"; do
      PKG_FLAGS=$(pkg-config --cflags --libs "redtls-$adapter")
      echo "pkg-config --cflags --libs redtls-$adapter: $PKG_FLAGS"
      # shellcheck disable=SC2086 # the flags are meant to be split
      "${CC:-cc}" -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wpedantic -Werror $CFLAGS_EXTRA \
        -o "$WORK/consumer_$adapter" "$CONSUMER_ADAPTERS/main_$adapter.c" "$CONSUMER_ADAPTERS/consumer.c" $PKG_FLAGS
      RUN_PATH="$LIBDIR:$(pkg-config --variable=libdir hiredis)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      LD_LIBRARY_PATH="$RUN_PATH" run_consumer "$WORK/consumer_$adapter"
      LD_LIBRARY_PATH="$RUN_PATH" ldd "$WORK/consumer_$adapter" | grep -F "$LIBDIR/libredtls.so" >/dev/null \
        || { echo "$MODE: consumer_$adapter is not linked against the staged libredtls.so" >&2; exit 1; }
      LD_LIBRARY_PATH="$RUN_PATH" check_loop_lib "$WORK/consumer_$adapter" "$adapter"
    done
    ;;
  *)
    echo "run.sh: unknown mode '$MODE'" >&2
    exit 2
    ;;
esac
echo "packaging.$MODE: ok"
