//! A TURN load generator for scripts/bench.sh: N clients allocate with a REST credential,
//! bind a channel to an echo peer (in this process) and keep W ChannelData messages in
//! flight each for a fixed time (`--mode indication`: a permission instead of a channel,
//! and Send/Data indications both ways, which is how Firefox relays). Prints relayed packets per second and the server's CPU
//! time (from /proc/PID/stat) as one JSON line. Loopback only; bounded in time.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use stun::attributes::*;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;
use turnpike::runtime::batch::{BATCH, Batch};

struct Args {
    server: SocketAddr,
    secret: String,
    realm: String,
    pid: u32,
    clients: usize,
    seconds: u64,
    window: usize,
    size: usize,
    indications: bool,
}

fn args() -> Args {
    let mut a = Args {
        server: "127.0.0.1:3478".parse().unwrap(),
        secret: String::new(),
        realm: "turnpike".into(),
        pid: 0,
        clients: 50,
        seconds: 5,
        window: 8,
        size: 200,
        indications: false,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    for p in v.chunks(2) {
        let val = p.get(1).cloned().unwrap_or_default();
        match p[0].as_str() {
            "--server" => a.server = val.parse().expect("--server"),
            "--secret" => a.secret = val,
            "--realm" => a.realm = val,
            "--pid" => a.pid = val.parse().expect("--pid"),
            "--clients" => a.clients = val.parse().expect("--clients"),
            "--seconds" => a.seconds = val.parse::<u64>().expect("--seconds").min(60),
            "--window" => a.window = val.parse().expect("--window"),
            "--size" => a.size = val.parse().expect("--size"),
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

fn exchange(sock: &UdpSocket, server: SocketAddr, m: &Message) -> Message {
    for _ in 0..5 {
        sock.send_to(&m.raw, server).unwrap();
        let mut buf = [0u8; 1500];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let mut r = Message::new();
            r.raw = buf[..n].to_vec();
            if r.decode().is_ok() && r.transaction_id == m.transaction_id {
                return r;
            }
        }
    }
    panic!("no answer from {server}");
}

fn request(
    method: Method,
    attrs: &[&dyn Setter],
    auth: Option<(&str, &str, &str, &str)>,
) -> Message {
    let mut m = Message::new();
    m.set_type(MessageType::new(method, CLASS_REQUEST));
    m.new_transaction_id().unwrap();
    m.write_header();
    for a in attrs {
        a.add_to(&mut m).unwrap();
    }
    if let Some((user, realm, nonce, pass)) = auth {
        for (t, v) in [
            (ATTR_USERNAME, user),
            (ATTR_REALM, realm),
            (ATTR_NONCE, nonce),
        ] {
            TextAttribute::new(t, v.into()).add_to(&mut m).unwrap();
        }
        MessageIntegrity::new_long_term_integrity(user.into(), realm.into(), pass.into())
            .add_to(&mut m)
            .unwrap();
    }
    m
}

/// A client's socket and the credentials to sign with (user, realm, nonce, password).
struct Client {
    sock: UdpSocket,
    auth: (String, String, String, String),
}

/// Allocates and binds channel 0x4000 to `peer`.
fn setup_client(a: &Args, peer: SocketAddr, i: usize) -> Client {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let expiry = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let user = format!("{expiry}:load{i}");
    let pass = {
        use base64::Engine;
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(a.secret.as_bytes()).unwrap();
        mac.update(user.as_bytes());
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    };
    let udp = RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    };
    let r = exchange(&sock, a.server, &request(METHOD_ALLOCATE, &[&udp], None));
    let nonce = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
    let realm = TextAttribute::get_from_as(&r, ATTR_REALM).unwrap().text;
    let auth = Some((user.as_str(), realm.as_str(), nonce.as_str(), pass.as_str()));
    let r = exchange(&sock, a.server, &request(METHOD_ALLOCATE, &[&udp], auth));
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "allocate {i}");
    let ch = ChannelNumber(0x4000);
    let pa = PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    };
    let r = if a.indications {
        exchange(
            &sock,
            a.server,
            &request(METHOD_CREATE_PERMISSION, &[&pa], auth),
        )
    } else {
        exchange(
            &sock,
            a.server,
            &request(METHOD_CHANNEL_BIND, &[&ch, &pa], auth),
        )
    };
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "channel bind {i}");
    sock.set_nonblocking(true).unwrap();
    Client {
        sock,
        auth: (user.clone(), realm, nonce, pass),
    }
}

