//! The kernel fast path inside turnpike (issue 19, phase 2): the real binary with
//! `[fastpath] enabled = true` on the server's veth, in the routed namespaces of
//! `support::veth` (client, server and peer behind a router). A client binds a channel
//! and sends ChannelData; the peer answers. The kernel relays both ways (its counters say
//! so), the metrics, the sessions API and the session log line count every packet
//! exactly, and once the allocation ends the kernel forwards nothing more. Root only.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use stun::message::*;
use support::veth::{Netns, Topology, topology};
use support::{Lines, Proc, RawClient, SECRET, Scratch, bin, http_get, metric, unix_now};
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turnpike::testkit::{channel_data, error_code, relayed};

const ADMIN: &str = "admin-token-0123456789";
const SERVER: &str = "10.11.0.2:3478";
const HTTP: &str = "127.0.0.1:9310";
const PEER: &str = "10.11.2.2:9000";
const CHANNEL: u16 = 0x4001;

fn start(server: &Netns, dir: &Scratch, mode: &str) -> (Proc, Lines) {
    let cfg = dir.file(
        "turnserver.toml",
        &format!(
            "[server]\nlisten_udp = [\"{SERVER}\"]\nshards = 1\n[relay]\nipv4 = \"10.11.0.2\"\n\
             ports = \"50000-50099\"\n[auth]\nsecrets = [\"{SECRET}\"]\n\
             [peers]\nallow = [\"10.11.0.0/16\"]\n[http]\nlisten = \"{HTTP}\"\n\
             admin_token = \"{ADMIN}\"\n[log]\nformat = \"json\"\n\
             [fastpath]\nenabled = true\nmode = \"{mode}\"\n"
        ),
    );
    let (proc, log) = spawn_in(server, &cfg);
    log.wait_for("HTTP endpoint up", Duration::from_secs(10));
    (proc, log)
}

