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
//! server's RSS growth. Prints one JSON line. Loopback only; bounded in count and time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;
use turnpike::runtime::batch::{BATCH, Batch};

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
    Tls,
}

struct Args {
    server: SocketAddr,
    secret: String,
    pid: u32,
    clients: usize,
    seconds: f64,
    window: usize,
    size: usize,
    indications: bool,
    transport: Transport,
    ca: Option<String>,
    c2c: bool,
    rate: f64,
    ramp: f64,
    allocs: usize,
    /// Open loop: at most this many messages from one client in a row.
    burst: usize,
}

fn args() -> Args {
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

/// utime + stime of `pid`, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("server pid");
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// This process's own CPU time, to tell a load-generator bottleneck from a server one.
fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// (busy, total) jiffies of all cores from /proc/stat: whether the machine as a whole
/// (other jobs included) was saturated.
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// A load socket with 4 MB buffers (what turnpike gives its own): a default 208 kB one
/// overflows whenever this process is descheduled for a few ms on a busy machine, and
/// that loss would be blamed on the server.
fn load_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("socket (ulimit -n?)");
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: a plain int option on a socket this function owns. Without
        // CAP_NET_ADMIN it fails and the default stays (the drops are still reported).
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    s
}

/// Datagrams the kernel dropped at this process's own UDP sockets (full receive
/// buffers), from /proc/net/udp: loss that is the load generator's, not the server's.
fn own_drops(ports: &[u16]) -> u64 {
    let t = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    t.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let port = u16::from_str_radix(f.get(1)?.split(':').nth(1)?, 16).ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            ports.contains(&port).then_some(drops)
        })
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("server pid");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The client's leg to the server. Streams carry STUN and ChannelData back to back.
enum Leg {
    Udp(UdpSocket),
    Stream {
        tcp: TcpStream,
        tls: Option<Box<rustls::ClientConnection>>,
        rbuf: Vec<u8>,
        wbuf: Vec<u8>,
    },
}

/// Length of the frame at the start of `b` on a stream, once it is all there.
fn frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 4 {
        return None;
    }
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let total = if b[0] & 0xc0 == 0x40 {
        4 + len.div_ceil(4) * 4
    } else {
        20 + len
    };
    (b.len() >= total).then_some(total)
}

impl Leg {
    fn connect(a: &Args, tls: &Option<Arc<rustls::ClientConfig>>) -> Leg {
        match a.transport {
            Transport::Udp => {
                let s = load_socket();
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                Leg::Udp(s)
            }
            Transport::Tcp | Transport::Tls => {
                let mut tcp = TcpStream::connect(a.server).expect("connect");
                tcp.set_nodelay(true).unwrap();
                tcp.set_read_timeout(Some(Duration::from_millis(2000)))
                    .unwrap();
                let tls = tls.as_ref().map(|cfg| {
                    let name = rustls::pki_types::ServerName::IpAddress(a.server.ip().into());
                    let mut c = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
                    while c.is_handshaking() {
                        c.complete_io(&mut tcp).expect("TLS handshake");
                    }
                    Box::new(c)
                });
                Leg::Stream {
                    tcp,
                    tls,
                    rbuf: Vec::with_capacity(65536),
                    wbuf: Vec::with_capacity(65536),
                }
            }
        }
    }

    fn set_nonblocking(&self) {
        match self {
            Leg::Udp(s) => s.set_nonblocking(true).unwrap(),
            Leg::Stream { tcp, .. } => tcp.set_nonblocking(true).unwrap(),
        }
    }

    /// Queues a frame on a stream and writes what the socket takes. False when the
    /// stream is backed up (the frame is not queued).
    fn stream_send(&mut self, frame: &[u8]) -> bool {
        let Leg::Stream { tcp, tls, wbuf, .. } = self else {
            unreachable!()
        };
        match tls {
            Some(c) => {
                if c.wants_write() && flush_tls(c, tcp) && c.wants_write() {
                    return false;
                }
                c.writer().write_all(frame).unwrap();
                flush_tls(c, tcp);
            }
            None => {
                if wbuf.len() > 32 * 1024 {
                    flush_tcp(tcp, wbuf);
                    if wbuf.len() > 32 * 1024 {
                        return false;
                    }
                }
                wbuf.extend_from_slice(frame);
                flush_tcp(tcp, wbuf);
            }
        }
        true
    }

