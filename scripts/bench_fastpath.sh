#!/usr/bin/env bash
# The kernel fast path ([fastpath], issue 19) against turnpike's socket path and coturn,
# in network namespaces this script makes (root): same run, same load, alternating rounds.
# Not part of the test suite: run it by hand. Every load is bounded in time and count,
# and all traffic stays inside the namespaces, which the EXIT trap deletes.
#
# Topology (the model deployment of /work/shared/TESTING.md: the relay on one interface
# behind a router, as on a cloud VM; the XDP program sends rewritten frames back out of
# the interface they came in by):
#   client ns  c0 192.0.2.2    -- r1 192.0.2.1    router ns
#   relay ns   s0 198.51.100.2 -- r0 198.51.100.1 router ns   (the server, XDP on s0)
#   peer ns    p0 203.0.113.2  -- r2 203.0.113.1  router ns
# c0 and p0 send with TX checksum offload off (full checksums, as from a real NIC); r0
# carries an XDP pass program so it takes the frames s0's program sends with XDP_TX.
# examples/loadgen runs in the client ns; its echo peers are sockets it makes in the peer
# ns (--peer-netns), one per client (coturn's --multiplex-peer tells sessions apart by
# peer address).
#
# Servers, one at a time on 198.51.100.2:3478 (started and stopped each round, so only
# the fast-path run has a program on s0), one relay thread each:
#   tp-socket  turnpike, one shard, socket path (relay.gso on, its default)
#   tp-xdp     the same with [fastpath] enabled on s0 (FP_MODE, default native "xdp")
#   ct         coturn (COTURN_BIN), relay-threads=1, its defaults
#   ct-mux     the same with --multiplex-peer --udp-gso (if this coturn has them; not in
#              c2c100: there every allocation shares one relayed address, so two
#              allocations cannot relay to each other)
#   ct-deb     Debian's coturn (COTURN_DEB_BIN, /usr/bin/turnserver), relay-threads=1
# Modes (ChannelData over UDP client legs):
#   ch100 ch1200  100 / 1200-byte payloads, CLIENTS clients x WINDOW in flight
#   ch100w1       burst-free: BF_CLIENTS clients, one message in flight each, none in a row
#   c2c100        client to client: pairs of allocations relaying to each other's relayed
#                 address (relay to relay: the fast path leaves these to the socket path)
# Per mode and round:
#   saturation  the mode's clients and window, SECS s: relayed packets/s, loss
#   equal load  RATE_CLIENTS clients, RATE_PPS originated packets/s (2x relayed), below
#               every server's limit:
#               whole-machine CPU (every core, /proc/stat) per million relayed packets,
#               less other users' processes on this shared machine (loadgen reports both),
#               and RTT p50/p99
#   capacity    (CAP_MODES) the highest offered rate that loses <= 1%: x1.25 steps of
#               CAP_SECS from CAP_START originated packets/s, to the second failing step
# The order of the servers rotates every round, so noise from other jobs hits all alike.
#
#   sudo bash scripts/bench_fastpath.sh                  (~3 min; ROUNDS=5 ~5)
#   BENCH_QUICK=1 sudo bash scripts/bench_fastpath.sh    (~35 s)
#   COTURN_BIN=/usr/bin/turnserver MODES=ch100 ROUNDS=5 RATE_PPS=30000 ...
#   BPF_STATS=1  also the fast path's XDP program's own time per run (kernel BPF stats)
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) == 0 ]] || { echo "needs root (namespaces, XDP)"; exit 1; }
if [[ -n "${BENCH_QUICK:-}" ]]; then
  ROUNDS=${ROUNDS:-1} SECS=${SECS:-1.5} MODES=${MODES:-ch100} CAP_MODES=${CAP_MODES:-ch100}
  CAP_SECS=${CAP_SECS:-0.5}
fi
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
CLIENTS=${CLIENTS:-50} # at most 128 (the peers' ports per run)
WINDOW=${WINDOW:-8}
MODES=${MODES:-ch100 ch1200 ch100w1 c2c100}
RATE_PPS=${RATE_PPS:-30000}
# At the equal load: fewer clients (each turn of the generator reads every socket) and a
# generator that sleeps IDLE_US when it has nothing to do, so its CPU is its work rather
# than a spinning core, and the servers' share of the machine shows.
RATE_CLIENTS=${RATE_CLIENTS:-10}
IDLE_US=${IDLE_US:-50}
FP_MODE=${FP_MODE:-xdp}
BF_CLIENTS=${BF_CLIENTS:-128} # at most 128 (the peers' ports per run)
CAP_MODES=${CAP_MODES:-ch100 ch100w1}
CAP_SECS=${CAP_SECS:-1}
CAP_START=${CAP_START:-20000}
SERVERS=${SERVERS:-tp-socket tp-xdp ct ct-mux ct-deb}
COTURN_DEB_BIN=${COTURN_DEB_BIN:-/usr/bin/turnserver}
SCRATCH_COTURN=/work/scratch/coturn/build/bin/turnserver
if [[ -z "${COTURN_BIN:-}" ]]; then
  if [[ -x $SCRATCH_COTURN ]]; then COTURN_BIN=$SCRATCH_COTURN; else COTURN_BIN=/usr/bin/turnserver; fi
