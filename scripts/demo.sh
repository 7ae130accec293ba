#!/usr/bin/env bash
# The main job: build redtls with its examples, start a throwaway TLS-only,
# password-protected redis-server on a random loopback port, and show the
# examples talking to it over verified TLS; then start a throwaway
# three-master TLS Redis Cluster whose nodes announce host names
# (nodeN.cluster.test, reached through --resolve) and show the cluster
# client routing commands, each node verified against its own name.
#
# Usage: scripts/demo.sh
# Environment: REDTLS_GEN_CERTS overrides scripts/gen-certs.sh.
# Exits non-zero when the build fails, a server or the cluster does not
# start, or an example does not behave as shown.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build"
GEN_CERTS=${REDTLS_GEN_CERTS:-$ROOT/scripts/gen-certs.sh}

# shellcheck source=scripts/throwaway-redis.sh
. "$ROOT/scripts/throwaway-redis.sh"

WORK=""
cleanup() {
  local rc=$?
  if [[ ${#CLUSTER_PIDS[@]} -gt 0 ]]; then
    local node_pids="${CLUSTER_PIDS[*]}"
    throwaway_cluster_stop
    echo "demo: stopped the cluster nodes (pids $node_pids)"
  fi
  if [[ -n "$SERVER_PID" ]]; then
    local pid=$SERVER_PID
    throwaway_redis_stop
    echo "demo: stopped redis-server (pid $pid)"
  fi
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
"$ROOT/scripts/deps.sh"

step "build (Release, examples on) in build/"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DREDTLS_BUILD_EXAMPLES=ON -DREDTLS_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
TLS_PING="$BUILD/examples/tls_ping"
CLI="$BUILD/examples/redtls-cli"
CLUSTER_DEMO="$BUILD/examples/cluster_demo"
for exe in "$TLS_PING" "$CLI" "$CLUSTER_DEMO" "$BUILD/examples/redtls-migrate"; do
  [[ -x "$exe" ]] || { echo "demo: $exe was not built" >&2; exit 1; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/redtls-demo.XXXXXX")
CERTS="$WORK/certs"

step "certificates (CA, server for localhost/127.0.0.1/::1, client, cluster nodes)"
"$GEN_CERTS" "$CERTS"
for f in ca.crt server.crt server.key client.crt client.key \
         node1.crt node1.key node2.crt node2.key node3.crt node3.key; do
  [[ -s "$CERTS/$f" ]] || { echo "demo: $GEN_CERTS did not write $f" >&2; exit 1; }
done
openssl x509 -in "$CERTS/server.crt" -noout -subject -ext subjectAltName 2>/dev/null | sed 's/^/    /'

TOKEN=$(openssl rand -hex 24)

step "throwaway redis-server"
throwaway_redis_start "$WORK" "$CERTS" "$TOKEN" optional 0
PORT=$TLS_PORT
echo "demo: redis-server pid $SERVER_PID, TLS only on 127.0.0.1:$PORT"

PASSED=0
FAILED=0
mask() { local s="$*"; printf '%s' "${s//$TOKEN/***}"; }
# The command line as one would type it (arguments with spaces quoted).
shown() {
  local a out=()
  for a in "$@"; do
    a=${a#"$BUILD/"}
    [[ "$a" == *[[:space:]]* ]] && a="'$a'"
    out+=("$a")
  done
  printf '%s' "${out[*]}"
}

# expect EXIT_CODE PATTERN -- COMMAND...: runs COMMAND, shows its output,
# and checks its exit code and (when PATTERN is not empty) its output.
expect() {
  local want_rc=$1 pattern=$2 out rc ok=1
  shift 3
  printf '\n$ %s\n' "$(mask "$(shown "$@")")"
  set +e
  out=$("$@" 2>&1)
  rc=$?
  set -e
  [[ -n "$out" ]] && mask "$out" | sed 's/^/    /' && echo
  echo "    -> exit $rc"
  if [[ $rc -ne $want_rc ]]; then
    echo "    UNEXPECTED: wanted exit $want_rc"
    ok=0
  fi
  if [[ -n "$pattern" ]] && ! grep -Eq -- "$pattern" <<<"$out"; then
    echo "    UNEXPECTED: output does not match /$pattern/"
    ok=0
  fi
  if [[ "$out" == *"$TOKEN"* ]]; then
    echo "    UNEXPECTED: the password appears in the output"
    ok=0
  fi
  if [[ -n "${IAM_SECRET:-}" && "$out" == *"$IAM_SECRET"* ]]; then
    echo "    UNEXPECTED: the AWS secret appears in the output"
    ok=0
  fi
  if [[ $ok -eq 1 ]]; then PASSED=$((PASSED + 1)); else FAILED=$((FAILED + 1)); fi
}

URL="rediss://:$TOKEN@localhost:$PORT?cacert=$CERTS/ca.crt"
KEY="redtls:demo:$$"

step "tls_ping: connect by URL, verify the certificate for 'localhost', AUTH, PING"
expect 0 'PONG' -- "$TLS_PING" "$URL"

step "redtls-cli: commands over one verified TLS connection each"
expect 0 'PONG' -- "$CLI" -u "$URL" PING
expect 0 'OK' -- "$CLI" -u "$URL" SET "$KEY" "hello over TLS"
expect 0 'hello over TLS' -- "$CLI" -u "$URL" GET "$KEY"
expect 0 '(^|[^0-9])1$' -- "$CLI" -u "$URL" INCR "$KEY:counter"
expect 0 '(^|[^0-9])2$' -- "$CLI" -u "$URL" INCR "$KEY:counter"

step "redtls-cli -v: TLS details (version, cipher, server certificate)"
expect 0 'PONG' -- "$CLI" -v -u "$URL" PING

step "options instead of a URL: IP address 127.0.0.1 (checked against the IP SAN), client certificate"
expect 0 'PONG' -- "$CLI" -u "rediss://127.0.0.1:$PORT" --cacert "$CERTS/ca.crt" \
  --cert "$CERTS/client.crt" --key "$CERTS/client.key" --token "$TOKEN" --timeout 2000 PING

step "a Redis error reply is not a connection failure (exit 1)"
expect 1 '' -- "$CLI" -u "$URL" INCR "$KEY"

step "verification failures (exit 3): a name the certificate does not hold, a CA not trusted"
expect 3 'wrong\.example' -- "$CLI" -u "$URL" --sni wrong.example PING
expect 3 '' -- "$CLI" -u "rediss://localhost:$PORT" --token "$TOKEN" PING

step "a wrong password is refused (exit 3), and the password is not echoed"
expect 3 '' -- "$CLI" -u "rediss://localhost:$PORT" --cacert "$CERTS/ca.crt" \
  --token "not-the-password" PING

step "two tokens: the first is refused, the second is accepted on the same connection (exit 0)"
expect 0 'PONG' -- "$CLI" -u "rediss://localhost:$PORT" --cacert "$CERTS/ca.crt" \
  --token "an-old-token-no-longer-valid" --token-alt "$TOKEN" PING

step "AUTH token rotation: old -> old+new -> new while a client keeps working"
expect 0 'token 2 accepted, token 1 refused' -- "$BUILD/examples/auth_rotation" "$URL"

step "IAM (as ElastiCache does it): redtls-cli --iam-token signs a token; an ACL user takes the tokens of these seconds; an IAM URL connects"
# Demo credentials only: the signature is checked by this throwaway server's
# ACL, not by AWS.
export AWS_ACCESS_KEY_ID=AKIDDEMO00000000001
export AWS_SECRET_ACCESS_KEY=demo/Secret+Key=0000000000000000000000
IAM_SECRET=$AWS_SECRET_ACCESS_KEY
IAM_OPTS=(--iam demo-cache --region us-east-1 --user demo-iam-user)
expect 0 '^demo-cache/\?Action=connect&User=demo-iam-user&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDDEMO00000000001%2F20260301%2Fus-east-1%2Felasticache%2Faws4_request&X-Amz-Date=20260301T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=[0-9a-f]{64}$' \
  -- "$CLI" "${IAM_OPTS[@]}" --iam-token --iam-time 20260301T120000Z
"$CLI" -u "$URL" ACL SETUSER demo-iam-user reset on '~*' '+@all' >/dev/null
now=$(date -u +%s)
for s in $(seq $((now - 2)) $((now + 30))); do
  tok=$("$CLI" "${IAM_OPTS[@]}" --iam-token --iam-time "$(date -u -d "@$s" +%Y%m%dT%H%M%SZ)")
  "$CLI" -u "$URL" ACL SETUSER demo-iam-user ">$tok" >/dev/null
done
expect 0 '^demo-iam-user$' -- "$CLI" -u "rediss://demo-iam-user@localhost:$PORT?cacert=$CERTS/ca.crt&iam=demo-cache&region=us-east-1" ACL WHOAMI
expect 0 '^demo-iam-user$' -- "$CLI" -u "rediss://localhost:$PORT?cacert=$CERTS/ca.crt" "${IAM_OPTS[@]}" ACL WHOAMI
step "IAM refused: another region signs another token (exit 3, causes named, no secret)"
expect 3 'twice' -- "$CLI" -u "rediss://localhost:$PORT?cacert=$CERTS/ca.crt" --iam demo-cache --region eu-west-1 \
  --user demo-iam-user ACL WHOAMI
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

for loop in libuv libevent; do
  step "async_$loop: the asynchronous API on a $loop loop: SET, GET, INCR from callbacks, then 2,000 GETs with 64 in flight"
  expect 0 '' -- "$BUILD/examples/async_$loop" -u "$URL" -n 2000 -P 64
done

step "throwaway Redis Cluster: 3 TLS masters announcing nodeN.cluster.test"
throwaway_cluster_start "$WORK/cluster" "$CERTS" "$TOKEN"
echo "demo: cluster nodes (pid, TLS port):"
for i in 1 2 3; do
  echo "    node$i.cluster.test  pid ${CLUSTER_PIDS[$((i - 1))]}  127.0.0.1:${CLUSTER_PORTS[$((i - 1))]}"
done
openssl x509 -in "$CERTS/node2.crt" -noout -subject -ext subjectAltName 2>/dev/null | sed 's/^/    /'
P1=${CLUSTER_PORTS[0]}
P2=${CLUSTER_PORTS[1]}
# The names exist nowhere in DNS: each is pinned to loopback, curl-style,
# while SNI and the certificate check still use the name.
RESOLVE=()
for i in 1 2 3; do
  RESOLVE+=(--resolve "node$i.cluster.test:${CLUSTER_PORTS[$((i - 1))]}:127.0.0.1")
done
# The token reaches the examples through the environment, not argv.
export REDTLS_TOKEN=$TOKEN

step "cluster_demo: discover the nodes from one seed, route SET/GET, MSET/MGET across slots, a pipeline"
expect 0 'cross-slot splits +3' -- "$CLUSTER_DEMO" "node1.cluster.test:$P1" --cacert "$CERTS/ca.crt" "${RESOLVE[@]}"

step "async_cluster: the asynchronous cluster client on a libuv loop: 300 SET/GET over the slots from callbacks, then one DEL split by slot"
expect 0 '300 deleted' -- "$BUILD/examples/async_cluster" "node1.cluster.test:$P1" --cacert "$CERTS/ca.crt" "${RESOLVE[@]}"

step "redtls-migrate: keys of five types, some with TTLs, from the standalone TLS server to the cluster (both verified), then --verify-only"
MIGRATE="$BUILD/examples/redtls-migrate"
MPFX="redtls:migrate:$$"
for i in 1 2 3 4; do
  "$CLI" -u "$URL" SET "$MPFX:s$i" "value $i" >/dev/null
  "$CLI" -u "$URL" HSET "$MPFX:h$i" f1 "a$i" f2 "b$i" >/dev/null
  "$CLI" -u "$URL" RPUSH "$MPFX:l$i" x y "z$i" >/dev/null
  "$CLI" -u "$URL" SADD "$MPFX:t$i" m1 "m$i" >/dev/null
  "$CLI" -u "$URL" ZADD "$MPFX:z$i" 1.5 a "$i" b >/dev/null
  "$CLI" -u "$URL" PEXPIRE "$MPFX:s$i" $((600000 + i)) >/dev/null
done
TO_RESOLVE=()
for i in 1 2 3; do
  TO_RESOLVE+=(--to-resolve "node$i.cluster.test:${CLUSTER_PORTS[$((i - 1))]}:127.0.0.1")
done
export REDTLS_FROM_TOKEN=$TOKEN REDTLS_TO_TOKEN=$TOKEN
MIGRATE_ARGS=(--from "rediss://localhost:$PORT" --from-cacert "$CERTS/ca.crt"
  --to "rediss://node1.cluster.test:$P1" --to-cluster --to-cacert "$CERTS/ca.crt" "${TO_RESOLVE[@]}"
  --match "$MPFX:*")
expect 0 'keys copied: 20$' -- "$MIGRATE" "${MIGRATE_ARGS[@]}"
expect 0 'keys compared: 20$' -- "$MIGRATE" "${MIGRATE_ARGS[@]}" --verify-only
unset REDTLS_FROM_TOKEN REDTLS_TO_TOKEN

# Hash tag {z} puts the key in slot 8157, which node2 serves.
CKEY="redtls:demo:{z}:$$"
step "redtls-cli: node1 alone answers MOVED for a key node2 serves (exit 1); --cluster follows it"
expect 1 "^MOVED 8157 node2\.cluster\.test:$P2\$" -- "$CLI" -h node1.cluster.test -p "$P1" \
  --cacert "$CERTS/ca.crt" "${RESOLVE[@]}" GET "$CKEY"
expect 0 '^OK$' -- "$CLI" --cluster -h node1.cluster.test -p "$P1" --cacert "$CERTS/ca.crt" \
  "${RESOLVE[@]}" SET "$CKEY" "routed to node2"
expect 0 '^routed to node2$' -- "$CLI" --cluster -h node1.cluster.test -p "$P1" --cacert "$CERTS/ca.crt" \
  "${RESOLVE[@]}" GET "$CKEY"

step "per-node verification: node2's certificate asked for under node1's name is refused (exit 3)"
expect 3 "'node1\.cluster\.test' does not match the certificate \(SAN: (DNS:)?node2\.cluster\.test\)" -- \
  "$CLI" -h node1.cluster.test -p "$P2" --resolve "node1.cluster.test:$P2:127.0.0.1" \
  --cacert "$CERTS/ca.crt" PING

step "cleanup"
expect 0 '^1$' -- "$CLI" --cluster -h node1.cluster.test -p "$P1" --cacert "$CERTS/ca.crt" \
  "${RESOLVE[@]}" DEL "$CKEY"
for t in s h l t z; do
  expect 0 '^4$' -- "$CLI" --cluster -h node1.cluster.test -p "$P1" --cacert "$CERTS/ca.crt" \
    "${RESOLVE[@]}" DEL "$MPFX:${t}1" "$MPFX:${t}2" "$MPFX:${t}3" "$MPFX:${t}4"
done
unset REDTLS_TOKEN
expect 0 '' -- "$CLI" -u "$URL" DEL "$KEY" "$KEY:counter"
expect 0 '^20$' -- "$CLI" -u "$URL" DEL "$MPFX:s1" "$MPFX:s2" "$MPFX:s3" "$MPFX:s4" "$MPFX:h1" "$MPFX:h2" \
  "$MPFX:h3" "$MPFX:h4" "$MPFX:l1" "$MPFX:l2" "$MPFX:l3" "$MPFX:l4" "$MPFX:t1" "$MPFX:t2" "$MPFX:t3" "$MPFX:t4" \
  "$MPFX:z1" "$MPFX:z2" "$MPFX:z3" "$MPFX:z4"

printf '\ndemo: %d passed, %d failed\n' "$PASSED" "$FAILED"
[[ $FAILED -eq 0 ]]
