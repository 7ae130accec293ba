# shellcheck shell=bash
# Section "migrate" of scripts/bench.sh (sourced by it; see the top of
# bench.sh): redtls-migrate against `redis-cli --cluster import` (Redis's
# own tool: SCAN, then one MIGRATE ... COPY REPLACE per key) on the same
# data, plain standalone to a plain 3-master cluster (redis-cli cannot
# write to a TLS target), and redtls-migrate from the same source to a TLS
# 3-master cluster with AUTH, followed by --verify-only (which must pass).
# Datasets, made by tests/tools/migrate_fill: "types", MIGRATE_KEYS keys of
# every type (binary keys and values, a third with TTLs of 5-15 minutes,
# streams with two consumer groups) and a MIGRATE_BIG_HASH-field hash;
# "strings", MIGRATE_STRINGS strings of 16 bytes. Each tool copies each
# dataset MIGRATE_ROUNDS times, the order alternating. Reported: keys/s and
# MB/s (DUMP payload bytes, as redtls-migrate reports them, over wall
# time), client CPU per key (user + system of the tool's process), keys
# lost (source DBSIZE minus the target's) and keys with a NUL byte in their
# name missing on the target. Uses bench.sh's BUILD, WORK, CERTS, TOKEN,
# JOBS, say, timed and the throwaway cluster of scripts/throwaway-redis.sh.
# Servers started here are stopped by pid (migrate_stop, also from bench.sh's
# exit trap).

MIGRATE_KEYS=${MIGRATE_KEYS:-200000}
MIGRATE_BIG_HASH=${MIGRATE_BIG_HASH:-1000000}
MIGRATE_STRINGS=${MIGRATE_STRINGS:-1000000}
MIGRATE_ROUNDS=${MIGRATE_ROUNDS:-1}
MIGRATE_PIDS=()

# mig_server DIR NAME ARGS...: redis-server on a free port in 20000..29999
# with ARGS (a config file in DIR/NAME.conf); sets MIG_PORT. Retries when a
# port is taken.
mig_server() {
  local dir=$1 name=$2 port bus pid
  shift 2
  for _ in 1 2 3 4 5 6 7 8; do
    port=$((20000 + RANDOM % 10000))
    bus=$((20000 + RANDOM % 10000))
    [[ $bus == "$port" ]] && continue
    {
      echo "port $port"
      echo "bind 127.0.0.1"
      echo 'save ""'
      echo "appendonly no"
      echo "dir $dir"
      echo "logfile $dir/$name.log"
      echo "daemonize no"
      echo "cluster-config-file $dir/$name-nodes.conf"
      echo "cluster-port $bus"
      printf '%s\n' "$@"
    } >"$dir/$name.conf"
    rm -f "$dir/$name-nodes.conf"
    : >"$dir/$name.log"
    redis-server "$dir/$name.conf" &
    pid=$!
    for _ in $(seq 100); do
      if grep -q "Ready to accept connections" "$dir/$name.log"; then
        MIGRATE_PIDS+=("$pid")
        MIG_PORT=$port
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    _throwaway_stop_pids "$pid"
  done
  echo "bench: redis-server $name did not start; last log lines:" >&2
  tail -n 5 "$dir/$name.log" >&2 || true
  return 1
}