    fn stream_flush(&mut self) {
        if let Leg::Stream { tcp, tls, wbuf, .. } = self {
            match tls {
                Some(c) => {
                    flush_tls(c, tcp);
                }
                None => flush_tcp(tcp, wbuf),
            }
        }
    }

    /// Reads what is there and calls `f` with each whole frame. Err on a blocking
    /// socket's timeout.
    fn stream_recv(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        let Leg::Stream { tcp, tls, rbuf, .. } = self else {
            unreachable!()
        };
        let mut tmp = [0u8; 16384];
        let res = match tls {
            Some(c) => match c.read_tls(tcp) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    c.process_new_packets().map_err(io::Error::other)?;
                    loop {
                        match c.reader().read(&mut tmp) {
                            Ok(0) => break,
                            Ok(n) => rbuf.extend_from_slice(&tmp[..n]),
                            Err(_) => break,
                        }
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            },
            None => match tcp.read(&mut tmp) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    rbuf.extend_from_slice(&tmp[..n]);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        let mut off = 0;
        while let Some(n) = frame_len(&rbuf[off..]) {
            f(&rbuf[off..off + n]);
            off += n;
        }
        rbuf.drain(..off);
        res
    }
}

fn flush_tcp(tcp: &mut TcpStream, wbuf: &mut Vec<u8>) {
    let mut off = 0;
    while off < wbuf.len() {
        match tcp.write(&wbuf[off..]) {
            Ok(n) if n > 0 => off += n,
            _ => break,
        }
    }
    wbuf.drain(..off);
}

/// Writes rustls's pending records; true when the socket would block.
fn flush_tls(c: &mut rustls::ClientConnection, tcp: &mut TcpStream) -> bool {
    while c.wants_write() {
        match c.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) => panic!("TLS write: {e}"),
        }
    }
    false
}

fn exchange(leg: &mut Leg, server: SocketAddr, m: &Message) -> Message {
    let matches = |b: &[u8]| {
        let mut r = Message::new();
        r.raw = b.to_vec();
        (r.decode().is_ok() && r.transaction_id == m.transaction_id).then_some(r)
    };
    for _ in 0..5 {
        match leg {
            Leg::Udp(sock) => {
                sock.send_to(&m.raw, server).unwrap();
                let mut buf = [0u8; 1500];
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && let Some(r) = matches(&buf[..n])
                {
                    return r;
                }
            }
            Leg::Stream { .. } => {
                leg.stream_send(&m.raw);
                let mut got = None;
                while got.is_none() {
                    leg.stream_recv(|b| {
                        if got.is_none() {
                            got = matches(b);
                        }
                    })
                    .expect("stream setup");
                }
                return got.unwrap();
            }
        }
    }
    panic!("no answer from {server}");
}

/// A request signed with (user, realm, nonce, password) when given: the test kit's.
fn request(
    method: Method,
    attrs: &[&dyn Setter],
    auth: Option<(&str, &str, &str, &str)>,
) -> Message {
    let sign = auth.map(
        |(username, realm, nonce, password)| turnpike::testkit::Signer {
            username,
            password,
            realm,
            nonce,
        },
    );
    turnpike::testkit::request(method, attrs, sign)
}

fn credential(secret: &str, i: usize) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    turnpike::auth::mint_credential(secret, &format!("load{i}"), 600, now)
}

/// A client: its leg, its credentials (user, realm, nonce, password), its relayed
/// address, and the frame it sends (payload at `off`).
struct Client {
    leg: Leg,
    auth: (String, String, String, String),
    relayed: SocketAddr,
    frame: Vec<u8>,
    off: usize,
    /// In c2c mode the second of a pair echoes instead of originating.
    responder: bool,
}

