#!/usr/bin/env bash
# redtls-bench against redis-benchmark (redis-tools, a C client on hiredis
# with TLS).
# Section "timed": same machine, same throwaway redis-server, same workload
# (GET on a 100000-key keyspace, one connection, pipeline 1/16/128, TLS and
# plain), run back to back in alternating order for ROUNDS rounds. Prints per-case
# medians of throughput and client CPU per operation for both tools, the
# TLS/plain ratio, full vs resumed connect cost, syscalls per pipelined
# batch (strace) and resident memory per idle TLS connection.
# Section "ir": client instructions per GET counted by callgrind (the
# figure to trust on a shared, noisy machine), for redtls-bench,
# redis-benchmark and a plain hiredis 1.2.0 client (scripts/bench/
# hiredis-bench.c, built here with hiredis_ssl): one connection, TLS 1.3 and
# plain TCP, pipeline 1/16/128, every key of a 5000-key keyspace set. Each
# case runs the client alone under callgrind twice, with n and 2n requests;
# (Ir(2n) - Ir(n)) / n leaves out start-up, connect and handshake. Also the
# functions costing redtls the most per GET (TLS, P=1 and P=128) and a
# picture, build-bench/ir.svg, when gnuplot is installed.
# Section "async": the asynchronous API against its peers over TLS, one
# connection, 1/16/128/1024 commands in flight: redtls-bench --async (the
# built-in loop; the libevent adapter beside it), hiredis 1.2.0's async API
# with hiredis_ssl and its adapters/libevent.h (scripts/bench/
# hiredis-async-bench.c, built here) and redis-benchmark -P N. Client
# instructions per GET under callgrind as in "ir", then ops/s and process
# CPU per GET in ASYNC_ROUNDS alternating rounds (medians), the issue's
# targets checked, syscalls per GET (strace) at 1 and 128 in flight, and
# redtls's costliest functions at 1 and 128 in flight.
# Section "async-load": many asynchronous handles on redtls-bench's epoll
# loop: the longest single call into redtls while STALL_N TLS handshakes
# start at once, memory per idle handle (IDLE_N), ACONNECTS connects at
# once (full and resumed handshakes): wall and CPU.
# Section "cluster" (scripts/bench/cluster.sh): a throwaway 3-master TLS
# cluster with AUTH (nodes node1..3.cluster.test, reached through
# --resolve) beside the standalone TLS server; GET, every key of the
# IR_KEYSPACE-key keyspace set. The asynchronous and the blocking client,
# each standalone, in one slot (one hash tag) and over all slots, and
# redis-benchmark -P N standalone and --cluster (one connection per
# master), at 1/16/128 in flight or pipelined: client instructions per GET
# under callgrind as in "ir", the issue's cluster/standalone targets
# checked, ops/s and process CPU per GET in ROUNDS alternating rounds
# (medians), and the blocking client's syscalls per batch of 128 (strace).
# Section "migrate" (scripts/bench/migrate.sh): redtls-migrate against
# `redis-cli --cluster import` on the same data, a plain standalone source
# to a plain 3-master cluster, and redtls-migrate to a TLS 3-master cluster
# with AUTH followed by --verify-only: MIGRATE_KEYS keys of every type with
# a MIGRATE_BIG_HASH-field hash, then MIGRATE_STRINGS small strings; keys/s,
# MB/s, client CPU per key, keys lost. About 5 minutes with the defaults.
# Section "pubsub" (scripts/bench/pubsub.sh): one subscriber over TLS
# receiving what redis-benchmark -c 1 -P 64 PUBLISHes on the standalone
# server (started once `PUBSUB NUMSUB bench` says the subscriber is there;
# the server's pubsub output-buffer limit lifted for the section), payloads
# of PUBSUB_SIZES bytes, every message checked: redtls-bench --pubsub (the
# asynchronous API on the built-in loop, and the blocking subscriber beside
# it), as built by default and built on hiredis 1.2.0 (build-bench/
# redtls-hiredis1/: the peer's parser, and RESP3, which the system's hiredis
# 0.14 cannot parse), against hiredis 1.2.0's asynchronous API with
# hiredis_ssl and its adapters/libevent.h (scripts/bench/hiredis-sub-bench.c,
# built here), RESP2 and RESP3 (hiredis after HELLO 3). Client
# instructions per message under callgrind as in "ir" (the issue's target:
# redtls at most 0.8 x hiredis), then messages/s and the subscriber's CPU
# per message in ROUNDS alternating rounds (medians), and redtls's costliest
# functions per message. About 3 minutes with the defaults.
# Not part of the test suite: it measures, it does not judge.
#
# Usage: scripts/bench.sh [SECTION...]
#   Sections, run in this order: timed, ir, async, async-load, cluster,
#   migrate, pubsub;
#   default all of them.
# Environment:
#   SECTIONS  the sections, when none is given as an argument (e.g. SECTIONS=ir)
#   ROUNDS    timed, cluster, pubsub: rounds per case (default 3)
#   N         requests per run at P=1; P=16 runs 8*N, P=128 runs 20*N
#             (default 50000: the timed section takes 2-4 minutes on 2 cores)
#   CONNECTS  connects per series in connect mode (default 200)
#   IR_N_P1   ir, cluster: the shorter run's requests at P=1 (default 2000;
#             the longer run makes twice as many)
#   IR_N_PIPELINED  ir, cluster: the same at P=16 and P=128 (default 16000,
#             a multiple of 128 so every client sends only full batches)
#   IR_KEYSPACE  ir, async, cluster: keys (default 5000)
#   ASYNC_N   async: the shorter callgrind run's requests at 16 in flight and
#             more (default 16384, a multiple of 1024); at 1, IR_N_P1
#   ASYNC_ROUNDS  async: timed rounds (default 5)
#   ASYNC_TIMED_N  async: timed requests at 1 in flight (default 20000);
#             16: 8x, 128: 20x, 1024: 40x
#   STALL_N, STALL_WAVES  async-load: handshakes per wave, waves (200, 3)
#   IDLE_N    async-load: idle handles (default 1000)
#   ACONNECTS async-load: connects at once (default 1000)
#   CLUSTER_TIMED_N  cluster: timed requests at depth 1 (default 20000);
#             16: 8x, 128: 20x
#   MIGRATE_KEYS, MIGRATE_BIG_HASH, MIGRATE_STRINGS  migrate: the datasets
#             (200000 keys of every type and a 1000000-field hash; 1000000
#             strings)
#   MIGRATE_ROUNDS  migrate: copies per tool and dataset (default 1; the
#             source's TTLs of 5-15 minutes bound how many fit)
#   PUBSUB_N  pubsub: the shorter callgrind run's messages (default 20000;
#             the longer run receives twice as many), fewer for large
#             payloads: at most PUBSUB_IR_BYTES on the wire (default 1000000:
#             900 messages of 1024 bytes; see pubsub_ir_n)
#   PUBSUB_TIMED_N  pubsub: messages per timed run (default 200000)
#   PUBSUB_SIZES  pubsub: payload sizes in bytes (default "16 1024")
#   REDTLS_GEN_CERTS overrides scripts/gen-certs.sh
# Output: tables on stdout; timed: build-bench/bench-results.csv (medians,
# one value per line) and build-bench/bench-raw.csv (every run); ir:
# build-bench/ir-results.csv (instructions per GET and ratios),
# build-bench/ir-raw.csv (every callgrind total), build-bench/ir-callgrind/
# (the four redtls profiles behind the function lists), build-bench/ir.svg;
# async: build-bench/async-results.csv, async-ir-raw.csv, async-raw.csv,
# build-bench/async-callgrind/ (the redtls profiles); cluster:
# build-bench/cluster-results.csv, cluster-ir-raw.csv, cluster-raw.csv,
# build-bench/cluster-callgrind/ (the redtls profiles); migrate:
# build-bench/migrate-results.csv, migrate-raw.csv; pubsub:
# build-bench/pubsub-results.csv, pubsub-ir-raw.csv, pubsub-raw.csv,
# build-bench/pubsub-callgrind/ (the redtls profiles).
# The ir section takes about a minute (45-50 s on this 2-core machine,
# hiredis already built; building it adds a few seconds), the cluster
# section about 3.5 minutes.
# Builds run under nice with at most 2 jobs (the machine is a shared 2-core box).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD="$ROOT/build-bench"
GEN_CERTS=${REDTLS_GEN_CERTS:-$ROOT/scripts/gen-certs.sh}
ROUNDS=${ROUNDS:-3}
N=${N:-50000}
CONNECTS=${CONNECTS:-200}
PIPELINES=(1 16 128)
KEYSPACE=100000
JOBS=$(( $(nproc) < 2 ? $(nproc) : 2 ))
IR_N_P1=${IR_N_P1:-2000}
IR_N_PIPELINED=${IR_N_PIPELINED:-16000}
IR_KEYSPACE=${IR_KEYSPACE:-5000}
ASYNC_N=${ASYNC_N:-16384}
ASYNC_ROUNDS=${ASYNC_ROUNDS:-5}
ASYNC_TIMED_N=${ASYNC_TIMED_N:-20000}
STALL_N=${STALL_N:-200}
STALL_WAVES=${STALL_WAVES:-3}
IDLE_N=${IDLE_N:-1000}
ACONNECTS=${ACONNECTS:-1000}
CLUSTER_TIMED_N=${CLUSTER_TIMED_N:-20000}
MIGRATE_KEYS=${MIGRATE_KEYS:-200000}
MIGRATE_BIG_HASH=${MIGRATE_BIG_HASH:-1000000}
MIGRATE_STRINGS=${MIGRATE_STRINGS:-1000000}
MIGRATE_ROUNDS=${MIGRATE_ROUNDS:-1}
PUBSUB_N=${PUBSUB_N:-20000}
PUBSUB_TIMED_N=${PUBSUB_TIMED_N:-200000}
PUBSUB_IR_BYTES=${PUBSUB_IR_BYTES:-1000000}
PUBSUB_SIZES=${PUBSUB_SIZES:-16 1024}
ALL_SECTIONS="timed ir async async-load cluster migrate pubsub"
SECTIONS=${*:-${SECTIONS:-$ALL_SECTIONS}}
for s in $SECTIONS; do
  [[ " $ALL_SECTIONS " == *" $s "* ]] || { echo "bench: unknown section '$s' (sections: $ALL_SECTIONS)" >&2; exit 2; }
