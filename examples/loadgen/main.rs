//! A TURN load generator for scripts/bench.sh. N clients allocate with a REST credential
//! over UDP, TCP or TLS, then send to an echo peer in this process through the relay
//! (`--mode channel`: a ChannelBind and ChannelData; `--mode indication`: a permission and
//! Send/Data indications, Firefox's pattern). `--c2c`: clients in pairs, each bound to the
//! other's relayed address, the second one echoing (two allocations per path).
//! Every payload carries its send time, so each echo gives an RTT sample.
//! Load is a window of W messages in flight per client (closed loop) or, with `--rate`,
//! a fixed offered rate (open loop); `--ramp START` raises the rate ×1.25 a step until
//! more than 1% is lost (capacity); `--burst B` sends at most B messages from one client
//! in a row at a fixed rate (1 = no bursts). `--allocs N` instead times N allocations and the
//! server's RSS growth. Prints one JSON line. Bounded in count and time; loopback only, or
//! the documentation ranges of scripts/bench_fastpath.sh's namespaces (`--peer` and
//! `--peer-netns` put the echo peers there, `--peers N` gives N of them; `--idle-us`
//! sleeps when there is nothing to do, so its own CPU is its work).
//!
//! `args`: the flags; `leg`: a client's socket or stream; `client`: allocate, bind and
//! release; `load`: the measured rounds; `alloc_bench`: `--allocs`; `proc_stats`: CPU and
//! memory from /proc.

mod alloc_bench;
mod args;
mod client;
mod leg;
mod load;
mod proc_stats;

use client::{Client, allocate, bind, release, tls_config};
use leg::peer_sockets;
use load::{report, run};

const WARMUP_SECS: f64 = 0.4;

fn main() {
    let a = args::args();
    if a.allocs > 0 {
        return alloc_bench::alloc_bench(&a);
    }
    let tls = tls_config(&a);
    let peers = peer_sockets(&a);
    for p in &peers {
        p.set_nonblocking(true).unwrap();
    }
    let mut clients: Vec<Client> = (0..a.clients).map(|i| allocate(&a, i, &tls)).collect();
    if a.c2c {
        for k in (0..clients.len()).step_by(2) {
            let (ra, rb) = (clients[k].relayed, clients[k + 1].relayed);
            bind(&a, &mut clients[k], rb);
            bind(&a, &mut clients[k + 1], ra);
            clients[k + 1].responder = true;
        }
    } else {
        for (i, c) in clients.iter_mut().enumerate() {
            bind(&a, c, peers[i % peers.len()].local_addr().unwrap());
        }
    }
    for c in &clients {
        c.leg.set_nonblocking();
    }
    // Warm-up, not measured: the first ~150 ms of load had RTTs of several ms against
    // either server (seen in per-packet dumps), which would decide a short round's p99.
    run(&a, &mut clients, &peers, a.rate.max(a.ramp), WARMUP_SECS);
    if a.ramp > 0.0 {
        // Capacity: the highest offered rate (packets/s originated) lost at most 1%.
        let (mut rate, mut capacity, mut steps) = (a.ramp, 0.0, Vec::new());
        let (mut stopped_by, mut fails) = ("steps", 0);
        // 20 steps: up to 690k originated packets/s, beyond what this generator can send.
        for _ in 0..20 {
            let mut st = run(&a, &mut clients, &peers, rate, a.seconds);
            let line = report(&a, &mut st, rate);
            let loss = 1.0 - st.echoed as f64 / st.sent.max(1) as f64;
            // A generator that cannot even send the offered rate measures itself.
            let short = (st.sent as f64) < 0.97 * rate * st.secs
                || st.own_drops as f64 > 0.01 * st.sent as f64;
            steps.push(line);
            // The machine is shared and noisy: one failing step may be a stall elsewhere,
            // so the ramp ends at the second failure in a row.
            if loss > 0.01 || short {
                fails += 1;
                if fails == 2 {
                    stopped_by = if short { "loadgen" } else { "loss" };
                    break;
                }
            } else {
                fails = 0;
                capacity = rate;
            }
            rate *= 1.25;
        }
        // In relayed packets/s, like every other figure (each originated packet is
        // relayed there and back: 2 times, or 4 in c2c mode).
        let per_echo = if a.c2c { 4.0 } else { 2.0 };
        println!(
            "{{\"capacity_pps\": {:.0}, \"stopped_by\": \"{stopped_by}\", \"steps\": [{}]}}",
            capacity * per_echo,
            steps.join(", ")
        );
    } else {
        let mut st = run(&a, &mut clients, &peers, a.rate, a.seconds);
        println!("{}", report(&a, &mut st, a.rate));
    }
    for c in clients.iter_mut() {
        release(&a, c);
    }
}
