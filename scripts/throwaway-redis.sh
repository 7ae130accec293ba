# shellcheck shell=bash
# shellcheck disable=SC2034  # SERVER_PID, TLS_PORT, PLAIN_PORT, CLUSTER_* are for the caller
# Sourced by scripts/demo.sh and scripts/bench.sh: one throwaway
# redis-server (or a three-node cluster) on loopback for the length of a
# script, stopped by its pid.
#
#   throwaway_redis_start WORK CERTS TOKEN AUTH_CLIENTS WITH_PLAIN
#     Starts redis-server with TLS on a random port below the ephemeral
#     range (and, when WITH_PLAIN is 1, a plain port next to it), password
#     TOKEN, certificates from CERTS (gen-certs.sh layout), files in WORK.
#     Retries when a port is taken. Sets SERVER_PID, TLS_PORT, PLAIN_PORT
#     (0 without a plain port). Returns 1 with the log's tail on stderr.
#     THROWAWAY_REDIS_BACKLOG, when set, is its tcp-backlog (Redis: 511).
#   throwaway_redis_stop
#     SIGTERM, then SIGKILL after 5 s; waits for the pid. Safe to repeat.

SERVER_PID=""
TLS_PORT=0
PLAIN_PORT=0

throwaway_redis_start() {
  local work=$1 certs=$2 token=$3 auth_clients=$4 with_plain=$5
  local conf="$work/redis.conf" log="$work/redis.log" tls plain
  for _ in 1 2 3 4 5 6 7 8; do
    tls=$((20000 + RANDOM % 10000))
    plain=0
    [[ "$with_plain" == 1 ]] && plain=$((tls + 1))
    # A config file keeps the password off the process list.
    (umask 077 && cat >"$conf" <<CONF
port $plain
tls-port $tls
tls-cert-file $certs/server.crt
tls-key-file $certs/server.key
tls-ca-cert-file $certs/ca.crt
tls-auth-clients $auth_clients
requirepass $token
save ""
appendonly no
bind 127.0.0.1
tcp-backlog ${THROWAWAY_REDIS_BACKLOG:-511}
dir $work
logfile $log
daemonize no
CONF
    )
    : >"$log"
    redis-server "$conf" &
    SERVER_PID=$!
    for _ in $(seq 100); do
      if grep -q "Ready to accept connections" "$log"; then
        TLS_PORT=$tls
        PLAIN_PORT=$plain
        return 0
      fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    throwaway_redis_stop
  done
  echo "redis-server did not start (8 attempts); last log lines:" >&2
  tail -n 5 "$log" >&2 || true
  return 1
}

throwaway_redis_stop() {
  if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}

# A throwaway Redis Cluster: three TLS masters (no replicas) on loopback,
# each announcing the host name its certificate holds.
#
#   throwaway_cluster_start WORK CERTS TOKEN
#     Starts node1..node3 with $CERTS/nodeN.crt (SAN DNS:nodeN.cluster.test
#     only), announced as nodeN.cluster.test, client port and bus port both
#     random below the ephemeral range, password TOKEN, files in WORK. Gives
#     each node a third of the slots, joins them with CLUSTER MEET and waits
#     for cluster_state:ok and every announced host name on all of them.
#     Sets CLUSTER_PIDS and CLUSTER_PORTS (arrays, node1 first). Returns 1
#     with the failing node's log tail on stderr (the nodes already started
#     are stopped).
#   throwaway_cluster_stop
#     SIGTERM to every node, SIGKILL after 5 s; waits for the pids. Safe to
#     repeat.
#   throwaway_cluster_cli I ARGS...
#     redis-cli to node I (1-based) over verified TLS, SNI nodeI.cluster.test,
#     password through REDISCLI_AUTH (never on the command line).

CLUSTER_PIDS=()
CLUSTER_PORTS=()
CLUSTER_BUS_PORTS=()
CLUSTER_CERTS=""
CLUSTER_TOKEN=""
CLUSTER_NODES=3

throwaway_cluster_cli() {
  local i=$1
  shift
  REDISCLI_AUTH=$CLUSTER_TOKEN redis-cli --tls --cacert "$CLUSTER_CERTS/ca.crt" \
    --sni "node$i.cluster.test" -h 127.0.0.1 -p "${CLUSTER_PORTS[$((i - 1))]}" "$@"
}

# Picks a port in 20000..29999 that no node of this cluster uses yet.
_throwaway_cluster_port() {
  local p q used
  while :; do
    p=$((20000 + RANDOM % 10000))
    used=0
    for q in "${CLUSTER_PORTS[@]}" "${CLUSTER_BUS_PORTS[@]}"; do
      [[ "$q" == "$p" ]] && used=1
    done
    [[ $used -eq 0 ]] && { echo "$p"; return; }
  done
}