fi

cargo build --release --quiet --bin turnpike --example loadgen
TURNPIKE_BIN=${TURNPIKE_BIN:-target/release/turnpike}
LOADGEN=${LOADGEN:-target/release/examples/loadgen}
ulimit -n 65536 2>/dev/null || true
# shellcheck source=scripts/bench_common.sh
source scripts/bench_common.sh

NS=fpb$$
C=${NS}c R=${NS}r S=${NS}s P=${NS}p
SERVER=198.51.100.2:3478
HTTP=127.0.0.1:9310
srv=""
teardown() {
  if [[ -n $srv ]]; then kill "$srv" 2>/dev/null || true; fi
  if [[ -n ${bpf_stats0:-} ]]; then sysctl -qw kernel.bpf_stats_enabled="$bpf_stats0"; fi
  cleanup
  for n in $C $R $S $P; do ip netns del "$n" 2>/dev/null || true; done
}
trap teardown EXIT
trap 'exit 130' INT TERM

for n in $C $R $S $P; do ip netns add "$n"; ip -n "$n" link set lo up; done
for x in "$C c0 r1 192.0.2" "$S s0 r0 198.51.100" "$P p0 r2 203.0.113"; do
  read -r ns dev rdev net <<<"$x"
  ip -n "$ns" link add "$dev" type veth peer name "$rdev" netns "$R"
  ip -n "$ns" addr add "$net.2/24" dev "$dev"
  ip -n "$R" addr add "$net.1/24" dev "$rdev"
  ip -n "$ns" link set "$dev" up
  ip -n "$R" link set "$rdev" up
  ip -n "$ns" route add default via "$net.1"
done
ip netns exec "$R" sysctl -qw net.ipv4.ip_forward=1
# coturn 4.17.1 sends its STUN responses with TTL 1 (Debian's 4.6.1 does not): through a
# router they die, so the router gives packets from the relay a fresh TTL, whichever
# server runs (one nftables rule on every packet: the same small cost for all).
ip netns exec "$R" nft -f - <<'NFT'
table ip ttlfix {
  chain pre {
    type filter hook prerouting priority -150;
    iifname "r0" ip ttl set 64
  }
}
NFT
ip netns exec "$C" ethtool -K c0 tx off >/dev/null
ip netns exec "$P" ethtool -K p0 tx off >/dev/null
cat >"$dir/pass.c" <<'C'
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int pass(struct xdp_md *c) { return XDP_PASS; }
char LICENSE[] SEC("license") = "GPL";
C
clang -O2 -target bpf "-I/usr/include/$(uname -m)-linux-gnu" -c "$dir/pass.c" -o "$dir/pass.o"
ip -n "$R" link set dev r0 xdpdrv obj "$dir/pass.o" sec xdp
# The relay host's own kernel work, apart from the sender's: with GRO on, a veth receives
# through NAPI (with XDP attached it does anyway), and threaded NAPI polls in a kernel
# thread of its own (napi/s0-N), whose CPU /proc shows. So s0's receive path (IP and UDP
# for a socket server, the XDP program and its XDP_TX for the fast path) is charged to
# that thread, not to the sender that set it off; the same on r0, so the router's
# receive of what the relay sends is charged to neither. Same for every server.
ip netns exec "$S" ethtool -K s0 gro on >/dev/null
# A veth hands a packet to its peer's NAPI only if the sending side has no TSO (or the
# packet is a local socket's): without this the router's packets to s0 took netif_rx in
# the router's (the sender's) context for socket servers, and only XDP used the thread.
ip netns exec "$R" ethtool -K r0 tso off >/dev/null
ip netns exec "$R" ethtool -K r0 gro on >/dev/null
ip netns exec "$S" sh -c 'echo 1 >/sys/class/net/s0/threaded'
ip netns exec "$R" sh -c 'echo 1 >/sys/class/net/r0/threaded'
# The PIDs of s0's NAPI threads (re-created when a program attaches or detaches).
host_kthreads() { ps -eo pid=,comm= | awk '$2 ~ /^napi\/s0-/ {print $1}' | paste -sd, -; }

