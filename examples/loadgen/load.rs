//! The measured load: clients originate (a window or a rate), the echo peer answers through
//! the relay, c2c responders send back, and every echo is an RTT sample.

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use turnpike::runtime::shard::io::batch::{BATCH, Batch};

use crate::args::Args;
use crate::client::Client;
use crate::leg::Leg;
use crate::proc_stats::{
    cores, cpu_seconds, machine_jiffies, machine_not_busy_seconds, others_cpu_seconds,
    own_cpu_seconds, own_drops, own_utime_seconds,
};

/// One measured step's counts.
#[derive(Default)]
pub struct Step {
    pub sent: u64,
    /// Echoes back by the end of sending (throughput) and after the drain (loss).
    pub echoed_in_time: u64,
    pub echoed: u64,
    pub rtts_us: Vec<u32>,
    pub secs: f64,
    pub server_cpu: f64,
    /// CPU of `--host-pids` (the relay host's kernel threads).
    pub host_kthreads_cpu: f64,
    pub own_cpu: f64,
    pub machine_busy: f64,
    /// CPU-seconds of every core that were not idle, those of other users' processes
    /// (this machine is shared), and this process's user time alone.
    pub machine_cpu: f64,
    pub others_cpu: f64,
    pub own_utime: f64,
    /// Datagrams dropped at this process's own sockets during the step.
    pub own_drops: u64,
}

/// Drives load for `secs` (window or `rate` packets/s originated), then drains 300 ms.
pub fn run(a: &Args, clients: &mut [Client], peers: &[UdpSocket], rate: f64, secs: f64) -> Step {
    let mut r = Round::new(clients);
    let mut ports: Vec<u16> = peers
        .iter()
        .map(|p| p.local_addr().unwrap().port())
        .collect();
    for c in clients.iter() {
        if let Leg::Udp(s) = &c.leg {
            ports.push(s.local_addr().unwrap().port());
        }
    }
    let drops0 = own_drops(&ports);
    let not_others = [a.pid, std::process::id()];
    let others0 = others_cpu_seconds(&not_others);
    let (cpu0, own0, m0) = (cpu_seconds(a.pid), own_cpu_seconds(), machine_jiffies());
    let host = || a.host_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
    let host0 = host();
    let (utime0, idle0) = (own_utime_seconds(), machine_not_busy_seconds());
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let drain_end = end + Duration::from_millis(300);
    loop {
        let now = Instant::now();
        if now >= drain_end {
            break;
        }
        let sending = now < end;
        let st = &mut r.st;
        if !sending && st.secs == 0.0 {
            st.secs = t0.elapsed().as_secs_f64();
            st.server_cpu = cpu_seconds(a.pid) - cpu0;
            st.host_kthreads_cpu = host() - host0;
            st.own_cpu = own_cpu_seconds() - own0;
            let m1 = machine_jiffies();
            st.machine_busy = (m1.0 - m0.0) as f64 / (m1.1 - m0.1).max(1) as f64;
            st.machine_cpu = st.secs * cores() - (machine_not_busy_seconds() - idle0);
            st.own_utime = own_utime_seconds() - utime0;
            st.others_cpu = others_cpu_seconds(&not_others) - others0;
            st.echoed_in_time = st.echoed;
        }
        // Originate: how many each client may send now.
        let budget = if !sending {
            0
        } else if rate > 0.0 {
            ((rate * t0.elapsed().as_secs_f64()) as u64).saturating_sub(st.sent) as usize
        } else {
            usize::MAX
        };
        let before = r.st.sent + r.st.echoed;
        r.originate(a, clients, rate, budget, t0);
        let mut echoed = 0;
        for p in peers {
            echoed += r.echo_at_peer(p);
        }
        r.receive(a, clients, t0);
        r.respond(a, clients);
        // --idle-us: a turn with nothing to do sleeps instead of spinning, so this
        // process's CPU is its work, not a full core (whole-machine CPU per packet).
        if a.idle_us > 0 && echoed == 0 && r.st.sent + r.st.echoed == before {
            std::thread::sleep(Duration::from_micros(a.idle_us));
        }
    }
    r.st.own_drops = own_drops(&ports) - drops0;
    r.st
}

