//! Restart without dropping calls (issue 18), on the binary as an admin runs it outside
//! systemd: SIGURG hands listeners, relay sockets and state to a new process. A call
//! through a channel and one through Send indications, each at 50 packets/s to an echo
//! peer, go on through the same relayed address across two handovers in a row; the
//! sessions API shows the same allocations with their counters going on; the old process
//! exits. A state the new process cannot read: it says why, the old one drains, and the
//! new one starts empty.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stun::message::*;
use support::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;

const ADMIN: &str = "admin-token-0123456789abcdef";
const CHANNEL: u16 = 0x4000;

/// A turnpike started by this test and every process it handed over to: each is killed
/// by its PID on drop (the first is our child; the others its descendants).
struct Server {
    first: Proc,
    log: Lines,
    pids: Vec<u32>,
    udp: SocketAddr,
    http: SocketAddr,
    _dir: Scratch,
}

impl Drop for Server {
    fn drop(&mut self) {
        for pid in &self.pids {
            // SAFETY: kill(2) on a process this test started (directly or by handover).
            unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
        }
    }
}

fn start(ports: &str, env: &[(&str, &str)]) -> Server {
    start_with(ports, env, "")
}

/// `extra` goes into `[server]`.
fn start_with(ports: &str, env: &[(&str, &str)], extra: &str) -> Server {
    let (udp, http) = (free_udp_port(), free_tcp_port());
    let dir = Scratch::new("handover");
    let cfg = dir.file(
        "t.toml",
        &format!(
            "[server]\n{extra}listen_udp = [\"127.0.0.1:{udp}\"]\nshards = 2\ndrain_timeout = \"2s\"\n\
             [relay]\nipv4 = \"127.0.0.1\"\nports = \"{ports}\"\n[auth]\nsecrets = [\"{SECRET}\"]\n\
             [peers]\nallow = [\"127.0.0.0/8\"]\n[http]\nlisten = \"127.0.0.1:{http}\"\n\
             admin_token = \"{ADMIN}\"\n"
        ),
    );
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut first = Proc::spawn(&mut cmd);
    let log = Lines::collect(&mut first.0);
    log.wait_for("HTTP endpoint up", Duration::from_secs(10));
    let pids = vec![first.id()];
    Server {
        first,
        log,
        pids,
        udp: format!("127.0.0.1:{udp}").parse().unwrap(),
        http: format!("127.0.0.1:{http}").parse().unwrap(),
        _dir: dir,
    }
}

impl Server {
    /// SIGURG to the serving process; waits for the `n`th handover to finish and
    /// returns how long that took and the new PID.
    fn hand_over(&mut self, n: usize) -> (Duration, u32) {
        let pid = *self.pids.last().unwrap();
        let t = Instant::now();
        // SAFETY: kill(2) on a process this test started.
        unsafe { libc::kill(pid as i32, libc::SIGURG) };
        wait_until("handover done", Duration::from_secs(15), || {
            self.log.count("handover done") >= n
        });
        let took = t.elapsed();
        let new_pid = pid_in(&self.log.all("handover done")[n - 1]);
        self.pids.push(new_pid);
        (took, new_pid)
    }

    fn sessions(&self) -> Vec<serde_json::Value> {
        let bearer = format!("Bearer {ADMIN}");
        let (status, _, body) = http_get(
            self.http,
            "GET",
            "/api/v1/sessions",
            &[("Authorization", &bearer)],
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["sessions"].as_array().unwrap().clone()
    }
}

fn client(server: SocketAddr, user: &str, peer: SocketAddr) -> (RawClient, SocketAddr) {
    let (u, p) = turnpike::auth::mint_credential(SECRET, user, 600, unix_now());
    let mut c = RawClient::new(server, u, p);
    let r = c.allocate();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let relay = turnpike::testkit::relayed(&r)[0];
    let pa = PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    };
    let r = c.exchange(METHOD_CREATE_PERMISSION, vec![Box::new(pa)], true);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    (c, relay)
}

fn session<'a>(list: &'a [serde_json::Value], user: &str) -> &'a serde_json::Value {
    list.iter()
        .find(|s| s["user"] == user)
        .unwrap_or_else(|| panic!("no session of {user} in {list:#?}"))
}

