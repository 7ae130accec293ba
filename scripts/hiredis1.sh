#!/usr/bin/env bash
# Builds hiredis 1.2.0 into a private prefix, for testing redtls against
# hiredis 1.x (scripts/test.sh step_hiredis1). Test-only: the library itself
# builds against whatever hiredis pkg-config finds (Debian 12: 0.14.1).
#
# Usage: scripts/hiredis1.sh [DIR]     (default: build-hiredis1)
#   DIR/cache/    the npm tarball the sources come from
#   DIR/src/      its unpacked contents (hiredis in src/package/deps/hiredis)
#   DIR/prefix/   the install: include/hiredis/, lib/libhiredis.so.1.1.0,
#                 lib/pkgconfig/hiredis.pc
# Environment: JOBS (default 2), CC.
#   HIREDIS1_SSL=1 also builds hiredis_ssl (lib/libhiredis_ssl.a, .so,
#                 include/hiredis/hiredis_ssl.h), for scripts/bench.sh's
#                 hiredis client; give it its own DIR. Default 0: no SSL.
# Prints the prefix on its last line. A second run reuses a finished install.
#
# Debian 12 has no hiredis 1.x package and this machine reaches only Debian
# and the npm registry; the npm package redis-fast-driver 2.2.6 carries
# hiredis v1.2.0's C sources under deps/hiredis. The tarball is pinned by its
# sha256, and the version macros in hiredis.h are checked before building.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=${1:-$ROOT/build-hiredis1}
JOBS=${JOBS:-2}
SSL=${HIREDIS1_SSL:-0}

PACKAGE=redis-fast-driver@2.2.6
TARBALL=redis-fast-driver-2.2.6.tgz
SHA256=861baef471f15919da7f0cff7e74fc98c5aa9164791763956c85c195756dff56
WANT_MAJOR=1
WANT_MINOR=2
WANT_PATCH=0
WANT_VERSION=$WANT_MAJOR.$WANT_MINOR.$WANT_PATCH

die() {
  echo "hiredis1: $*" >&2
  exit 1
}

[[ "$SSL" == 0 || "$SSL" == 1 ]] || die "HIREDIS1_SSL must be 0 or 1, not '$SSL'"

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
CACHE=$DIR/cache
SRC=$DIR/src
PREFIX=$DIR/prefix
# Written last, so an interrupted build is redone rather than reused. It
# names the SSL choice, so a prefix built one way is never taken for the other.
STAMP=$PREFIX/.redtls-hiredis-$WANT_VERSION-$SHA256
[[ "$SSL" == 1 ]] && STAMP=$STAMP-ssl

if [[ -f "$STAMP" ]]; then
  echo "hiredis1: hiredis $WANT_VERSION already installed"
  echo "$PREFIX"
  exit 0
fi

tarball_ok() {
  [[ -f "$CACHE/$TARBALL" ]] && [[ $(sha256sum "$CACHE/$TARBALL" | cut -d' ' -f1) == "$SHA256" ]]
}

mkdir -p "$CACHE"
if ! tarball_ok; then
  rm -f "$CACHE/$TARBALL"
  command -v npm >/dev/null 2>&1 || die "npm not found (it fetches $PACKAGE, which carries hiredis $WANT_VERSION)"
  echo "hiredis1: fetching $PACKAGE with npm pack"
  (cd "$CACHE" && npm pack --silent "$PACKAGE" >/dev/null) || die "npm pack $PACKAGE failed"
  [[ -f "$CACHE/$TARBALL" ]] || die "npm pack $PACKAGE did not write $CACHE/$TARBALL"
  if ! tarball_ok; then
    got=$(sha256sum "$CACHE/$TARBALL" | cut -d' ' -f1)
    die "$CACHE/$TARBALL has sha256 $got, expected $SHA256; not building from it"
  fi
fi
echo "hiredis1: $TARBALL sha256 $SHA256 ok"

rm -rf "$SRC" "$PREFIX"
mkdir -p "$SRC"
tar -xzf "$CACHE/$TARBALL" -C "$SRC"
HIREDIS_SRC=$SRC/package/deps/hiredis
[[ -f "$HIREDIS_SRC/hiredis.h" ]] || die "$TARBALL has no deps/hiredis/hiredis.h"

version_macro() {
  sed -n "s/^#define HIREDIS_$1[[:space:]]\{1,\}\([0-9]\{1,\}\)[[:space:]]*$/\1/p" "$HIREDIS_SRC/hiredis.h"
}
major=$(version_macro MAJOR)
minor=$(version_macro MINOR)
patch=$(version_macro PATCH)
if [[ "$major" != "$WANT_MAJOR" || "$minor" != "$WANT_MINOR" || "$patch" != "$WANT_PATCH" ]]; then
  die "deps/hiredis/hiredis.h says HIREDIS_MAJOR/MINOR/PATCH '$major'/'$minor'/'$patch', expected $WANT_MAJOR/$WANT_MINOR/$WANT_PATCH"
fi
echo "hiredis1: deps/hiredis/hiredis.h is hiredis $major.$minor.$patch"

# hiredis's Makefile takes LIBRARY_PATH (the compiler's search path, set on
# some machines) as its own install sub-directory; USE_SSL stays 0 unless
# asked for (redtls does its own TLS; only the benchmark's hiredis client
# needs hiredis_ssl).
echo "hiredis1: building into $PREFIX (USE_SSL=$SSL)"
env -u LIBRARY_PATH make -C "$HIREDIS_SRC" -j"$JOBS" PREFIX="$PREFIX" USE_SSL="$SSL" ${CC:+CC="$CC"} install >"$DIR/build.log" 2>&1 \
  || { tail -n 40 "$DIR/build.log" >&2; die "hiredis build failed (log: $DIR/build.log)"; }

want_files=(include/hiredis/hiredis.h lib/pkgconfig/hiredis.pc)
[[ "$SSL" == 1 ]] && want_files+=(include/hiredis/hiredis_ssl.h lib/libhiredis_ssl.a)
for f in "${want_files[@]}"; do
  [[ -f "$PREFIX/$f" ]] || die "install: $PREFIX/$f missing"
done
pc_version=$(PKG_CONFIG_PATH="$PREFIX/lib/pkgconfig" PKG_CONFIG_LIBDIR="$PREFIX/lib/pkgconfig" pkg-config --modversion hiredis)
[[ "$pc_version" == "$WANT_VERSION" ]] || die "installed hiredis.pc says version '$pc_version', expected $WANT_VERSION"
soname=$(readelf -d "$PREFIX/lib/libhiredis.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[[ "$soname" == libhiredis.so.1.* ]] || die "installed libhiredis.so has SONAME '$soname', expected libhiredis.so.1.*"

touch "$STAMP"
echo "hiredis1: hiredis $WANT_VERSION (SONAME $soname) installed"
echo "$PREFIX"
