//! Interop with clients nobody here wrote: coturn's turnutils_uclient (UDP with channels,
//! UDP with Send indications, TCP, TLS) against turnutils_peer, and turnutils_stunclient.
//! The tools come from Debian's coturn package (scripts/install-test-deps.sh).

mod support;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

fn tool(name: &str) -> Command {
    let path = format!("/usr/bin/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} missing: run scripts/install-test-deps.sh (apt package coturn)"
    );
    Command::new(path)
}

/// turnutils_peer: a UDP echo peer on loopback.
fn udp_echo_peer() -> (Proc, u16) {
    let port = free_udp_port();
    let child = Proc::spawn(
        tool("turnutils_peer")
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    std::thread::sleep(Duration::from_millis(200));
    (child, port)
}

struct Run {
    output: Output,
    text: String,
}

/// Runs turnutils_uclient with REST credentials (-W) and small counts (bounded: 2
/// clients x 40 messages), against `port` with extra flags.
fn uclient(server_port: u16, peer_port: u16, secret: &str, flags: &[&str]) -> Run {
    let mut cmd = tool("turnutils_uclient");
    cmd.args(flags).args([
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port.to_string(),
        "-W",
        secret,
        "-u",
        "interop",
        "-m",
        "2",
        "-n",
        "40",
        "-l",
        "120",
        "-p",
        &server_port.to_string(),
        "127.0.0.1",
    ]);
    let output = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    Run { output, text }
}

/// uclient exits 0 even with loss: read its totals.
fn assert_no_loss(r: &Run) {
    assert!(r.output.status.success(), "uclient failed:\n{}", r.text);
    let lost = r
        .text
        .lines()
        .rev()
        .find_map(|l| l.split("Total lost packets ").nth(1))
        .unwrap_or_else(|| panic!("no loss line:\n{}", r.text));
    assert!(lost.starts_with("0 "), "lost packets: {lost}\n{}", r.text);
    let totals = r
        .text
        .lines()
        .rev()
        .find(|l| l.contains("tot_send_msgs=") && !l.contains("tot_send_bytes"))
        .unwrap_or_else(|| panic!("no totals line:\n{}", r.text));
    let num = |key: &str| -> u64 {
        totals
            .split(key)
            .nth(1)
            .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {totals}"))
    };
    let (sent, received) = (num("tot_send_msgs="), num("tot_recv_msgs="));
    assert_eq!((sent, received), (80, 80), "{totals}");
}

#[test]
fn uclient_over_udp_with_channels_loses_nothing() {
    let (relay, server) = start(true, "56000-56099");
    let (_peer, peer_port) = udp_echo_peer();
    assert_no_loss(&uclient(server.port(), peer_port, SECRET, &[]));
    relay.shutdown();
}

#[test]
fn uclient_over_udp_with_send_indications_loses_nothing() {
    let (relay, server) = start(true, "56100-56199");
    let (_peer, peer_port) = udp_echo_peer();
    assert_no_loss(&uclient(server.port(), peer_port, SECRET, &["-s"]));
    relay.shutdown();
}

#[test]
fn uclient_over_tcp_loses_nothing() {
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "56200-56299",
        &format!("listen_tcp = [\"127.0.0.1:{port}\"]"),
        "",
    );
    let (_peer, peer_port) = udp_echo_peer();
    assert_no_loss(&uclient(port, peer_port, SECRET, &["-t"]));
    relay.shutdown();
}

#[test]
fn uclient_over_tls_loses_nothing() {
    let dir = Scratch::new("interop");
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "56300-56399",
        &format!("listen_tls = [\"127.0.0.1:{port}\"]"),
        &format!("[tls]\ncert = {cert:?}\nkey = {key:?}\n"),
    );
    let (_peer, peer_port) = udp_echo_peer();
    // -S alone would be DTLS; -t -S is TLS over TCP.
    assert_no_loss(&uclient(port, peer_port, SECRET, &["-t", "-S"]));
    relay.shutdown();
}

#[test]
fn uclient_with_a_wrong_secret_cannot_allocate() {
    let (relay, server) = start(true, "56400-56499");
    let (_peer, peer_port) = udp_echo_peer();
    let r = uclient(server.port(), peer_port, "not-the-secret", &[]);
    assert!(
        !r.output.status.success(),
        "allocated with a wrong secret:\n{}",
        r.text
    );
    // And it failed for the right reason: the server saw a bad MESSAGE-INTEGRITY.
    let bad_integrity: u64 = relay
        .snapshots()
        .iter()
        .map(|s| s.counters.auth_failures[1])
        .sum();
    assert!(bad_integrity > 0, "{}", r.text);
    relay.shutdown();
}

#[test]
fn stunclient_gets_a_binding_answer() {
    let (relay, server) = start(true, "56500-56599");
    let out = tool("turnutils_stunclient")
        .args(["-p", &server.port().to_string(), "127.0.0.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("UDP reflexive addr: 127.0.0.1:"), "{text}");
    relay.shutdown();
}
