#!/usr/bin/env bash
# turnpike against coturn (Debian `turnserver`) on this machine: same run, same load,
# equivalent configs (REST secret, loopback peers, UDP+TCP+TLS listeners, quiet logs),
# equal priority (neither is reniced), alternating rounds (the order flips every round).
# Not part of the test suite: run it by hand. Loopback only; every load is bounded.
#
# The matrix, at one relay thread each (per-core efficiency) and at full machine
# (turnpike's default shards vs coturn's default relay threads), by examples/loadgen/:
#   ch100 ch1200  ChannelData, 100 / 1200-byte payloads, UDP client legs
#   ch100w1       ChannelData 100 B, 400 clients with one message in flight each (at a
#                 fixed rate: one message per client in a row): no bursts for one peer or
#                 client, so no GSO runs (the burst-free cost)
#   ind100        Send/Data indications, 100 B (Firefox's pattern)
#   tcp100 tls100 ChannelData over TCP / TLS client legs
#   c2c100        client to client: two allocations per path, ChannelData
# Per mode: relayed packets/s, relayed packets per server CPU-second (utime+stime from
# /proc/PID/stat), loss, RTT p50/p99 (every payload carries its send time), the side
# that was the bottleneck (server CPU, load-generator CPU, or all cores busy).
# At one thread the ChannelData modes also run examples/bare_relay, a "relay" that does
# only the socket work (no TURN logic, no GSO): the floor for one syscall per datagram on
# the allocation sockets, and what the best such relay could show against coturn.
# Then, at one thread: RTT and CPU per packet at an equal offered load (RATE_PPS
# originated packets/s, well below either server's limit, so neither side is saturated),
# capacity (the highest offered rate that loses <= 1%, x1.25 steps),
# allocations/s and RSS per allocation at ALLOCS allocations, and coturn's own
# turnutils_uclient as a second, independent load for the UDP modes.
#
#   scripts/bench.sh                    full matrix (~29 min on 2 cores)
#   BENCH_QUICK=1 scripts/bench.sh      fewer/shorter rounds (~4 min)
#   MODES="ch100 ind100" THREADS="1" ROUNDS=7 scripts/bench.sh
#   TURNPIKE_BIN=path                   compare another build (e.g. an older commit)
#   TURNPIKE_GSO=false                  turnpike with relay.gso off
#   PATH=/path/to/coturn/bin:$PATH      another coturn (turnserver, turnutils_*), e.g. the
#                                       current release built from source
#   TOPOLOGY=netns                      the namespaced topology instead (root): client,
#                                       relay and peer namespaces over veths behind a
#                                       router, whole-machine CPU, the kernel fast path,
#                                       coturn's current release and Debian's: that is
#                                       scripts/bench_fastpath.sh, which takes its own knobs
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${TOPOLOGY:-loopback} == netns ]]; then exec bash scripts/bench_fastpath.sh; fi
[[ ${TOPOLOGY:-loopback} == loopback ]] || { echo "TOPOLOGY: loopback (default) or netns"; exit 2; }
if [[ -n "${BENCH_QUICK:-}" ]]; then
  ROUNDS=${ROUNDS:-2} SECS=${SECS:-1.5} ALLOCS=${ALLOCS:-2000} UROUNDS=${UROUNDS:-1}
  CAP_MODES=${CAP_MODES:-ch100} UMODES=${UMODES:-ch100} CAP_SECS=${CAP_SECS:-0.7}
  RATE_MODES=${RATE_MODES:-ch100 tcp100} RROUNDS=${RROUNDS:-1}
fi
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-3}
CLIENTS=${CLIENTS:-50}
WINDOW=${WINDOW:-8}
ALLOCS=${ALLOCS:-10000}
UROUNDS=${UROUNDS:-3}
MODES=${MODES:-ch100 ch1200 ch100w1 ind100 tcp100 tls100 c2c100}
THREADS=${THREADS:-1 full}
CAP_MODES=${CAP_MODES:-$MODES}
CAP_SECS=${CAP_SECS:-1}
UMODES=${UMODES:-ch100 ch1200 ind100 c2c100}
RATE_MODES=${RATE_MODES:-$MODES}
RATE_PPS=${RATE_PPS:-40000}
RROUNDS=${RROUNDS:-3}

