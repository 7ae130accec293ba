# shellcheck shell=bash
# Section "pubsub" of scripts/bench.sh (sourced by it; see the top of
# bench.sh): one subscriber over TLS receiving what redis-benchmark
# publishes, redtls against hiredis 1.2.0's asynchronous API. Uses bench.sh's
# BENCH, BUILD, WORK, CA, TOKEN, TLS_PORT, ROUNDS, say and
# build_hiredis_peers.
#
# One run: the subscriber starts first; once `PUBSUB NUMSUB <channel>`
# says 1, redis-benchmark -c 1 -P 64 PUBLISHes exactly n messages of the
# payload size (the subscriber is the only one, so each PUBLISH is one
# message); the subscriber checks every message and leaves after the n-th;
# the publisher is waited for and stopped by its pid when it lingers. The
# server's pubsub output-buffer limit is lifted for the section
# (client-output-buffer-limit pubsub 0 0 0), so a subscriber slowed down
# 50x by callgrind is never disconnected: what it has not read yet waits
# in the server.

PUBSUB_N=${PUBSUB_N:-20000}
PUBSUB_TIMED_N=${PUBSUB_TIMED_N:-200000}
PUBSUB_IR_BYTES=${PUBSUB_IR_BYTES:-1000000}
PUBSUB_SIZES=${PUBSUB_SIZES:-16 1024}
PUBSUB_PIPELINE=64
PUBSUB_CHANNEL=bench
PUBSUB_PIDS=()