fn error_code(r: &Message) -> u16 {
    let mut code = ErrorCodeAttribute::default();
    let _ = code.get_from(r);
    code.code.0
}

fn allocate(a: &Args, i: usize, tls: &Option<Arc<rustls::ClientConfig>>) -> Client {
    // A fresh socket can get the port of an allocation a previous run has not yet
    // released (437): then try another socket.
    for _ in 0..5 {
        if let Some(c) = try_allocate(a, i, tls) {
            return c;
        }
    }
    panic!("allocate {i}: no challenge in 5 tries");
}

fn try_allocate(a: &Args, i: usize, tls: &Option<Arc<rustls::ClientConfig>>) -> Option<Client> {
    let mut leg = Leg::connect(a, tls);
    let (user, pass) = credential(&a.secret, i);
    let udp = RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    };
    let r = exchange(&mut leg, a.server, &request(METHOD_ALLOCATE, &[&udp], None));
    let (Ok(nonce), Ok(realm)) = (
        TextAttribute::get_from_as(&r, ATTR_NONCE),
        TextAttribute::get_from_as(&r, ATTR_REALM),
    ) else {
        eprintln!(
            "allocate {i}: error {} instead of a challenge",
            error_code(&r)
        );
        return None;
    };
    let (nonce, realm) = (nonce.text, realm.text);
    let auth = Some((user.as_str(), realm.as_str(), nonce.as_str(), pass.as_str()));
    let r = exchange(&mut leg, a.server, &request(METHOD_ALLOCATE, &[&udp], auth));
    if r.typ.class != CLASS_SUCCESS_RESPONSE {
        eprintln!("allocate {i}: error {}", error_code(&r));
        return None;
    }
    let mut ra = RelayedAddress::default();
    ra.get_from(&r).expect("XOR-RELAYED-ADDRESS");
    Some(Client {
        leg,
        auth: (user, realm, nonce, pass),
        relayed: SocketAddr::new(ra.ip, ra.port),
        frame: vec![],
        off: 0,
        responder: false,
    })
}

