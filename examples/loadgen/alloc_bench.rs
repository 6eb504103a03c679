//! `--allocs N`: how fast the server allocates, and how much memory an allocation costs.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::reqtrans::RequestedTransport;

use crate::args::Args;
use crate::client::{credential, error_code, request};
use crate::leg::load_socket;
use crate::proc_stats::{cpu_seconds, rss_kib};

/// N allocations pipelined (up to 64 transactions in flight), then the server's RSS
/// growth per allocation while they all exist.
pub fn alloc_bench(a: &Args) {
    let rss0 = rss_kib(a.pid);
    let cpu0 = cpu_seconds(a.pid);
    let mut allocs = Allocations::new(a.allocs, a.client_ip());
    let mut next = 0usize;
    let mut active: Vec<usize> = Vec::new();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    let mut buf = [0u8; 1500];
    while allocs.done + allocs.failed < a.allocs && Instant::now() < deadline {
        while active.len() < 64 && next < a.allocs {
            allocs.start(a, next);
            active.push(next);
            next += 1;
        }
        let mut k = 0;
        while k < active.len() {
            if allocs.serve(a, active[k], &mut buf) {
                active.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(a.pid) - cpu0;
    std::thread::sleep(Duration::from_millis(300));
    let rss1 = rss_kib(a.pid);
    for (i, s) in allocs.socks.iter().enumerate() {
        if let Some((u, r, n, p)) = &allocs.auth[i] {
            let zero = turn::proto::lifetime::Lifetime(Duration::ZERO);
            let m = request(METHOD_REFRESH, &[&zero], Some((u, r, n, p)));
            let _ = s.send_to(&m.raw, a.server);
        }
    }
    println!(
        "{{\"allocs\": {}, \"failed\": {}, \"allocs_per_s\": {:.0}, \"allocs_per_cpu_s\": {:.0}, \"rss_kib_before\": {rss0}, \"rss_kib_after\": {rss1}, \"rss_bytes_per_alloc\": {:.0}}}",
        allocs.done,
        allocs.failed,
        allocs.done as f64 / secs,
        allocs.done as f64 / cpu.max(1e-9),
        (rss1.saturating_sub(rss0) * 1024) as f64 / allocs.done.max(1) as f64,
    );
}

/// The allocations of `alloc_bench`, each on its own socket, and their transactions.
struct Allocations {
    socks: Vec<UdpSocket>,
    /// Per allocation: 0 challenge pending, 1 authenticated request pending, 2 done.
    state: Vec<u8>,
    /// The request in flight, when it was sent, and how many times it was resent.
    txn: Vec<Option<(Message, Instant, u8)>>,
    /// (user, realm, nonce, password) once challenged, for the release.
    auth: Vec<Option<(String, String, String, String)>>,
    done: usize,
    failed: usize,
}

const UDP: RequestedTransport = RequestedTransport {
    protocol: turn::proto::PROTO_UDP,
};

impl Allocations {
    fn new(n: usize, ip: std::net::IpAddr) -> Allocations {
        Allocations {
            socks: (0..n)
                .map(|_| {
                    let s = load_socket(ip);
                    s.set_nonblocking(true).unwrap();
                    s
                })
                .collect(),
            state: vec![0u8; n],
            txn: (0..n).map(|_| None).collect(),
            auth: vec![None; n],
            done: 0,
            failed: 0,
        }
    }

    /// Sends allocation `i`'s first, unauthenticated Allocate.
    fn start(&mut self, a: &Args, i: usize) {
        let m = request(METHOD_ALLOCATE, &[&UDP], None);
        self.socks[i].send_to(&m.raw, a.server).unwrap();
        self.txn[i] = Some((m, Instant::now(), 0));
    }

    /// Reads allocation `i`'s answer, if any: a challenge is answered with the signed
    /// Allocate, a final answer counts; a silent request is resent up to 4 times. True
    /// when the allocation is finished (allocated or failed).
    fn serve(&mut self, a: &Args, i: usize, buf: &mut [u8]) -> bool {
        let mut finished = false;
        if let Ok((n, _)) = self.socks[i].recv_from(buf) {
            let mut r = Message::new();
            r.raw = buf[..n].to_vec();
            let ok = r.decode().is_ok()
                && self.txn[i].as_ref().map(|t| t.0.transaction_id) == Some(r.transaction_id);
            let challenge = (
                TextAttribute::get_from_as(&r, ATTR_NONCE),
                TextAttribute::get_from_as(&r, ATTR_REALM),
            );
            if ok && self.state[i] == 0 {
                let (Ok(nonce), Ok(realm)) = challenge else {
                    eprintln!("allocation {i}: no challenge, error {}", error_code(&r));
                    self.failed += 1;
                    return true;
                };
                let (nonce, realm) = (nonce.text, realm.text);
                let (user, pass) = credential(&a.secret, i);
                let m = request(
                    METHOD_ALLOCATE,
                    &[&UDP],
                    Some((&user, &realm, &nonce, &pass)),
                );
                self.socks[i].send_to(&m.raw, a.server).unwrap();
                self.txn[i] = Some((m, Instant::now(), 0));
                self.auth[i] = Some((user, realm, nonce, pass));
                self.state[i] = 1;
            } else if ok {
                if r.typ.class == CLASS_SUCCESS_RESPONSE {
                    self.done += 1;
                } else {
                    self.failed += 1;
                }
                self.state[i] = 2;
                finished = true;
            }
        } else if let Some((m, at, tries)) = &mut self.txn[i]
            && at.elapsed() > Duration::from_millis(500)
        {
            if *tries >= 4 {
                self.failed += 1;
                finished = true;
            } else {
                self.socks[i].send_to(&m.raw, a.server).unwrap();
                *at = Instant::now();
                *tries += 1;
            }
        }
        finished
    }
}
