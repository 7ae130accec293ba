#!/usr/bin/env bash
# Builds and runs tests/packaging/consumer against redtls in one of three ways.
#
# Usage: run.sh MODE SRC_DIR BUILD_DIR
#   MODE       add_subdirectory | find_package | pkg_config
#   SRC_DIR    the redtls source tree
#   BUILD_DIR  a configured and built redtls build tree (installed from in
#              the find_package and pkg_config modes)
# Environment: CC, CMAKE_BUILD_TYPE, REDTLS_CONSUMER_CFLAGS (extra flags for
# the consumer, e.g. the sanitizer flags the library was built with),
# REDTLS_PACKAGING_URL (passed on to the consumer, which then PINGs it).
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 add_subdirectory|find_package|pkg_config SRC_DIR BUILD_DIR" >&2
  exit 2
fi
MODE=$1
SRC=$(cd "$2" && pwd)
BUILD=$(cd "$3" && pwd)
CONSUMER="$SRC/tests/packaging/consumer"
WORK="$BUILD/tests/packaging/$MODE"
CFLAGS_EXTRA=${REDTLS_CONSUMER_CFLAGS:-}
BUILD_TYPE=${CMAKE_BUILD_TYPE:-RelWithDebInfo}

rm -rf "$WORK"
mkdir -p "$WORK"

cmake_consumer() {
  cmake -S "$CONSUMER" -B "$WORK/build" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DCMAKE_C_FLAGS="$CFLAGS_EXTRA" -DCMAKE_EXE_LINKER_FLAGS="$CFLAGS_EXTRA" "$@"
  cmake --build "$WORK/build" -j2
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
  [[ $bad -eq 0 ]] || exit 1
}

run_consumer() {
  echo "+ $*"
  "$@"
}

case "$MODE" in
  add_subdirectory)
    cmake_consumer -DREDTLS_CONSUMER_MODE=subdirectory -DREDTLS_SOURCE_DIR="$SRC"
    run_consumer "$WORK/build/consumer"
    ;;
  find_package)
    stage_install
    cmake_consumer -DREDTLS_CONSUMER_MODE=package -DCMAKE_PREFIX_PATH="$STAGE"
    LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" run_consumer "$WORK/build/consumer"
    run_consumer "$WORK/build/consumer_static"
    ;;
  pkg_config)
    stage_install
    # pkg-config must find the staged redtls.pc and nothing else of ours.
    PKG_FLAGS=$(PKG_CONFIG_PATH="$PCDIR" pkg-config --cflags --libs redtls)
    echo "pkg-config --cflags --libs redtls: $PKG_FLAGS"
    # shellcheck disable=SC2086 # the flags are meant to be split
    "${CC:-cc}" -std=c11 -Wall -Wextra -Wpedantic -Werror $CFLAGS_EXTRA \
      -o "$WORK/consumer" "$CONSUMER/main.c" $PKG_FLAGS
    LD_LIBRARY_PATH="$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" run_consumer "$WORK/consumer"
    LD_LIBRARY_PATH="$LIBDIR" ldd "$WORK/consumer" | grep -F "$LIBDIR/libredtls.so" >/dev/null \
      || { echo "pkg_config: consumer is not linked against the staged libredtls.so" >&2; exit 1; }
    ;;
  *)
    echo "run.sh: unknown mode '$MODE'" >&2
    exit 2
    ;;
esac
echo "packaging.$MODE: ok"
