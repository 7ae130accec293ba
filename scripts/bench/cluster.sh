# shellcheck shell=bash
# Section "cluster" of scripts/bench.sh (sourced by it; see the top of
# bench.sh): the cluster clients against a throwaway 3-master TLS cluster,
# next to the same API against the standalone TLS server bench.sh started,
# and redis-benchmark against both. Uses bench.sh's BENCH, BUILD, WORK,
# CERTS, CA, TOKEN, TLS_PORT, ROUNDS, IR_N_P1, IR_N_PIPELINED, IR_KEYSPACE,
# CLUSTER_TIMED_N, say, timed and fill_ir_keyspace.

# The cases, in the order of the tables: the asynchronous API (--inflight N),
# the blocking API (-P N), each standalone, in one slot (one hash tag: one
# master) and over all slots (a batch spread over the three masters), and
# redis-benchmark -P N standalone and with --cluster.
CLUSTER_CASES=(standalone-async cluster-async-1slot cluster-async
               standalone-blocking cluster-blocking-1slot cluster-blocking
               rb-standalone rb-cluster)
CLUSTER_DEPTHS=(1 16 128)

# Sets CMD to the command of one case at one depth for a number of
# commands (GET unless a test is given).
cluster_cmd() { # case depth requests [test]
  local t=${4:-get}
  local s=(-u "rediss://localhost:$TLS_PORT" --resolve localhost:127.0.0.1 --cacert "$CA")
  local c=(-u "rediss://node1.cluster.test:${CLUSTER_PORTS[0]}" --cluster "${CLUSTER_RESOLVE[@]}" --cacert "$CA")
  local g=(-t "$t" -n "$3" -r "$IR_KEYSPACE" --csv)
  case $1 in
    standalone-async) CMD=("$BENCH" "${s[@]}" --async --inflight "$2" "${g[@]}") ;;
    cluster-async-1slot) CMD=("$BENCH" "${c[@]}" --async --inflight "$2" --hash-tag t "${g[@]}") ;;
    cluster-async) CMD=("$BENCH" "${c[@]}" --async --inflight "$2" "${g[@]}") ;;
    standalone-blocking) CMD=("$BENCH" "${s[@]}" -c 1 -P "$2" "${g[@]}") ;;
    cluster-blocking-1slot) CMD=("$BENCH" "${c[@]}" -c 1 -P "$2" --hash-tag t "${g[@]}") ;;
    cluster-blocking) CMD=("$BENCH" "${c[@]}" -c 1 -P "$2" "${g[@]}") ;;
    # --csv: no progress timer (see section_ir).
    rb-standalone)
      CMD=(redis-benchmark -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$CA" --sni localhost -a "$TOKEN" -c 1
           -P "$2" -t "$t" -n "$3" -r "$IR_KEYSPACE" -q --csv) ;;
    # One connection per master (see the note printed with the tables), all
    # on one thread: with a thread per master (its default) a thread whose
    # share is issued spins on a writable socket until the others finish,
    # an instruction count that depends on scheduling.
    rb-cluster)
      CMD=(redis-benchmark --cluster -h 127.0.0.1 -p "${CLUSTER_PORTS[0]}" --tls --cacert "$CA"
           --sni node1.cluster.test -a "$TOKEN" --threads 1 -c 3 -P "$2" -t "$t" -n "$3" -r "$IR_KEYSPACE"
           -q --csv) ;;
  esac
}

# Checks a finished run's output; prints "ops/s loop-CPU-us-per-op" (the
# second empty for redis-benchmark).
cluster_check() { # case stdout stderr label
  local ops loopcpu errs
  case $1 in
    rb-*)
      if ! grep -q '^"GET",' "$2" || grep -v '^==' "$3" | grep -qi 'error'; then
        grep -v '^==' "$3" | tail -n 5 >&2
        echo "bench: redis-benchmark did not finish its GETs cleanly ($1, $4)" >&2
        exit 1
      fi
      ops=$(grep '^"GET",' "$2" | cut -d, -f2 | tr -d '"') ;;
    *)
      # kind,test,transport,connections,pipeline,requests,value_size,seconds,ops_per_sec,p50_us,p99_us,p999_us,cpu_us_per_op,errors
      IFS=, read -r _ _ _ _ _ _ _ _ ops _ _ _ loopcpu errs < <(tail -n 1 "$2")
      [[ "$errs" == 0 ]] || { echo "bench: redtls-bench had error replies ($1, $4): $(tail -n 1 "$2")" >&2; exit 1; } ;;
  esac
  echo "$ops ${loopcpu:-}"
}

