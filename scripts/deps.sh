#!/usr/bin/env bash
# Installs what redtls needs to build, test and demo on Debian 12.
# Fast on a ready machine: apt is skipped when every package is present.
# Never starts or relies on the distribution's redis service: the tests and
# the demo run their own redis-server processes on random loopback ports.
set -euo pipefail

# The one list of system packages the project needs.
PACKAGES=(
  build-essential
  cmake
  pkg-config
  libhiredis-dev
  libssl-dev
  libcmocka-dev
  redis-server
  redis-tools
  openssl
  python3
  ca-certificates
  binutils
  # Hostile-input checks (scripts/test.sh step_sanitize, step_valgrind,
  # step_fuzz, step_analyze): clang with its sanitizer and libFuzzer
  # runtimes, valgrind, clang-tidy, cppcheck.
  clang
  libclang-rt-14-dev
  valgrind
  clang-tidy
  cppcheck
  # The event-loop adapters (redtls/async_libuv.h, redtls/async_libevent.h,
  # the redtls::libuv / redtls::libevent targets) and their examples and
  # packaging tests; libredtls itself never links either.
  libuv1-dev
  libevent-dev
  # integration.sigv4_smithy runs the AWS SDK's SigV4 signer (npm packages
  # pinned in tests/sigv4/package-lock.json; scripts/test.sh installs them).
  nodejs
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$pkg")
  fi
done

# npm comes with some nodejs builds (NodeSource's, which conflict with
# Debian's npm package) and separately with Debian's: asked for only when
# there is no npm command.
if ! command -v npm >/dev/null 2>&1 && [[ " ${missing[*]} " != *" npm "* ]]; then
  missing+=(npm)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "deps: installing ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
else
  echo "deps: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
