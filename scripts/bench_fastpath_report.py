#!/usr/bin/env python3
"""Summarises scripts/bench_fastpath.sh results (one JSON line per measurement): medians
over the alternating rounds with their min-max spread, ratios to coturn's default, and the
fast path against the best coturn configuration of each measure."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1])]
ct_version = sys.argv[2] if len(sys.argv) > 2 else "?"
ct_deb_version = sys.argv[3] if len(sys.argv) > 3 else "?"
S = ("tp-socket", "tp-xdp", "ct", "ct-mux", "ct-deb")
COTURNS = ("ct", "ct-mux", "ct-deb")
NAMES = {
    "tp-socket": "turnpike, socket path",
    "tp-xdp": "turnpike, [fastpath] XDP",
    "ct": f"coturn {ct_version}",
    "ct-mux": f"coturn {ct_version} --multiplex-peer --udp-gso",
    "ct-deb": f"coturn {ct_deb_version} (Debian)",
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


COLS = {
    "m": machine,
    "u": lambda x: machine(x) - x["loadgen_utime_s"],
    "n": lambda x: machine(x) - x["loadgen_cpu_s"],
    "h": lambda x: x["server_cpu_s"] + x.get("host_kthreads_cpu_s", 0.0),
    "sv": lambda x: x["server_cpu_s"],
}
summary = []


def saturation(mode, load):
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
    return {s: med([r["relayed_pps"] for r in rs]) for s, rs in load.items()}


def equal_load(mode, rate):
    offered = next(iter(rate.values()))[0]["offered_pps"]
    per_echo = 4 if mode.startswith("c2c") else 2
    print(f"{mode}: equal load, {offered:.0f} originated = {per_echo * offered:.0f} relayed pkt/s "
          "offered; CPU-seconds per million relayed packets; RTT in us")
    print(f"  {'server':44} {'relayed/s':>9} {'loss %':>6} {'machine':>7} {'spread':>11} {'vs ct':>5} "
          f"{'-lg user':>8} {'vs ct':>5} {'-loadgen':>8} {'vs ct':>5} {'host':>6} {'spread':>9} "
          f"{'vs ct':>5} {'server':>6} {'p50':>5} {'p99':>6}")
    ct = {k: med([per_mpkt(x, f(x)) for x in rate.get("ct", [])]) for k, f in COLS.items()}
    out = {}
    for s in S:
        rs = rate.get(s)
        if not rs:
            continue
        v = {k: [per_mpkt(x, f(x)) for x in rs] for k, f in COLS.items()}
        m = {k: med(xs) for k, xs in v.items()}
        m["p50"] = med([x["rtt_p50_us"] for x in rs])
        m["p99"] = med([x["rtt_p99_us"] for x in rs])
        vs = {k: m[k] / ct[k] if ct[k] else float("nan") for k in ct}
        print(f"  {NAMES[s]:44} {med([x['relayed_pps'] for x in rs]):9.0f} "
              f"{med([100 * x['loss'] for x in rs]):6.2f} {m['m']:7.2f} {spread(v['m'], 1, '{:.2f}'):>11} "
              f"{vs['m']:5.2f} {m['u']:8.2f} {vs['u']:5.2f} {m['n']:8.2f} {vs['n']:5.2f} "
              f"{m['h']:6.2f} {spread(v['h'], 1, '{:.2f}'):>9} {vs['h']:5.2f} {m['sv']:6.2f} "
              f"{m['p50']:5.0f} {m['p99']:6.0f}")
        out[s] = m
    return out


def capacity(mode, cap):
    print(f"{mode}: capacity, relayed pkt/s at <= 1% loss (x1.25 steps; medians, spread, what ended the ramp)")
    ct = med([r["capacity_pps"] for r in cap.get("ct", [])])
    for s in S:
        rs = cap.get(s)
        if not rs:
            continue
        c = [r["capacity_pps"] for r in rs]
        why = "/".join(sorted({r["stopped_by"] for r in rs}))
        print(f"  {NAMES[s]:44} {med(c):13.0f} {spread(c, 1000):>11} "
              f"{med(c) / ct if ct else float('nan'):6.2f}  {why}")
    return {s: med([r["capacity_pps"] for r in rs]) for s, rs in cap.items()}


def best_coturn(vals, higher_better):
    got = {s: vals[s] for s in COTURNS if s in vals}
    if not got:
        return None, float("nan")
    s = (max if higher_better else min)(got, key=got.get)
    return s, got[s]


modes = sorted({m for (k, m) in by if k in ("load", "rate")}, key=lambda m: (len(m), m))
print("machine = every core (/proc/stat) less other users' processes; -lg user = less the")
print("generator's user time too; -loadgen = less all the generator's CPU (/proc/PID/stat),")
print("whose system time holds the softirq work its sends set off: this kernel has no IRQ")
print("time accounting, so that is where the router's forwarding runs; host = the relay host")
print("alone: the server process plus the NAPI threads of its veth (s0's receive path: IP/UDP")
print("for a socket server, XDP and XDP_TX for the fast path); server = the process alone")
for mode in modes:
    print()
    sat = saturation(mode, by[("load", mode)])
    eq = equal_load(mode, by[("rate", mode)]) if by[("rate", mode)] else {}
    cap = capacity(mode, by[("capacity", mode)]) if by[("capacity", mode)] else {}
    fp = "tp-xdp"
    rows = [("saturation pkt/s", sat, True)]
    rows += [("capacity pkt/s", cap, True)] if cap else []
    rows += [(name, {s: m[k] for s, m in eq.items()}, False)
             for name, k in (("machine CPU/pkt", "m"), ("machine-loadgen CPU/pkt", "n"),
                             ("relay host CPU/pkt", "h"))]
    for name, vals, hi in rows:
        b, bv = best_coturn(vals, hi)
        if fp in vals and b:
            x = vals[fp] / bv if hi else bv / vals[fp]
            summary.append(f"  {mode:8} {name:24} fast path {x:5.2f}x the best coturn ({NAMES[b]})")
    if fp in eq and "tp-socket" in eq:
        summary.append(f"  {mode:8} {'RTT p99 at equal load':24} fast path {eq[fp]['p99']:.0f} us, "
                       f"socket path {eq['tp-socket']['p99']:.0f} us")

if summary:
    print()
    print("the fast path against the best coturn configuration of each measure (higher is better):")
    print("\n".join(summary))
fp = by[("fastpath", "all")].get("tp-xdp", [])
if fp:
    print()
    for r in fp:
        k, t = r["kernel"], r["total"]
        print(f"fast path, attached mode {r['attached'] or 'NONE'}: the kernel relayed {k} of the "
              f"{t:.0f} packets turnpike counted ({100 * k / t if t else 0:.1f}%)")
print("CPU columns in CPU-seconds per 10^6 relayed packets (server = the server process alone);")
print("others = other users' CPU during the window, in cores (this machine is shared)")
