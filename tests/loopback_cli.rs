//! The binary as an admin meets it: config errors, the credential command, the embedded
//! default config, SIGHUP reload and SIGTERM shutdown.

mod support;

use std::io::Read;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, Scratch, free_udp_port, signal};

/// A config file in a scratch directory (removed on drop): `.0` is the file.
fn write_config(text: &str) -> (std::path::PathBuf, Scratch) {
    let dir = Scratch::new("cli");
    (dir.file("t.toml", text), dir)
}

#[test]
fn unknown_key_fails_to_start_and_names_the_key() {
    let cfg = write_config("[relay]\nport_range = \"1-2\"\n");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port_range"), "{err}");
}

#[test]
fn bad_value_fails_check_config_and_names_the_key() {
    let cfg = write_config("[relay]\nmax_lifetime = \"1m\"\n");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&cfg.0)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("relay.default_lifetime"), "{err}");
}

#[test]
fn shipped_example_config_passes_check_config_without_printing_secrets() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/turnserver.toml");
    let out = Command::new(BIN)
        .args(["check-config", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = write_config("[auth]\nsecrets = [\"very-secret-value\"]\n");
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&cfg.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("<redacted>") && !text.contains("very-secret-value"),
        "{text}"
    );
}

#[test]
fn credentials_command_prints_a_verifiable_rest_credential() {
    let cfg = write_config(
        "[auth]\nsecrets = [\"cli-secret-123\", \"older-secret\"]\n[http]\nuris = [\"turns:turn.example:443?transport=tcp\"]\n",
    );
    let out = Command::new(BIN)
        .args(["credentials", "--user", "zoe", "--ttl", "2h", "--config"])
        .arg(&cfg.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let username = v["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "zoe");
    let expiry: u64 = expiry.parse().unwrap();
    let now = support::unix_now();
    assert!((now + 7190..=now + 7210).contains(&expiry));
    assert_eq!(v["ttl"], 7200);
    assert_eq!(
        v["password"].as_str().unwrap(),
        turnpike::auth::rest_password("cli-secret-123", username),
        "minted with the first secret"
    );
    assert_eq!(
        v["iceServers"][0]["urls"][0],
        "turns:turn.example:443?transport=tcp"
    );
}

#[test]
fn credentials_command_without_a_secret_fails() {
    let out = Command::new(BIN)
        .args(["credentials", "--user", "x"])
        .env_remove("TURNPIKE_SECRET")
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no secret"));
}

fn binding_answered(port: u16) -> bool {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    req.extend_from_slice(&[7; 12]);
    let _ = s.send_to(&req, ("127.0.0.1", port));
    let mut buf = [0u8; 200];
    matches!(s.recv_from(&mut buf), Ok((n, _)) if n >= 20 && buf[0..2] == [0x01, 0x01])
}

fn wait_for_binding(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !binding_answered(port) {
        assert!(
            Instant::now() < deadline,
            "turnpike did not answer on {port}"
        );
    }
}

#[test]
fn starts_on_the_embedded_default_with_a_generated_secret_and_stops_on_sigterm() {
    let port = free_udp_port();
    let mut child = Command::new(BIN)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--ports",
            "54000-54099",
        ])
        // The default HTTP port may be taken where tests run in parallel.
        .args(["--http-listen", "127.0.0.1:0"])
        .env_remove("TURNPIKE_SECRET")
        .env_remove("TURNPIKE_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_binding(port);
    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "exit {status:?}");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(out.contains("generated one for this run"), "{out}");
    // The hint names this binary by path (not on PATH after `cargo run`) and works as given.
    let hint = out
        .lines()
        .find_map(|l| l.split("Mint a credential with:  ").nth(1))
        .unwrap_or_else(|| panic!("no hint in {out}"));
    assert!(
        hint.contains(&format!(" {BIN} credentials --user")),
        "{hint}"
    );
    let minted = Command::new("sh")
        .args(["-c", hint])
        .env("PATH", "/usr/bin:/bin")
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    assert!(minted.status.success(), "{hint}: {minted:?}");
    let json: serde_json::Value = serde_json::from_slice(&minted.stdout).unwrap();
    assert!(
        json["username"].as_str().unwrap().ends_with(":alice"),
        "{json}"
    );
}

#[test]
fn sighup_reload_swaps_the_secret_and_keeps_running() {
    let port = free_udp_port();
    let body = |secret: &str| {
        format!(
            "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 1\ndrain_timeout = \"0s\"\n[relay]\nipv4 = \"127.0.0.1\"\nports = \"54100-54199\"\n[auth]\nsecrets = [\"{secret}\"]\n[http]\nenabled = false\n"
        )
    };
    let cfg = write_config(&body("first-secret-1"));
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg.0)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_binding(port);
    let server = format!("127.0.0.1:{port}").parse().unwrap();
    let alloc = |secret: &str| {
        let (u, p) = turnpike::auth::mint_credential(secret, "r", 600, support::unix_now());
        support::RawClient::new(server, u, p).allocate()
    };
    assert_eq!(support::error_code(&alloc("first-secret-1")), None);
    assert_eq!(support::error_code(&alloc("second-secret-2")), Some(401));
    std::fs::write(&cfg.0, body("second-secret-2")).unwrap();
    signal(&child, libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(5);
    while support::error_code(&alloc("second-secret-2")).is_some() {
        assert!(Instant::now() < deadline, "reload did not take effect");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(support::error_code(&alloc("first-secret-1")), Some(401));
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("configuration reloaded"), "{err}");
    // Allocations made before the reload ended at shutdown, each with its log line.
    assert!(err.contains("allocation ended"), "{err}");
    assert!(!err.contains("first-secret-1") && !err.contains("second-secret-2"));
}