/// The binary on `cfg` in the server's namespace, its log collected (not yet waited on).
fn spawn_in(server: &Netns, cfg: &std::path::Path) -> (Proc, Lines) {
    let mut proc = Proc::spawn(
        Command::new("ip")
            .args(["netns", "exec", &server.name])
            .arg(bin())
            .arg("--config")
            .arg(cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(&mut proc.0);
    (proc, log)
}

fn scrape(server: &Netns) -> String {
    server.enter(|| http_get(HTTP.parse().unwrap(), "GET", "/metrics", &[]).2)
}

fn sessions(server: &Netns) -> serde_json::Value {
    let bearer = format!("Bearer {ADMIN}");
    let headers = [("Authorization", bearer.as_str())];
    let body =
        server.enter(|| http_get(HTTP.parse().unwrap(), "GET", "/api/v1/sessions", &headers).2);
    serde_json::from_str(&body).unwrap()
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).ok()?;
    Some((buf[..n].to_vec(), from))
}

/// A client in the client namespace with an allocation and channel CHANNEL bound to a
/// UDP socket at PEER in the peer namespace; returns them and the relayed address.
fn bound_channel(t: &Topology) -> (RawClient, UdpSocket, SocketAddr) {
    let (user, pass) = turnpike::auth::mint_credential(SECRET, "alice", 600, unix_now());
    let mut c = t
        .client
        .enter(|| RawClient::new(SERVER.parse().unwrap(), user, pass));
    let relay = relayed(&c.allocate())[0];
    let peer = t.peer.enter(|| UdpSocket::bind(PEER).unwrap());
    peer.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let p: SocketAddr = PEER.parse().unwrap();
    let attrs: Vec<Box<dyn stun::message::Setter>> = vec![
        Box::new(ChannelNumber(CHANNEL)),
        Box::new(PeerAddress {
            ip: p.ip(),
            port: p.port(),
        }),
    ];
    let r = c.exchange(METHOD_CHANNEL_BIND, attrs, true);
    assert_eq!(error_code(&r), None);
    (c, peer, relay)
}

/// 10 packets each way through channel CHANNEL, payloads of 1..=10 bytes (55 bytes each
/// way), each one checked where it arrives.
fn ten_each_way(c: &RawClient, peer: &UdpSocket, relay: SocketAddr) {
    for n in 1..=10u8 {
        let payload = vec![n; n as usize];
        c.sock
            .send_to(&channel_data(CHANNEL, &payload), c.server)
            .unwrap();
        assert_eq!(recv(peer), Some((payload.clone(), relay)), "at the peer");
        peer.send_to(&payload, relay).unwrap();
        let (got, from) = recv(&c.sock).expect("at the client");
        assert_eq!((&got[4..], from), (&payload[..], c.server));
    }
}

fn relays_through_the_kernel_and_stops_when_the_allocation_ends(mode: &str, label: &str) {
    let t = topology();
    let dir = Scratch::new("fastpath-relay");
    let (_proc, log) = start(&t.server, &dir, mode);
    log.wait_for(&format!("\"mode\":\"{label}\""), Duration::from_secs(5));
    assert!(scrape(&t.server).contains(&format!("turnpike_fastpath_info{{mode=\"{label}\"}} 1")));

    let (mut c, peer, relay) = bound_channel(&t);
    ten_each_way(&c, &peer, relay);
    let m = scrape(&t.server);
    for d in ["client_to_peer", "peer_to_client"] {
        let kernel = metric(
            &m,
            &format!("turnpike_fastpath_packets_total{{direction=\"{d}\"}}"),
        );
        assert_eq!(kernel, 10.0, "{d}: the kernel relayed every packet");
        let series = format!("{{direction=\"{d}\",transport=\"udp\"}}");
        assert_eq!(
            metric(&m, &format!("turnpike_relayed_packets_total{series}")),
            10.0
        );
        assert_eq!(
            metric(&m, &format!("turnpike_relayed_bytes_total{series}")),
            55.0
        );
    }
    let s = &sessions(&t.server)["sessions"][0];
    for k in ["packets_to_peer", "packets_to_client"] {
        assert_eq!(s[k], 10, "{s:#}");
    }
    for k in ["bytes_to_peer", "bytes_to_client"] {
        assert_eq!(s[k], 55, "{s:#}");
    }

    // Refresh with lifetime 0: the route leaves the kernel with the allocation.
    let zero: Vec<Box<dyn stun::message::Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    assert_eq!(error_code(&c.exchange(METHOD_REFRESH, zero, true)), None);
    let ended = log.wait_for("allocation ended", Duration::from_secs(5));
    for want in [
        "\"packets_to_peer\":10",
        "\"bytes_to_peer\":55",
        "\"packets_to_client\":10",
        "\"bytes_to_client\":55",
    ] {
        assert!(ended.contains(want), "{want} in {ended}");
    }
    c.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    peer.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    c.sock
        .send_to(&channel_data(CHANNEL, b"late"), c.server)
        .unwrap();
    assert_eq!(recv(&peer), None, "forwarded after the allocation ended");
    peer.send_to(b"late", relay).unwrap();
    assert_eq!(recv(&c.sock), None, "forwarded to the client after the end");
    let m = scrape(&t.server);
    let kernel = metric(
        &m,
        "turnpike_fastpath_packets_total{direction=\"client_to_peer\"}",
    );
    assert_eq!(kernel, 10.0);
}

#[test]
fn native_xdp_relays_and_stops_at_allocation_end() {
    relays_through_the_kernel_and_stops_when_the_allocation_ends("xdp", "xdp");
}

#[test]
fn tc_relays_and_stops_at_allocation_end() {
    relays_through_the_kernel_and_stops_when_the_allocation_ends("tc", "tc");
}

#[test]
fn a_failed_attach_leaves_the_server_on_the_socket_path() {
    let t = topology();
    let dir = Scratch::new("fastpath-fallback");
    let cfg = dir.file(
        "turnserver.toml",
        &format!(
            "[server]\nlisten_udp = [\"{SERVER}\"]\n[relay]\nipv4 = \"10.11.0.2\"\n\
             [auth]\nsecrets = [\"{SECRET}\"]\n[http]\nlisten = \"{HTTP}\"\n\
             [fastpath]\nenabled = true\ninterface = \"nosuch0\"\n"
        ),
    );
    let (_proc, log) = spawn_in(&t.server, &cfg);
    log.wait_for("kernel fast path not attached", Duration::from_secs(10));
    log.wait_for("HTTP endpoint up", Duration::from_secs(10));
    assert!(scrape(&t.server).contains("turnpike_fastpath_info{mode=\"off\"} 1"));
}

#[test]
fn check_config_says_whether_it_would_attach() {
    let t = topology();
    let dir = Scratch::new("fastpath-check");
    let run = |interface: &str| {
        let cfg = dir.file(
            &format!("check-{interface}.toml"),
            &format!(
                "[server]\nlisten_udp = [\"{SERVER}\"]\n[relay]\nipv4 = \"10.11.0.2\"\n\
                 [auth]\nsecrets = [\"{SECRET}\"]\n[fastpath]\nenabled = true\n\
                 interface = \"{interface}\"\nmode = \"xdp\"\n"
            ),
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &t.server.name])
            .arg(bin())
            .arg("--config")
            .arg(&cfg)
            .args(["check-config", "--quiet"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let yes = run("s0");
    assert!(yes.contains("would attach to s0 in mode xdp"), "{yes}");
    let no = run("nosuch0");
    assert!(
        no.contains("would not attach") && no.contains("nosuch0"),
        "{no}"
    );
    // Detached again: the interface carries no program after the check.
    let link = Command::new("ip")
        .args(["-n", &t.server.name, "link", "show", "s0"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "{link:?}"
    );
}

/// coturn's turnutils_uclient (2 clients x 40 messages over channels) against
/// turnutils_peer: nothing lost, and the kernel relayed what the totals say.
#[test]
fn coturn_uclient_relays_through_the_kernel() {
    let t = topology();
    let dir = Scratch::new("fastpath-uclient");
    let (_proc, log) = start(&t.server, &dir, "auto");
    log.wait_for("kernel fast path attached", Duration::from_secs(5));
    let _peer = Proc::spawn(
        Command::new("ip")
            .args(["netns", "exec", &t.peer.name, "turnutils_peer"])
            .args(["-L", "10.11.2.2", "-p", "3480"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(200));
    let out = Command::new("ip")
        .args(["netns", "exec", &t.client.name, "turnutils_uclient"])
        .args([
            "-e",
            "10.11.2.2",
            "-r",
            "3480",
            "-W",
            SECRET,
            "-u",
            "interop",
        ])
        .args([
            "-m",
            "2",
            "-n",
            "40",
            "-l",
            "120",
            "-p",
            "3478",
            "10.11.0.2",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    let lost = (text.lines().rev())
        .find_map(|l| l.split("Total lost packets ").nth(1))
        .unwrap_or_else(|| panic!("no loss line:\n{text}"));
    assert!(lost.starts_with("0 "), "lost: {lost}\n{text}");
    let m = scrape(&t.server);
    for d in ["client_to_peer", "peer_to_client"] {
        let kernel = metric(
            &m,
            &format!("turnpike_fastpath_packets_total{{direction=\"{d}\"}}"),
        );
        let total = metric(
            &m,
            &format!("turnpike_relayed_packets_total{{direction=\"{d}\",transport=\"udp\"}}"),
        );
        eprintln!("{d}: {kernel} of {total} packets in the kernel");
        assert_eq!(total, 80.0, "{d}");
        // The route is in before the ChannelBind success goes out: every packet.
        assert_eq!(kernel, 80.0, "{d}: relayed in the kernel");
    }
}

/// Kills by PID, on drop, the process a handover started (not this test's child).
struct Successor(u32);

impl Drop for Successor {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the turnpike this test's own turnpike started.
        unsafe { libc::kill(self.0 as i32, libc::SIGKILL) };
    }
}

/// The kernel's count of packets each way, from the server's /metrics.
fn kernel_counts(server: &Netns) -> [f64; 2] {
    let m = scrape(server);
    ["client_to_peer", "peer_to_client"].map(|d| {
        metric(
            &m,
            &format!("turnpike_fastpath_packets_total{{direction=\"{d}\"}}"),
        )
    })
}

/// Issue 18 with the fast path on: a SIGURG whose new process fails leaves the old one's
/// program attached again (the kernel relays on, counted); one that succeeds detaches it
/// for the export (final counters read) and the new process attaches its own with the
/// imported binding in its maps. The totals go on exactly across both.
#[test]
fn a_handover_moves_the_kernel_bindings_to_the_new_process() {
    let t = topology();
    let dir = Scratch::new("fastpath-handover");
    let (mut old, log) = start(&t.server, &dir, "xdp");
    log.wait_for("\"mode\":\"xdp\"", Duration::from_secs(5));
    let (c, peer, relay) = bound_channel(&t);
    ten_each_way(&c, &peer, relay);
    assert_eq!(kernel_counts(&t.server), [10.0, 10.0]);

    // A new process that cannot start: the old one attaches again and relays on.
    let cfg = dir.0.join("turnserver.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\n[bogus]\nkey = 1\n")).unwrap();
    support::signal(&old.0, libc::SIGURG);
    log.wait_for("handover failed: still serving", Duration::from_secs(25));
    log.wait_for("kernel fast path attached again", Duration::from_secs(5));
    ten_each_way(&c, &peer, relay);
    assert_eq!(kernel_counts(&t.server), [20.0, 20.0]);

    std::fs::write(&cfg, good).unwrap();
    support::signal(&old.0, libc::SIGURG);
    let done = log.wait_for("handover done", Duration::from_secs(25));
    let _new = Successor(support::pid_in(&done));
    log.wait_for("took over from the old process", Duration::from_secs(10));
    assert_eq!(
        log.count("kernel fast path attached:"),
        2,
        "the new process attached"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while old.0.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the old process exits"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ten_each_way(&c, &peer, relay);
    // The new process's kernel relayed the new packets; the totals went on from 20.
    assert_eq!(kernel_counts(&t.server), [10.0, 10.0]);
    let m = scrape(&t.server);
    assert!(m.contains("turnpike_fastpath_info{mode=\"xdp\"} 1"), "{m}");
    assert_eq!(
        metric(&m, "turnpike_handover_total{result=\"took_over\"}"),
        1.0
    );
    for d in ["client_to_peer", "peer_to_client"] {
        let series = format!("{{direction=\"{d}\",transport=\"udp\"}}");
        let packets = metric(&m, &format!("turnpike_relayed_packets_total{series}"));
        let bytes = metric(&m, &format!("turnpike_relayed_bytes_total{series}"));
        assert_eq!((packets, bytes), (30.0, 165.0), "{d}");
    }
    let s = &sessions(&t.server)["sessions"][0];
    assert_eq!(
        (&s["packets_to_peer"], &s["bytes_to_client"]),
        (&30.into(), &165.into()),
        "{s:#}"
    );
}