# Keys of a pattern on cluster node I (SCAN through redis-cli).
cluster_count_keys() { # node pattern
  throwaway_cluster_cli "$1" --scan --pattern "$2" | wc -l
}

section_cluster() {
  local start=$SECONDS
  say "cluster: starting a throwaway 3-master TLS cluster"
  if ! throwaway_cluster_start "$WORK/cluster" "$CERTS" "$TOKEN"; then
    echo "bench: could not start the throwaway cluster" >&2
    exit 1
  fi
  CLUSTER_RESOLVE=()
  local i
  for i in 1 2 3; do CLUSTER_RESOLVE+=(--resolve "node$i.cluster.test:127.0.0.1"); done

  # Every key each client asks for holds a 3-byte value: GETs that miss
  # would make cheaper replies. 20 draws per key leave none unset (checked).
  fill_ir_keyspace cluster
  say "cluster: setting every key of the $IR_KEYSPACE-key keyspace in the cluster (all slots, one slot, redis-benchmark's)"
  local k=$IR_KEYSPACE all=0 one=0 n
  cluster_cmd cluster-blocking 128 $((k * 20)) set && "${CMD[@]}" >/dev/null
  cluster_cmd cluster-blocking-1slot 128 $((k * 20)) set && "${CMD[@]}" >/dev/null
  cluster_cmd rb-cluster 128 $((k * 60)) set && "${CMD[@]}" >/dev/null 2>&1
  for i in 1 2 3; do
    all=$((all + $(cluster_count_keys "$i" 'key:[0-9]*')))
    one=$((one + $(cluster_count_keys "$i" '{t}key:*')))
    n=$(cluster_count_keys "$i" 'key:{*')
    [[ $n == "$k" ]] || { echo "bench: node$i holds $n of redis-benchmark's $k keys; GETs would miss" >&2; exit 1; }
  done
  [[ $all == "$k" && $one == "$k" ]] ||
    { echo "bench: the cluster holds $all and $one (one slot) of the $k keys; GETs would miss" >&2; exit 1; }

  local raw_ir="$BUILD/cluster-ir-raw.csv" raw_t="$BUILD/cluster-raw.csv" keep="$BUILD/cluster-callgrind"
  rm -rf "$keep"
  mkdir -p "$keep" "$WORK/cl"
  echo "depth,case,requests,ir_total" >"$raw_ir"
  local d cs req out total
  for d in "${CLUSTER_DEPTHS[@]}"; do
    if [[ $d == 1 ]]; then n=$IR_N_P1; else n=$IR_N_PIPELINED; fi
    for cs in "${CLUSTER_CASES[@]}"; do
      say "cluster: $cs, depth $d: $n and $((2 * n)) GETs under callgrind"
      for req in "$n" $((2 * n)); do
        cluster_cmd "$cs" "$d" "$req"
        out="$WORK/cl/$cs-$d-$req"
        if ! nice valgrind --tool=callgrind --callgrind-out-file="$out.cg" "${CMD[@]}" >"$out.stdout" 2>"$out.stderr"; then
          tail -n 20 "$out.stderr" >&2
          echo "bench: $cs failed under callgrind (depth $d, $req GETs)" >&2
          exit 1
        fi
        cluster_check "$cs" "$out.stdout" "$out.stderr" "callgrind, depth $d" >/dev/null
        total=$(sed -n 's/^totals: *//p' "$out.cg")
        [[ "$total" =~ ^[0-9]+$ ]] || { echo "bench: no 'totals:' line in $out.cg" >&2; exit 1; }
        echo "$d,$cs,$req,$total" >>"$raw_ir"
        if [[ $cs != rb-* ]]; then mv "$out.cg" "$keep/$cs-$d-$req.callgrind"; fi
        rm -f "$out.cg" "$out.stdout" "$out.stderr"
      done
    done
  done

  # Timed: ROUNDS rounds; in each, every depth, the cases in an order that
  # turns with the round and the depth, so no case always runs first.
  echo "round,depth,case,requests,ops_per_sec,proc_cpu_us_per_op,loop_cpu_us_per_op" >"$raw_t"
  local round j nc=${#CLUSTER_CASES[@]} res ops loopcpu u s
  for round in $(seq "$ROUNDS"); do
    say "cluster: timed round $round/$ROUNDS"
    for i in "${!CLUSTER_DEPTHS[@]}"; do
      d=${CLUSTER_DEPTHS[$i]}
      case $d in 1) n=$CLUSTER_TIMED_N ;; 16) n=$((CLUSTER_TIMED_N * 8)) ;; *) n=$((CLUSTER_TIMED_N * 20)) ;; esac
      for ((j = 0; j < nc; j++)); do
        cs=${CLUSTER_CASES[$(((j + round + i) % nc))]}
        cluster_cmd "$cs" "$d" "$n"
        out="$WORK/cl/timed"
        if ! timed "$WORK/cpu" "${CMD[@]}" >"$out.stdout" 2>"$out.stderr"; then
          tail -n 5 "$out.stderr" >&2
          echo "bench: $cs failed (depth $d, timed)" >&2
          exit 1
        fi
        # An assignment, so that a failed check ends the script (set -e).
        res=$(cluster_check "$cs" "$out.stdout" "$out.stderr" "timed, depth $d")
        read -r ops loopcpu <<<"$res"
        read -r u s _ <"$WORK/cpu"
        echo "$round,$d,$cs,$n,$ops,$(python3 -c "print('%.4f' % (($u + $s) * 1e6 / $n))"),${loopcpu:-}" >>"$raw_t"
      done
    done
  done

  # System calls per batch of 128 of the blocking client (kernel work,
  # which callgrind does not count): two run lengths, the difference over
  # the extra batches. -C: the calls themselves too, to tell the polls that
  # cannot wait (a zero timeout) from the others. Not the asynchronous
  # client: its reads and writes per GET follow how the replies arrive
  # under strace's slowdown (3 to 9 writes per 128 GETs from run to run).
  local sys_raw="$WORK/cl/syscalls.txt" f1 f2
  : >"$sys_raw"
  if command -v strace >/dev/null; then
    n=25600
    for cs in cluster-blocking cluster-blocking-1slot standalone-blocking; do
      say "cluster: strace, $cs, depth 128"
      f1="$WORK/cl/strace-$cs-1" f2="$WORK/cl/strace-$cs-2"
      cluster_cmd "$cs" 128 "$n"
      strace -C -f -o "$f1" "${CMD[@]}" >/dev/null 2>&1
      cluster_cmd "$cs" 128 $((2 * n))
      strace -C -f -o "$f2" "${CMD[@]}" >/dev/null 2>&1
      echo "$cs $f1 $f2 $((n / 128))" >>"$sys_raw"
    done
  else
    say "cluster: strace not installed: no syscall counts"
  fi

  python3 - "$raw_ir" "$raw_t" "$sys_raw" "$BUILD/cluster-results.csv" "$ROUNDS" "$IR_KEYSPACE" \
    "${CLUSTER_CASES[*]}" "$keep" <<'PY'
