#!/usr/bin/env bash
# turnpike against coturn on this machine, same run, same load: alternating rounds of
# examples/loadgen.rs (N clients, a ChannelData window each, echoed by a peer on
# loopback), one relay thread each, so the numbers compare work per core. Prints each
# round and the medians: relayed packets per second and per server CPU-second (utime +
# stime from /proc/PID/stat), and turnpike/coturn ratios. Needs coturn (turnserver).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-4}
CLIENTS=${CLIENTS:-50}
WINDOW=${WINDOW:-8}
SIZE=${SIZE:-200}
# channel: ChannelData both ways; indication: Send/Data indications (Firefox's pattern).
MODE=${MODE:-channel}

cargo build --release --quiet --bin turnpike --example loadgen
# TURNPIKE_BIN=path compares another build (e.g. an older commit) against coturn.
TURNPIKE_BIN=${TURNPIKE_BIN:-target/release/turnpike}
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

cat >"$dir/turnpike.toml" <<TOML
[server]
listen_udp = ["127.0.0.1:36478"]
shards = 1
[relay]
ipv4 = "127.0.0.1"
ports = "56000-56999"
[auth]
secrets = ["bench-secret"]
[peers]
allow = ["127.0.0.0/8"]
[http]
enabled = false
[log]
level = "warn"
TOML
cat >"$dir/coturn.conf" <<CONF
listening-ip=127.0.0.1
listening-port=36479
relay-ip=127.0.0.1
min-port=57000
max-port=57999
use-auth-secret
static-auth-secret=bench-secret
realm=turnpike
allow-loopback-peers
no-tls
no-dtls
no-tcp
no-cli
relay-threads=1
log-file=$dir/coturn.log
simple-log
CONF

"$TURNPIKE_BIN" --config "$dir/turnpike.toml" 2>"$dir/turnpike.log" &
tp=$!; pids+=("$tp")
turnserver -c "$dir/coturn.conf" >/dev/null 2>&1 &
ct=$!; pids+=("$ct")
sleep 1

load() {
  target/release/examples/loadgen --server "127.0.0.1:$1" --secret bench-secret --pid "$2" \
    --clients "$CLIENTS" --seconds "$SECS" --window "$WINDOW" --size "$SIZE" --mode "$MODE"
}
echo "load: $CLIENTS clients x window $WINDOW x $SIZE-byte payloads, mode $MODE, $SECS s a round, $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
  echo "round $r turnpike $(load 36478 "$tp" | tee -a "$dir/turnpike.jsonl")"
  echo "round $r coturn   $(load 36479 "$ct" | tee -a "$dir/coturn.jsonl")"
done
python3 - "$dir" <<'PY'
import json, statistics, sys
d = sys.argv[1]
rows = {s: [json.loads(l) for l in open(f"{d}/{s}.jsonl")] for s in ("turnpike", "coturn")}
med = {s: {k: statistics.median(r[k] for r in rs) for k in ("relayed_pps", "relayed_per_cpu_s")}
       for s, rs in rows.items()}
print(f"{'':10} {'relayed pkt/s':>14} {'pkt per CPU-s':>14}")
for s in ("turnpike", "coturn"):
    print(f"{s:10} {med[s]['relayed_pps']:>14.0f} {med[s]['relayed_per_cpu_s']:>14.0f}")
print(f"{'ratio':10} {med['turnpike']['relayed_pps'] / med['coturn']['relayed_pps']:>14.2f}"
      f" {med['turnpike']['relayed_per_cpu_s'] / med['coturn']['relayed_per_cpu_s']:>14.2f}")
PY