migrate_stop() {
  [[ ${#MIGRATE_PIDS[@]} -gt 0 ]] && _throwaway_stop_pids "${MIGRATE_PIDS[@]}"
  MIGRATE_PIDS=()
}

# A plain 3-master cluster, no password; sets MIG_CL_PORTS.
mig_plain_cluster() {
  local dir=$1 i lo hi ok state
  MIG_CL_PORTS=()
  for i in 1 2 3; do
    mig_server "$dir" "plain-node$i" "cluster-enabled yes" "cluster-node-timeout 5000" || return 1
    MIG_CL_PORTS+=("$MIG_PORT")
  done
  for i in 1 2 3; do
    lo=$(((i - 1) * 16384 / 3))
    hi=$((i * 16384 / 3 - 1))
    redis-cli -p "${MIG_CL_PORTS[$((i - 1))]}" CLUSTER SET-CONFIG-EPOCH "$i" >/dev/null
    redis-cli -p "${MIG_CL_PORTS[$((i - 1))]}" CLUSTER ADDSLOTSRANGE "$lo" "$hi" | grep -q '^OK$' || return 1
  done
  for i in 2 3; do
    redis-cli -p "${MIG_CL_PORTS[0]}" CLUSTER MEET 127.0.0.1 "${MIG_CL_PORTS[$((i - 1))]}" \
      "$(sed -n 's/^cluster-port //p' "$dir/plain-node$i.conf")" | grep -q '^OK$' || return 1
  done
  for _ in $(seq 300); do
    ok=1
    for i in 0 1 2; do
      state=$(redis-cli -p "${MIG_CL_PORTS[$i]}" CLUSTER INFO | tr -d '\r' | grep '^cluster_state:') || true
      [[ "$state" == "cluster_state:ok" ]] || ok=0
    done
    [[ $ok == 1 ]] && return 0
    sleep 0.1
  done
  echo "bench: the plain cluster is not ok after 30 s" >&2
  return 1
}

# Keys on one node whose name starts with "t", a NUL byte, CR, LF and ":"
# (migrate_fill's binary names): a SCAN in a script, the pattern written
# with Lua's escapes since redis-cli takes arguments as they are.
MIG_NUL_LUA='local n, c = 0, "0" repeat local r = redis.call("SCAN", c, "MATCH", "t\0\r\n:*", "COUNT", 1000) c = r[1] n = n + #r[2] until c == "0" return n'

# mig_count plain|tls WHAT: sum over the cluster's nodes of DBSIZE (WHAT
# dbsize) or of the NUL-named keys (WHAT nul).
mig_count() {
  local kind=$1 what=$2 total=0 i n
  for i in 1 2 3; do
    if [[ $kind == plain ]]; then
      if [[ $what == dbsize ]]; then n=$(redis-cli -p "${MIG_CL_PORTS[$((i - 1))]}" DBSIZE)
      else n=$(redis-cli -p "${MIG_CL_PORTS[$((i - 1))]}" EVAL "$MIG_NUL_LUA" 0); fi
    else
      if [[ $what == dbsize ]]; then n=$(throwaway_cluster_cli "$i" DBSIZE)
      else n=$(throwaway_cluster_cli "$i" EVAL "$MIG_NUL_LUA" 0); fi
    fi
    total=$((total + n))
  done
  echo "$total"
}

mig_flush() { # plain|tls
  local i
  for i in 1 2 3; do
    if [[ $1 == plain ]]; then redis-cli -p "${MIG_CL_PORTS[$((i - 1))]}" FLUSHALL >/dev/null
    else throwaway_cluster_cli "$i" FLUSHALL >/dev/null; fi
  done
}

# mig_run DATASET TOOL ROUND: one copy to an emptied target, a line of
# $MIG_RAW.
mig_run() {
  local ds=$1 tool=$2 round=$3 out="$WORK/migrate/$2.out" errf="$WORK/migrate/$2.err"
  local kind=plain src_keys src_nul dst_keys dst_nul u s wall copied bytes rc=0 verify=""
  [[ $tool == redtls-tls ]] && kind=tls
  mig_flush "$kind"
  src_keys=$(redis-cli -p "$MIG_SRC_PORT" DBSIZE)
  src_nul=$(redis-cli -p "$MIG_SRC_PORT" EVAL "$MIG_NUL_LUA" 0)
  say "migrate: $ds, $tool, round $round: $src_keys keys"
  case $tool in
    redtls)
      timed "$WORK/cpu" nice "$MIGRATE_BIN" --from "redis://127.0.0.1:$MIG_SRC_PORT" \
        --to "redis://127.0.0.1:${MIG_CL_PORTS[0]}" --to-cluster >"$out" 2>"$errf" || rc=$? ;;
    redtls-tls)
      # shellcheck disable=SC2030  # the token for this run only
      (export REDTLS_TO_TOKEN=$TOKEN
       timed "$WORK/cpu" nice "$MIGRATE_BIN" --from "redis://127.0.0.1:$MIG_SRC_PORT" \
         --to "rediss://node1.cluster.test:${CLUSTER_PORTS[0]}" --to-cluster --to-cacert "$CERTS/ca.crt" \
         "${MIG_RESOLVE[@]}") >"$out" 2>"$errf" || rc=$? ;;
    redis-cli)
      timed "$WORK/cpu" nice redis-cli --cluster import "127.0.0.1:${MIG_CL_PORTS[0]}" \
        --cluster-from "127.0.0.1:$MIG_SRC_PORT" --cluster-copy --cluster-replace >"$out" 2>"$errf" || rc=$? ;;
  esac
  if [[ $rc != 0 ]]; then
    tail -n 5 "$out" "$errf" >&2
    echo "bench: $tool exited $rc ($ds)" >&2
    exit 1
  fi
  read -r u s wall <"$WORK/cpu"
  dst_keys=$(mig_count "$kind" dbsize)
  dst_nul=$(mig_count "$kind" nul)
  if [[ $tool == redis-cli ]]; then
    copied=$dst_keys
    bytes=$MIG_BYTES # the same data: redtls-migrate's count of its DUMP bytes
  else
    copied=$(sed -n 's/^keys copied: //p' "$out")
    bytes=$(sed -n 's/^payload bytes: //p' "$out")
    MIG_BYTES=$bytes
  fi
  if [[ $tool == redtls-tls ]]; then
    # The whole comparison, every key; it must pass.
    # shellcheck disable=SC2030,SC2031
    if (export REDTLS_TO_TOKEN=$TOKEN
        timed "$WORK/cpu-verify" nice "$MIGRATE_BIN" --from "redis://127.0.0.1:$MIG_SRC_PORT" \
          --to "rediss://node1.cluster.test:${CLUSTER_PORTS[0]}" --to-cluster --to-cacert "$CERTS/ca.crt" \
          "${MIG_RESOLVE[@]}" --verify-only) >"$out.verify" 2>&1; then
      read -r _ _ verify <"$WORK/cpu-verify"
    else
      tail -n 12 "$out.verify" >&2
      echo "bench: --verify-only found differences after the copy to the TLS cluster ($ds)" >&2
      exit 1
    fi
  fi
  echo "$ds,$tool,$round,$src_keys,$copied,$bytes,$wall,$u,$s,$((src_keys - dst_keys)),$((src_nul - dst_nul)),$verify" \
    >>"$MIG_RAW"
}