import csv, os, re, statistics, sys

raw_ir, raw_t, sys_raw, out_csv, rounds, keyspace, cases, keep = sys.argv[1:9]
cases = cases.split()
ir_rows = list(csv.DictReader(open(raw_ir)))
t_rows = list(csv.DictReader(open(raw_t)))
depths = sorted({int(r["depth"]) for r in ir_rows})
ir, nreq = {}, {}
for d in depths:
    for c in cases:
        (n1, a), (n2, b) = sorted((int(r["requests"]), int(r["ir_total"])) for r in ir_rows
                                  if int(r["depth"]) == d and r["case"] == c)
        ir[d, c] = (b - a) / (n2 - n1)
        nreq[d] = n1
label = {"standalone-async": "async standalone", "cluster-async-1slot": "async cluster, 1 slot",
         "cluster-async": "async cluster, all slots", "standalone-blocking": "blocking standalone",
         "cluster-blocking-1slot": "blocking cluster, 1 slot", "cluster-blocking": "blocking cluster, all slots",
         "rb-standalone": "r-b standalone", "rb-cluster": "r-b --cluster (-c 3)"}
# The figure each case is compared with: the same client standalone.
base = {"cluster-async-1slot": "standalone-async", "cluster-async": "standalone-async",
        "cluster-blocking-1slot": "standalone-blocking", "cluster-blocking": "standalone-blocking",
        "rb-cluster": "rb-standalone"}
results = []

print()
print("Cluster clients, GET, TLS 1.3, loopback: a throwaway 3-master cluster (nodes verified by host name,")
print("reached through --resolve) and the standalone server; every key of a %s-key keyspace set (3-byte" % keyspace)
print("values). async = redtls-bench --async [--cluster] --inflight N (built-in loop); blocking =")
print("redtls-bench [--cluster] -P N; 1 slot = keys under one hash tag (one master); all slots = keys")
print("over all slots (a batch spread over the three masters). r-b = redis-benchmark 7.0 -P N, standalone")
print("(-c 1) and --cluster --threads 1 -c 3: it reads CLUSTER NODES and opens one connection per master,")
print("with every key of a connection under one hash tag of that master's first slot (3 slots, 3 pipelines")
print("of N, so 3N in flight, never one batch across masters); it verifies each node's certificate chain")
print("but not its host name (one --sni for all nodes).")
print()
print("Client instructions per GET (callgrind, (Ir(2n) - Ir(n)) / n; n = %s):"
      % ", ".join("%d at depth %d" % (nreq[d], d) for d in depths))
