//! The sessions API on the binary as an admin runs it: GET /api/v1/sessions lists live
//! allocations with exact traffic counts, DELETE ?user=ID ends them (the session log line
//! says "admin"), and neither works without the token.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use stun::message::*;
use support::*;
use turn::proto::peeraddr::PeerAddress;

const TOKEN: &str = "credentials-token-0123456789";
const ADMIN: &str = "admin-token-0123456789abcdef";

/// turnpike started by this test, killed by PID on drop; its log lines are collected.
struct Server {
    _proc: Proc,
    log: Lines,
    _dir: Scratch,
}

fn start(udp: u16, http: u16, redact: bool, relay_ports: &str) -> Server {
    let dir = Scratch::new("sessions");
    let cfg = dir.file(
        "t.toml",
        &format!(
            "[server]\nlisten_udp = [\"127.0.0.1:{udp}\"]\nshards = 2\n[relay]\nipv4 = \"127.0.0.1\"\n\
             ports = \"{relay_ports}\"\n[auth]\nsecrets = [\"{SECRET}\"]\n[peers]\nallow = [\"127.0.0.0/8\"]\n\
             [http]\nlisten = \"127.0.0.1:{http}\"\ncredentials_token = \"{TOKEN}\"\nadmin_token = \"{ADMIN}\"\n\
             [log]\nformat = \"json\"\nredact_client_address = {redact}\n"
        ),
    );
    let mut proc = Proc::spawn(
        Command::new(BIN)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = Lines::collect(&mut proc.0);
    let s = Server {
        _proc: proc,
        log,
        _dir: dir,
    };
    wait_for(&s, "HTTP endpoint up");
    s
}

fn wait_for(s: &Server, needle: &str) -> String {
    s.log.wait_for(needle, Duration::from_secs(10))
}

fn send_indication(c: &RawClient, peer: SocketAddr, payload: &[u8]) {
    let m = turnpike::testkit::send_indication(peer, payload);
    c.sock.send_to(&m, c.server).unwrap();
}

/// The DATA of the next Data indication, or None within the socket's timeout.
fn recv_data(c: &RawClient) -> Option<Vec<u8>> {
    let mut buf = [0u8; 1500];
    let (n, _) = c.sock.recv_from(&mut buf).ok()?;
    let mut d = Message::new();
    d.raw = buf[..n].to_vec();
    d.decode().ok()?;
    d.get(stun::attributes::ATTR_DATA).ok()
}

fn sessions(http: SocketAddr, token: Option<&str>) -> (u16, serde_json::Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = http_get(http, "GET", "/api/v1/sessions", &headers);
    (status, serde_json::from_str(&body).unwrap_or_default())
}

#[test]
fn list_shows_exact_traffic_and_delete_ends_the_users_allocation() {
    let (udp, http_port) = (free_udp_port(), free_udp_port());
    let server = start(udp, http_port, false, "47800-47849");
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let (user, pass) = turnpike::auth::mint_credential(SECRET, "alice", 600, unix_now());
    let mut c = RawClient::new(format!("127.0.0.1:{udp}").parse().unwrap(), user, pass);
    assert!(c.allocate().typ.class == CLASS_SUCCESS_RESPONSE);
    let peer = echo_peer();
    let p = PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    };
    let r = c.exchange(METHOD_CREATE_PERMISSION, vec![Box::new(p)], true);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    // 3 messages of 10, 20 and 30 bytes, each echoed back.
    for n in [10usize, 20, 30] {
        send_indication(&c, peer, &vec![7u8; n]);
        assert_eq!(recv_data(&c).expect("echo").len(), n);
    }
    // Another user's allocation, which the DELETE below must leave alone.
    let (u2, p2) = turnpike::auth::mint_credential(SECRET, "bob", 600, unix_now());
    let mut bob = RawClient::new(c.server, u2, p2);
    assert!(bob.allocate().typ.class == CLASS_SUCCESS_RESPONSE);

    let (status, v) = sessions(http, Some(ADMIN));
    assert_eq!(status, 200, "{v}");
    let list = v["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v:#}");
    let a = list.iter().find(|s| s["user"] == "alice").unwrap();
    assert_eq!(a["bytes_to_peer"], 60, "{a:#}");
    assert_eq!(a["packets_to_peer"], 3, "{a:#}");
    assert_eq!(a["bytes_to_client"], 60, "{a:#}");
    assert_eq!(a["packets_to_client"], 3, "{a:#}");
    assert_eq!(a["transport"], "udp");
    assert_eq!(a["client"], c.sock.local_addr().unwrap().to_string());
    assert_eq!(a["permissions"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(a["channels"], serde_json::json!([]));
    assert!(
        a["relay"][0].as_str().unwrap().starts_with("127.0.0.1:478"),
        "{a:#}"
    );
    assert!(a["age_s"].as_u64().unwrap() < 30);
    // Only the admin token opens it: the credentials token (handed to browser apps) does
    // not, nor does none or a wrong one.
    assert_eq!(sessions(http, Some(TOKEN)).0, 401);
    assert_eq!(sessions(http, None).0, 401);
    assert_eq!(sessions(http, Some("wrong-token-0123456789")).0, 401);
    let (status, _, _) = http_get(http, "DELETE", "/api/v1/sessions?user=alice", &[]);
    assert_eq!(status, 401, "DELETE without the token");
    assert_eq!(
        sessions(http, Some(ADMIN)).1["sessions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let bearer = format!("Bearer {ADMIN}");
    let (status, _, _) = http_get(
        http,
        "DELETE",
        "/api/v1/sessions",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 400, "DELETE names no user");
    let (status, _, body) = http_get(
        http,
        "DELETE",
        "/api/v1/sessions?user=alice",
        &[("Authorization", &bearer)],
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ended"], 1, "{v}");
    // The session log line says why, with the totals.
    let line = wait_for(&server, "\"reason\":\"admin\"");
    assert!(
        line.contains("\"user\":\"alice\"") && line.contains("\"bytes_to_peer\":60"),
        "{line}"
    );
    // The client's next Send gets no relay: nothing reaches the echo peer or comes back.
    c.sock
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    send_indication(&c, peer, b"after delete");
    assert_eq!(
        recv_data(&c),
        None,
        "relayed after the allocation was ended"
    );
    let r = c.exchange(
        METHOD_REFRESH,
        vec![Box::new(turn::proto::lifetime::Lifetime(
            Duration::from_secs(600),
        ))],
        true,
    );
    assert_eq!(error_code(&r), Some(437), "no allocation any more");
    let list = sessions(http, Some(ADMIN)).1;
    let users: Vec<&str> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob"]);
}

#[test]
fn redacted_client_address_is_not_listed() {
    let (udp, http_port) = (free_udp_port(), free_udp_port());
    let _server = start(udp, http_port, true, "47850-47899");
    let http: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let (user, pass) = turnpike::auth::mint_credential(SECRET, "carol", 600, unix_now());
    let mut c = RawClient::new(format!("127.0.0.1:{udp}").parse().unwrap(), user, pass);
    assert!(c.allocate().typ.class == CLASS_SUCCESS_RESPONSE);
    let (_, v) = sessions(http, Some(ADMIN));
    let s = &v["sessions"][0];
    assert_eq!(s["user"], "carol");
    assert_eq!(s["client"], "redacted", "{s:#}");
    assert!(
        !v.to_string()
            .contains(&c.sock.local_addr().unwrap().to_string())
    );
}