done
want() { [[ " $SECTIONS " == *" $1 "* ]]; }

[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench: ROUNDS must be a positive number" >&2; exit 2; }
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "bench: N must be a positive number" >&2; exit 2; }
[[ "$CONNECTS" =~ ^[1-9][0-9]*$ ]] || { echo "bench: CONNECTS must be a positive number" >&2; exit 2; }
[[ "$IR_N_P1" =~ ^[1-9][0-9]*$ ]] || { echo "bench: IR_N_P1 must be a positive number" >&2; exit 2; }
if ! [[ "$IR_N_PIPELINED" =~ ^[1-9][0-9]*$ ]] || (( IR_N_PIPELINED % 128 != 0 )); then
  echo "bench: IR_N_PIPELINED must be a positive multiple of 128" >&2
  exit 2
fi
[[ "$IR_KEYSPACE" =~ ^[1-9][0-9]*$ ]] || { echo "bench: IR_KEYSPACE must be a positive number" >&2; exit 2; }
if ! [[ "$ASYNC_N" =~ ^[1-9][0-9]*$ ]] || (( ASYNC_N % 1024 != 0 )); then
  echo "bench: ASYNC_N must be a positive multiple of 1024" >&2
  exit 2
fi
for v in ASYNC_ROUNDS ASYNC_TIMED_N STALL_N STALL_WAVES IDLE_N ACONNECTS CLUSTER_TIMED_N MIGRATE_KEYS MIGRATE_BIG_HASH \
         MIGRATE_STRINGS MIGRATE_ROUNDS PUBSUB_N PUBSUB_TIMED_N \
         PUBSUB_IR_BYTES; do
  [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || { echo "bench: $v must be a positive number" >&2; exit 2; }
done
for v in $PUBSUB_SIZES; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "bench: PUBSUB_SIZES must be positive numbers" >&2; exit 2; }
done
tools=(cmake redis-server redis-benchmark python3 openssl)
{ want ir || want async; } && tools+=(valgrind redis-cli "${CC:-cc}" make)
want cluster && tools+=(valgrind redis-cli)
want migrate && tools+=(redis-cli)
want pubsub && tools+=(valgrind redis-cli "${CC:-cc}" make pkg-config)
want async && tools+=(pkg-config)
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is not installed (scripts/deps.sh)" >&2; exit 1; }
done

# shellcheck source=scripts/throwaway-redis.sh
. "$ROOT/scripts/throwaway-redis.sh"

WORK=""
cleanup() {
  local rc=$?
  throwaway_cluster_stop
  throwaway_redis_stop
  if declare -F migrate_stop >/dev/null; then migrate_stop; fi
  if declare -F pubsub_stop >/dev/null; then pubsub_stop; fi
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { printf 'bench: %s\n' "$*" >&2; }

say "building redtls-bench (Release) in build-bench/"
mkdir -p "$BUILD"
if ! { cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
         -DREDTLS_BUILD_EXAMPLES=ON -DREDTLS_BUILD_TESTS=OFF &&
       nice cmake --build "$BUILD" -j"$JOBS" --target redtls-bench; } >"$BUILD/bench-build.log" 2>&1; then
  tail -n 30 "$BUILD/bench-build.log" >&2
  echo "bench: build failed (full log: $BUILD/bench-build.log)" >&2
  exit 1
fi
BENCH="$BUILD/examples/redtls-bench"
[[ -x "$BENCH" ]] || { echo "bench: $BENCH was not built" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/redtls-bench.XXXXXX")
CERTS="$BUILD/bench-certs"
"$GEN_CERTS" "$CERTS" >/dev/null 2>&1 || { echo "bench: $GEN_CERTS $CERTS failed" >&2; exit 1; }
TOKEN=$(openssl rand -hex 24)


# A listen queue for async-load's ACONNECTS connects at once: with Redis's
# 511, the ones past it wait a SYN retransmit (1 s), which would be the
# figure instead of the client (the kernel caps it at net.core.somaxconn).
THROWAWAY_REDIS_BACKLOG=$((ACONNECTS + 64)) throwaway_redis_start "$WORK" "$CERTS" "$TOKEN" no 1
say "redis-server pid $SERVER_PID: TLS 127.0.0.1:$TLS_PORT, plain 127.0.0.1:$PLAIN_PORT"

# Runs a command and appends "user sys wall" (seconds) of that command alone
# to the file named first. RUSAGE_CHILDREN is read before and after, since
# the interpreter may have inherited children's time from a launcher (pyenv
# shims run it through exec).
cat >"$WORK/cputime.py" <<'PY'
import resource, subprocess, sys, time
out = sys.argv[1]
before = resource.getrusage(resource.RUSAGE_CHILDREN)
t0 = time.monotonic()
rc = subprocess.run(sys.argv[2:]).returncode
wall = time.monotonic() - t0
after = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    f.write("%.6f %.6f %.6f\n" % (after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, wall))
sys.exit(rc)
PY
timed() { python3 "$WORK/cputime.py" "$@"; }

# redtls-bench gets the token from the environment (not visible in `ps`);
# redis-benchmark only takes it as -a, acceptable for a random per-run token
# of a loopback server that is gone when this script ends.
export REDTLS_TOKEN=$TOKEN
CA="$CERTS/ca.crt"
url_for() { # tls|plain
  if [[ $1 == tls ]]; then echo "rediss://127.0.0.1:$TLS_PORT"; else echo "redis://127.0.0.1:$PLAIN_PORT"; fi
}
rb_tls_args() { # tls|plain
  if [[ $1 == tls ]]; then echo "--tls --cacert $CA -p $TLS_PORT"; else echo "-p $PLAIN_PORT"; fi
}
requests_for() { # pipeline
  case $1 in 1) echo "$N" ;; 16) echo $((N * 8)) ;; *) echo $((N * 20)) ;; esac
}

