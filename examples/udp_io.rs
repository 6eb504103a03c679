//! turnpike's hand-written batch I/O (`runtime::shard::io::batch`: sendmmsg with GSO merging,
//! recvmmsg) against quinn-udp on the relay path's patterns: a batch for 32 destinations
//! (burst-free traffic to clients), runs of 8 equal datagrams to one destination (a burst
//! to one peer: GSO for both; quinn-udp needs the segments copied into one buffer), and
//! draining a socket in batches of 32. Thread CPU per datagram (CLOCK_THREAD_CPUTIME_ID;
//! on loopback a send includes the delivery into the receiving socket), alternating
//! rounds. Not part of the test suite; loopback only, bounded.
//!   cargo run --release --example udp_io
use std::io::IoSliceMut;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use turnpike::runtime::shard::io::batch::Batch;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn sock() -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_recv_buffer_size(8 << 20).unwrap();
    s.set_send_buffer_size(8 << 20).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.set_nonblocking(true).unwrap();
    s.into()
}

/// Receivers draining in a background thread so that sends never meet a full buffer.
fn drainers(
    n: usize,
) -> (
    Vec<SocketAddr>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<u64>,
) {
    let socks: Vec<UdpSocket> = (0..n).map(|_| sock()).collect();
    let addrs = socks.iter().map(|s| s.local_addr().unwrap()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let h = std::thread::spawn(move || {
        let mut b = Batch::default();
        let mut got = 0u64;
        while !st.load(Ordering::Relaxed) {
            for s in &socks {
                while let Ok(k) = b.recv(s.as_raw_fd()) {
                    if k == 0 {
                        break;
                    }
                    got += k as u64;
                }
            }
        }
        got
    });
    (addrs, stop, h)
}

const ROUNDS: usize = 20_000;

/// Pattern A: 32 datagrams to 32 destinations (burst-free, peer -> clients).
/// Pattern B: 4 destinations x 8 equal datagrams (runs, client -> peer).
fn bench(pattern: char, quinn: bool) -> f64 {
    let (dests, stop, h) = drainers(32);
    let tx = sock();
    let state = UdpSocketState::new((&tx).into()).unwrap();
    let payload = [7u8; 104];
    let mut batch = Batch::with_gso(true);
    let mut contig = vec![0u8; 8 * 104];
    let t0 = thread_cpu_ns();
    let mut sent = 0u64;
    for r in 0..ROUNDS {
        match (pattern, quinn) {
            ('A', false) => {
                for d in &dests {
                    batch.push(&[&payload], *d);
                }
                batch.flush(tx.as_raw_fd());
            }
            ('A', true) => {
                for d in &dests {
                    let t = Transmit {
                        destination: *d,
                        ecn: None,
                        contents: &payload,
                        segment_size: None,
                        src_ip: None,
                    };
                    let _ = state.try_send((&tx).into(), &t);
                }
            }
            ('B', false) => {
                for k in 0..4 {
                    for _ in 0..8 {
                        batch.push(&[&payload], dests[(r + k) % 32]);
                    }
                }
                batch.flush(tx.as_raw_fd());
            }
            _ => {
                for k in 0..4 {
                    // quinn-udp wants one contiguous buffer: the segments are copied in.
                    for j in 0..8 {
                        contig[j * 104..(j + 1) * 104].copy_from_slice(&payload);
                    }
                    let t = Transmit {
                        destination: dests[(r + k) % 32],
                        ecn: None,
                        contents: &contig,
                        segment_size: Some(104),
                        src_ip: None,
                    };
                    let _ = state.try_send((&tx).into(), &t);
                }
            }
        }
        sent += 32;
    }
    let ns = (thread_cpu_ns() - t0) as f64 / sent as f64;
    stop.store(true, Ordering::Relaxed);
    h.join().unwrap();
    ns
}

/// Receive: the socket is filled with 4096 datagrams of 104 B (untimed, one sendto each,
/// as from many peers), then drained in batches of 32 (timed); 100 times.
fn bench_recv(quinn: bool) -> f64 {
    let rx = sock();
    let tx = sock();
    let to = rx.local_addr().unwrap();
    let p = [1u8; 104];
    let state = UdpSocketState::new((&rx).into()).unwrap();
    let mut b = Batch::with_headroom(48);
    let mut bufs: Vec<Vec<u8>> = (0..32).map(|_| vec![0u8; 65536]).collect();
    let mut meta = [RecvMeta::default(); 32];
    let (mut cpu, mut got) = (0u64, 0u64);
    for _ in 0..100 {
        for _ in 0..4096 {
            tx.send_to(&p, to).unwrap();
        }
        let t0 = thread_cpu_ns();
        loop {
            let n = if quinn {
                let mut io: Vec<IoSliceMut> = bufs
                    .iter_mut()
                    .map(|b| IoSliceMut::new(&mut b[48..]))
                    .collect();
                match state.recv((&rx).into(), &mut io, &mut meta) {
                    Ok(n) => meta[..n]
                        .iter()
                        .map(|m| m.len / m.stride.max(1))
                        .sum::<usize>(),
                    Err(_) => 0,
                }
            } else {
                b.recv(rx.as_raw_fd()).unwrap_or(0)
            };
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        cpu += thread_cpu_ns() - t0;
    }
    assert!(got >= 4096 * 90, "got {got}");
    cpu as f64 / got as f64
}

fn main() {
    for round in 0..3 {
        for (name, p) in [("A: 32 destinations", 'A'), ("B: 4 x 8-datagram runs", 'B')] {
            let (ours, quinn) = if round % 2 == 0 {
                (bench(p, false), bench(p, true))
            } else {
                let q = bench(p, true);
                (bench(p, false), q)
            };
            println!(
                "round {round} send {name}: turnpike batch {ours:.0} ns/datagram, quinn-udp {quinn:.0} ns/datagram"
            );
        }
        let (ours, quinn) = (bench_recv(false), bench_recv(true));
        println!(
            "round {round} recv batches of 32: turnpike batch {ours:.0} ns/datagram, quinn-udp {quinn:.0} ns/datagram"
        );
    }
}