cargo build --release --quiet --bin turnpike --example loadgen --example bare_relay
BARE_BIN=target/release/examples/bare_relay
TURNPIKE_BIN=${TURNPIKE_BIN:-target/release/turnpike}
# TURNPIKE_GSO=false: turnpike without UDP GSO (relay.gso), to see what it gives.
TURNPIKE_GSO=${TURNPIKE_GSO:-true}
LOADGEN=${LOADGEN:-target/release/examples/loadgen}
ulimit -n 65536 2>/dev/null || true
# shellcheck source=scripts/bench_common.sh
source scripts/bench_common.sh

# Ports apart from the older bench (36478/36479), which may run in another checkout.
TP_PORT=${TP_PORT:-37478} TP_TLS=$((TP_PORT + 10)) CT_PORT=$((TP_PORT + 101)) CT_TLS=$((TP_PORT + 111))
BARE_PORT=$((TP_PORT + 201))

# $1: 1 (one relay thread each) or full (each server's default).
start_servers() {
  local shards=0 threads=""
  if [[ $1 == 1 ]]; then shards=1 threads=1; fi
  turnpike_config "$dir/turnpike.toml" "$TP_PORT" "$TP_TLS" 20000-31999 "$shards" "$TURNPIKE_GSO"
  coturn_config "$dir/coturn.conf" "$CT_PORT" "$CT_TLS" 8000 19999 "$threads"
  "$TURNPIKE_BIN" --config "$dir/turnpike.toml" 2>"$dir/turnpike.log" &
  tp=$!; pids+=("$tp")
  turnserver -c "$dir/coturn.conf" >/dev/null 2>&1 &
  ct=$!; pids+=("$ct")
  bare=""
  if [[ $1 == 1 ]]; then
    "$BARE_BIN" "127.0.0.1:$BARE_PORT" &
    bare=$!; pids+=("$bare")
  fi
  sleep 1.5
  kill -0 "$tp" && kill -0 "$ct" || { cat "$dir/turnpike.log"; exit 1; }
  [[ -z $bare ]] || kill -0 "$bare" || { echo "bare_relay did not start"; exit 1; }
}
stop_servers() {
  kill "$tp" "$ct" $bare 2>/dev/null || true
  wait "$tp" "$ct" $bare 2>/dev/null || true
  pids=()
}

# server, mode -> address
addr() {
  if [[ $1 == bare ]]; then
    echo "127.0.0.1:$BARE_PORT"
  elif [[ $2 == tls100 ]]; then
    [[ $1 == turnpike ]] && echo "127.0.0.1:$TP_TLS" || echo "127.0.0.1:$CT_TLS"
  else
    [[ $1 == turnpike ]] && echo "127.0.0.1:$TP_PORT" || echo "127.0.0.1:$CT_PORT"
  fi
}
pid_of() { case $1 in turnpike) echo "$tp" ;; coturn) echo "$ct" ;; bare) echo "$bare" ;; esac; }
# Alternating order: round 1 turnpike first, round 2 coturn first, ...
order() { (($1 % 2)) && echo "turnpike coturn" || echo "coturn turnpike"; }
# With the bare relay (one thread, ChannelData over UDP/TCP): each takes every place in turn.
order_load() {
  if [[ -n $bare && $2 =~ ^(ch|tcp|c2c) ]]; then
    case $(($1 % 3)) in 1) echo "turnpike coturn bare" ;; 2) echo "coturn bare turnpike" ;; 0) echo "bare turnpike coturn" ;; esac
  else
    order "$1"
  fi
}
emit() { # kind threads mode server round json
  printf '{"kind":"%s","threads":"%s","mode":"%s","server":"%s","round":%s,"r":%s}\n' "$@" >>"$dir/results.jsonl"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg) (shared with other jobs: noisy)"
echo "turnpike: $TURNPIKE_BIN; coturn: $(turnserver -h 2>&1 | grep -m1 -o 'Coturn-[^ ]*' || echo turnserver)"
echo "load: examples/loadgen, $CLIENTS clients x window $WINDOW, $SECS s a round, $ROUNDS alternating rounds"
touch "$dir/results.jsonl"