# The timed section: throughput and client CPU against redis-benchmark,
# connect cost, syscalls per batch, idle memory.
section_timed() {
  say "filling the keyspace ($KEYSPACE keys, 3-byte values) so GETs find values"
  "$BENCH" -u "$(url_for plain)" -t set -P 128 -n $((KEYSPACE * 5)) -r "$KEYSPACE" --csv >/dev/null

  RAW="$BUILD/bench-raw.csv"
  echo "round,transport,pipeline,tool,requests,ops_per_sec,proc_cpu_us_per_op,loop_cpu_us_per_op,p50_us,p99_us" >"$RAW"

  run_redtls() { # round transport pipeline
    local n out cpu
    n=$(requests_for "$3")
    out=$(timed "$WORK/cpu" "$BENCH" -u "$(url_for "$2")" --cacert "$CA" -c 1 -P "$3" -t get -n "$n" \
          -r "$KEYSPACE" --csv | tail -n 1)
    read -r u s _ <"$WORK/cpu"
    # kind,test,transport,connections,pipeline,requests,value_size,seconds,ops_per_sec,p50_us,p99_us,p999_us,cpu_us_per_op,errors
    IFS=, read -r _ _ _ _ _ _ _ _ ops p50 p99 _ loopcpu errs <<<"$out"
    [[ "$errs" == 0 ]] || { echo "bench: redtls-bench had error replies: $out" >&2; exit 1; }
    cpu=$(python3 -c "print('%.4f' % (($u + $s) * 1e6 / $n))")
    echo "$1,$2,$3,redtls,$n,$ops,$cpu,$loopcpu,$p50,$p99" >>"$RAW"
  }

  run_rb() { # round transport pipeline
    local n out cpu
    n=$(requests_for "$3")
    # shellcheck disable=SC2046
    out=$(timed "$WORK/cpu" redis-benchmark -h 127.0.0.1 $(rb_tls_args "$2") -a "$TOKEN" -c 1 -P "$3" -t get \
          -n "$n" -r "$KEYSPACE" -q --csv 2>/dev/null | grep '^"GET"')
    read -r u s _ <"$WORK/cpu"
    # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    out=${out//\"/}
    IFS=, read -r _ ops _ _ p50 _ p99 _ <<<"$out"
    cpu=$(python3 -c "print('%.4f' % (($u + $s) * 1e6 / $n))")
    p50=$(python3 -c "print('%.1f' % ($p50 * 1000))")
    p99=$(python3 -c "print('%.1f' % ($p99 * 1000))")
    echo "$1,$2,$3,redis-benchmark,$n,$ops,$cpu,,$p50,$p99" >>"$RAW"
  }

  CONN_RAW="$WORK/connect.csv"
  : >"$CONN_RAW"
  for round in $(seq "$ROUNDS"); do
    say "round $round/$ROUNDS"
    for p in "${PIPELINES[@]}"; do
      for tr in tls plain; do
        # Alternate who goes first, so a slow patch of a noisy machine does
        # not always land on the same tool.
        if (( (round + p) % 2 )); then
          run_redtls "$round" "$tr" "$p"; run_rb "$round" "$tr" "$p"
        else
          run_rb "$round" "$tr" "$p"; run_redtls "$round" "$tr" "$p"
        fi
      done
    done
    "$BENCH" -u "$(url_for tls)" --cacert "$CA" --connect "$CONNECTS" --csv | tail -n +2 >>"$CONN_RAW"
  done

  # Syscalls per pipelined batch at P=16 over TLS. Two run lengths, so the
  # start-up and handshake syscalls cancel out in the difference.
  SYSCALLS="$WORK/syscalls.txt"
  : >"$SYSCALLS"
  if command -v strace >/dev/null; then
    say "strace: syscalls per batch at P=16 over TLS"
    strace_counts() { # tool requests outfile
      if [[ $1 == redtls ]]; then
        strace -c -f -o "$3" "$BENCH" -u "$(url_for tls)" --cacert "$CA" -c 1 -P 16 -t get -n "$2" -r "$KEYSPACE" \
          --csv >/dev/null
      else
        # shellcheck disable=SC2046
        strace -c -f -o "$3" redis-benchmark -h 127.0.0.1 $(rb_tls_args tls) -a "$TOKEN" -c 1 -P 16 -t get \
          -n "$2" -r "$KEYSPACE" -q --csv >/dev/null 2>&1
      fi
    }
    for tool in redtls redis-benchmark; do
      strace_counts "$tool" 16000 "$WORK/strace-$tool-1"
      strace_counts "$tool" 48000 "$WORK/strace-$tool-2"
      echo "$tool $WORK/strace-$tool-1 $WORK/strace-$tool-2 $(( (48000 - 16000) / 16 ))" >>"$SYSCALLS"
    done
  else
    say "strace not installed: no syscall counts"
  fi

  python3 - "$RAW" "$CONN_RAW" "$SYSCALLS" "$BUILD/bench-results.csv" "$ROUNDS" <<'PY'
import csv, re, statistics, sys

raw, conn_raw, syscalls, out_csv, rounds = sys.argv[1:6]
rows = list(csv.DictReader(open(raw)))
med = lambda xs: statistics.median(xs) if xs else float("nan")

def pick(tool, tr, p, field):
    return med([float(r[field]) for r in rows
                if r["tool"] == tool and r["transport"] == tr and r["pipeline"] == str(p)])

results = []  # section, case, metric, value
print()
print("Per-case medians of %s rounds; GET, 1 connection, keyspace 100000, 3-byte values." % rounds)
print("CPU = client process user+sys per op (getrusage of the child); loop = redtls-bench's own")
print("measurement of its command loop only. r-b = redis-benchmark %s." % "7.0")
print()
hdr = "%-10s %11s %11s %6s | %9s %9s %6s | %9s | %8s %8s | %8s %8s"
print(hdr % ("case", "redtls op/s", "r-b op/s", "ratio", "redtls us", "r-b us", "ratio",
             "loop us", "p50 rt", "p50 r-b", "p99 rt", "p99 r-b"))
print(hdr % ("", "", "", "", "CPU/op", "CPU/op", "", "CPU/op", "us", "us", "us", "us"))
for tr in ("tls", "plain"):
    for p in (1, 16, 128):
        case = "%s P=%d" % (tr, p)
        ro, bo = pick("redtls", tr, p, "ops_per_sec"), pick("redis-benchmark", tr, p, "ops_per_sec")
        rc, bc = pick("redtls", tr, p, "proc_cpu_us_per_op"), pick("redis-benchmark", tr, p, "proc_cpu_us_per_op")
        rl = pick("redtls", tr, p, "loop_cpu_us_per_op")
        r50, b50 = pick("redtls", tr, p, "p50_us"), pick("redis-benchmark", tr, p, "p50_us")
        r99, b99 = pick("redtls", tr, p, "p99_us"), pick("redis-benchmark", tr, p, "p99_us")
        print("%-10s %11.0f %11.0f %6.2f | %9.3f %9.3f %6.2f | %9.3f | %8.1f %8.1f | %8.1f %8.1f"
              % (case, ro, bo, ro / bo, rc, bc, rc / bc, rl, r50, b50, r99, b99))
        key = "%s-P%d" % (tr, p)
        for metric, v in (("redtls_ops_per_sec", ro), ("redis_benchmark_ops_per_sec", bo),
                          ("ops_ratio_redtls_vs_rb", ro / bo), ("redtls_cpu_us_per_op", rc),
                          ("redis_benchmark_cpu_us_per_op", bc), ("cpu_ratio_redtls_vs_rb", rc / bc),
                          ("redtls_loop_cpu_us_per_op", rl), ("redtls_p50_us", r50),
                          ("redis_benchmark_p50_us", b50), ("redtls_p99_us", r99),
                          ("redis_benchmark_p99_us", b99)):
            results.append(("throughput", key, metric, v))

print()
print("TLS/plain throughput:  " + "   ".join(
    "P=%d redtls %.2f (r-b %.2f)" % (p, pick("redtls", "tls", p, "ops_per_sec") / pick("redtls", "plain", p, "ops_per_sec"),
                                     pick("redis-benchmark", "tls", p, "ops_per_sec") / pick("redis-benchmark", "plain", p, "ops_per_sec"))
    for p in (1, 16, 128)))
for p in (1, 16, 128):
    results.append(("tls_vs_plain", "P%d" % p, "redtls_ops_ratio",
                    pick("redtls", "tls", p, "ops_per_sec") / pick("redtls", "plain", p, "ops_per_sec")))
    results.append(("tls_vs_plain", "P%d" % p, "redis_benchmark_ops_ratio",
                    pick("redis-benchmark", "tls", p, "ops_per_sec") / pick("redis-benchmark", "plain", p, "ops_per_sec")))

# connect,series,connects,wall_mean_us,wall_p50_us,wall_p99_us,cpu_mean_us,cpu_p50_us,cpu_p99_us,resumed_fraction,ratio
conn = [line.strip().split(",") for line in open(conn_raw) if line.strip()]
def cseries(name, i):
    return med([float(c[i]) for c in conn if c[1] == name])
def cfrac(name):
    v = [c[9] for c in conn if c[1] == name]
    return "n/a" if not v or "n/a" in v else "%.3f" % med([float(x) for x in v])
if conn:
    fw, rw = cseries("full", 3), cseries("resumed", 3)
    fc, rc_ = cseries("full", 6), cseries("resumed", 6)
    print("Connect (TCP+TLS+AUTH, TLS): full %.0f us wall, %.0f us CPU;  resumed %.0f us wall, %.0f us CPU"
          " (resumed fraction %s);  resumed/full CPU %.2f"
          % (fw, fc, rw, rc_, cfrac("resumed"), rc_ / fc))
    for metric, v in (("full_wall_mean_us", fw), ("full_cpu_mean_us", fc), ("resumed_wall_mean_us", rw),
                      ("resumed_cpu_mean_us", rc_), ("cpu_ratio_resumed_vs_full", rc_ / fc)):
        results.append(("connect", "tls", metric, v))
    f = cfrac("resumed")
    results.append(("connect", "tls", "resumed_fraction", f))

def strace_calls(path):
    calls = {}
    for line in open(path):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls
WRITES = ("write", "sendto", "sendmsg", "writev")
READS = ("read", "recvfrom", "recvmsg", "readv")
WAITS = ("poll", "ppoll", "epoll_wait", "epoll_pwait", "select", "pselect6")
for line in open(syscalls):
    tool, f1, f2, batches = line.split()
    a, b = strace_calls(f1), strace_calls(f2)
    d = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
    per = lambda names: sum(d.get(k, 0) for k in names) / int(batches)
    total = sum(d.values()) / int(batches)
    other = {k: v / int(batches) for k, v in d.items() if v > 0 and k not in WRITES + READS + WAITS}
    print("Syscalls per batch, P=16 TLS, %-15s writes %.2f  reads %.2f  waits %.2f  total %.2f%s"
          % (tool + ":", per(WRITES), per(READS), per(WAITS), total,
             ("  (other: " + ", ".join("%s %.2f" % kv for kv in sorted(other.items())) + ")") if other else ""))
    for metric, v in (("writes_per_batch", per(WRITES)), ("reads_per_batch", per(READS)),
                      ("waits_per_batch", per(WAITS)), ("total_per_batch", total)):
        results.append(("syscalls_tls_P16", tool, metric, v))

with open(out_csv, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["section", "case", "metric", "value"])
    for s, c, m, v in results:
        w.writerow([s, c, m, v if isinstance(v, str) else "%.4f" % v])
print()
print("Written: %s (medians), %s (every run)" % (out_csv, raw))
PY

  # Resident memory per idle TLS connection (200 connections, each used for
  # one PING, then held open).
  say "idle TLS connections: resident memory"
  "$BENCH" -u "$(url_for tls)" --cacert "$CA" --idle 200
}