# $1: the fast path on (true) or off.
turnpike_conf() {
  cat <<TOML
[server]
listen_udp = ["$SERVER"]
shards = 1
unauthenticated_rate = 0
max_connections_per_ip = 1000
[relay]
ipv4 = "198.51.100.2"
ports = "50000-59999"
max_allocations = 20000
max_allocations_per_user = 20000
[auth]
secrets = ["$SECRET"]
[peers]
allow = ["203.0.113.0/24", "198.51.100.2/32"]
[http]
listen = "$HTTP"
[log]
level = "warn"
[fastpath]
enabled = $1
interface = "s0"
mode = "$FP_MODE"
TOML
}
turnpike_conf false >"$dir/tp-socket.toml"
turnpike_conf true >"$dir/tp-xdp.toml"
cat >"$dir/coturn.conf" <<CONF
listening-ip=198.51.100.2
listening-port=3478
relay-ip=198.51.100.2
min-port=50000
max-port=59999
relay-threads=1
use-auth-secret
static-auth-secret=$SECRET
realm=turnpike
no-tls
no-dtls
no-tcp
no-cli
no-rfc5780
log-file=$dir/coturn.log
simple-log
CONF
ct_version=$("$COTURN_BIN" --version 2>/dev/null | head -1 || true)
ct_deb_version=$("$COTURN_DEB_BIN" --version 2>/dev/null | head -1 || true)
if [[ -z $ct_deb_version ]]; then
  echo "no Debian coturn at $COTURN_DEB_BIN: ct-deb left out"
  SERVERS=${SERVERS/ct-deb/}
fi
ct_help=$("$COTURN_BIN" -h 2>&1 || true)
if [[ $ct_help != *--udp-gso* ]]; then
  echo "coturn $ct_version has no --udp-gso: ct-mux left out"
  SERVERS=${SERVERS/ct-mux/}
fi

start_server() { # name -> $srv running in the relay ns
  case $1 in
    tp-*) ip netns exec "$S" "$TURNPIKE_BIN" --config "$dir/$1.toml" 2>"$dir/$1.log" & ;;
    ct) ip netns exec "$S" "$COTURN_BIN" -c "$dir/coturn.conf" >/dev/null 2>&1 & ;;
    ct-mux) ip netns exec "$S" "$COTURN_BIN" -c "$dir/coturn.conf" --multiplex-peer --udp-gso \
      >/dev/null 2>&1 & ;;
    ct-deb) ip netns exec "$S" "$COTURN_DEB_BIN" -c "$dir/coturn.conf" >/dev/null 2>&1 & ;;
  esac
  srv=$!
  sleep 1.2
  if [[ -n ${BENCH_HOLD:-} ]]; then echo "holding: $S"; sleep "$BENCH_HOLD"; fi
  kill -0 "$srv" || { cat "$dir/$1.log" 2>/dev/null; echo "$1 did not start"; exit 1; }
}
fail() {
  echo "$1: the load failed; its log:"
  tail -20 "$dir/$1.log" "$dir/coturn.log" 2>/dev/null || true
  exit 1
}
stop_server() {
  kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  srv=""
  # The next server must find s0 bare: no program left behind by the fast-path run.
  if ip -n "$S" link show s0 | grep -q xdp; then echo "a program is still on s0"; exit 1; fi
}
metrics() { ip netns exec "$S" curl -s --max-time 2 "http://$HTTP/metrics"; }
# The kernel's relayed packets (both directions) from turnpike's metrics.
fp_packets() { metrics | awk '/^turnpike_fastpath_packets_total/ {s += $2} END {print s + 0}'; }
emit() { # kind mode server round json
  printf '{"kind":"%s","mode":"%s","server":"%s","round":%s,"r":%s}\n' "$@" >>"$dir/results.jsonl"
}
runs=0
# mode -> loadgen flags (ch100w1: no message from one client right after another).
fp_flags() {
  case $1 in
    ch100w1) echo "--mode channel --size 100 --burst 1" ;;
    *) flags "$1" ;;
  esac
}
loadgen() { # server-pid mode clients extra flags...
  local pid=$1 mode=$2 n=$3
  shift 3
  # Each run's peers on ports of their own (the caller counts runs: this runs in a
  # subshell): coturn --multiplex-peer refused a ChannelBind to a peer port that the run
  # before had used (ephemeral ports get reused).
  local port=$((20000 + (runs % 300) * 128))
  # shellcheck disable=SC2046
  timeout 120 ip netns exec "$C" "$LOADGEN" --server "$SERVER" --secret "$SECRET" --pid "$pid" \
    --peer "203.0.113.2:$port" --peer-netns "$P" --peers "$n" --clients "$n" \
    --seconds "${LG_SECS:-$SECS}" $(fp_flags "$mode") "$@"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) (shared with other jobs)"