/// Deletes the allocation (Refresh with LIFETIME 0), so a later round's socket that gets
/// the same port does not meet a 437. Best effort.
fn release(a: &Args, c: &Client) {
    let (u, r, n, p) = &c.auth;
    let zero = turn::proto::lifetime::Lifetime(Duration::ZERO);
    let m = request(METHOD_REFRESH, &[&zero], Some((u, r, n, p)));
    let _ = c.sock.send_to(&m.raw, a.server);
}

fn main() {
    let a = args();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();
    peer.set_nonblocking(true).unwrap();
    let setup: Vec<Client> = (0..a.clients)
        .map(|i| setup_client(&a, peer_addr, i))
        .collect();
    let clients: Vec<&UdpSocket> = setup.iter().map(|c| &c.sock).collect();
    let (frame, echo_len, echo_type) = if a.indications {
        let mut m = Message::new();
        m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
        m.new_transaction_id().unwrap();
        m.write_header();
        let pa = PeerAddress {
            ip: peer_addr.ip(),
            port: peer_addr.port(),
        };
        pa.add_to(&mut m).unwrap();
        turn::proto::data::Data(vec![0u8; a.size])
            .add_to(&mut m)
            .unwrap();
        // A Data indication from an IPv4 peer: header, XOR-PEER-ADDRESS, DATA, padding.
        (m.raw, 20 + 12 + 4 + a.size.div_ceil(4) * 4, [0x00, 0x17])
    } else {
        let mut f = vec![0u8; 4 + a.size];
        f[0..2].copy_from_slice(&0x4000u16.to_be_bytes());
        f[2..4].copy_from_slice(&(a.size as u16).to_be_bytes());
        let len = f.len();
        (f, len, [0x40, 0x00])
    };
    let mut in_flight = vec![0usize; clients.len()];
    let mut progress = vec![Instant::now(); clients.len()];
    // recvmmsg/sendmmsg everywhere, so the generator costs less per packet than the
    // server it loads and the server is what saturates.
    let (mut inb, mut out) = (Batch::default(), Batch::default());
    let (mut echoed, mut sent) = (0u64, 0u64);
    let cpu0 = cpu_seconds(a.pid);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(a.seconds);
    while Instant::now() < end {
        for (i, c) in clients.iter().enumerate() {
            let room = a.window.saturating_sub(in_flight[i]).min(BATCH);
            for _ in 0..room {
                out.push(&[&frame], a.server);
            }
            let (failed, blocked) = out.flush(c.as_raw_fd());
            let ok = room - failed - blocked;
            in_flight[i] += ok;
            sent += ok as u64;
        }
        // The echo peer answers every relayed packet back through the relay.
        for _ in 0..64 {
            let n = inb.recv(peer.as_raw_fd(), 0).unwrap_or(0);
            for k in 0..n {
                let (slot, len, from) = inb.slot(k);
                if let Some(from) = from {
                    out.push(&[&slot[..len]], from);
                }
            }
            out.flush(peer.as_raw_fd());
            if n < BATCH {
                break;
            }
        }
        for (i, c) in clients.iter().enumerate() {
            loop {
                let n = inb.recv(c.as_raw_fd(), 0).unwrap_or(0);
                for k in 0..n {
                    let (slot, len, _) = inb.slot(k);
                    // coturn appends attributes (FINGERPRINT) to its Data indications.
                    let fits = if a.indications {
                        len >= echo_len
                    } else {
                        len == echo_len
                    };
                    if fits && slot[..2] == echo_type {
                        echoed += 1;
                        in_flight[i] = in_flight[i].saturating_sub(1);
                        progress[i] = Instant::now();
                    }
                }
                if n < BATCH {
                    break;
                }
            }
            // Lost packets would stall a window forever: a quiet client starts afresh.
            if progress[i].elapsed() > Duration::from_millis(200) {
                in_flight[i] = 0;
                progress[i] = Instant::now();
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(a.pid) - cpu0;
    for c in &setup {
        release(&a, c);
    }
    // Every echo crossed the relay twice: client->peer and peer->client.
    let relayed = echoed * 2;
    println!(
        "{{\"relayed_pps\": {:.0}, \"server_cpu_s\": {:.3}, \"relayed_per_cpu_s\": {:.0}, \"sent\": {sent}, \"echoed\": {echoed}, \"seconds\": {secs:.2}}}",
        relayed as f64 / secs,
        cpu,
        relayed as f64 / cpu.max(1e-9),
    );
}