# hiredis 1.2.0 + hiredis_ssl (scripts/hiredis1.sh) and the peers built on
# it: HBENCH (synchronous) and, when wanted, HABENCH (asynchronous, with
# hiredis's adapters/libevent.h). Static hiredis, so the system's hiredis
# 0.14 is never loaded instead. Once per run.
H1=""
build_hiredis_peers() { # section-name [async]
  local log
  if [[ -z "$H1" ]]; then
    say "$1: hiredis 1.2.0 with hiredis_ssl (scripts/hiredis1.sh, HIREDIS1_SSL=1) in build-bench/hiredis1-ssl/"
    log="$BUILD/hiredis1-ssl.log"
    if ! HIREDIS1_SSL=1 JOBS=$JOBS nice "$ROOT/scripts/hiredis1.sh" "$BUILD/hiredis1-ssl" >"$log" 2>&1; then
      tail -n 20 "$log" >&2
      echo "bench: building hiredis 1.2.0 with SSL failed (log: $log)" >&2
      exit 1
    fi
    H1=$(tail -n 1 "$log")
    HBENCH="$BUILD/hiredis-bench"
    if ! nice "${CC:-cc}" -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -I"$H1/include" -o "$HBENCH" \
         "$ROOT/scripts/bench/hiredis-bench.c" "$H1/lib/libhiredis_ssl.a" "$H1/lib/libhiredis.a" -lssl -lcrypto; then
      echo "bench: building scripts/bench/hiredis-bench.c failed" >&2
      exit 1
    fi
  fi
  if [[ "${2:-}" == async && -z "${HABENCH:-}" ]]; then
    HABENCH="$BUILD/hiredis-async-bench"
    # shellcheck disable=SC2046
    if ! nice "${CC:-cc}" -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -I"$H1/include" -o "$HABENCH" \
         "$ROOT/scripts/bench/hiredis-async-bench.c" "$H1/lib/libhiredis_ssl.a" "$H1/lib/libhiredis.a" \
         $(pkg-config --cflags --libs libevent) -lssl -lcrypto; then
      echo "bench: building scripts/bench/hiredis-async-bench.c failed (libevent-dev: scripts/deps.sh)" >&2
      exit 1
    fi
  fi
}

# Every key of the IR_KEYSPACE-key keyspace set (3-byte values), checked.
# Once per run.
IR_FILLED=""
fill_ir_keyspace() { # section-name
  [[ -n "$IR_FILLED" ]] && return 0
  local ssl_line i present
  ssl_line=$(openssl s_client -connect "127.0.0.1:$TLS_PORT" -CAfile "$CA" -servername localhost -brief \
             </dev/null 2>&1 | sed -n 's/^\(Protocol version\|Ciphersuite\): //p' | paste -sd ' ' -)
  say "$1: the server's TLS port negotiates ${ssl_line:-(openssl s_client could not tell)}"

  say "$1: setting every key of a $IR_KEYSPACE-key keyspace (3-byte values)"
  # Random keys: n = keyspace would leave about 37% of them unset, 20 draws
  # per key leave none (checked below, EXISTS in chunks of 1000 keys).
  "$BENCH" -u "$(url_for plain)" -t set -P 128 -n $((IR_KEYSPACE * 20)) -r "$IR_KEYSPACE" --csv >/dev/null
  present=$(for ((i = 0; i < IR_KEYSPACE; i += 1000)); do
              printf 'EXISTS %s\n' "$(seq -f 'key:%012.0f' "$i" $((i + 999 < IR_KEYSPACE - 1 ? i + 999 : IR_KEYSPACE - 1)) |
                                      paste -sd ' ' -)"
            done | REDISCLI_AUTH=$TOKEN redis-cli -h 127.0.0.1 -p "$PLAIN_PORT" | awk '{ s += $1 } END { print s + 0 }')
  [[ "$present" == "$IR_KEYSPACE" ]] ||
    { echo "bench: only $present of the $IR_KEYSPACE keys are set; GETs would miss" >&2; exit 1; }
  IR_FILLED=1
}

