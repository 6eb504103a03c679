#!/usr/bin/env bash
# Per-packet cost of the relay path, one relay thread, for builds side by side (before /
# after an optimisation) and coturn: while examples/loadgen drives a mode, `perf stat`
# counts the server's syscalls (by kind), context switches and CPU time, divided by the
# packets relayed. Alternating rounds, medians. Not part of the test suite; loopback only.
#   BINS="before:/tmp/turnpike-old after:target/release/turnpike coturn" scripts/bench_profile.sh
#   MODES="ch100 ind100 tcp100" ROUNDS=5 SECS=3
#   RATE=20000: the same offered load (originated packets/s) for every server instead of
#   a window each, so CPU per packet compares at equal load (a faster server otherwise
#   idles, and pays for more wakeups, sooner).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
MODES=${MODES:-ch100 ch1200 ch100w1 ind100 tcp100 tls100 c2c100}
RATE=${RATE:-0}
BINS=${BINS:-"turnpike:target/release/turnpike coturn"}
cargo build --release --quiet --bin turnpike --example loadgen --example bare_relay
LOADGEN=${LOADGEN:-target/release/examples/loadgen}
command -v perf >/dev/null || { echo "needs perf (Debian linux-perf)"; exit 1; }
# shellcheck source=scripts/bench_common.sh
source scripts/bench_common.sh

declare -A PID PORT
port=${BASE_PORT:-39478}
k=0
for b in $BINS; do
  name=${b%%:*} bin=${b#*:}
  p=$((port + 20 * k)) k=$((k + 1))
  PORT[$name]=$p
  if [[ $name == coturn ]]; then
    coturn_config "$dir/$name.conf" "$p" $((p + 10)) $((8000 + 1000 * k)) $((8999 + 1000 * k)) 1
    turnserver -c "$dir/$name.conf" >/dev/null 2>&1 &
  elif [[ $name == bare ]]; then
    "$bin" "127.0.0.1:$p" &
  else
    turnpike_config "$dir/$name.toml" "$p" $((p + 10)) "$((20000 + 1000 * k))-$((20999 + 1000 * k))" 1
    "$bin" --config "$dir/$name.toml" 2>"$dir/$name.log" &
  fi
  PID[$name]=$!
  pids+=("$!")
done
sleep 1.5

ev=raw_syscalls:sys_enter,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_recvmmsg,syscalls:sys_enter_sendmmsg,syscalls:sys_enter_sendmsg,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,context-switches,task-clock
names=$(for b in $BINS; do echo "${b%%:*}"; done)
for mode in $MODES; do
  for r in $(seq 1 "$ROUNDS"); do
    order=$names
    ((r % 2)) || order=$(echo "$names" | tac)
    for name in $order; do
      # The bare relay speaks only ChannelData over UDP and TCP.
      [[ $name == bare && $mode =~ ^(ind|tls) ]] && continue
      p=${PORT[$name]}
      [[ $mode == tls100 ]] && p=$((p + 10))
      # shellcheck disable=SC2046
      "$LOADGEN" --server "127.0.0.1:$p" --secret "$SECRET" --pid "${PID[$name]}" \
        --clients 50 --window 8 --rate "$RATE" --seconds "$SECS" $(flags "$mode") >"$dir/lg.json" &
      lg=$!
      sleep 0.5 # setup (allocations) stays out of the count
      perf stat -x, -e "$ev" -p "${PID[$name]}" -- sleep "$(echo "$SECS - 1" | bc)" 2>"$dir/perf.csv" >/dev/null
      wait "$lg"
      python3 - "$dir/lg.json" "$dir/perf.csv" "$SECS" "$mode" "$name" "$r" >>"$dir/rows.jsonl" <<'PY'
import json, sys
lg = json.load(open(sys.argv[1]))
secs = float(sys.argv[3]) - 1
c = {}
for line in open(sys.argv[2]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        c[f[2].split(":")[-1]] = float(f[0])
pkts = lg["relayed_pps"] * secs
row = {"mode": sys.argv[4], "server": sys.argv[5], "round": int(sys.argv[6]),
       "pps": lg["relayed_pps"], "per_cpu_s": lg["relayed_per_cpu_s"]}
for k, v in c.items():
    key = k.replace("sys_enter_", "") if k != "sys_enter" else "syscalls"
    row[key] = v / max(pkts, 1) * (1 if key != "task-clock" else 1e6)  # task-clock: ms -> ns
print(json.dumps(row))
PY
    done
  done
done
python3 - "$dir/rows.jsonl" <<'PY'
import json, statistics, sys
from collections import defaultdict
rows = [json.loads(l) for l in open(sys.argv[1])]
g = defaultdict(list)
for r in rows:
    g[(r["mode"], r["server"])].append(r)
cols = ["syscalls", "epoll_wait", "recvfrom", "sendto", "recvmmsg", "sendmmsg", "sendmsg", "read", "write", "writev", "context-switches", "task-clock"]
print("per relayed packet, medians over alternating rounds (task-clock = server CPU ns/packet)")
print(f"{'mode':7} {'server':10} {'pkt/s':>7} {'pkt/CPU-s':>9} " + " ".join(f"{c[:9]:>9}" for c in cols))
for (mode, server), rs in g.items():
    med = lambda k: statistics.median(r.get(k, 0) for r in rs)
    print(f"{mode:7} {server:10} {med('pps') / 1000:>6.0f}k {med('per_cpu_s') / 1000:>8.0f}k "
          + " ".join(f"{med(c):>9.3f}" if c != "task-clock" else f"{med(c):>9.0f}" for c in cols))
PY
