#!/usr/bin/env python3
"""Summarises scripts/bench.sh results (one JSON line per measurement): medians with
min-max spread per server, turnpike/coturn ratios of the medians, and the bottleneck."""
import json
import statistics
import sys
from collections import defaultdict

rows = [json.loads(line) for line in open(sys.argv[1])]
cores = int(sys.argv[2]) if len(sys.argv) > 2 else 2
S = ("turnpike", "coturn", "bare")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def spread(xs):
    return f"{min(xs) / 1000:.0f}-{max(xs) / 1000:.0f}k" if xs else "-"


def ratio(a, b):
    return f"{a / b:.2f}" if b else "-"


def bottleneck(sf, lf, mb, threads):
    # The side whose CPU was (nearly) full; a server thread count of "full" = all cores.
    n = 1 if threads == "1" else cores
    if sf >= 0.85 * n:
        return "server CPU"
    if lf >= 0.85:
        return "loadgen CPU"
    if sf + lf >= 0.85 * cores:
        return "all cores busy (server+loadgen)"
    if mb >= 0.85:
        return f"machine: cores {100 * mb:.0f}% busy, other jobs"
    return "window/latency"


def per_server(d, keys=None):
    """Each server's rounds and the medians of their fields."""
    out = {}
    for s in S:
        rs = d.get(s, [])
        if rs:
            out[s] = (rs, {k: med([r[k] for r in rs]) for k in (keys or rs[0])})
    return out


by = defaultdict(lambda: defaultdict(list))
for r in rows:
    by[(r["kind"], r["threads"], r["mode"])][r["server"]].append(r["r"])

print()
print("examples/loadgen (medians over alternating rounds; spread = min-max; ratio = turnpike/coturn;")
print("  loss% end to end, gen% of it dropped at the load generator's own sockets;")
print("  bare = examples/bare_relay, only the socket work: bare/ct = the most a relay doing one")
print("  syscall per datagram on its allocation sockets could show against coturn)")
hdr = (f"{'thr':4} {'mode':7} {'server':8} {'pkt/s':>7} {'spread':>10} {'pkt/CPU-s':>9} {'spread':>10}"
       f" {'loss%':>6} {'gen%':>5} {'p50us':>6} {'p99us':>6} {'srvCPU':>6} {'genCPU':>6}  bottleneck")
print(hdr)
for (kind, th, mode), d in by.items():
    if kind != "load":
        continue
    ps = per_server(d)
    m = {s: x for s, (_, x) in ps.items()}
    for s, (rs, x) in ps.items():
        pps = [r["relayed_pps"] for r in rs]
        pc = [r["relayed_per_cpu_s"] for r in rs]
        print(f"{th:4} {mode:7} {s:8} {x['relayed_pps'] / 1000:>6.0f}k {spread(pps):>10}"
              f" {x['relayed_per_cpu_s'] / 1000:>8.0f}k {spread(pc):>10} {100 * x['loss']:>6.2f}"
              f" {100 * x.get('loadgen_drops', 0) / max(x['sent'], 1):>5.2f} {x['rtt_p50_us']:>6.0f} {x['rtt_p99_us']:>6.0f} {x['server_cpu_frac']:>6.2f}"
              f" {x['loadgen_cpu_frac']:>6.2f}  {bottleneck(x['server_cpu_frac'], x['loadgen_cpu_frac'], x.get('machine_busy', 0), th)}")
    c = m.get("coturn")
    for s, label in (("turnpike", "ratio"), ("bare", "bare/ct")):
        if c and s in m:
            t = m[s]
            print(f"{th:4} {mode:7} {label:8} {ratio(t['relayed_pps'], c['relayed_pps']):>7} {'':>10}"
                  f" {ratio(t['relayed_per_cpu_s'], c['relayed_per_cpu_s']):>9} {'':>10} {'':>6} {'':>5}"
                  f" {ratio(t['rtt_p50_us'], c['rtt_p50_us']):>6} {ratio(t['rtt_p99_us'], c['rtt_p99_us']):>6}")