for th in $THREADS; do
  start_servers "$th"
  for mode in $MODES; do
    for r in $(seq 1 "$ROUNDS"); do
      for s in $(order_load "$r" "$mode"); do
        # shellcheck disable=SC2046
        out=$("$LOADGEN" --server "$(addr $s $mode)" --secret $SECRET --pid "$(pid_of $s)" \
          --clients "$CLIENTS" --window "$WINDOW" --seconds "$SECS" $(flags "$mode"))
        echo "threads=$th $mode round $r $s $out"
        emit load "$th" "$mode" "$s" "$r" "$out"
      done
    done
  done
  if [[ $th == 1 ]]; then
    for mode in $RATE_MODES; do
      for r in $(seq 1 "$RROUNDS"); do
        for s in $(order "$r"); do
          # shellcheck disable=SC2046
          out=$("$LOADGEN" --server "$(addr $s $mode)" --secret $SECRET --pid "$(pid_of $s)" \
            --clients "$CLIENTS" --seconds "$SECS" $(flags "$mode") --rate "$RATE_PPS")
          echo "rate $RATE_PPS $mode round $r $s $out"
          emit rate "$th" "$mode" "$s" "$r" "$out"
        done
      done
    done
    for mode in $CAP_MODES; do
      for s in $(order 1); do
        # shellcheck disable=SC2046
        out=$("$LOADGEN" --server "$(addr $s $mode)" --secret $SECRET --pid "$(pid_of $s)" \
          --clients "$CLIENTS" --seconds "$CAP_SECS" --ramp 10000 $(flags "$mode"))
        echo "capacity $mode $s $(echo "$out" | grep -o '"capacity_pps": [0-9]*, "stopped_by": "[a-z]*"')"
        emit capacity "$th" "$mode" "$s" 1 "$out"
      done
    done
    for s in turnpike coturn; do
      out=$("$LOADGEN" --server "$(addr $s ch100)" --secret $SECRET --pid "$(pid_of $s)" --allocs "$ALLOCS")
      echo "allocations $s $out"
      emit allocs "$th" alloc "$s" 1 "$out"
    done
    # coturn's own client as a second load: 50 clients x 2000 messages, flat out (-z 0), against
    # turnutils_peer; relayed = 2 x received (each message crossed the relay twice).
    "$(command -v turnutils_peer)" -L 127.0.0.1 -p 3480 >/dev/null 2>&1 &
    peer=$!; pids+=("$peer")
    sleep 0.3
    for mode in $UMODES; do
      case $mode in
        ch100) uf="-l 100" ;; ch1200) uf="-l 1200" ;; ind100) uf="-l 100 -s" ;;
        c2c100) uf="-l 100 -y" ;; *) continue ;;
      esac
      for r in $(seq 1 "$UROUNDS"); do
        for s in $(order "$r"); do
          port=$([[ $s == turnpike ]] && echo $TP_PORT || echo $CT_PORT)
          p=$(pid_of $s)
          c0=$(awk '{print $14+$15}' "/proc/$p/stat")
          t0=$(date +%s.%N)
          # shellcheck disable=SC2086
          timeout 60 turnutils_uclient -c -m 50 -n 2000 -z 0 $uf -e 127.0.0.1 -r 3480 \
            -W $SECRET -u bench -p "$port" 127.0.0.1 >"$dir/uclient.txt" 2>&1 || true
          t1=$(date +%s.%N)
          c1=$(awk '{print $14+$15}' "/proc/$p/stat")
          out=$(python3 - "$c0" "$c1" "$t0" "$t1" "$(getconf CLK_TCK)" "$dir/uclient.txt" <<'PY'
import re, sys
c0, c1, t0, t1, hz = map(float, sys.argv[1:6])
t = open(sys.argv[6], errors="replace").read()
tot = [l for l in t.splitlines() if "tot_recv_msgs=" in l and "tot_send_bytes" not in l]
num = lambda k: int(re.search(k + r"=(\d+)", tot[-1]).group(1)) if tot else 0
sent, recv = num("tot_send_msgs"), num("tot_recv_msgs")
lost = re.findall(r"Total lost packets (\d+) \(([\d.]+)%\)", t)
rtt = re.findall(r"Average round trip delay ([\d.]+) ms", t)
cpu = (c1 - c0) / hz
print('{"relayed": %d, "sent": %d, "received": %d, "loss": %.5f, "rtt_avg_ms": %s, "server_cpu_s": %.3f, "relayed_per_cpu_s": %.0f, "relayed_pps": %.0f, "seconds": %.2f}' % (
    2 * recv, sent, recv, float(lost[-1][1]) / 100 if lost else 1.0, rtt[-1] if rtt else "null",
    cpu, 2 * recv / max(cpu, 1e-9), 2 * recv / (t1 - t0), t1 - t0))
PY
)
          echo "uclient $mode round $r $s $out"
          emit uclient "$th" "$mode" "$s" "$r" "$out"
        done
      done
    done
    kill "$peer" 2>/dev/null || true
  fi
  stop_servers
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/bench_report.py "$dir/results.jsonl" "$(nproc)"
if [[ -n "${BENCH_SAVE:-}" ]]; then cp "$dir/results.jsonl" "$BENCH_SAVE"; fi