hdr = "%-28s " + " ".join(["%9s"] * len(depths)) + " | " + " ".join(["%6s"] * len(depths))
print(hdr % (("",) + tuple("N=%d" % d for d in depths) + tuple("N=%d" % d for d in depths)))
for c in cases:
    ratios = tuple("%.2f" % (ir[d, c] / ir[d, base[c]]) if c in base else "" for d in depths)
    print(hdr % ((label[c],) + tuple(format(round(ir[d, c]), ",") for d in depths) + ratios))
    for d in depths:
        results.append(("ir_per_get", d, c, ir[d, c]))
        if c in base:
            results.append(("ir_ratio_vs_standalone", d, c, ir[d, c] / ir[d, base[c]]))
print("(right: the figure / the same client's standalone figure)")

# The issue's targets: one slot / standalone <= 1.15 at every depth; all
# slots / standalone <= 2.0 at 16 and <= 1.5 at 128, for both APIs.
print()
print("Targets (instructions per GET, cluster / standalone of the same API):")
met = missed = 0
for api in ("async", "blocking"):
    for kind, limits in (("1slot", {d: 1.15 for d in depths}), ("all", {16: 2.0, 128: 1.5})):
        c = "cluster-%s%s" % (api, "-1slot" if kind == "1slot" else "")
        parts = []
        for d in depths:
            if d not in limits:
                continue
            r = ir[d, c] / ir[d, base[c]]
            ok = r <= limits[d]
            met, missed = met + ok, missed + (not ok)
            parts.append("N=%d %.2f <= %.2f %s" % (d, r, limits[d], "met" if ok else "MISSED"))
            results.append(("target_met", d, c, 1.0 if ok else 0.0))
        print("  %-8s %-9s  %s" % (api, "one slot" if kind == "1slot" else "all slots", ";  ".join(parts)))
print("  %d of %d met" % (met, met + missed))

med = lambda d, c, f: statistics.median(float(r[f]) for r in t_rows if int(r["depth"]) == d and r["case"] == c)
print()
print("Throughput and client CPU per GET, medians of %s alternating rounds (CPU = the client process's" % rounds)
print("user+sys from getrusage, start-up and handshakes included, spread over the run; loop = redtls-bench's")
print("own measurement of its command loop only):")
hdr2 = "%-28s " + " ".join(["%9s"] * len(depths)) + " | " + " ".join(["%7s"] * len(depths)) + " | " + \
       " ".join(["%7s"] * len(depths))
print(hdr2 % (("",) + tuple("op/s N=%d" % d for d in depths) + tuple("CPU us" for d in depths)
              + tuple("loop us" for d in depths)))
for c in cases:
    ops = [med(d, c, "ops_per_sec") for d in depths]
    cpu = [med(d, c, "proc_cpu_us_per_op") for d in depths]
    loop = [med(d, c, "loop_cpu_us_per_op") if not c.startswith("rb-") else None for d in depths]
    print(hdr2 % ((label[c],) + tuple("%.0f" % v for v in ops) + tuple("%.3f" % v for v in cpu)
                  + tuple("%.3f" % v if v is not None else "" for v in loop)))
    for d, o, u, l in zip(depths, ops, cpu, loop):
        results.append(("ops_per_sec", d, c, o))
        results.append(("proc_cpu_us_per_op", d, c, u))
        if l is not None:
            results.append(("loop_cpu_us_per_op", d, c, l))
print("The spread of those rounds (ops/s, lowest-highest), for judging the medians above:")
for c in cases:
    print("%-28s %s" % (label[c], "  ".join("%.0f-%.0f" % (
        min(float(r["ops_per_sec"]) for r in t_rows if int(r["depth"]) == d and r["case"] == c),
        max(float(r["ops_per_sec"]) for r in t_rows if int(r["depth"]) == d and r["case"] == c)) for d in depths)))

# Calls per syscall from strace -C's summary, and "zero-wait": the polls
# (poll, epoll_wait: timeout 0; ppoll: a zero timespec) that cannot wait.
def strace_calls(path):
    calls = {"zero-wait": 0}
    for line in open(path):
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
        elif re.match(r"(\d+\s+)?((epoll_wait|poll)\(.*, 0\)|ppoll\(.*\{tv_sec=0, tv_nsec=0\}.*\)) += ", line):
            calls["zero-wait"] += 1
    return calls