# The instruction-count section (see the top of this file).
section_ir() {
  local start=$SECONDS
  build_hiredis_peers ir
  fill_ir_keyspace ir

  rm -f "$BUILD/ir.svg"
  IR_RAW="$BUILD/ir-raw.csv"
  IR_KEEP="$BUILD/ir-callgrind"
  rm -rf "$IR_KEEP"
  mkdir -p "$IR_KEEP" "$WORK/ir"
  echo "transport,pipeline,client,requests,ir_total,nil_replies" >"$IR_RAW"
  local transport p client n req out cmd port total nils errs
  for transport in tls plain; do
    if [[ $transport == tls ]]; then port=$TLS_PORT; else port=$PLAIN_PORT; fi
    for p in "${PIPELINES[@]}"; do
      if [[ $p == 1 ]]; then n=$IR_N_P1; else n=$IR_N_PIPELINED; fi
      for client in redtls redis-benchmark hiredis; do
        say "ir: $transport P=$p $client: $n and $((2 * n)) GETs under callgrind"
        for req in "$n" $((2 * n)); do
          case $client in
            redtls)
              # The TLS URL names localhost (SNI and the name verified, as
              # for the other two) and --resolve spares the lookup.
              if [[ $transport == tls ]]; then
                cmd=("$BENCH" -u "rediss://localhost:$port" --resolve localhost:127.0.0.1 --cacert "$CA")
              else
                cmd=("$BENCH" -u "redis://127.0.0.1:$port")
              fi
              cmd+=(-c 1 -P "$p" -t get -n "$req" -r "$IR_KEYSPACE" --csv) ;;
            redis-benchmark)
              # --csv: without it a 250 ms timer prints progress and walks
              # the latency histogram (hdr_mean) each time, a cost that
              # grows with wall time, which callgrind stretches: ~1,750
              # instructions per GET at P=1 that a native run hardly pays.
              cmd=(redis-benchmark -h 127.0.0.1 -p "$port")
              [[ $transport == tls ]] && cmd+=(--tls --cacert "$CA" --sni localhost)
              cmd+=(-a "$TOKEN" -c 1 -P "$p" -t get -n "$req" -r "$IR_KEYSPACE" -q --csv) ;;
            hiredis)
              cmd=("$HBENCH" -h 127.0.0.1 -p "$port")
              [[ $transport == tls ]] && cmd+=(--tls --cacert "$CA" --sni localhost)
              cmd+=(-P "$p" -n "$req" -r "$IR_KEYSPACE") ;;
          esac
          out="$WORK/ir/$client-$transport-P$p-$req"
          # The client binary itself under valgrind (no wrapper, children
          # not followed), so only its instructions are counted.
          if ! nice valgrind --tool=callgrind --callgrind-out-file="$out.cg" "${cmd[@]}" \
               >"$out.stdout" 2>"$out.stderr"; then
            tail -n 20 "$out.stderr" >&2
            echo "bench: $client failed under callgrind ($transport P=$p, $req GETs)" >&2
            exit 1
          fi
          nils=""
          case $client in
            redtls)
              IFS=, read -r _ _ _ _ _ _ _ _ _ _ _ _ _ errs < <(tail -n 1 "$out.stdout")
              [[ "$errs" == 0 ]] || { echo "bench: redtls-bench had error replies: $(tail -n 1 "$out.stdout")" >&2; exit 1; } ;;
            redis-benchmark)
              if ! grep -q '^"GET",' "$out.stdout" ||
                 grep -v '^==' "$out.stderr" | grep -qi 'error'; then
                grep -v '^==' "$out.stderr" | tail -n 5 >&2
                echo "bench: redis-benchmark did not finish its GETs cleanly ($transport P=$p)" >&2
                exit 1
              fi ;;
            hiredis)
              nils=$(sed -n 's/.* found a value, \([0-9]*\) nil$/\1/p' "$out.stdout")
              [[ "$nils" == 0 ]] || say "ir: WARNING: hiredis-bench found ${nils:-?} keys missing ($transport P=$p)" ;;
          esac
          total=$(sed -n 's/^totals: *//p' "$out.cg")
          [[ "$total" =~ ^[0-9]+$ ]] || { echo "bench: no 'totals:' line in $out.cg" >&2; exit 1; }
          echo "$transport,$p,$client,$req,$total,$nils" >>"$IR_RAW"
          if [[ $client == redtls && $transport == tls && ( $p == 1 || $p == 128 ) ]]; then
            mv "$out.cg" "$IR_KEEP/redtls-tls-P$p-$req.callgrind"
          fi
          rm -f "$out.cg" "$out.stdout" "$out.stderr"
        done
      done
    done
  done

  local ops=""
  if want timed && [[ -f "$BUILD/bench-results.csv" ]]; then ops="$BUILD/bench-results.csv"; fi
  BENCH_ROOT="$ROOT" python3 - "$IR_RAW" "$BUILD/ir-results.csv" "$IR_KEEP" "$WORK/ir" "$ops" "$IR_KEYSPACE" <<'PY'
import csv, os, re, sys

raw, out_csv, keep, plot_dir, ops_csv, keyspace = sys.argv[1:7]
rows = list(csv.DictReader(open(raw)))
CLIENTS = ("redtls", "redis-benchmark", "hiredis")
per_get, nreq = {}, {}
for tr in ("tls", "plain"):
    for p in (1, 16, 128):
        for c in CLIENTS:
            runs = sorted((int(r["requests"]), int(r["ir_total"])) for r in rows
                          if r["transport"] == tr and r["pipeline"] == str(p) and r["client"] == c)
            (n1, ir1), (n2, ir2) = runs
            per_get[tr, p, c] = (ir2 - ir1) / (n2 - n1)
            nreq[tr, p] = n1

print()
print("Client instructions per GET (callgrind Ir of the client process alone, (Ir(2n) - Ir(n)) / n:")
print("start-up, connect, TLS handshake and AUTH cancel out). GET, 1 connection, keyspace %s," % keyspace)
print("every key set (3-byte values), loopback; TLS 1.3. r-b = redis-benchmark 7.0 (its own hiredis")
print("and TLS); hiredis = hiredis 1.2.0 + hiredis_ssl, redisAppendCommandArgv x P then redisGetReply")
print("x P (scripts/bench/hiredis-bench.c; its --format, the printf-style call, costs ~2,400 more per GET).")
print()
hdr = "%-6s %4s %7s | %10s %10s %10s | %9s %13s"
print(hdr % ("", "P", "n", "redtls", "r-b", "hiredis", "redtls/r-b", "redtls/hiredis"))
results = []
for tr in ("tls", "plain"):
    for p in (1, 16, 128):
        r, b, h = (per_get[tr, p, c] for c in CLIENTS)
        print("%-6s %4d %7d | %10s %10s %10s | %9.2f %13.2f"
              % ("TLS" if tr == "tls" else "plain", p, nreq[tr, p], format(round(r), ","),
                 format(round(b), ","), format(round(h), ","), r / b, r / h))
        results.append((tr, p, nreq[tr, p], r, b, h, r / b, r / h))
    print()
with open(out_csv, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["transport", "pipeline", "n", "redtls_ir_per_get", "redis_benchmark_ir_per_get",
                "hiredis_ir_per_get", "ratio_redtls_vs_rb", "ratio_redtls_vs_hiredis"])
    for tr, p, n, r, b, h, rb, rh in results:
        w.writerow([tr, p, n, round(r), round(b), round(h), "%.3f" % rb, "%.3f" % rh])

# Per function: the same difference of the two runs (cgdiff.py's reader).
sys.path.insert(0, os.path.join(os.environ["BENCH_ROOT"], "scripts", "bench"))
from cgdiff import profile
def label(k):
    ob, fn = k
    if re.match(r"0x[0-9a-f]+$", fn):
        fn = "%#x" % int(fn, 16)
    return "%s  (%s)" % (fn, os.path.basename(ob or "?"))