/// The state of one `run` between its loop turns.
struct Round {
    /// The clients that send (in c2c mode the responders only echo).
    originators: Vec<usize>,
    /// Sent and not yet echoed, per client: the window.
    in_flight: Vec<usize>,
    /// When each client last got an echo.
    progress: Vec<Instant>,
    inb: Batch,
    /// A burst for one destination leaves as one GSO send (segmented at the receiving
    /// socket, in this process's time): both servers get the same datagrams, and the
    /// generator is less often the bottleneck.
    out: Batch,
    st: Step,
    /// The client to start the next originate turn with (round robin).
    rr: usize,
    /// Payloads a c2c responder got, to send back.
    echo_buf: Vec<(usize, Vec<u8>)>,
}

impl Round {
    fn new(clients: &[Client]) -> Round {
        let n = clients.len();
        Round {
            originators: (0..n).filter(|&i| !clients[i].responder).collect(),
            in_flight: vec![0usize; n],
            progress: vec![Instant::now(); n],
            inb: Batch::default(),
            out: Batch::with_gso(true),
            st: Step::default(),
            rr: 0,
            echo_buf: Vec::new(),
        }
    }

    /// Each originating client sends what its window (or the rate's `budget`) allows,
    /// stamped with the time since `t0`.
    fn originate(
        &mut self,
        a: &Args,
        clients: &mut [Client],
        rate: f64,
        mut budget: usize,
        t0: Instant,
    ) {
        let (originators, out) = (&self.originators, &mut self.out);
        let stamp = t0.elapsed().as_nanos() as u64;
        for k in 0..originators.len() {
            if budget == 0 {
                break;
            }
            let i = originators[(self.rr + k) % originators.len()];
            let c = &mut clients[i];
            let room = if rate > 0.0 {
                budget.min(a.burst)
            } else {
                a.window.saturating_sub(self.in_flight[i]).min(BATCH)
            };
            c.frame[c.off..c.off + 8].copy_from_slice(&stamp.to_be_bytes());
            let ok = match &mut c.leg {
                Leg::Udp(s) => {
                    for _ in 0..room {
                        out.push(&[&c.frame], a.server);
                    }
                    let (failed, blocked) = out.flush(s.as_raw_fd());
                    room - failed - blocked
                }
                leg => {
                    let mut ok = 0;
                    while ok < room && leg.stream_send(&c.frame) {
                        ok += 1;
                    }
                    ok
                }
            };
            self.in_flight[i] += ok;
            self.st.sent += ok as u64;
            if rate > 0.0 {
                budget -= room.min(budget);
            }
        }
        self.rr = self.rr.wrapping_add(1);
    }

    /// The echo peer answers every relayed packet back through the relay; returns how many.
    fn echo_at_peer(&mut self, peer: &UdpSocket) -> usize {
        let mut n = 0;
        for _ in 0..64 {
            let got = self.inb.recv(peer.as_raw_fd()).unwrap_or(0);
            n += got;
            for k in 0..got {
                let (slot, len, from) = self.inb.slot(k);
                if let Some(from) = from {
                    self.out.push(&[&slot[..len]], from);
                }
            }
            self.out.flush(peer.as_raw_fd());
            if got < BATCH {
                break;
            }
        }
        n
    }

    /// Every client reads what came back: an echo is an RTT sample (or, for a c2c
    /// responder, a payload to send back).
    fn receive(&mut self, a: &Args, clients: &mut [Client], t0: Instant) {
        let Round {
            in_flight,
            progress,
            inb,
            st,
            echo_buf,
            ..
        } = self;
        let now_ns = t0.elapsed().as_nanos() as u64;
        for i in 0..clients.len() {
            let responder = clients[i].responder;
            let size = a.size;
            let mut take = |b: &[u8], st: &mut Step, echo: &mut Vec<(usize, Vec<u8>)>| {
                let Some(p) = payload(b) else { return };
                if p.len() != size {
                    return;
                }
                if responder {
                    echo.push((i, p.to_vec()));
                    return;
                }
                let ts = u64::from_be_bytes(p[..8].try_into().unwrap());
                st.echoed += 1;
                st.rtts_us
                    .push((now_ns.saturating_sub(ts) / 1000).min(u32::MAX as u64) as u32);
                in_flight[i] = in_flight[i].saturating_sub(1);
                progress[i] = Instant::now();
            };
            match &mut clients[i].leg {
                Leg::Udp(s) => loop {
                    let got = inb.recv(s.as_raw_fd()).unwrap_or(0);
                    for k in 0..got {
                        let (slot, len, _) = inb.slot(k);
                        take(&slot[..len], st, echo_buf);
                    }
                    if got < BATCH {
                        break;
                    }
                },
                leg => {
                    while leg.stream_recv(|b| take(b, st, echo_buf)).is_ok() {}
                    leg.stream_flush();
                }
            }
            // Lost packets would stall a window forever: a quiet client starts afresh.
            if progress[i].elapsed() > Duration::from_millis(200) {
                in_flight[i] = 0;
                progress[i] = Instant::now();
            }
        }
    }

