//! The command line: flags, their defaults and the checks on them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use turnpike::runtime::shard::io::batch::BATCH;

#[derive(Clone, Copy, PartialEq)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

pub struct Args {
    pub server: SocketAddr,
    pub secret: String,
    pub pid: u32,
    pub clients: usize,
    pub seconds: f64,
    pub window: usize,
    pub size: usize,
    pub indications: bool,
    pub transport: Transport,
    pub ca: Option<String>,
    pub c2c: bool,
    pub rate: f64,
    pub ramp: f64,
    pub allocs: usize,
    /// Open loop: at most this many messages from one client in a row.
    pub burst: usize,
    /// Where the echo peers bind, and the network namespace (in /run/netns) they are made
    /// in: scripts/bench_fastpath.sh puts them behind the relay, apart from the clients.
    pub peer_ip: IpAddr,
    /// The first peer's port (`--peer IP:PORT`; the next ones follow), 0: any. Against
    /// coturn --multiplex-peer a run must not reuse a port of the run before, which
    /// an ephemeral port may (its ChannelBind then failed).
    pub peer_port: u16,
    pub peer_netns: Option<String>,
    /// Echo peer sockets; client i sends to peer i % peers. coturn's --multiplex-peer
    /// tells sessions apart by peer address, so there each client needs its own.
    pub peers: usize,
    /// Microseconds a loop turn with nothing to do sleeps (0: spin, the default).
    pub idle_us: u64,
    /// Kernel threads that work for the relay host besides the server process (its
    /// interface's threaded NAPI pollers): their CPU is reported as `host_kthreads_cpu_s`.
    pub host_pids: Vec<u32>,
}

/// Every flag at its default.
fn defaults() -> Args {
    Args {
        server: "127.0.0.1:3478".parse().unwrap(),
        secret: String::new(),
        pid: 0,
        clients: 50,
        seconds: 5.0,
        window: 8,
        size: 200,
        indications: false,
        transport: Transport::Udp,
        ca: None,
        c2c: false,
        rate: 0.0,
        ramp: 0.0,
        allocs: 0,
        burst: BATCH,
        peer_ip: Ipv4Addr::LOCALHOST.into(),
        peer_port: 0,
        peer_netns: None,
        peers: 1,
        idle_us: 0,
        host_pids: Vec::new(),
    }
}

pub fn args() -> Args {
    let mut a = defaults();
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        i += 2;
        match v[i - 2].as_str() {
            "--server" => a.server = val.parse().expect("--server"),
            "--secret" => a.secret = val,
            "--pid" => a.pid = val.parse().expect("--pid"),
            "--clients" => a.clients = val.parse().expect("--clients"),
            "--seconds" => a.seconds = val.parse::<f64>().expect("--seconds").min(60.0),
            "--window" => a.window = val.parse().expect("--window"),
            "--size" => a.size = val.parse().expect("--size"),
            "--rate" => a.rate = val.parse().expect("--rate"),
            "--ramp" => a.ramp = val.parse().expect("--ramp"),
            "--burst" => a.burst = val.parse::<usize>().expect("--burst").clamp(1, BATCH),
            "--allocs" => a.allocs = val.parse::<usize>().expect("--allocs").min(20_000),
            "--ca" => a.ca = Some(val),
            "--peer" => match val.parse::<SocketAddr>() {
                Ok(sa) => (a.peer_ip, a.peer_port) = (sa.ip(), sa.port()),
                Err(_) => a.peer_ip = val.parse().expect("--peer: IP or IP:PORT"),
            },
            "--peer-netns" => a.peer_netns = Some(val),
            "--idle-us" => a.idle_us = val.parse::<u64>().expect("--idle-us").min(10_000),
            "--host-pids" => {
                a.host_pids = (val.split(',').filter(|p| !p.is_empty()))
                    .map(|p| p.parse().expect("--host-pids: PID,PID,..."))
                    .collect()
            }
            "--peers" => a.peers = val.parse::<usize>().expect("--peers").clamp(1, 1000),
            "--c2c" => {
                a.c2c = true;
                i -= 1;
            }
            "--transport" => {
                a.transport = match val.as_str() {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    t => panic!("--transport {t}: udp, tcp or tls"),
                }
            }
            "--mode" => {
                a.indications = match val.as_str() {
                    "channel" => false,
                    "indication" => true,
                    m => panic!("--mode {m}: channel or indication"),
                }
            }
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(
        test_address(a.server.ip()) && test_address(a.peer_ip),
        "load only ever goes to loopback or the documentation ranges (RFC 5737)"
    );
    // Room for the send timestamp; TCP framing pads ChannelData to 4 bytes, keep it exact.
    assert!(
        a.size >= 8 && a.size.is_multiple_of(4),
        "--size: a multiple of 4, at least 8"
    );
    if a.c2c {
        a.clients += a.clients % 2;
    }
    a
}

/// Loopback, or the IPv4 documentation ranges (never routed: the namespaces of
/// scripts/bench_fastpath.sh use them).
fn test_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback() || matches!((a, b, c), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
        }
        IpAddr::V6(v6) => v6.is_loopback(),
    }
}

impl Args {
    /// Where the client sockets bind: loopback for a loopback server, else any address
    /// (the route picks the interface).
    pub fn client_ip(&self) -> IpAddr {
        if self.server.ip().is_loopback() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        }
    }
}