for p in (1, 128):
    n = nreq["tls", p]
    files = [os.path.join(keep, "redtls-tls-P%d-%d.callgrind" % (p, k)) for k in (n, 2 * n)]
    (self1, inc1), (self2, inc2) = profile(files[0]), profile(files[1])
    keys = set(inc1) | set(inc2)
    incl = {k: (inc2.get(k, 0) - inc1.get(k, 0)) / n for k in keys}
    own = {k: (self2.get(k, 0) - self1.get(k, 0)) / n for k in keys}
    # The start-up frames above main cost what main costs; leave them out.
    mains = [k for k in keys if k[1] == "main" and os.path.basename(k[0] or "") == "redtls-bench"]
    top = max((incl[k] for k in mains), default=float("inf"))
    shown = [k for k in keys if k in mains or incl[k] < top - 0.5]
    print("redtls, TLS, P=%d: top 15 functions by inclusive instructions per GET" % p)
    print("(per function (Ir(%d GETs) - Ir(%d GETs)) / %d; self = its own instructions; the" % (2 * n, n, n))
    print("frames above main left out; addresses: libssl/libcrypto have no symbols here)")
    print("%10s %10s  %s" % ("incl/GET", "self/GET", "function  (object)"))
    for k in sorted(shown, key=lambda k: (-incl[k], label(k)))[:15]:
        print("%10s %10s  %s" % (format(round(incl[k]), ","), format(round(own[k]), ","), label(k)))
    print()
print("Profiles (callgrind_annotate --inclusive=yes FILE reads them): %s" % keep)

# Data for the picture: instructions per GET by depth, and ops/s from the
# timed section of this run when there is one.
with open(os.path.join(plot_dir, "ir.dat"), "w") as f:
    f.write("# P redtls_tls rb_tls hiredis_tls redtls_plain rb_plain hiredis_plain\n")
    for p in (1, 16, 128):
        f.write("%d %s\n" % (p, " ".join("%.1f" % per_get[tr, p, c] for tr in ("tls", "plain") for c in CLIENTS)))
if ops_csv:
    vals = {(r["case"], r["metric"]): float(r["value"]) for r in csv.DictReader(open(ops_csv))
            if r["section"] == "throughput"}
    with open(os.path.join(plot_dir, "ops.dat"), "w") as f:
        f.write("# P redtls_tls rb_tls redtls_plain rb_plain (ops/s, medians)\n")
        for p in (1, 16, 128):
            f.write("%d %s\n" % (p, " ".join("%.0f" % vals["%s-P%d" % (tr, p), m]
                                           for tr in ("tls", "plain")
                                           for m in ("redtls_ops_per_sec", "redis_benchmark_ops_per_sec"))))
print("Written: %s (instructions per GET), %s (every callgrind total)" % (out_csv, raw))
PY

  ir_plot "$WORK/ir/ir.dat" "$WORK/ir/ops.dat" "$BUILD/ir.svg"
  say "ir: section took $((SECONDS - start)) s"
}

# The asynchronous API against its peers (see the top of this file): client
# instructions per GET under callgrind, then ops/s and process CPU per GET
# in alternating rounds, TLS only, one connection, at ASYNC_DEPTHS in flight.
ASYNC_DEPTHS=(1 16 128 1024)
section_async() {
  local start=$SECONDS
  build_hiredis_peers async async
  fill_ir_keyspace async

  # redtls-bench --async on its built-in loop is the client judged;
  # "redtls-libevent" (the same on the libevent adapter, hiredis's loop) is
  # shown beside it when redtls-bench was built with the adapter.
  local clients=(redtls hiredis-async redis-benchmark)
  if "$BENCH" --help | grep -q 'libevent (redtls/async_libevent.h)'; then
    clients=(redtls redtls-libevent hiredis-async redis-benchmark)
  fi
  async_cmd() { # client depth requests: sets CMD
    case $1 in
      redtls | redtls-libevent)
        CMD=("$BENCH" -u "rediss://localhost:$TLS_PORT" --resolve localhost:127.0.0.1 --cacert "$CA" --async
             --inflight "$2" -t get -n "$3" -r "$IR_KEYSPACE" --csv)
        if [[ $1 == redtls-libevent ]]; then CMD+=(--loop libevent); fi ;;
      hiredis-async)
        CMD=("$HABENCH" -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$CA" --sni localhost --inflight "$2" -n "$3"
             -r "$IR_KEYSPACE" --csv) ;;
      redis-benchmark)
        # --csv: no progress timer (see section_ir).
        CMD=(redis-benchmark -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$CA" --sni localhost -a "$TOKEN" -c 1
             -P "$2" -t get -n "$3" -r "$IR_KEYSPACE" -q --csv) ;;
    esac
  }
  # Checks a finished run's output; prints its ops/s.
  async_check() { # client stdout stderr label
    local errs ops nils
    case $1 in
      redtls | redtls-libevent)
        IFS=, read -r _ _ _ _ _ _ _ _ ops _ _ _ _ errs < <(tail -n 1 "$2")
        [[ "$errs" == 0 ]] || { echo "bench: $1 had error replies ($4): $(tail -n 1 "$2")" >&2; exit 1; } ;;
      hiredis-async)
        IFS=, read -r _ _ _ _ _ _ _ _ ops _ _ _ _ errs < <(tail -n 1 "$2")
        nils=$(sed -n 's/.* found a value, \([0-9]*\) nil$/\1/p' "$3")
        [[ "$errs" == 0 && "$nils" == 0 ]] ||
          { echo "bench: hiredis-async-bench: $errs bad replies, ${nils:-?} nil ($4)" >&2; exit 1; } ;;
      redis-benchmark)
        if ! grep -q '^"GET",' "$2" || grep -v '^==' "$3" | grep -qi 'error'; then
          grep -v '^==' "$3" | tail -n 5 >&2
          echo "bench: redis-benchmark did not finish its GETs cleanly ($4)" >&2
          exit 1
        fi
        ops=$(grep '^"GET",' "$2" | cut -d, -f2 | tr -d '"') ;;
    esac
    echo "$ops"
  }

  local raw_ir="$BUILD/async-ir-raw.csv" raw_t="$BUILD/async-raw.csv" keep="$BUILD/async-callgrind"
  rm -rf "$keep"
  mkdir -p "$keep" "$WORK/async"
  echo "depth,client,requests,ir_total" >"$raw_ir"
  local d n req client out total
  for d in "${ASYNC_DEPTHS[@]}"; do
    if [[ $d == 1 ]]; then n=$IR_N_P1; else n=$ASYNC_N; fi
    for client in "${clients[@]}"; do
      say "async: $client, $d in flight: $n and $((2 * n)) GETs under callgrind"
      for req in "$n" $((2 * n)); do
        async_cmd "$client" "$d" "$req"
        out="$WORK/async/$client-$d-$req"
        if ! nice valgrind --tool=callgrind --callgrind-out-file="$out.cg" "${CMD[@]}" >"$out.stdout" 2>"$out.stderr"; then
          tail -n 20 "$out.stderr" >&2
          echo "bench: $client failed under callgrind ($d in flight, $req GETs)" >&2
          exit 1
        fi
        async_check "$client" "$out.stdout" "$out.stderr" "callgrind, $d in flight" >/dev/null
        total=$(sed -n 's/^totals: *//p' "$out.cg")
        [[ "$total" =~ ^[0-9]+$ ]] || { echo "bench: no 'totals:' line in $out.cg" >&2; exit 1; }
        echo "$d,$client,$req,$total" >>"$raw_ir"
        if [[ $client == redtls ]]; then mv "$out.cg" "$keep/redtls-$d-$req.callgrind"; fi
        rm -f "$out.cg" "$out.stdout" "$out.stderr"
      done
    done
  done

  # Timed: ASYNC_ROUNDS rounds; in each, every depth, the clients in an
  # order that turns with the round, so no client always runs first.
  echo "round,depth,client,requests,ops_per_sec,proc_cpu_us_per_op" >"$raw_t"
  local round i k nc=${#clients[@]} ops u s
  for round in $(seq "$ASYNC_ROUNDS"); do
    say "async: timed round $round/$ASYNC_ROUNDS"
    for i in "${!ASYNC_DEPTHS[@]}"; do
      d=${ASYNC_DEPTHS[$i]}
      case $d in 1) n=$ASYNC_TIMED_N ;; 16) n=$((ASYNC_TIMED_N * 8)) ;; 128) n=$((ASYNC_TIMED_N * 20)) ;;
                  *) n=$((ASYNC_TIMED_N * 40)) ;; esac
      for ((k = 0; k < nc; k++)); do
        client=${clients[$(((k + round + i) % nc))]}
        async_cmd "$client" "$d" "$n"
        out="$WORK/async/timed"
        if ! timed "$WORK/cpu" "${CMD[@]}" >"$out.stdout" 2>"$out.stderr"; then
          tail -n 5 "$out.stderr" >&2
          echo "bench: $client failed ($d in flight, timed)" >&2
          exit 1
        fi
        ops=$(async_check "$client" "$out.stdout" "$out.stderr" "timed, $d in flight")
        read -r u s _ <"$WORK/cpu"
        echo "$round,$d,$client,$n,$ops,$(python3 -c "print('%.4f' % (($u + $s) * 1e6 / $n))")" >>"$raw_t"
      done
    done
  done

  # Syscalls per GET (kernel work, which callgrind does not count), at 1
  # and 128 in flight: two run lengths, the difference over the extra GETs.
  local sys_raw="$WORK/async/syscalls.txt" f1 f2
  : >"$sys_raw"
  if command -v strace >/dev/null; then
    for d in 1 128; do
      if [[ $d == 1 ]]; then n=5000; else n=65536; fi
      for client in "${clients[@]}"; do
        say "async: strace, $client, $d in flight"
        f1="$WORK/async/strace-$client-$d-1" f2="$WORK/async/strace-$client-$d-2"
        async_cmd "$client" "$d" "$n"
        strace -c -f -o "$f1" "${CMD[@]}" >/dev/null 2>&1
        async_cmd "$client" "$d" $((2 * n))
        strace -c -f -o "$f2" "${CMD[@]}" >/dev/null 2>&1
        echo "$d $client $f1 $f2 $n" >>"$sys_raw"
      done
    done
  else
    say "async: strace not installed: no syscall counts"
  fi

  python3 - "$raw_ir" "$raw_t" "$BUILD/async-results.csv" "$ASYNC_ROUNDS" "$IR_KEYSPACE" "${clients[*]}" "$sys_raw" <<'PY'
