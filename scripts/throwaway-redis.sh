# shellcheck shell=bash
# shellcheck disable=SC2034  # SERVER_PID, TLS_PORT, PLAIN_PORT are for the caller
# Sourced by scripts/demo.sh and scripts/bench.sh: one throwaway
# redis-server on loopback for the length of a script, stopped by its pid.
#
#   throwaway_redis_start WORK CERTS TOKEN AUTH_CLIENTS WITH_PLAIN
#     Starts redis-server with TLS on a random port below the ephemeral
#     range (and, when WITH_PLAIN is 1, a plain port next to it), password
#     TOKEN, certificates from CERTS (gen-certs.sh layout), files in WORK.
#     Retries when a port is taken. Sets SERVER_PID, TLS_PORT, PLAIN_PORT
#     (0 without a plain port). Returns 1 with the log's tail on stderr.
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