echo "turnpike: $TURNPIKE_BIN ($(git rev-parse --short HEAD)); coturn: $COTURN_BIN, version" \
  "$ct_version; Debian's coturn: $COTURN_DEB_BIN, version ${ct_deb_version:-none}"
echo "servers: $SERVERS; modes: $MODES; $ROUNDS rounds; $CLIENTS clients x window $WINDOW for" \
  "saturation, $RATE_CLIENTS clients x $RATE_PPS originated pkt/s for the equal load; $SECS s each"
touch "$dir/results.jsonl"
# BPF_STATS=1: the kernel times the fast path's program (kernel.bpf_stats_enabled, global,
# on only during its rounds and put back after; it adds two clock reads to every run).
bpf_stats0=$(sysctl -n kernel.bpf_stats_enabled)
read -ra order <<<"$SERVERS"
for r in $(seq 1 "$ROUNDS"); do
  n=${#order[@]}
  for k in $(seq 0 $((n - 1))); do
    s=${order[$(((k + r - 1) % n))]}
    start_server "$s"
    echo "round $r $s: relay host's NAPI threads: $(host_kthreads)"
    fp0=0
    if [[ $s == tp-xdp ]]; then
      info=$(metrics | grep '^turnpike_fastpath_info' || true)
      echo "round $r tp-xdp: $info"
      fp0=$(fp_packets)
      prog=$(ip -n "$S" link show s0 | grep -o 'prog/xdp id [0-9]*' | grep -o '[0-9]*$' || true)
      if [[ -n ${BPF_STATS:-} ]]; then sysctl -qw kernel.bpf_stats_enabled=1; fi
    fi
    for mode in $MODES; do
      if [[ $s == ct-mux && $mode == c2c* ]]; then continue; fi
      nc=$CLIENTS w=$WINDOW
      if [[ $mode == ch100w1 ]]; then nc=$BF_CLIENTS w=1; fi
      runs=$((runs + 1))
      out=$(loadgen "$srv" "$mode" "$nc" --window "$w") || fail "$s"
      echo "round $r $s $mode saturation $out"
      emit load "$mode" "$s" "$r" "$out"
      runs=$((runs + 1))
      out=$(loadgen "$srv" "$mode" "$RATE_CLIENTS" --rate "$RATE_PPS" --idle-us "$IDLE_US" \
        --host-pids "$(host_kthreads)") || fail "$s"
      echo "round $r $s $mode rate $out"
      emit rate "$mode" "$s" "$r" "$out"
      if [[ " $CAP_MODES " == *" $mode "* ]]; then
        runs=$((runs + 1))
        out=$(LG_SECS=$CAP_SECS loadgen "$srv" "$mode" "$CLIENTS" --ramp "$CAP_START") || fail "$s"
        cap=$(echo "$out" | grep -o '"capacity_pps": [0-9]*, "stopped_by": "[a-z]*"')
        echo "round $r $s $mode capacity $cap"
        emit capacity "$mode" "$s" "$r" "{$cap}"
      fi
    done
    if [[ $s == tp-xdp ]]; then
      fp1=$(fp_packets)
      tot=$(metrics | awk '/^turnpike_relayed_packets_total/ {s += $2} END {print s + 0}')
      attached=$(echo "$info" | grep -o 'mode="[a-z-]*"' | cut -d'"' -f2)
      echo "round $r tp-xdp: kernel relayed $((fp1 - fp0)) of $tot packets (mode $attached)"
      if [[ -n ${BPF_STATS:-} && -n $prog ]]; then
        sysctl -qw kernel.bpf_stats_enabled="$bpf_stats0"
        bpftool prog show id "$prog" --json | python3 -c 'import json,sys; p=json.load(sys.stdin)
print("round %s tp-xdp: XDP program %s: %d runs, %.0f ns a run" % (sys.argv[1], p["name"],
      p.get("run_cnt", 0), p.get("run_time_ns", 0) / max(p.get("run_cnt", 0), 1)))' "$r"
      fi
      printf '{"kind":"fastpath","mode":"all","server":"tp-xdp","round":%s,"r":{"kernel":%s,"total":%s,"attached":"%s"}}\n' \
        "$r" "$((fp1 - fp0))" "$tot" "$attached" >>"$dir/results.jsonl"
    fi
    stop_server
  done
done

echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 scripts/bench_fastpath_report.py "$dir/results.jsonl" "$ct_version" "${ct_deb_version:-}"
if [[ -n "${BENCH_SAVE:-}" ]]; then cp "$dir/results.jsonl" "$BENCH_SAVE"; fi