#[test]
fn two_handovers_in_a_row_keep_a_channel_call_and_an_indication_call() {
    let mut server = start("47900-47949", &[]);
    let peer = echo_peer();
    let (mut ch, ch_relay) = client(server.udp, "chan", peer);
    let bind = ch.exchange(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(ChannelNumber(CHANNEL)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
        ],
        true,
    );
    assert_eq!(bind.typ.class, CLASS_SUCCESS_RESPONSE);
    let (ind, ind_relay) = client(server.udp, "ind", peer);
    let flows = [
        Flow::start(&ch.sock, server.udp, |p| {
            turnpike::testkit::channel_data(CHANNEL, p)
        }),
        Flow::start(&ind.sock, server.udp, move |p| {
            turnpike::testkit::send_indication(peer, p)
        }),
    ];
    std::thread::sleep(Duration::from_secs(1));
    let before = server.sessions();
    let relayed = "turnpike_relayed_packets_total{direction=\"client_to_peer\",transport=\"udp\"}";
    let relayed_before = metric(&http_get(server.http, "GET", "/metrics", &[]).2, relayed);
    let mut pids = vec![server.first.id()];
    // HANDOVER_ROUNDS=20 for the median and the worst; two in a row by default.
    let rounds: usize = std::env::var("HANDOVER_ROUNDS").map_or(2, |v| v.parse().unwrap());
    let mut gaps = Vec::new();
    for n in 1..=rounds {
        let (took, new_pid) = server.hand_over(n);
        let line = &server.log.all("handover done")[n - 1];
        let gap: u64 = line
            .split("duration_ms=")
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap();
        gaps.push(gap);
        eprintln!(
            "handover {n}: {gap} ms standing still (seen by the test after {took:?}), new pid {new_pid}"
        );
        let old = pids[n - 1];
        wait_until("the old process exits", Duration::from_secs(10), || {
            exited(old)
        });
        pids.push(new_pid);
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(
        !exited(*pids.last().unwrap()),
        "the last new process serves"
    );
    gaps.sort();
    eprintln!(
        "{rounds} handovers: median {} ms, worst {} ms standing still",
        gaps[gaps.len() / 2],
        gaps[gaps.len() - 1]
    );
    // The Prometheus counters went on from the old process's values.
    let relayed_after = metric(&http_get(server.http, "GET", "/metrics", &[]).2, relayed);
    assert!(
        relayed_after >= relayed_before + 80.0,
        "{relayed_before} -> {relayed_after}"
    );
    let after = server.sessions();
    for (user, relay) in [("chan", ch_relay), ("ind", ind_relay)] {
        let (b, a) = (session(&before, user), session(&after, user));
        assert_eq!(a["relay"][0], relay.to_string(), "{a:#}");
        assert_eq!(a["relay"], b["relay"]);
        assert_eq!(a["client"], b["client"]);
        let (pb, pa) = (
            b["packets_to_peer"].as_u64().unwrap(),
            a["packets_to_peer"].as_u64().unwrap(),
        );
        // A second or more at 50/s: the counters went on, not from zero.
        assert!(pa >= pb + 40, "{user}: packets_to_peer {pb} -> {pa}");
    }
    assert_eq!(
        session(&after, "chan")["channels"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for (flow, name) in flows.into_iter().zip(["channel", "indications"]) {
        let (sent, lost) = flow.finish();
        eprintln!("{name}: {sent} packets over {rounds} handovers, {lost} lost");
        // Fewer than 100 ms worth (5 packets at 50/s) per handover.
        assert!(lost < 5 * rounds as u64, "{name}: {lost} of {sent} lost");
    }
    let metrics = http_get(server.http, "GET", "/metrics", &[]).2;
    assert_eq!(
        metric(&metrics, "turnpike_handover_total{result=\"took_over\"}"),
        rounds as f64
    );
    drop(ch);
}

#[test]
fn a_state_the_new_process_cannot_read_is_declined_and_it_starts_empty() {
    for spoil in ["corrupt", "future"] {
        let mut server = start("47950-47989", &[("TURNPIKE_TEST_HANDOVER_STATE", spoil)]);
        let peer = echo_peer();
        let (mut c, _) = client(server.udp, "alice", peer);
        assert!(sends_through(&mut c, peer));
        let pid = server.first.id();
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(pid as i32, libc::SIGURG) };
        let why = server.log.wait_for(
            "handover declined by the new process",
            Duration::from_secs(10),
        );
        server.pids.push(pid_in(&why));
        eprintln!("{spoil}: {why}");
        assert!(why.contains("state cannot be read"), "{why}");
        // The old one drains (2 s here) with the call still relayed, then exits.
        assert!(
            sends_through(&mut c, peer),
            "the old process still relays while draining"
        );
        wait_until("the old process exits", Duration::from_secs(10), || {
            exited(pid)
        });
        server
            .log
            .wait_for("turnpike started", Duration::from_secs(10));
        wait_until("the new process answers", Duration::from_secs(10), || {
            server.sessions().is_empty()
        });
        let (mut fresh, _) = client(server.udp, "bob", peer);
        assert!(sends_through(&mut fresh, peer));
        server
            .log
            .wait_for("handover: not taking the calls over", Duration::ZERO);
    }
}

/// A new process that cannot start (here its config is broken by the time it reads it):
/// the old one says why and keeps serving the call, then hands over once it can.
#[test]
fn a_new_process_that_fails_leaves_the_old_one_serving() {
    let mut server = start("47990-47999", &[]);
    let peer = echo_peer();
    let (mut c, _) = client(server.udp, "alice", peer);
    assert!(sends_through(&mut c, peer));
    let cfg = server._dir.0.join("t.toml");
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{good}\n[bogus]\nkey = 1\n")).unwrap();
    let pid = server.first.id();
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(pid as i32, libc::SIGURG) };
    let why = server
        .log
        .wait_for("handover failed: still serving", Duration::from_secs(25));
    eprintln!("{why}");
    assert!(!exited(pid));
    assert!(sends_through(&mut c, peer), "the old process still relays");
    let metrics = http_get(server.http, "GET", "/metrics", &[]).2;
    assert_eq!(
        metric(&metrics, "turnpike_handover_total{result=\"failed\"}"),
        1.0
    );
    std::fs::write(&cfg, good).unwrap();
    server.hand_over(1);
    wait_until("the old process exits", Duration::from_secs(10), || {
        exited(pid)
    });
    assert!(
        sends_through(&mut c, peer),
        "the new process relays the same allocation"
    );
}

/// TCP/TLS connections are not handed over: the old process keeps relaying for an
/// existing one (until it ends or drain_timeout, 2 s here), the new one accepts every new
/// connection, and the old one exits once its last connection has gone.
#[test]
fn tcp_connections_stay_with_the_old_process_and_new_ones_go_to_the_new() {
    let tcp = free_tcp_port();
    let mut server = start_with(
        "48000-48019",
        &[],
        &format!("listen_tcp = [\"127.0.0.1:{tcp}\"]\n"),
    );
    let peer = echo_peer();
    let connect = |user: &str| {
        let s = std::net::TcpStream::connect(("127.0.0.1", tcp)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let (u, p) = turnpike::auth::mint_credential(SECRET, user, 600, unix_now());
        let mut c = StreamClient::new(s, u, p);
        c.allocate_and_bind(peer);
        c.echo_channel_data(3);
        c
    };
    let mut old_conn = connect("before");
    let old = server.first.id();
    let (_, _) = server.hand_over(1);
    assert!(server.log.all("handover done")[0].contains("kept_tcp_tls=1"));
    old_conn.echo_channel_data(5);
    assert!(!exited(old), "the old process serves its connection");
    let mut new_conn = connect("after");
    new_conn.echo_channel_data(3);
    let users: Vec<String> = server
        .sessions()
        .iter()
        .map(|s| s["user"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        users,
        ["after"],
        "the new process has only the connection it accepted"
    );
    drop(old_conn);
    wait_until("the old process exits", Duration::from_secs(5), || {
        exited(old)
    });
    new_conn.echo_channel_data(3);
}