WRITES = ("write", "sendto", "sendmsg", "writev")
READS = ("read", "recvfrom", "recvmsg", "readv")
WAITS = ("poll", "ppoll", "epoll_wait", "epoll_pwait", "select", "pselect6")
# TLS calls per batch of N GETs from the kept profiles' call counts (the
# same two run lengths): each SSL_write_ex sends one record here (a batch
# is far below 16 KiB); an SSL_read_ex takes one record or finds none.
def ssl_calls(path):
    names, calls, cfn = {}, {}, None
    for line in open(path):
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line)
        if m:
            if m.group(3):
                names[m.group(2)] = m.group(3).strip()
            if m.group(1) == "cfn":
                cfn = names.get(m.group(2))
            continue
        m = re.match(r"calls=(\d+)", line)
        if m and cfn in ("SSL_write_ex", "SSL_read_ex"):
            calls[cfn] = calls.get(cfn, 0) + int(m.group(1))
    return calls
rec = {}
for d in depths:
    for c in cases:
        runs = sorted((int(r["requests"]) for r in ir_rows if int(r["depth"]) == d and r["case"] == c))
        files = [os.path.join(keep, "%s-%d-%d.callgrind" % (c, d, n)) for n in runs]
        if len(files) == 2 and all(os.path.exists(f) for f in files):
            a, b = ssl_calls(files[0]), ssl_calls(files[1])
            rec[d, c] = tuple((b.get(k, 0) - a.get(k, 0)) * d / (runs[1] - runs[0])
                              for k in ("SSL_write_ex", "SSL_read_ex"))
if rec:
    print()
    print("TLS calls per N GETs (SSL_write_ex / SSL_read_ex, from the profiles' call counts; a write is one")
    print("record here, a read takes one record or finds none):")
    print(("%-28s " + " ".join(["%13s"] * len(depths))) % (("",) + tuple("N=%d" % d for d in depths)))
    for c in cases:
        if all((d, c) in rec for d in depths):
            print(("%-28s " + " ".join(["%13s"] * len(depths))) % ((label[c],) + tuple(
                "%5.2f / %5.2f" % rec[d, c] for d in depths)))
            for d in depths:
                results.append(("ssl_writes_per_batch", d, c, rec[d, c][0]))
                results.append(("ssl_reads_per_batch", d, c, rec[d, c][1]))

sys_lines = [l.split() for l in open(sys_raw) if l.strip()]
if sys_lines:
    print()
    print("System calls per batch of 128 GETs, blocking client (strace -f -C, two run lengths, the difference")
    print("over the extra batches). The issue's figure before the shared engine, over all slots: 3 writes,")
    print("3 reads and 4 polls per batch.")
    for c, f1, f2, batches in sys_lines:
        a, b = strace_calls(f1), strace_calls(f2)
        diff = {k: b.get(k, 0) - a.get(k, 0) for k in set(a) | set(b)}
        per = lambda names: sum(diff.get(k, 0) for k in names) / int(batches)
        zero = diff.pop("zero-wait") / int(batches)
        total = sum(diff.values()) / int(batches)
        other = {k: v / int(batches) for k, v in diff.items() if v > 0 and k not in WRITES + READS + WAITS}
        print("  %-28s writes %5.2f  reads %5.2f  polls %5.2f (%4.2f of them with a zero timeout)  total %5.2f%s"
              % (label[c], per(WRITES), per(READS), per(WAITS), zero, total,
                 ("  (other: " + ", ".join("%s %.2f" % kv for kv in sorted(other.items())) + ")") if other else ""))
        for m, v in (("writes_per_batch", per(WRITES)), ("reads_per_batch", per(READS)),
                     ("waits_per_batch", per(WAITS)), ("zero_timeout_waits_per_batch", zero),
                     ("syscalls_per_batch", total)):
            results.append((m, 128, c, v))

with open(out_csv, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["metric", "depth", "case", "value"])
    for m, d, c, v in results:
        w.writerow([m, d, c, "%.4f" % v])
print()
print("Written: %s; every run: %s, %s" % (out_csv, raw_ir, raw_t))
PY
  echo "Profiles of the redtls cases (callgrind_annotate --inclusive=yes FILE; cgdiff.py for per-GET costs): $keep"
  throwaway_cluster_stop
  say "cluster: section took $((SECONDS - start)) s"
}
