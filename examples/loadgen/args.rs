//! The command line: flags, their defaults and the checks on them.

use std::net::SocketAddr;

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
}

pub fn args() -> Args {
    let mut a = Args {
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
    };
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
        a.server.ip().is_loopback(),
        "load only ever goes to loopback"
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
