#!/usr/bin/env bash
# Two turnpike builds against each other in one run: the same load (examples/loadgen/), one
# relay thread each, alternating rounds (the order flips every round), medians of relayed
# packets/s and relayed packets per server CPU-second, and B/A. For "the relay path pays
# nothing" claims: A = a build of the commit before a change, B = after.
# Not part of the test suite: run it by hand. Loopback only; every load is bounded.
#
#   A=/path/to/old/turnpike B=target/release/turnpike scripts/bench_ab.sh
#   MODES="ch100 tcp100" ROUNDS=9 A=... B=... scripts/bench_ab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${A:?A=path of the build to compare against}"
B=${B:-target/release/turnpike}
ROUNDS=${ROUNDS:-7}
SECS=${SECS:-3}
CLIENTS=${CLIENTS:-50}
WINDOW=${WINDOW:-8}
MODES=${MODES:-ch100 ch1200 ch100w1 ind100 tcp100 tls100 c2c100}
cargo build --release --quiet --example loadgen
LOADGEN=target/release/examples/loadgen
ulimit -n 65536 2>/dev/null || true
# shellcheck source=scripts/bench_common.sh
source scripts/bench_common.sh
PORT_A=${PORT_A:-38478} PORT_B=$((PORT_A + 100))

turnpike_config "$dir/a.toml" "$PORT_A" $((PORT_A + 10)) 20000-25999 1
turnpike_config "$dir/b.toml" "$PORT_B" $((PORT_B + 10)) 26000-31999 1
"$A" --config "$dir/a.toml" 2>"$dir/a.log" &
pa=$!; pids+=("$pa")
"$B" --config "$dir/b.toml" 2>"$dir/b.log" &
pb=$!; pids+=("$pb")
sleep 1.5
kill -0 "$pa" && kill -0 "$pb" || { cat "$dir/a.log" "$dir/b.log"; exit 1; }

echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "A: $A"
echo "B: $B"
echo "load: examples/loadgen, $CLIENTS clients x window $WINDOW, $SECS s a round, $ROUNDS alternating rounds, one shard each"
for mode in $MODES; do
  for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then seq="A B"; else seq="B A"; fi
    for s in $seq; do
      if [[ $s == A ]]; then port=$PORT_A pid=$pa; else port=$PORT_B pid=$pb; fi
      [[ $mode == tls100 ]] && port=$((port + 10))
      # shellcheck disable=SC2046
      out=$("$LOADGEN" --server "127.0.0.1:$port" --secret $SECRET --pid "$pid" \
        --clients "$CLIENTS" --window "$WINDOW" --seconds "$SECS" $(flags "$mode"))
      printf '{"mode":"%s","build":"%s","r":%s}\n' "$mode" "$s" "$out" >>"$dir/ab.jsonl"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$dir/ab.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
modes = list(dict.fromkeys(r["mode"] for r in rows))
def med(mode, build, key):
    v = [r["r"][key] for r in rows if r["mode"] == mode and r["build"] == build and r["r"].get(key) is not None]
    return statistics.median(v) if v else float("nan"), (min(v), max(v)) if v else (0, 0)
print(f"{'mode':8} {'A pkt/s':>10} {'B pkt/s':>10} {'B/A':>6}   {'A pkt/CPU-s':>12} {'B pkt/CPU-s':>12} {'B/A':>6}   B spread (pkt/CPU-s)")
for m in modes:
    (ap, _), (bp, _) = med(m, "A", "relayed_pps"), med(m, "B", "relayed_pps")
    (ac, _), (bc, bs) = med(m, "A", "relayed_per_cpu_s"), med(m, "B", "relayed_per_cpu_s")
    print(f"{m:8} {ap:10.0f} {bp:10.0f} {bp/ap:6.3f}   {ac:12.0f} {bc:12.0f} {bc/ac:6.3f}   {bs[0]:.0f}-{bs[1]:.0f}")
PY