/// Binds channel 0x4000 (or a permission) towards `peer` and builds the frame to send.
fn bind(a: &Args, c: &mut Client, peer: SocketAddr) {
    let (u, r, n, p) = &c.auth;
    let auth = Some((u.as_str(), r.as_str(), n.as_str(), p.as_str()));
    let pa = PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    };
    let m = if a.indications {
        request(METHOD_CREATE_PERMISSION, &[&pa], auth)
    } else {
        request(METHOD_CHANNEL_BIND, &[&ChannelNumber(0x4000), &pa], auth)
    };
    let res = exchange(&mut c.leg, a.server, &m);
    assert_eq!(res.typ.class, CLASS_SUCCESS_RESPONSE, "bind");
    if a.indications {
        let mut m = Message::new();
        m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
        m.new_transaction_id().unwrap();
        m.write_header();
        pa.add_to(&mut m).unwrap();
        turn::proto::data::Data(vec![0u8; a.size])
            .add_to(&mut m)
            .unwrap();
        c.off = m.raw.len() - a.size;
        c.frame = m.raw;
    } else {
        let mut f = vec![0u8; 4 + a.size];
        f[0..2].copy_from_slice(&0x4000u16.to_be_bytes());
        f[2..4].copy_from_slice(&(a.size as u16).to_be_bytes());
        c.off = 4;
        c.frame = f;
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

/// Deletes the allocation (Refresh with LIFETIME 0), so a later round's socket that gets
/// the same port does not meet a 437. Best effort.
fn release(a: &Args, c: &mut Client) {
    let (u, r, n, p) = &c.auth;
    let zero = turn::proto::lifetime::Lifetime(Duration::ZERO);
    let m = request(METHOD_REFRESH, &[&zero], Some((u, r, n, p)));
    match &mut c.leg {
        Leg::Udp(s) => {
            let _ = s.send_to(&m.raw, a.server);
        }
        leg => {
            leg.stream_send(&m.raw);
            leg.stream_flush();
        }
    }
}

fn tls_config(a: &Args) -> Option<Arc<rustls::ClientConfig>> {
    if a.transport != Transport::Tls {
        return None;
    }
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(a.ca.as_ref().expect("--ca for --transport tls"))
        .expect("--ca")
    {
        roots.add(c.expect("--ca PEM")).unwrap();
    }
    Some(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// One measured step's counts.
#[derive(Default)]
struct Step {
    sent: u64,
    /// Echoes back by the end of sending (throughput) and after the drain (loss).
    echoed_in_time: u64,
    echoed: u64,
    rtts_us: Vec<u32>,
    secs: f64,
    server_cpu: f64,
    own_cpu: f64,
    machine_busy: f64,
    /// Datagrams dropped at this process's own sockets during the step.
    own_drops: u64,
}

/// Drives load for `secs` (window or `rate` packets/s originated), then drains 300 ms.
fn run(a: &Args, clients: &mut [Client], peer: &UdpSocket, rate: f64, secs: f64) -> Step {
    let n = clients.len();
    let originators: Vec<usize> = (0..n).filter(|&i| !clients[i].responder).collect();
    let mut in_flight = vec![0usize; n];
    let mut progress = vec![Instant::now(); n];
    let (mut inb, mut out) = (Batch::default(), Batch::with_gso(true));
    // A burst for one destination leaves as one GSO send (segmented at the receiving
    // socket, in this process's time): both servers get the same datagrams, and the
    // generator is less often the bottleneck.
    let mut st = Step::default();
    let mut ports: Vec<u16> = vec![peer.local_addr().unwrap().port()];
    for c in clients.iter() {
        if let Leg::Udp(s) = &c.leg {
            ports.push(s.local_addr().unwrap().port());
        }
    }
    let drops0 = own_drops(&ports);
    let (cpu0, own0, m0) = (cpu_seconds(a.pid), own_cpu_seconds(), machine_jiffies());
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(secs);
    let drain_end = end + Duration::from_millis(300);
    let mut rr = 0usize;
    let mut echo_buf: Vec<(usize, Vec<u8>)> = Vec::new();
    loop {
        let now = Instant::now();
        if now >= drain_end {
            break;
        }
        let sending = now < end;
        if !sending && st.secs == 0.0 {
            st.secs = t0.elapsed().as_secs_f64();
            st.server_cpu = cpu_seconds(a.pid) - cpu0;
            st.own_cpu = own_cpu_seconds() - own0;
            let m1 = machine_jiffies();
            st.machine_busy = (m1.0 - m0.0) as f64 / (m1.1 - m0.1).max(1) as f64;
            st.echoed_in_time = st.echoed;
        }
        // Originate: how many each client may send now.
        let mut budget = if !sending {
            0
        } else if rate > 0.0 {
            ((rate * t0.elapsed().as_secs_f64()) as u64).saturating_sub(st.sent) as usize
        } else {
            usize::MAX
        };
        let stamp = t0.elapsed().as_nanos() as u64;
        for k in 0..originators.len() {
            if budget == 0 {
                break;
            }
            let i = originators[(rr + k) % originators.len()];
            let c = &mut clients[i];
            let room = if rate > 0.0 {
                budget.min(a.burst)
            } else {
                a.window.saturating_sub(in_flight[i]).min(BATCH)
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
            in_flight[i] += ok;
            st.sent += ok as u64;
            if rate > 0.0 {
                budget -= room.min(budget);
            }
        }
        rr = rr.wrapping_add(1);
        // The echo peer answers every relayed packet back through the relay.
        for _ in 0..64 {
            let got = inb.recv(peer.as_raw_fd()).unwrap_or(0);
            for k in 0..got {
                let (slot, len, from) = inb.slot(k);
                if let Some(from) = from {
                    out.push(&[&slot[..len]], from);
                }
            }
            out.flush(peer.as_raw_fd());
            if got < BATCH {
                break;
            }
        }
        let now_ns = t0.elapsed().as_nanos() as u64;
        for i in 0..n {
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
                        take(&slot[..len], &mut st, &mut echo_buf);
                    }
                    if got < BATCH {
                        break;
                    }
                },
                leg => {
                    while leg.stream_recv(|b| take(b, &mut st, &mut echo_buf)).is_ok() {}
                    leg.stream_flush();
                }
            }
            // Lost packets would stall a window forever: a quiet client starts afresh.
            if progress[i].elapsed() > Duration::from_millis(200) {
                in_flight[i] = 0;
                progress[i] = Instant::now();
            }
        }
        // c2c responders send each payload back the way it came (timestamp kept).
        for (i, p) in echo_buf.drain(..) {
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
    st.own_drops = own_drops(&ports) - drops0;
    st
}

fn pct(v: &mut [u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn report(a: &Args, st: &mut Step, offered: f64) -> String {
    // Each echo crossed the relay twice (client->peer, peer->client); in c2c mode four
    // times (each way through two allocations).
    let per_echo = if a.c2c { 4 } else { 2 };
    let relayed = (st.echoed_in_time * per_echo) as f64;
    let loss = 1.0 - st.echoed as f64 / st.sent.max(1) as f64;
    format!(
        "{{\"relayed_pps\": {:.0}, \"server_cpu_s\": {:.3}, \"relayed_per_cpu_s\": {:.0}, \"server_cpu_frac\": {:.2}, \"loadgen_cpu_frac\": {:.2}, \"machine_busy\": {:.2}, \"loadgen_drops\": {}, \"loss\": {:.5}, \"rtt_p50_us\": {}, \"rtt_p90_us\": {}, \"rtt_p99_us\": {}, \"rtt_p999_us\": {}, \"offered_pps\": {:.0}, \"sent\": {}, \"echoed\": {}, \"seconds\": {:.2}}}",
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
    )
}

/// N allocations pipelined (up to 64 transactions in flight), then the server's RSS
/// growth per allocation while they all exist.
fn alloc_bench(a: &Args) {
    let rss0 = rss_kib(a.pid);
    let cpu0 = cpu_seconds(a.pid);
    let socks: Vec<UdpSocket> = (0..a.allocs)
        .map(|_| {
            let s = load_socket();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let udp = RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    };
    // Per allocation: 0 challenge pending, 1 authenticated request pending, 2 done.
    let mut state = vec![0u8; a.allocs];
    let mut txn: Vec<Option<(Message, Instant, u8)>> = (0..a.allocs).map(|_| None).collect();
    let mut auth: Vec<Option<(String, String, String, String)>> = vec![None; a.allocs];
    let (mut next, mut done, mut failed) = (0usize, 0usize, 0usize);
    let mut active: Vec<usize> = Vec::new();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(60);
    let mut buf = [0u8; 1500];
    while done + failed < a.allocs && Instant::now() < deadline {
        while active.len() < 64 && next < a.allocs {
            let m = request(METHOD_ALLOCATE, &[&udp], None);
            socks[next].send_to(&m.raw, a.server).unwrap();
            txn[next] = Some((m, Instant::now(), 0));
            active.push(next);
            next += 1;
        }
        let mut k = 0;
        while k < active.len() {
            let i = active[k];
            let mut finished = false;
            if let Ok((n, _)) = socks[i].recv_from(&mut buf) {
                let mut r = Message::new();
                r.raw = buf[..n].to_vec();
                let ok = r.decode().is_ok()
                    && txn[i].as_ref().map(|t| t.0.transaction_id) == Some(r.transaction_id);
                let challenge = (
                    TextAttribute::get_from_as(&r, ATTR_NONCE),
                    TextAttribute::get_from_as(&r, ATTR_REALM),
                );
                if ok && state[i] == 0 {
                    let (Ok(nonce), Ok(realm)) = challenge else {
                        eprintln!("allocation {i}: no challenge, error {}", error_code(&r));
                        failed += 1;
                        active.swap_remove(k);
                        continue;
                    };
                    let (nonce, realm) = (nonce.text, realm.text);
                    let (user, pass) = credential(&a.secret, i);
                    let m = request(
                        METHOD_ALLOCATE,
                        &[&udp],
                        Some((&user, &realm, &nonce, &pass)),
                    );
                    socks[i].send_to(&m.raw, a.server).unwrap();
                    txn[i] = Some((m, Instant::now(), 0));
                    auth[i] = Some((user, realm, nonce, pass));
                    state[i] = 1;
                } else if ok {
                    if r.typ.class == CLASS_SUCCESS_RESPONSE {
                        done += 1;
                    } else {
                        failed += 1;
                    }
                    state[i] = 2;
                    finished = true;
                }
            } else if let Some((m, at, tries)) = &mut txn[i]
                && at.elapsed() > Duration::from_millis(500)
            {
                if *tries >= 4 {
                    failed += 1;
                    finished = true;
                } else {
                    socks[i].send_to(&m.raw, a.server).unwrap();
                    *at = Instant::now();
                    *tries += 1;
                }
            }
            if finished {
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
    for (i, s) in socks.iter().enumerate() {
        if let Some((u, r, n, p)) = &auth[i] {
            let zero = turn::proto::lifetime::Lifetime(Duration::ZERO);
            let m = request(METHOD_REFRESH, &[&zero], Some((u, r, n, p)));
            let _ = s.send_to(&m.raw, a.server);
        }
    }
    println!(
        "{{\"allocs\": {done}, \"failed\": {failed}, \"allocs_per_s\": {:.0}, \"allocs_per_cpu_s\": {:.0}, \"rss_kib_before\": {rss0}, \"rss_kib_after\": {rss1}, \"rss_bytes_per_alloc\": {:.0}}}",
        done as f64 / secs,
        done as f64 / cpu.max(1e-9),
        (rss1.saturating_sub(rss0) * 1024) as f64 / done.max(1) as f64,
    );
}

const WARMUP_SECS: f64 = 0.4;

fn main() {
    let a = args();
    if a.allocs > 0 {
        return alloc_bench(&a);
    }
    let tls = tls_config(&a);
    let peer = load_socket();
    let peer_addr = peer.local_addr().unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut clients: Vec<Client> = (0..a.clients).map(|i| allocate(&a, i, &tls)).collect();
    if a.c2c {
        for k in (0..clients.len()).step_by(2) {
            let (ra, rb) = (clients[k].relayed, clients[k + 1].relayed);
            bind(&a, &mut clients[k], rb);
            bind(&a, &mut clients[k + 1], ra);
            clients[k + 1].responder = true;
        }
    } else {
        for c in clients.iter_mut() {
            bind(&a, c, peer_addr);
        }
    }
    for c in &clients {
        c.leg.set_nonblocking();
    }
    // Warm-up, not measured: the first ~150 ms of load had RTTs of several ms against
    // either server (seen in per-packet dumps), which would decide a short round's p99.
    run(&a, &mut clients, &peer, a.rate.max(a.ramp), WARMUP_SECS);
    if a.ramp > 0.0 {
        // Capacity: the highest offered rate (packets/s originated) lost at most 1%.
        let (mut rate, mut capacity, mut steps) = (a.ramp, 0.0, Vec::new());
        let (mut stopped_by, mut fails) = ("steps", 0);
        // 20 steps: up to 690k originated packets/s, beyond what this generator can send.
        for _ in 0..20 {
            let mut st = run(&a, &mut clients, &peer, rate, a.seconds);
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
        let mut st = run(&a, &mut clients, &peer, a.rate, a.seconds);
        println!("{}", report(&a, &mut st, a.rate));
    }
    for c in clients.iter_mut() {
        release(&a, c);
    }
}