#[test]
fn reload_with_an_empty_config_file_is_refused_and_keeps_the_running_one() {
    let port = free_udp_port();
    let cfg = write_config(&format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 1\ndrain_timeout = \"0s\"\n[relay]\nipv4 = \"127.0.0.1\"\nports = \"54300-54349\"\n[auth]\nsecrets = [\"kept-secret-1\"]\n[http]\nenabled = false\n"
    ));
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg.0)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_binding(port);
    std::fs::write(&cfg.0, "\n  \n").unwrap();
    signal(&child, libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    let server = format!("127.0.0.1:{port}").parse().unwrap();
    let (u, p) = turnpike::auth::mint_credential("kept-secret-1", "r", 600, support::unix_now());
    let r = support::RawClient::new(server, u, p).allocate();
    assert_eq!(
        support::error_code(&r),
        None,
        "the running secret still works"
    );
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("reload failed") && err.contains("is empty"),
        "{err}"
    );
}

#[test]
fn session_log_line_is_structured_json_with_totals_and_redactable() {
    let port = free_udp_port();
    let echo = support::echo_peer();
    let cfg = write_config(&format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 1\n[relay]\nipv4 = \"127.0.0.1\"\nports = \"54200-54299\"\n[auth]\nsecrets = [\"log-secret-1\"]\n[peers]\nallow = [\"127.0.0.0/8\"]\n[http]\nenabled = false\n[log]\nformat = \"json\"\nredact_client_address = true\n"
    ));
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg.0)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_binding(port);
    let server = format!("127.0.0.1:{port}").parse().unwrap();
    let (u, p) = turnpike::auth::mint_credential("log-secret-1", "lena", 600, support::unix_now());
    let mut c = support::RawClient::new(server, u, p.clone());
    assert_eq!(support::error_code(&c.allocate()), None);
    // Three Send indications of 10 bytes to the echo peer: 30 bytes each way.
    let r = c.exchange(
        stun::message::METHOD_CREATE_PERMISSION,
        vec![Box::new(turn::proto::peeraddr::PeerAddress {
            ip: echo.ip(),
            port: echo.port(),
        })],
        true,
    );
    assert_eq!(support::error_code(&r), None);
    for _ in 0..3 {
        let mut m = stun::message::Message::new();
        m.set_type(stun::message::MessageType::new(
            stun::message::METHOD_SEND,
            stun::message::CLASS_INDICATION,
        ));
        m.new_transaction_id().unwrap();
        m.write_header();
        use stun::message::Setter;
        turn::proto::peeraddr::PeerAddress {
            ip: echo.ip(),
            port: echo.port(),
        }
        .add_to(&mut m)
        .unwrap();
        turn::proto::data::Data(vec![1; 10]).add_to(&mut m).unwrap();
        c.sock.send_to(&m.raw, server).unwrap();
        let mut buf = [0u8; 200];
        c.sock.recv_from(&mut buf).expect("Data indication back");
    }
    let r = c.exchange(
        stun::message::METHOD_REFRESH,
        vec![Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO))],
        true,
    );
    assert_eq!(support::error_code(&r), None);
    signal(&child, libc::SIGTERM);
    assert!(child.wait().unwrap().success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let line = err
        .lines()
        .find(|l| l.contains("allocation ended"))
        .unwrap_or_else(|| panic!("no session line in:\n{err}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("one JSON object per line");
    let f = &v["fields"];
    assert_eq!(f["user"], "lena");
    assert_eq!(f["client"], "redacted");
    assert_eq!(f["transport"], "udp");
    assert_eq!(f["reason"], "deleted");
    assert_eq!(
        (f["bytes_to_peer"].as_u64(), f["packets_to_peer"].as_u64()),
        (Some(30), Some(3))
    );
    assert_eq!(
        (
            f["bytes_to_client"].as_u64(),
            f["packets_to_client"].as_u64()
        ),
        (Some(30), Some(3))
    );
    assert_eq!(
        (f["peers"].as_u64(), f["channels"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(f["relay"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(f["duration_s"].as_f64().unwrap() >= 0.0);
    assert!(
        !err.contains("127.0.0.1:") || !line.contains(&c.sock.local_addr().unwrap().to_string())
    );
    assert!(!err.contains(&p), "password in the log");
}