rates = [(k, d) for k, d in by.items() if k[0] == "rate"]
if rates:
    print()
    print("equal offered load (the same originated pkt/s for both, one thread each; medians):")
    print(f"  {'mode':7} {'server':8} {'pkt/s':>7} {'pkt/CPU-s':>9} {'spread':>10} {'loss%':>6} {'p50us':>6} {'p99us':>6}")
    for (_, th, mode), d in rates:
        ps = per_server(d)
        m = {s: x for s, (_, x) in ps.items()}
        for s, (rs, x) in ps.items():
            print(f"  {mode:7} {s:8} {x['relayed_pps'] / 1000:>6.0f}k {x['relayed_per_cpu_s'] / 1000:>8.0f}k"
                  f" {spread([r['relayed_per_cpu_s'] for r in rs]):>10} {100 * x['loss']:>6.2f}"
                  f" {x['rtt_p50_us']:>6.0f} {x['rtt_p99_us']:>6.0f}")
        if len(m) == 2:
            t, c = m["turnpike"], m["coturn"]
            print(f"  {mode:7} {'ratio':8} {'':>7} {ratio(t['relayed_per_cpu_s'], c['relayed_per_cpu_s']):>9}"
                  f" {'':>10} {'':>6} {ratio(t['rtt_p50_us'], c['rtt_p50_us']):>6} {ratio(t['rtt_p99_us'], c['rtt_p99_us']):>6}")

caps = [(k, d) for k, d in by.items() if k[0] == "capacity"]
if caps:
    print()
    print("capacity: highest offered load losing <= 1% (relayed pkt/s, x1.25 steps, one thread each)")
    for (_, th, mode), d in caps:
        line = f"  {mode:7}"
        vals = {}
        for s in S:
            for r in d.get(s, []):
                vals[s] = r["capacity_pps"]
                last = r["steps"][-1] if r["steps"] else {}
                line += (f" {s} {r['capacity_pps'] / 1000:.0f}k (stopped by {r['stopped_by']},"
                         f" gen CPU {last.get('loadgen_cpu_frac', 0):.2f}, srv CPU"
                         f" {last.get('server_cpu_frac', 0):.2f});")
        if len(vals) == 2:
            line += f" ratio {ratio(vals['turnpike'], vals['coturn'])}"
        print(line)

allocs = [(k, d) for k, d in by.items() if k[0] == "allocs"]
for (_, th, mode), d in allocs:
    print()
    print("allocations (one thread each, pipelined 64 in flight):")
    vals = {}
    for s in S:
        for r in d.get(s, []):
            vals[s] = r
            print(f"  {s:8} {r['allocs']} ok / {r['failed']} failed, {r['allocs_per_s']:.0f} allocs/s,"
                  f" {r['allocs_per_cpu_s']:.0f} per CPU-s, RSS {r['rss_bytes_per_alloc']:.0f} B per allocation")
    if len(vals) == 2:
        print(f"  ratio    allocs/s {ratio(vals['turnpike']['allocs_per_s'], vals['coturn']['allocs_per_s'])},"
              f" RSS/alloc {ratio(vals['turnpike']['rss_bytes_per_alloc'], vals['coturn']['rss_bytes_per_alloc'])}")

uc = [(k, d) for k, d in by.items() if k[0] == "uclient"]
if uc:
    print()
    print("turnutils_uclient (50 clients x 2000 msgs flat out; medians; one thread each)")
    for (_, th, mode), d in uc:
        ps = per_server(d, ("relayed_per_cpu_s", "relayed_pps", "loss", "rtt_avg_ms"))
        m = {s: x for s, (_, x) in ps.items()}
        line = f"  {mode:7}"
        for s, (rs, _) in ps.items():
            line += (f" {s} {m[s]['relayed_per_cpu_s'] / 1000:.0f}k/CPU-s"
                     f" ({spread([r['relayed_per_cpu_s'] for r in rs])}) loss {100 * m[s]['loss']:.1f}%"
                     f" rtt {m[s]['rtt_avg_ms']:.1f} ms;")
        if len(m) == 2:
            line += f" ratio {ratio(m['turnpike']['relayed_per_cpu_s'], m['coturn']['relayed_per_cpu_s'])}"
        print(line)