# _throwaway_cluster_node I WORK CERTS TOKEN: starts node I, retrying with
# other ports when one is taken.
_throwaway_cluster_node() {
  local i=$1 work=$2 certs=$3 token=$4 idx=$(($1 - 1))
  local conf="$work/node$i.conf" log="$work/node$i.log" nodes="$work/nodes-$i.conf"
  local tls bus pid
  for _ in 1 2 3 4 5 6 7 8; do
    tls=$(_throwaway_cluster_port)
    CLUSTER_PORTS[idx]=$tls
    bus=$(_throwaway_cluster_port)
    CLUSTER_BUS_PORTS[idx]=$bus
    rm -f "$nodes"
    # A config file keeps the password off the process list. The bus port
    # is chosen here: the default, tls-port + 10000, may not exist.
    (umask 077 && cat >"$conf" <<CONF
port 0
tls-port $tls
tls-cert-file $certs/node$i.crt
tls-key-file $certs/node$i.key
tls-ca-cert-file $certs/ca.crt
tls-auth-clients no
tls-cluster yes
tls-replication yes
cluster-enabled yes
cluster-config-file $nodes
cluster-port $bus
cluster-node-timeout 2000
cluster-announce-ip 127.0.0.1
cluster-announce-hostname node$i.cluster.test
cluster-preferred-endpoint-type hostname
requirepass $token
masterauth $token
save ""
appendonly no
bind 127.0.0.1
dir $work
logfile $log
daemonize no
CONF
    )
    : >"$log"
    redis-server "$conf" &
    pid=$!
    CLUSTER_PIDS[idx]=$pid
    for _ in $(seq 100); do
      grep -q "Ready to accept connections" "$log" && return 0
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    _throwaway_stop_pids "$pid"
    CLUSTER_PIDS[idx]=""
  done
  echo "cluster node$i did not start (8 attempts); last log lines:" >&2
  tail -n 5 "$log" >&2 || true
  return 1
}

# SIGTERM to every pid given, SIGKILL to those left after 5 s, then wait.
_throwaway_stop_pids() {
  local pid left
  for pid in "$@"; do
    kill "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    left=0
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null && left=1
    done
    [[ $left -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "$@"; do
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}

throwaway_cluster_start() {
  local work=$1 certs=$2 token=$3 i n lo hi state slots ok
  CLUSTER_PIDS=()
  CLUSTER_PORTS=()
  CLUSTER_BUS_PORTS=()
  CLUSTER_CERTS=$certs
  CLUSTER_TOKEN=$token
  mkdir -p "$work"
  for i in $(seq "$CLUSTER_NODES"); do
    _throwaway_cluster_node "$i" "$work" "$certs" "$token" || { throwaway_cluster_stop; return 1; }
  done
  for i in $(seq "$CLUSTER_NODES"); do
    lo=$(((i - 1) * 16384 / CLUSTER_NODES))
    hi=$((i * 16384 / CLUSTER_NODES - 1))
    # Distinct config epochs spare the nodes the epoch-collision rounds.
    if ! throwaway_cluster_cli "$i" CLUSTER SET-CONFIG-EPOCH "$i" | grep -q '^OK$' ||
       ! throwaway_cluster_cli "$i" CLUSTER ADDSLOTSRANGE "$lo" "$hi" | grep -q '^OK$'; then
      echo "cluster node$i: slot set-up failed" >&2
      throwaway_cluster_stop
      return 1
    fi
  done
  for i in $(seq 2 "$CLUSTER_NODES"); do
    # With tls-cluster the client port given to MEET is the TLS port.
    if ! throwaway_cluster_cli 1 CLUSTER MEET 127.0.0.1 "${CLUSTER_PORTS[$((i - 1))]}" \
         "${CLUSTER_BUS_PORTS[$((i - 1))]}" | grep -q '^OK$'; then
      echo "cluster: CLUSTER MEET node$i failed" >&2
      throwaway_cluster_stop
      return 1
    fi
  done
  # Host names travel in gossip, possibly after the state turned ok: wait
  # until every node's CLUSTER SLOTS names every node too.
  for _ in $(seq 300); do
    ok=1
    for i in $(seq "$CLUSTER_NODES"); do
      state=$(throwaway_cluster_cli "$i" CLUSTER INFO 2>/dev/null | tr -d '\r' | grep '^cluster_state:') || true
      slots=$(throwaway_cluster_cli "$i" CLUSTER SLOTS 2>/dev/null) || true
      [[ "$state" == "cluster_state:ok" ]] || { ok=0; break; }
      for n in $(seq "$CLUSTER_NODES"); do
        grep -qx "node$n.cluster.test" <<<"$slots" || { ok=0; break 2; }
      done
    done
    [[ $ok -eq 1 ]] && return 0
    sleep 0.1
  done
  echo "cluster: not ok after 30 s; node1 sees:" >&2
  throwaway_cluster_cli 1 CLUSTER NODES >&2 || true
  throwaway_cluster_stop
  return 1
}

throwaway_cluster_stop() {
  local pids=() pid
  for pid in "${CLUSTER_PIDS[@]}"; do
    [[ -n "$pid" ]] && pids+=("$pid")
  done
  [[ ${#pids[@]} -gt 0 ]] && _throwaway_stop_pids "${pids[@]}"
  CLUSTER_PIDS=()
}