import csv, re, statistics, sys

raw_ir, raw_t, out_csv, rounds, keyspace, clients, sys_raw = sys.argv[1:8]
clients = clients.split()
ir_rows = list(csv.DictReader(open(raw_ir)))
t_rows = list(csv.DictReader(open(raw_t)))
depths = sorted({int(r["depth"]) for r in ir_rows})
ir, nreq = {}, {}
for d in depths:
    for c in clients:
        (n1, a), (n2, b) = sorted((int(r["requests"]), int(r["ir_total"])) for r in ir_rows
                                  if int(r["depth"]) == d and r["client"] == c)
        ir[d, c] = (b - a) / (n2 - n1)
        nreq[d] = n1
med = lambda d, c, f: statistics.median(float(r[f]) for r in t_rows if int(r["depth"]) == d and r["client"] == c)
short = {"redtls": "redtls", "redtls-libevent": "rt+lev", "hiredis-async": "hiredis", "redis-benchmark": "r-b"}

print()
print("Asynchronous clients, GET, 1 connection, TLS 1.3, loopback, every key of a %s-key keyspace set." % keyspace)
print("redtls = redtls-bench --async (built-in loop, redtls_async_run); rt+lev = the same on the libevent")
print("adapter; hiredis = hiredis 1.2.0 async + hiredis_ssl + adapters/libevent.h (scripts/bench/")
print("hiredis-async-bench.c); both keep N commands in flight (the next one issued from each reply's")
print("callback). r-b = redis-benchmark 7.0 -P N (batches of N, then waits for all N).")
print()
print("Client instructions per GET (callgrind, (Ir(2n) - Ir(n)) / n):")
hdr = "%6s %6s | " + " ".join(["%9s"] * len(clients)) + " | %12s %11s"
print(hdr % (("depth", "n") + tuple(short[c] for c in clients) + ("redtls/hired", "redtls/r-b")))
results = []
for d in depths:
    r, h, b = ir[d, "redtls"], ir[d, "hiredis-async"], ir[d, "redis-benchmark"]
    print(hdr.replace("%9s", "%9s") % ((d, nreq[d]) + tuple(format(round(ir[d, c]), ",") for c in clients)
                                       + ("%.2f" % (r / h), "%.2f" % (r / b))))
    for c in clients:
        results.append(("ir_per_get", d, c, ir[d, c]))
print()
print("Throughput and process CPU per GET (medians of %s alternating rounds; CPU = the client process's" % rounds)
print("user+sys from getrusage, start-up and handshake included, spread over the run):")
hdr2 = "%6s | " + " ".join(["%10s"] * len(clients)) + " | " + " ".join(["%8s"] * len(clients))
print(hdr2 % (("depth",) + tuple(short[c] + " op/s" for c in clients) + tuple(short[c] for c in clients)))
print(hdr2 % (("",) + ("",) * len(clients) + ("CPU us",) * len(clients)))
for d in depths:
    ops = [med(d, c, "ops_per_sec") for c in clients]
    cpu = [med(d, c, "proc_cpu_us_per_op") for c in clients]
    print(hdr2 % ((d,) + tuple("%.0f" % v for v in ops) + tuple("%.3f" % v for v in cpu)))
    for c, o, u in zip(clients, ops, cpu):
        results.append(("ops_per_sec", d, c, o))
        results.append(("proc_cpu_us_per_op", d, c, u))
print("The spread of those rounds (ops/s, lowest-highest), for judging the medians above:")
for d in depths:
    print("%6s | %s" % (d, "  ".join("%s %s" % (short[c], "%.0f-%.0f" % (
        min(float(r["ops_per_sec"]) for r in t_rows if int(r["depth"]) == d and r["client"] == c),
        max(float(r["ops_per_sec"]) for r in t_rows if int(r["depth"]) == d and r["client"] == c)))
        for c in clients)))
def strace_calls(path):
    calls = {}
    for line in open(path):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls
sys_lines = [l.split() for l in open(sys_raw) if l.strip()]
if sys_lines:
    print()
    print("Syscalls per GET (strace -c, two run lengths, the difference over the extra GETs):")
    for d, c, f1, f2, n in sys_lines:
        a, b = strace_calls(f1), strace_calls(f2)
        diff = {k: (b.get(k, 0) - a.get(k, 0)) / int(n) for k in set(a) | set(b)}
        diff = {k: v for k, v in diff.items() if v > 0.0005}
        total = sum(diff.values())
        print("  %4s in flight  %-8s total %6.3f  (%s)" % (d, short[c], total,
              ", ".join("%s %.3f" % kv for kv in sorted(diff.items()))))
        results.append(("syscalls_per_get", int(d), c, total))
print()
print("Targets (redtls = the built-in loop):")
for d in depths:
    r, h, b = ir[d, "redtls"], ir[d, "hiredis-async"], ir[d, "redis-benchmark"]
    ro, ho, bo = (med(d, c, "ops_per_sec") for c in ("redtls", "hiredis-async", "redis-benchmark"))
    t1 = "met" if r <= 0.8 * h else "MISSED"
    t2 = ("met" if r <= b else "MISSED") if d >= 16 else "n/a"
    t3 = "met" if ro >= ho and ro >= bo else "MISSED"
    print("  %4d in flight: instr <= 0.8 x hiredis: %-6s (%.2f)  instr <= r-b: %-6s (%.2f)  ops/s >= both: %-6s"
          " (%.2f x hiredis, %.2f x r-b)" % (d, t1, r / h, t2, r / b, t3, ro / ho, ro / bo))
