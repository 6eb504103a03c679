#!/usr/bin/env python3
"""Summarises scripts/bench_fastpath.sh results (one JSON line per measurement): medians
over the alternating rounds with their min-max spread, and ratios to coturn's default."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1])]
ct_version = sys.argv[2] if len(sys.argv) > 2 else "?"
S = ("tp-socket", "tp-xdp", "ct", "ct-mux")
NAMES = {
    "tp-socket": "turnpike, socket path",
    "tp-xdp": "turnpike, [fastpath] XDP",
    "ct": f"coturn {ct_version}",
    "ct-mux": f"coturn {ct_version} --multiplex-peer --udp-gso",
}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs, scale=1.0, fmt="{:.0f}"):
    return (fmt + "-" + fmt).format(min(xs) / scale, max(xs) / scale) if xs else "-"


by = defaultdict(lambda: defaultdict(list))
for r in rows:
    by[(r["kind"], r["mode"])][r["server"]].append(r["r"])


def bottleneck(r):
    if r["server_cpu_frac"] >= 0.85:
        return "server CPU"
    if r["loadgen_cpu_frac"] >= 0.85:
        return "loadgen CPU"
    if r["machine_busy"] >= 0.85:
        return "all cores busy"
    return "window"


def per_mpkt(r, cpu_s):
    """CPU-seconds per million packets relayed in the window."""
    return cpu_s / max(r["relayed_pps"] * r["seconds"], 1) * 1e6


def machine(r):
    """Whole-machine CPU-s (every core, /proc/stat) less other users' processes."""
    return r["machine_cpu_s"] - r["others_cpu_s"]


modes = sorted({m for (k, m) in by if k in ("load", "rate")}, key=lambda m: (len(m), m))
for mode in modes:
    load, rate = by[("load", mode)], by[("rate", mode)]
    print()
    print(f"{mode}: saturation ({len(next(iter(load.values()), []))} rounds, medians, spread min-max)")
    print(f"  {'server':44} {'relayed pkt/s':>13} {'spread (k)':>11} {'loss %':>7} {'vs ct':>6}  bottleneck")
    ct = med([r["relayed_pps"] for r in load.get("ct", [])])
    for s in S:
        rs = load.get(s)
        if not rs:
            continue
        pps = [r["relayed_pps"] for r in rs]
        loss = med([100 * r["loss"] for r in rs])
        bn = "/".join(sorted({bottleneck(r) for r in rs}))
        print(f"  {NAMES[s]:44} {med(pps):13.0f} {spread(pps, 1000):>11} {loss:7.2f} "
              f"{med(pps) / ct if ct else float('nan'):6.2f}  {bn}")
    if not rate:
        continue
    offered = next(iter(rate.values()))[0]["offered_pps"]
    print(f"{mode}: equal load, {offered:.0f} originated = {2 * offered:.0f} relayed pkt/s offered; "
          "CPU-seconds per million relayed packets")
    print("  machine = every core (/proc/stat) less other users' processes; -lg user = less the")
    print("  generator's user time too; -loadgen = less all the generator's CPU (/proc/PID/stat),")
    print("  whose system time holds the softirq work its sends set off: this kernel has no IRQ")
    print("  time accounting, so that is where the router and the fast path's XDP program run;")
    print("  host = the relay host alone: the server process plus the NAPI threads of its veth")
    print("  (s0's receive path: IP/UDP for a socket server, XDP and XDP_TX for the fast path)")
    print(f"  {'server':44} {'relayed/s':>9} {'loss %':>6} {'machine':>7} {'spread':>11} {'vs ct':>5} "
          f"{'-lg user':>8} {'vs ct':>5} {'-loadgen':>8} {'vs ct':>5} {'host':>6} {'vs ct':>5} "
          f"{'loadgen':>7} {'server':>6} {'others':>6}")
    cols = {
        "m": lambda x: machine(x),
        "u": lambda x: machine(x) - x["loadgen_utime_s"],
        "n": lambda x: machine(x) - x["loadgen_cpu_s"],
        "lg": lambda x: x["loadgen_cpu_s"],
        "sv": lambda x: x["server_cpu_s"],
        "h": lambda x: x["server_cpu_s"] + x.get("host_kthreads_cpu_s", 0.0),
    }
    ct = {k: med([per_mpkt(x, f(x)) for x in rate.get("ct", [])]) for k, f in cols.items()}
    for s in S:
        rs = rate.get(s)
        if not rs:
            continue
        v = {k: [per_mpkt(x, f(x)) for x in rs] for k, f in cols.items()}
        m = {k: med(xs) for k, xs in v.items()}
        vs = {k: m[k] / ct[k] if ct[k] else float("nan") for k in m}
        # Other users' CPU during the window, in cores: how noisy the machine was.
        oth = med([x["others_cpu_s"] / x["seconds"] for x in rs])
        print(f"  {NAMES[s]:44} {med([x['relayed_pps'] for x in rs]):9.0f} "
              f"{med([100 * x['loss'] for x in rs]):6.2f} {m['m']:7.2f} {spread(v['m'], 1, '{:.2f}'):>11} "
              f"{vs['m']:5.2f} {m['u']:8.2f} {vs['u']:5.2f} {m['n']:8.2f} {vs['n']:5.2f} "
              f"{m['h']:6.2f} {vs['h']:5.2f} {m['lg']:7.2f} {m['sv']:6.2f} {oth:6.2f}")

fp = by[("fastpath", "all")].get("tp-xdp", [])
if fp:
    print()
    for r in fp:
        k, t = r["kernel"], r["total"]
        print(f"fast path, attached mode {r['attached'] or 'NONE'}: the kernel relayed {k} of the "
              f"{t:.0f} packets turnpike counted ({100 * k / t if t else 0:.1f}%)")
print("CPU columns in CPU-seconds per 10^6 relayed packets (server = the server process alone);")
print("others = other users' CPU during the window, in cores (this machine is shared)")
