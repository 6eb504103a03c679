//! turnpike behind a real HAProxy (Debian's `haproxy`, scripts/install-test-deps.sh) in
//! `mode tcp` with `send-proxy-v2`, in front of a TCP and a TLS listener listed in
//! `server.proxy_protocol`: XOR-MAPPED-ADDRESS, the sessions API and the session log line
//! show the address HAProxy saw the client connect from, not HAProxy's own.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stun::message::*;
use stun::xoraddr::XorMappedAddress;
use support::*;

const ADMIN: &str = "admin-token-0123456789abcdef";

/// HAProxy in the foreground with a config in `dir`: 127.0.0.1:`front` → 127.0.0.1:`back`
/// with a PROXY v2 header, for each pair. Killed by its PID on drop.
fn haproxy(dir: &Scratch, pairs: &[(u16, u16)]) -> Proc {
    let bin = "/usr/sbin/haproxy";
    assert!(
        std::path::Path::new(bin).exists(),
        "{bin} missing: run scripts/install-test-deps.sh (apt package haproxy)"
    );
    let mut cfg = String::from(
        "global\n  maxconn 100\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
         timeout client 30s\n  timeout server 30s\n",
    );
    for (i, (front, back)) in pairs.iter().enumerate() {
        cfg += &format!(
            "frontend f{i}\n  bind 127.0.0.1:{front}\n  default_backend b{i}\n\
             backend b{i}\n  server s1 127.0.0.1:{back} send-proxy-v2\n"
        );
    }
    let path = dir.file("haproxy.cfg", &cfg);
    let p = Proc::spawn(
        Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    for (front, _) in pairs {
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", *front)).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "haproxy not up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    p
}

/// The turnpike binary with a TCP and a TLS listener that expect PROXY v2 from loopback.
fn turnpike(dir: &Scratch, cert: &TestCert, tcp: u16, tls: u16, http: u16) -> (Proc, Lines) {
    let cfg = dir.file(
        "t.toml",
        &format!(
            "[server]\nlisten_udp = [\"127.0.0.1:{}\"]\nlisten_tcp = [\"127.0.0.1:{tcp}\"]\n\
             listen_tls = [\"127.0.0.1:{tls}\"]\nshards = 1\nproxy_protocol = [\"127.0.0.0/8\"]\n\
             [relay]\nipv4 = \"127.0.0.1\"\nports = \"55600-55649\"\n[auth]\nsecrets = [\"{SECRET}\"]\n\
             [peers]\nallow = [\"127.0.0.0/8\"]\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             admin_token = \"{ADMIN}\"\n[log]\nformat = \"json\"\n{}",
            free_udp_port(),
            cert.config()
        ),
    );
    let mut proc = Proc::spawn(
        Command::new(bin())
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(&mut proc.0);
    log.wait_for("HTTP endpoint up", Duration::from_secs(10));
    (proc, log)
}

fn session_client(http: SocketAddr, user: &str) -> String {
    let bearer = format!("Bearer {ADMIN}");
    let auth = [("Authorization", bearer.as_str())];
    let (status, _, body) = http_get(http, "GET", "/api/v1/sessions", &auth);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let s = v["sessions"].as_array().unwrap().iter();
    let s = s.clone().find(|s| s["user"] == user);
    s.unwrap_or_else(|| panic!("no session of {user}: {v:#}"))["client"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Binding, Allocate and a channel over `c`; then the sessions API and the session log
/// line, once `c` is closed, must show `client`.
fn check<S: Read + Write>(
    mut c: StreamClient<S>,
    user: &str,
    client: SocketAddr,
    http: SocketAddr,
    log: &Lines,
) {
    let r = c.request(METHOD_BINDING, vec![], false);
    let mut x = XorMappedAddress::default();
    x.get_from(&r).unwrap();
    assert_eq!(SocketAddr::new(x.ip, x.port), client, "XOR-MAPPED-ADDRESS");
    c.allocate_and_bind(echo_peer());
    c.echo_channel_data(5);
    assert_eq!(session_client(http, user), client.to_string());
    drop(c);
    // The session line: "allocation ended", with the user first among its fields.
    let needle = format!("\"message\":\"allocation ended\",\"user\":\"{user}\"");
    let line = log.wait_for(&needle, Duration::from_secs(10));
    assert!(line.contains(&format!("\"client\":\"{client}\"")), "{line}");
}

#[test]
fn tcp_and_tls_clients_behind_haproxy_keep_their_own_address() {
    let dir = Scratch::new("haproxy");
    let cert = TestCert::new("haproxy-cert");
    let (tcp, tls, http_port) = (free_tcp_port(), free_tcp_port(), free_tcp_port());
    let (front_tcp, front_tls) = (free_tcp_port(), free_tcp_port());
    let (_turnpike, log) = turnpike(&dir, &cert, tcp, tls, http_port);
    let _haproxy = haproxy(&dir, &[(front_tcp, tcp), (front_tls, tls)]);
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();

    let creds = |u| turnpike::auth::mint_credential(SECRET, u, 600, unix_now());
    let s = TcpStream::connect(("127.0.0.1", front_tcp)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let me = s.local_addr().unwrap();
    let (u, p) = creds("via-tcp");
    check(StreamClient::new(s, u, p), "via-tcp", me, http, &log);

    let tls = cert.client(front_tls, true);
    let me = tls.sock.local_addr().unwrap();
    let (u, p) = creds("via-tls");
    check(StreamClient::new(tls, u, p), "via-tls", me, http, &log);
    let refused = scrape(
        http,
        "turnpike_proxy_protocol_errors_total{reason=\"bad_signature\"}",
    );
    assert_eq!(refused, 0, "haproxy's readiness probes sent headers too");
}