    /// c2c responders send each payload back the way it came (timestamp kept).
    fn respond(&mut self, a: &Args, clients: &mut [Client]) {
        for (i, p) in self.echo_buf.drain(..) {
            let c = &mut clients[i];
            c.frame[c.off..].copy_from_slice(&p);
            match &mut c.leg {
                Leg::Udp(s) => {
                    let _ = s.send_to(&c.frame, a.server);
                }
                leg => {
                    leg.stream_send(&c.frame);
                }
            }
        }
    }
}

/// The application payload of a ChannelData message or a Data indication.
fn payload(b: &[u8]) -> Option<&[u8]> {
    if b.len() < 4 {
        return None;
    }
    if b[0] & 0xc0 == 0x40 {
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        return b.get(4..4 + len);
    }
    if b[..2] != [0x00, 0x17] || b.len() < 20 {
        return None;
    }
    let mut off = 20;
    while off + 4 <= b.len() {
        let t = u16::from_be_bytes([b[off], b[off + 1]]);
        let l = u16::from_be_bytes([b[off + 2], b[off + 3]]) as usize;
        if t == 0x0013 {
            return b.get(off + 4..off + 4 + l);
        }
        off += 4 + l.div_ceil(4) * 4;
    }
    None
}

fn pct(v: &mut [u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

pub fn report(a: &Args, st: &mut Step, offered: f64) -> String {
    // Each echo crossed the relay twice (client->peer, peer->client); in c2c mode four
    // times (each way through two allocations).
    let per_echo = if a.c2c { 4 } else { 2 };
    let relayed = (st.echoed_in_time * per_echo) as f64;
    let loss = 1.0 - st.echoed as f64 / st.sent.max(1) as f64;
    format!(
        "{{\"relayed_pps\": {:.0}, \"server_cpu_s\": {:.3}, \"relayed_per_cpu_s\": {:.0}, \"server_cpu_frac\": {:.2}, \"loadgen_cpu_frac\": {:.2}, \"machine_busy\": {:.2}, \"loadgen_drops\": {}, \"loss\": {:.5}, \"rtt_p50_us\": {}, \"rtt_p90_us\": {}, \"rtt_p99_us\": {}, \"rtt_p999_us\": {}, \"offered_pps\": {:.0}, \"sent\": {}, \"echoed\": {}, \"seconds\": {:.2}, \"machine_cpu_s\": {:.3}, \"others_cpu_s\": {:.3}, \"loadgen_cpu_s\": {:.3}, \"loadgen_utime_s\": {:.3}, \"host_kthreads_cpu_s\": {:.3}}}",
        relayed / st.secs,
        st.server_cpu,
        relayed / st.server_cpu.max(1e-9),
        st.server_cpu / st.secs,
        st.own_cpu / st.secs,
        st.machine_busy,
        st.own_drops,
        loss.max(0.0),
        pct(&mut st.rtts_us, 0.5),
        pct(&mut st.rtts_us, 0.9),
        pct(&mut st.rtts_us, 0.99),
        pct(&mut st.rtts_us, 0.999),
        offered,
        st.sent,
        st.echoed,
        st.secs,
        st.machine_cpu,
        st.others_cpu,
        st.own_cpu,
        st.own_utime,
        st.host_kthreads_cpu,
    )
}
