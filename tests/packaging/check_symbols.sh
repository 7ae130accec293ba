#!/usr/bin/env bash
# Checks the shared library's ABI surface: it exports exactly the functions
# declared REDTLS_EXTERN in the public headers, nothing else, and its SONAME
# carries the major version.
#
# Usage: check_symbols.sh LIBRARY INCLUDE_DIR MAJOR
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 LIBRARY INCLUDE_DIR MAJOR" >&2
  exit 2
fi
LIB=$1
INCLUDE=$2
MAJOR=$3
fail=0
indent() { sed 's/^/  /'; }

# Symbols the toolchain itself defines in every shared object.
TOOLCHAIN='^(_init|_fini|_edata|_end|__bss_start|_DYNAMIC|_GLOBAL_OFFSET_TABLE_)$'

exported=$(nm -D --defined-only "$LIB" | awk 'NF >= 3 { print $3 }' | sed 's/@.*//' | grep -Ev "$TOOLCHAIN" | sort -u)
declared=$(grep -h 'REDTLS_EXTERN' "$INCLUDE"/redtls/*.h | grep -oE '\bredtls_[a-z0-9_]+[[:space:]]*\(' \
  | tr -d '( \t' | sort -u)

if [[ -z "$declared" ]]; then
  echo "FAIL: found no REDTLS_EXTERN declarations under $INCLUDE/redtls" >&2
  exit 1
fi

foreign=$(grep -v '^redtls_' <<<"$exported" || true)
if [[ -n "$foreign" ]]; then
  echo "FAIL: exported symbols outside the redtls_ namespace:" >&2
  printf '%s\n' "$foreign" | indent >&2
  fail=1
fi
undeclared=$(comm -23 <(printf '%s\n' "$exported") <(printf '%s\n' "$declared") | grep '^redtls_' || true)
if [[ -n "$undeclared" ]]; then
  echo "FAIL: exported but not declared REDTLS_EXTERN in a public header (internal helpers must be hidden):" >&2
  printf '%s\n' "$undeclared" | indent >&2
  fail=1
fi
missing=$(comm -13 <(printf '%s\n' "$exported") <(printf '%s\n' "$declared") || true)
if [[ -n "$missing" ]]; then
  echo "FAIL: declared in a public header but not exported:" >&2
  printf '%s\n' "$missing" | indent >&2
  fail=1
fi

soname=$(readelf -d "$LIB" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [[ "$soname" != "libredtls.so.$MAJOR" ]]; then
  echo "FAIL: SONAME is '$soname', expected 'libredtls.so.$MAJOR'" >&2
  fail=1
fi

# The event-loop adapters are header-only: a program that includes one links
# the loop library, never libredtls itself, adapters built or not.
needed=$(readelf -d "$LIB" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p')
if [[ -z "$needed" ]]; then
  echo "FAIL: readelf -d lists no NEEDED entries for $LIB" >&2
  fail=1
fi
loops=$(grep -E '^lib(uv|event)([._-]|$)' <<<"$needed" || true)
if [[ -n "$loops" ]]; then
  echo "FAIL: $LIB depends on an event-loop library (only the adapters' users may):" >&2
  printf '%s\n' "$loops" | indent >&2
  fail=1
fi

if [[ $fail -ne 0 ]]; then
  exit 1
fi
echo "exported symbols: $(wc -l <<<"$exported") redtls_* functions, all declared; SONAME $soname;" \
  "NEEDED: $(tr '\n' ' ' <<<"$needed")(no event-loop library)"