with open(out_csv, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["metric", "depth", "client", "value"])
    for m, d, c, v in results:
        w.writerow([m, d, c, "%.4f" % v])
print("Written: %s; every run: %s, %s" % (out_csv, raw_ir, raw_t))
PY
  for d in 1 128; do
    if [[ $d == 1 ]]; then n=$IR_N_P1; else n=$ASYNC_N; fi
    echo
    python3 "$ROOT/scripts/bench/cgdiff.py" "$keep/redtls-$d-$n.callgrind" "$keep/redtls-$d-$((2 * n)).callgrind" "$n" \
      --top 20 --title "redtls --async (built-in loop), $d in flight: top 20 functions by inclusive instructions per GET
(the frames above main left out; addresses: libssl/libcrypto have no symbols here)"
    echo
    python3 "$ROOT/scripts/bench/cgdiff.py" "$keep/redtls-$d-$n.callgrind" "$keep/redtls-$d-$((2 * n)).callgrind" "$n" \
      --top 12 --sort self --title "redtls --async, $d in flight: top 12 by self instructions per GET"
  done
  echo
  echo "Profiles (callgrind_annotate --inclusive=yes FILE reads them): $keep"
  say "async: section took $((SECONDS - start)) s"
}

# Many asynchronous handles at once, on redtls-bench's epoll loop: the
# longest single call into redtls while STALL_N TLS handshakes start at
# once (and 4 connections keep 16 GETs each in flight), resident memory of
# IDLE_N idle handles (the blocking API's figure beside it), and ACONNECTS
# connects started at once, full and resumed.
section_async_load() {
  local start=$SECONDS u="rediss://localhost:$TLS_PORT" before after
  listen_overflows() {
    awk '/^TcpExt:/ { if (!h) { for (i = 1; i <= NF; i++) name[i] = $i; h = 1 }
                      else for (i = 1; i <= NF; i++) if (name[i] == "ListenOverflows") print $i }' /proc/net/netstat
  }
  say "async-load: loop stall, $STALL_WAVES waves of $STALL_N handshakes"
  echo
  "$BENCH" -u "$u" --resolve localhost:127.0.0.1 --cacert "$CA" --async --stall "$STALL_N" --waves "$STALL_WAVES" \
    -c 4 --inflight 16 -r "$IR_KEYSPACE"
  say "async-load: $IDLE_N idle connections"
  echo
  "$BENCH" -u "$u" --resolve localhost:127.0.0.1 --cacert "$CA" --async --idle "$IDLE_N"
  "$BENCH" -u "$u" --resolve localhost:127.0.0.1 --cacert "$CA" --idle "$IDLE_N"
  say "async-load: $ACONNECTS connects at once"
  echo
  before=$(listen_overflows)
  "$BENCH" -u "$u" --resolve localhost:127.0.0.1 --cacert "$CA" --async --connect "$ACONNECTS"
  after=$(listen_overflows)
  echo "listen queue overflows during the connects (TcpExt ListenOverflows, this network namespace):" \
       "$((after - before)) (tcp-backlog $((ACONNECTS + 64)), net.core.somaxconn" \
       "$(cat /proc/sys/net/core/somaxconn 2>/dev/null || echo '?'); each overflow costs a connect a SYN retransmit, 1 s)"
  say "async-load: section took $((SECONDS - start)) s"
}

# ir_plot IR_DAT OPS_DAT SVG: instructions per GET by depth, and ops/s by
# depth beside it when OPS_DAT exists, as one SVG.
ir_plot() {
  local ir_dat=$1 ops_dat=$2 svg=$3 gp="$WORK/ir/plot.gp" layout size
  if ! command -v gnuplot >/dev/null; then
    say "ir: gnuplot is not installed, so no picture (apt-get install gnuplot-nox)"
    return 0
  fi
  if [[ -f "$ops_dat" ]]; then layout="1,2"; size="1280,560"; else layout="1,1"; size="680,560"; fi
  cat >"$gp" <<GP
set terminal svg size $size dynamic noenhanced font "sans,12" background rgb "white"
set output "$svg"
set multiplot layout $layout title "GET, 1 connection, loopback: redtls vs redis-benchmark 7.0 vs hiredis 1.2.0"
set logscale x 2
set xrange [0.7:180]
set xtics ("1" 1, "16" 16, "128" 128)
set logscale y
set autoscale yfix
set offsets 0, 0, graph 0.08, graph 0.08
set grid
set key outside below center horizontal maxrows 3 height 1
set xlabel offset 0, 0.5
set xlabel "pipeline depth"
set ylabel "client instructions per GET"
set ytics ("500" 500, "1,000" 1000, "2,000" 2000, "5,000" 5000, "10,000" 10000, "20,000" 20000, "50,000" 50000)
set title "Instructions per GET (callgrind, client only)\nsolid: TLS 1.3, dashed: plain TCP"
plot "$ir_dat" u 1:2 w lp lw 2 pt 7 lc rgb "#d95f02" t "redtls (TLS)", \\
     "$ir_dat" u 1:3 w lp lw 2 pt 5 lc rgb "#1b9e77" t "redis-benchmark (TLS)", \\
     "$ir_dat" u 1:4 w lp lw 2 pt 9 lc rgb "#7570b3" t "hiredis (TLS)", \\
     "$ir_dat" u 1:5 w lp lw 1 dt 2 pt 6 lc rgb "#d95f02" t "redtls (plain)", \\
     "$ir_dat" u 1:6 w lp lw 1 dt 2 pt 4 lc rgb "#1b9e77" t "redis-benchmark (plain)", \\
     "$ir_dat" u 1:7 w lp lw 1 dt 2 pt 8 lc rgb "#7570b3" t "hiredis (plain)"
GP
  if [[ -f "$ops_dat" ]]; then
    cat >>"$gp" <<GP
set ylabel "GET/s (median of $ROUNDS rounds)"
set ytics ("10k" 1e4, "20k" 2e4, "50k" 5e4, "100k" 1e5, "200k" 2e5, "500k" 5e5, "1M" 1e6, "2M" 2e6, "5M" 5e6)
set title "Throughput (timed section; hiredis not in it)\nsolid: TLS 1.3, dashed: plain TCP"
plot "$ops_dat" u 1:2 w lp lw 2 pt 7 lc rgb "#d95f02" t "redtls (TLS)", \\
     "$ops_dat" u 1:3 w lp lw 2 pt 5 lc rgb "#1b9e77" t "redis-benchmark (TLS)", \\
     "$ops_dat" u 1:4 w lp lw 1 dt 2 pt 6 lc rgb "#d95f02" t "redtls (plain)", \\
     "$ops_dat" u 1:5 w lp lw 1 dt 2 pt 4 lc rgb "#1b9e77" t "redis-benchmark (plain)"
GP
  fi
  echo "unset multiplot" >>"$gp"
  if gnuplot "$gp" 2>"$WORK/ir/plot.err"; then
    say "ir: picture in $svg"
  else
    cat "$WORK/ir/plot.err" >&2
    say "ir: gnuplot failed; no picture"
  fi
}

# The cluster section, in a file of its own.
# shellcheck source=scripts/bench/cluster.sh
. "$ROOT/scripts/bench/cluster.sh"
# The migrate section, in a file of its own.
# shellcheck source=scripts/bench/migrate.sh
. "$ROOT/scripts/bench/migrate.sh"
# The pubsub section, in a file of its own.
# shellcheck source=scripts/bench/pubsub.sh
. "$ROOT/scripts/bench/pubsub.sh"

if want timed; then
  section_timed
fi
if want ir; then
  section_ir
fi
if want async; then
  section_async
fi
if want async-load; then
  section_async_load
fi
if want cluster; then
  section_cluster
fi
if want migrate; then
  section_migrate
fi
if want pubsub; then
  section_pubsub
fi