section_migrate() {
  local start=$SECONDS dir="$WORK/migrate" mbuild="$BUILD/migrate" ds round tools t
  mkdir -p "$dir"
  say "migrate: building redtls-migrate and migrate_fill (RelWithDebInfo) in $mbuild"
  if ! { cmake -S "$ROOT" -B "$mbuild" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREDTLS_BUILD_EXAMPLES=ON \
           -DREDTLS_BUILD_TESTS=ON &&
         nice cmake --build "$mbuild" -j"$JOBS" --target redtls-migrate migrate_fill; } >"$mbuild.log" 2>&1; then
    tail -n 30 "$mbuild.log" >&2
    echo "bench: build failed (full log: $mbuild.log)" >&2
    exit 1
  fi
  MIGRATE_BIN="$mbuild/examples/redtls-migrate"
  local fill="$mbuild/tests/migrate_fill"

  mig_server "$dir" source || exit 1
  MIG_SRC_PORT=$MIG_PORT
  say "migrate: plain 3-master cluster"
  mig_plain_cluster "$dir" || exit 1
  say "migrate: TLS 3-master cluster with AUTH"
  throwaway_cluster_start "$dir/tls-cluster" "$CERTS" "$TOKEN" || exit 1
  MIG_RESOLVE=()
  for t in 1 2 3; do MIG_RESOLVE+=(--to-resolve "node$t.cluster.test:*:127.0.0.1"); done

  MIG_RAW="$BUILD/migrate-raw.csv"
  echo "dataset,tool,round,source_keys,copied,payload_bytes,wall_s,user_s,sys_s,lost,nul_missing,verify_s" >"$MIG_RAW"
  for ds in types strings; do
    redis-cli -p "$MIG_SRC_PORT" FLUSHALL >/dev/null
    say "migrate: filling the source ($ds)"
    if [[ $ds == types ]]; then
      env -u REDTLS_TOKEN nice "$fill" --url "redis://127.0.0.1:$MIG_SRC_PORT" --keys "$MIGRATE_KEYS" --big-hash "$MIGRATE_BIG_HASH" >&2
    else
      env -u REDTLS_TOKEN nice "$fill" --url "redis://127.0.0.1:$MIG_SRC_PORT" --strings "$MIGRATE_STRINGS" >&2
    fi
    # redtls-migrate first in odd rounds, redis-cli first in even ones;
    # its run to the TLS cluster last (the payload bytes come from a
    # redtls-migrate run, for redis-cli's MB/s).
    for round in $(seq "$MIGRATE_ROUNDS"); do
      if (( round % 2 )); then tools=(redtls redis-cli redtls-tls); else tools=(redtls-tls redis-cli redtls); fi
      for t in "${tools[@]}"; do mig_run "$ds" "$t" "$round"; done
    done
    mig_flush plain
    mig_flush tls
  done
  redis-cli -p "$MIG_SRC_PORT" FLUSHALL >/dev/null
  throwaway_cluster_stop
  migrate_stop

  python3 - "$MIG_RAW" "$BUILD/migrate-results.csv" <<'PY'
import csv, statistics, sys
raw, out_csv = sys.argv[1:3]
rows = list(csv.DictReader(open(raw)))
label = {"redtls": "redtls-migrate, plain -> plain cluster",
         "redis-cli": "redis-cli --cluster import, plain -> plain cluster",
         "redtls-tls": "redtls-migrate, plain -> TLS cluster + AUTH"}
print()
print("Copy of a plain standalone source to a 3-master cluster (median of the rounds):")
print("  %-9s %-52s %9s %9s %8s %11s %6s %8s %9s" % ("dataset", "tool", "keys", "keys/s", "MB/s",
      "CPU us/key", "lost", "NUL lost", "verify s"))
results = []
for ds in ("types", "strings"):
    for tool in ("redtls", "redis-cli", "redtls-tls"):
        rs = [r for r in rows if r["dataset"] == ds and r["tool"] == tool]
        if not rs:
            continue
        med = lambda f: statistics.median(f(r) for r in rs)
        keys = int(rs[0]["source_keys"])
        kps = med(lambda r: int(r["source_keys"]) / float(r["wall_s"]))
        mbs = med(lambda r: int(r["payload_bytes"]) / float(r["wall_s"]) / 1e6)
        cpu = med(lambda r: (float(r["user_s"]) + float(r["sys_s"])) * 1e6 / int(r["source_keys"]))
        lost = max(int(r["lost"]) for r in rs)
        nul = max(int(r["nul_missing"]) for r in rs)
        ver = "%.1f" % med(lambda r: float(r["verify_s"])) if rs[0]["verify_s"] else "-"
        print("  %-9s %-52s %9d %9.0f %8.1f %11.2f %6d %8d %9s" % (ds, label[tool], keys, kps, mbs, cpu, lost, nul, ver))
        results += [(ds, tool, "keys_per_sec", kps), (ds, tool, "mb_per_sec", mbs),
                    (ds, tool, "cpu_us_per_key", cpu), (ds, tool, "keys_lost", lost), (ds, tool, "nul_keys_lost", nul)]
print()
print("Targets: redtls-migrate >= 5x redis-cli's keys/s, not one key lost:")
for ds in ("types", "strings"):
    got = {t: v for d, t, m, v in results if d == ds and m == "keys_per_sec"}
    lost = sum(v for d, t, m, v in results if d == ds and m in ("keys_lost", "nul_keys_lost") and t != "redis-cli")
    if "redtls" in got and "redis-cli" in got:
        x = got["redtls"] / got["redis-cli"]
        print("  %-8s %.1fx redis-cli's keys/s: %s; redtls-migrate lost %d keys: %s"
              % (ds, x, "met" if x >= 5 else "MISSED", lost, "met" if lost == 0 else "MISSED"))
print("(Client CPU: redis-cli's MIGRATE leaves the DUMP/RESTORE work to the source server, so its client CPU")
print("per key is only the SCAN and the per-key round trip.)")
with open(out_csv, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["dataset", "tool", "metric", "value"])
    for r in results:
        w.writerow([r[0], r[1], r[2], "%.4f" % r[3]])
print("Written: %s; every run: %s" % (out_csv, raw))
PY
  say "migrate: section took $((SECONDS - start)) s"
}