# Stops the subscriber and publisher of a run still going (bench.sh's exit
# trap calls it too).
pubsub_stop() {
  if [[ ${#PUBSUB_PIDS[@]} -gt 0 ]]; then _throwaway_stop_pids "${PUBSUB_PIDS[@]}"; fi
  PUBSUB_PIDS=()
}

ps_cli() {
  REDISCLI_AUTH=$TOKEN redis-cli --tls --cacert "$CA" --sni localhost -h 127.0.0.1 -p "$TLS_PORT" "$@"
}

# The subscribers on the channel now.
ps_numsub() {
  ps_cli PUBSUB NUMSUB "$PUBSUB_CHANNEL" 2>/dev/null | sed -n 2p
}

# Sets clients to the subscribers measured under a protocol: redtls-bench
# as built by default (on the system's hiredis, 0.14 on Debian 12: RESP2
# only) and built on hiredis 1.2.0 (-h1: the peer's parser), each with its
# asynchronous and its blocking subscriber, and hiredis.
pubsub_clients() { # protocol
  if [[ $1 == resp3 ]]; then
    clients=(redtls-h1 redtls-blocking-h1 hiredis-async)
  else
    clients=(redtls redtls-h1 redtls-blocking redtls-blocking-h1 hiredis-async)
  fi
}

# Sets CMD to one subscriber's command line.
pubsub_cmd() { # client protocol size messages
  local resp3=() prog=$BENCH
  case $1 in
    redtls | redtls-blocking | redtls-h1 | redtls-blocking-h1)
      [[ $2 == resp3 ]] && resp3=(--resp3)
      [[ $1 == *-h1 ]] && prog=$BENCH_H1
      CMD=("$prog" -u "rediss://localhost:$TLS_PORT" --resolve localhost:127.0.0.1 --cacert "$CA" --pubsub
           --channel "$PUBSUB_CHANNEL" -n "$4" -d "$3" "${resp3[@]}" --csv)
      if [[ $1 == redtls-blocking* ]]; then CMD+=(--subscriber blocking); fi ;;
    hiredis-async)
      [[ $2 == resp3 ]] && resp3=(--resp3)
      CMD=("$HSBENCH" -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$CA" --sni localhost --channel "$PUBSUB_CHANNEL"
           -n "$4" -d "$3" "${resp3[@]}" --csv) ;;
  esac
}

# One run: WRAP (valgrind, or nothing) around the subscriber, then the
# publisher. The subscriber is started by itself (no wrapper process), so
# the pid waited for and stopped is its own. Leaves the subscriber's output in
# OUT.stdout/.stderr and the publisher's msgs/s in PUB_RPS. Returns 1 when
# the subscriber failed (its last lines on stderr), and exits the script
# when anything else does.
pubsub_once() { # out label messages size WRAP...
  local out=$1 label=$2 n=$3 size=$4 sub pub rc i payload
  shift 4
  payload=$(head -c "$size" /dev/zero | tr '\0' x)
  # The last run's subscription must be gone, or NUMSUB would say 1 early.
  for ((i = 0; i < 100; i++)); do [[ $(ps_numsub) == 0 ]] && break; sleep 0.1; done
  "$@" "${CMD[@]}" >"$out.stdout" 2>"$out.stderr" &
  sub=$!
  PUBSUB_PIDS=("$sub")
  for ((i = 0; i < 600; i++)); do
    [[ $(ps_numsub) == 1 ]] && break
    kill -0 "$sub" 2>/dev/null || break
    sleep 0.1
  done
  if [[ $(ps_numsub) != 1 ]]; then
    pubsub_stop
    grep -v '^==' "$out.stderr" | tail -n 5 >&2
    echo "bench: pubsub: the subscriber did not subscribe within 60 s ($label)" >&2
    exit 1
  fi
  # --csv: no progress timer (see section_ir).
  redis-benchmark -h 127.0.0.1 -p "$TLS_PORT" --tls --cacert "$CA" --sni localhost -a "$TOKEN" -c 1 \
    -P "$PUBSUB_PIPELINE" -n "$n" -q --csv PUBLISH "$PUBSUB_CHANNEL" "$payload" >"$out.pub" 2>&1 &
  pub=$!
  PUBSUB_PIDS=("$sub" "$pub")
  # The subscriber leaves after the n-th message; one that misses some
  # would wait for ever, so 120 s after the publisher is done it is stopped.
  local deadline=""
  while kill -0 "$sub" 2>/dev/null; do
    if [[ -z "$deadline" ]] && ! kill -0 "$pub" 2>/dev/null; then deadline=$((SECONDS + 120)); fi
    if [[ -n "$deadline" ]] && ((SECONDS > deadline)); then
      echo "bench: pubsub: the subscriber had not received its $n messages 120 s after the last was published" >&2
      break
    fi
    sleep 0.05
  done
  PUBSUB_PIDS=("$sub")
  pubsub_stop
  rc=0
  wait "$sub" || rc=$?
  # The publisher has sent its n by now (the subscriber had them all);
  # only its last replies may be on the way.
  for ((i = 0; i < 100; i++)); do kill -0 "$pub" 2>/dev/null || break; sleep 0.1; done
  PUBSUB_PIDS=("$pub")
  pubsub_stop
  wait "$pub" 2>/dev/null || true
  if [[ $rc != 0 ]]; then
    grep -v '^==' "$out.stderr" | tail -n 5 >&2
    echo "bench: pubsub: the subscriber failed with status $rc ($label)" >&2
    return 1
  fi
  local errs msgs
  IFS=, read -r _ _ _ _ _ msgs _ _ _ _ _ _ errs < <(tail -n 1 "$out.stdout")
  if [[ "$msgs" != "$n" || "$errs" != 0 ]]; then
    echo "bench: pubsub: $msgs messages, $errs unexpected ($label): $(tail -n 1 "$out.stdout")" >&2
    exit 1
  fi
  PUB_RPS=$(grep '^"PUBLISH' "$out.pub" | cut -d, -f2 | tr -d '"')
}

# pubsub_once up to three times: redis-server 7.0 sometimes drops a
# subscriber that is far behind over TLS ("Error writing to client:
# SSL routines::bad length" in its verbose log: it retries a TLS write with
# fewer bytes than the one that blocked, which OpenSSL refuses; fixed in
# Valkey by valkey-io/valkey#1737). The subscriber then misses messages
# and fails; the run is made again.
pubsub_run() { # out label messages size WRAP...
  local attempt
  for attempt in 1 2 3; do
    if pubsub_once "$@"; then return 0; fi
    say "pubsub: WARNING: attempt $attempt of 3 failed ($2); the server's TLS write bug (see pubsub_run)?"
  done
  echo "bench: pubsub: the subscriber failed three times ($2)" >&2
  exit 1
}

# Messages in the shorter callgrind run for a payload size: PUBSUB_N, fewer
# when that would be more than PUBSUB_IR_BYTES on the wire (about size + 40
# bytes a message), in hundreds. Under callgrind the subscriber falls far
# behind, and what it has not read waits in the kernel's socket buffers
# (a few MB), or beyond them in the server, which is where the server's TLS
# write bug (see pubsub_run) strikes.
pubsub_ir_n() { # size
  local n=$((PUBSUB_IR_BYTES / ($1 + 40) / 100 * 100))
  ((n > PUBSUB_N)) && n=$PUBSUB_N
  ((n < 100)) && n=100
  echo "$n"
}

section_pubsub() {
  local start=$SECONDS
  build_hiredis_peers pubsub async
  HSBENCH="$BUILD/hiredis-sub-bench"
  # shellcheck disable=SC2046
  if ! nice "${CC:-cc}" -O2 -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -I"$H1/include" -o "$HSBENCH" \
       "$ROOT/scripts/bench/hiredis-sub-bench.c" "$H1/lib/libhiredis_ssl.a" "$H1/lib/libhiredis.a" \
       $(pkg-config --cflags --libs libevent) -lssl -lcrypto; then
    echo "bench: building scripts/bench/hiredis-sub-bench.c failed (libevent-dev: scripts/deps.sh)" >&2
    exit 1
  fi

  # redtls built on hiredis 1.2.0 as well (the system's 0.14 cannot parse
  # RESP3): the same parser as the peer's, and RESP3.
  local h1_build="$BUILD/redtls-hiredis1" version
  say "pubsub: redtls-bench on hiredis 1.2.0 in build-bench/redtls-hiredis1/"
  if ! { PKG_CONFIG_PATH="$H1/lib/pkgconfig" cmake -S "$ROOT" -B "$h1_build" -DCMAKE_BUILD_TYPE=Release \
           -DREDTLS_BUILD_EXAMPLES=ON -DREDTLS_BUILD_TESTS=OFF &&
         nice cmake --build "$h1_build" -j"$JOBS" --target redtls-bench; } >"$BUILD/pubsub-h1-build.log" 2>&1; then
    tail -n 30 "$BUILD/pubsub-h1-build.log" >&2
    echo "bench: building redtls-bench on hiredis 1.2.0 failed (log: $BUILD/pubsub-h1-build.log)" >&2
    exit 1
  fi
  version=$(sed -n 's/^REDTLS_HIREDIS_VERSION:INTERNAL=//p' "$h1_build/CMakeCache.txt")
  [[ "$version" == 1.2.0 ]] ||
    { echo "bench: $h1_build is configured against hiredis '$version', not 1.2.0; remove it" >&2; exit 1; }
  BENCH_H1="$h1_build/examples/redtls-bench"

  local protocols=(resp2) clients
  # The whole help read (grep -q would stop early, and pipefail report
  # the SIGPIPE).
  if [[ $("$BENCH_H1" --help) == *--resp3* ]]; then
    protocols+=(resp3)
  else
    say "pubsub: this redtls-bench has no --resp3 (RESP3 not in this build): RESP2 only"
  fi
  local old_limit
  old_limit=$(ps_cli CONFIG GET client-output-buffer-limit | sed -n 2p)
  ps_cli CONFIG SET client-output-buffer-limit "pubsub 0 0 0" >/dev/null

  local raw_ir="$BUILD/pubsub-ir-raw.csv" raw_t="$BUILD/pubsub-raw.csv" keep="$BUILD/pubsub-callgrind"
  rm -rf "$keep"
  mkdir -p "$keep" "$WORK/pubsub"
  echo "protocol,size,client,messages,ir_total" >"$raw_ir"
  local proto size client req out total n
  for proto in "${protocols[@]}"; do
    pubsub_clients "$proto"
    for size in $PUBSUB_SIZES; do
      n=$(pubsub_ir_n "$size")
      for client in "${clients[@]}"; do
        say "pubsub: $client, $proto, $size-byte payloads: $n and $((2 * n)) messages under callgrind"
        for req in "$n" $((2 * n)); do
          pubsub_cmd "$client" "$proto" "$size" "$req"
          out="$WORK/pubsub/$client-$proto-$size-$req"
          pubsub_run "$out" "callgrind, $client $proto $size B" "$req" "$size" \
            nice valgrind --tool=callgrind --callgrind-out-file="$out.cg"
          total=$(sed -n 's/^totals: *//p' "$out.cg")
          [[ "$total" =~ ^[0-9]+$ ]] || { echo "bench: no 'totals:' line in $out.cg" >&2; exit 1; }
          echo "$proto,$size,$client,$req,$total" >>"$raw_ir"
          if [[ $client == redtls || $client == redtls-h1 ]]; then
            mv "$out.cg" "$keep/$client-$proto-$size-$req.callgrind"
          fi
          rm -f "$out.cg" "$out.stdout" "$out.stderr" "$out.pub"
        done
      done
    done
  done

  # Timed: ROUNDS rounds; in each, every case, the clients in an order that
  # turns with the round.
  echo "round,protocol,size,client,messages,msgs_per_sec,cpu_us_per_msg,publisher_rps" >"$raw_t"
  local round k nc rate cpu c=0
  for round in $(seq "$ROUNDS"); do
    say "pubsub: timed round $round/$ROUNDS ($PUBSUB_TIMED_N messages a run)"
    for proto in "${protocols[@]}"; do
      pubsub_clients "$proto"
      nc=${#clients[@]}
      for size in $PUBSUB_SIZES; do
        c=$((c + 1))
        for ((k = 0; k < nc; k++)); do
          client=${clients[$(((k + round + c) % nc))]}
          pubsub_cmd "$client" "$proto" "$size" "$PUBSUB_TIMED_N"
          out="$WORK/pubsub/timed"
          pubsub_run "$out" "timed, $client $proto $size B" "$PUBSUB_TIMED_N" "$size"
          IFS=, read -r _ _ _ _ _ _ _ _ rate _ cpu _ _ < <(tail -n 1 "$out.stdout")
          echo "$round,$proto,$size,$client,$PUBSUB_TIMED_N,$rate,$cpu,$PUB_RPS" >>"$raw_t"
        done
      done
    done
  done
  if [[ -n "$old_limit" ]]; then ps_cli CONFIG SET client-output-buffer-limit "$old_limit" >/dev/null; fi

  python3 - "$raw_ir" "$raw_t" "$BUILD/pubsub-results.csv" "$ROUNDS" "$PUBSUB_PIPELINE" <<'PY'
import csv, statistics, sys

raw_ir, raw_t, out_csv, rounds, pipeline = sys.argv[1:6]
ir_rows = list(csv.DictReader(open(raw_ir)))
t_rows = list(csv.DictReader(open(raw_t)))
clients = ("redtls", "redtls-h1", "redtls-blocking", "redtls-blocking-h1", "hiredis-async")
short = {"redtls": "redtls", "redtls-h1": "rt-h1", "redtls-blocking": "rt-block", "redtls-blocking-h1": "rtb-h1",
         "hiredis-async": "hiredis"}
cases = []
for r in ir_rows:
    if (r["protocol"], int(r["size"])) not in cases:
        cases.append((r["protocol"], int(r["size"])))
ir, nmsg = {}, {}
for proto, size in cases:
    for c in clients:
        runs = sorted((int(r["messages"]), int(r["ir_total"])) for r in ir_rows
                      if r["protocol"] == proto and int(r["size"]) == size and r["client"] == c)
        if len(runs) == 2:
            (n1, a), (n2, b) = runs
            ir[proto, size, c] = (b - a) / (n2 - n1)
            nmsg[proto, size] = n1
def med(proto, size, c, f):
    v = [float(r[f]) for r in t_rows if r["protocol"] == proto and int(r["size"]) == size and r["client"] == c]
    return statistics.median(v) if v else None
def spread(proto, size, c, f):
    v = [float(r[f]) for r in t_rows if r["protocol"] == proto and int(r["size"]) == size and r["client"] == c]
    return "%.0fk-%.0fk" % (min(v) / 1e3, max(v) / 1e3) if v else None
def cell(v, fmt):
    return "-" if v is None else fmt(v)
def ratio(proto, size, c):
    r, h = ir.get((proto, size, c)), ir.get((proto, size, "hiredis-async"))
    return None if r is None or h is None else r / h

print()
print("Pub/Sub: one subscriber over TLS 1.3, loopback, channel 'bench'; the publisher is redis-benchmark")
print("-c 1 -P %s PUBLISH. redtls = redtls-bench --pubsub (redtls_async_subscribe, built-in loop) as" % pipeline)
print("built by default (on the system's hiredis 0.14: RESP2 only); rt-h1 = the same built on hiredis")
print("1.2.0 (the peer's parser; RESP3); rt-block, rtb-h1 = the blocking subscriber (redtls_subscriber_next,")
print("a copy per message) of each build; hiredis = hiredis 1.2.0 async + hiredis_ssl +")
print("adapters/libevent.h (scripts/bench/hiredis-sub-bench.c; under RESP3 after HELLO 3). Every message")
print("checked by each (its channel, its payload size).")
print()
print("Client instructions per message (callgrind, (Ir(2n) - Ir(n)) / n); the target: redtls at most")
print("0.8 x hiredis:")
hdr = "%-6s %6s %6s | " + " ".join(["%8s"] * len(clients)) + " | %13s %12s"
print(hdr % (("proto", "bytes", "n") + tuple(short[c] for c in clients) + ("redtls/hired", "rt-h1/hired")))
results = []
for proto, size in cases:
    rr, rh = ratio(proto, size, "redtls"), ratio(proto, size, "redtls-h1")
    print(hdr % ((proto, size, nmsg[proto, size])
                 + tuple(cell(ir.get((proto, size, c)), lambda v: format(round(v), ",")) for c in clients)
                 + tuple(cell(x, lambda v: "%.2f %s" % (v, "met" if v <= 0.8 else "MISSED")) for x in (rr, rh))))
    for c in clients:
        if (proto, size, c) in ir:
            results.append(("ir_per_msg", proto, size, c, ir[proto, size, c]))
    for c, x in (("redtls", rr), ("redtls-h1", rh)):
        if x is not None:
            results.append(("ir_ratio_vs_hiredis", proto, size, c, x))
print()
print("Time, medians of %s alternating rounds: messages/s from the first message to the last (bounded by" % rounds)
print("the publisher and the server, which share the 2 cores: 'pub' is redis-benchmark's own PUBLISH/s),")
print("then CPU us per message as the subscriber measures it (getrusage from the confirmation to the last")
print("message: connect and handshake left out):")
hdr2 = "%-6s %6s | " + " ".join(["%8s"] * len(clients)) + " %8s | " + " ".join(["%8s"] * len(clients))
print(hdr2 % (("proto", "bytes") + tuple(short[c] for c in clients) + ("pub",) + tuple(short[c] for c in clients)))
print(hdr2 % (("", "") + ("msg/s",) * len(clients) + ("PUB/s",) + ("CPU us",) * len(clients)))
for proto, size in cases:
    rates = [med(proto, size, c, "msgs_per_sec") for c in clients]
    pubs = statistics.median(float(r["publisher_rps"]) for r in t_rows
                             if r["protocol"] == proto and int(r["size"]) == size)
    cpu = [med(proto, size, c, "cpu_us_per_msg") for c in clients]
    print(hdr2 % ((proto, size) + tuple(cell(v, lambda x: "%.0f" % x) for v in rates) + ("%.0f" % pubs,)
                  + tuple(cell(v, lambda x: "%.3f" % x) for v in cpu)))
    for c, v, u in zip(clients, rates, cpu):
        if v is not None:
            results.append(("msgs_per_sec", proto, size, c, v))
            results.append(("cpu_us_per_msg", proto, size, c, u))
    results.append(("publisher_rps", proto, size, "redis-benchmark", pubs))
print("The spread of those rounds (msgs/s, lowest-highest):")
for proto, size in cases:
    print("%-6s %6s | %s" % (proto, size, "  ".join("%s %s" % (short[c], spread(proto, size, c, "msgs_per_sec"))
                                                    for c in clients if spread(proto, size, c, "msgs_per_sec"))))
with open(out_csv, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["metric", "protocol", "size", "client", "value"])
    for m, p, s, c, v in results:
        w.writerow([m, p, s, c, "%.4f" % v])
print("Written: %s; every run: %s, %s" % (out_csv, raw_ir, raw_t))
PY
  # redtls's costliest functions per message: the default build under
  # RESP2, the hiredis 1.2.0 build under RESP3, smallest and largest payload.
  local first=${PUBSUB_SIZES%% *} last=${PUBSUB_SIZES##* } which f1 f2
  for which in redtls-resp2 redtls-h1-resp3; do
    for size in $first $last; do
      n=$(pubsub_ir_n "$size")
      f1="$keep/$which-$size-$n.callgrind" f2="$keep/$which-$size-$((2 * n)).callgrind"
      [[ -f "$f1" && -f "$f2" ]] || continue
      echo
      python3 "$ROOT/scripts/bench/cgdiff.py" "$f1" "$f2" "$n" --top 15 --title \
        "$which, $size-byte payloads: top 15 functions by inclusive instructions per message
(the frames above main left out; addresses: libssl/libcrypto have no symbols here)"
      echo
      python3 "$ROOT/scripts/bench/cgdiff.py" "$f1" "$f2" "$n" --top 10 --sort self \
        --title "$which, $size-byte payloads: top 10 by self instructions per message"
      [[ $first == "$last" ]] && break
    done
  done
  echo
  echo "Profiles (callgrind_annotate --inclusive=yes FILE reads them): $keep"
  say "pubsub: section took $((SECONDS - start)) s"
}
