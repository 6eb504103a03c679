//! Operations as an admin meets them: startup checks that refuse a node which could not
//! relay (clear error naming the key, non-zero exit), the systemd notify protocol on a
//! NOTIFY_SOCKET of the test's own, and the drain on SIGTERM.

mod support;

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use stun::message::*;
use support::{
    BIN, Proc, RawClient, Scratch, error_code, free_tcp_port, free_udp_port, relays, signal,
};

/// Runs the binary to completion, killed after 20 s.
fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("turnpike did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Starts (and check-configs) `config`; both must fail with `needles` in the error.
#[track_caller]
fn refuses(config: &str, needles: &[&str], also_check_config: bool) {
    let dir = Scratch::new(&format!("refuse-{}", free_udp_port()));
    let path = dir.file("t.toml", config);
    let mut variants = vec![vec!["--config"]];
    if also_check_config {
        variants.push(vec!["check-config", "--config"]);
    }
    for args in variants {
        let mut cmd = Command::new(BIN);
        cmd.args(&args).arg(&path);
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded on:\n{config}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {n:?} not in:\n{err}");
        }
    }
}

fn base(port: u16, relay: &str, extra_server: &str) -> String {
    format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 1\n{extra_server}\n\
         [relay]\n{relay}\n[auth]\nsecrets = [\"ops-secret-1\"]\n[http]\nenabled = false\n"
    )
}

#[test]
fn relay_address_not_on_this_host_is_refused_naming_relay_ipv4() {
    // 192.0.2.1 (TEST-NET-1) is on no interface here; only a bind is attempted.
    let cfg = base(free_udp_port(), "ipv4 = \"192.0.2.1\"", "");
    refuses(&cfg, &["relay.ipv4", "not an address of this host"], true);
}

#[test]
fn relay_range_fully_in_use_is_refused_naming_relay_ports() {
    // Hold every port of a small range, as another process would.
    let held: Vec<UdpSocket> = (0..200)
        .find_map(|_| {
            let first = UdpSocket::bind("127.0.0.1:0").ok()?;
            let p = first.local_addr().ok()?.port();
            if p > 65530 {
                return None;
            }
            let rest: Option<Vec<_>> = (1..4)
                .map(|i| UdpSocket::bind(("127.0.0.1", p + i)).ok())
                .collect();
            rest.map(|mut r| {
                r.insert(0, first);
                r
            })
        })
        .expect("four consecutive free ports");
    let lo = held[0].local_addr().unwrap().port();
    let cfg = base(
        free_udp_port(),
        &format!("ipv4 = \"127.0.0.1\"\nports = \"{lo}-{}\"", lo + 3),
        "",
    );
    refuses(&cfg, &["relay.ports", "in use"], true);
}

/// Runs the binary as `nobody` (util-linux setpriv), as the packaged service runs
/// unprivileged.
fn as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        BIN,
    ]);
    c
}

#[test]
fn relay_ports_below_1024_without_privilege_are_refused_with_the_reason() {
    let dir = Scratch::new("lowports");
    let path = dir.file(
        "t.toml",
        &base(
            free_udp_port(),
            "ipv4 = \"127.0.0.1\"\nports = \"600-610\"",
            "",
        ),
    );
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = as_nobody();
    cmd.arg("--config").arg(&path);
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("relay.ports") && err.contains("CAP_NET_BIND_SERVICE"),
        "{err}"
    );
}

#[test]
fn tls_files_missing_or_unreadable_are_refused_naming_the_key() {
    let port = free_udp_port();
    let tls = |cert: &str, key: &str| {
        format!(
            "[server]\nlisten_udp = []\nlisten_tls = [\"127.0.0.1:{port}\"]\nshards = 1\n\
             [tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n[relay]\nipv4 = \"127.0.0.1\"\n\
             [auth]\nsecrets = [\"ops-secret-1\"]\n[http]\nenabled = false\n"
        )
    };
    refuses(
        &tls("/nonexistent/fullchain.pem", "/nonexistent/privkey.pem"),
        &["tls.cert", "/nonexistent/fullchain.pem"],
        true,
    );
    // A certbot-style key: 0600 root. Readable by root, not by the service's user.
    let dir = Scratch::new("tls");
    let ck = rcgen::generate_simple_self_signed(vec!["turn.test".into()]).unwrap();
    let cert = dir.file("fullchain.pem", &ck.cert.pem());
    let key = dir.file("privkey.pem", &ck.signing_key.serialize_pem());
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&dir.0, PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = dir.file(
        "t.toml",
        &tls(cert.to_str().unwrap(), key.to_str().unwrap()),
    );
    std::fs::set_permissions(&cfg, PermissionsExt::from_mode(0o644)).unwrap();
    for args in [&["check-config", "--config"][..], &["--config"][..]] {
        let mut cmd = as_nobody();
        cmd.args(args).arg(&cfg);
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {err}");
        assert!(
            err.contains("tls.key") && err.contains("ermission denied"),
            "{args:?}: {err}"
        );
    }
    // The same files as root: check-config passes (the files themselves are fine).
    let mut cmd = Command::new(BIN);
    cmd.args(["check-config", "--quiet", "--config"]).arg(&cfg);
    let out = run(cmd);
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn duplicated_listener_is_refused() {
    let port = free_udp_port();
    let cfg = base(
        port,
        "ipv4 = \"127.0.0.1\"",
        &format!("listen_tcp = [\"127.0.0.1:{port}\", \"127.0.0.1:{port}\"]"),
    );
    refuses(&cfg, &["server.listen_tcp", "listed twice"], true);
}

#[test]
fn listener_port_held_by_another_process_is_refused_even_with_so_reuseport() {
    // Another server on the port, with SO_REUSEPORT as a second turnpike would have.
    use socket2::{Domain, Socket, Type};
    let other = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    other.set_reuse_port(true).unwrap();
    other
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let port = other.local_addr().unwrap().as_socket().unwrap().port();
    let cfg = base(port, "ipv4 = \"127.0.0.1\"", "");
    refuses(
        &cfg,
        &["server.listen_udp", &format!("127.0.0.1:{port}"), "in use"],
        false,
    );
}

#[test]
fn log_level_typo_is_refused_with_a_hint() {
    let cfg = format!(
        "{}[log]\nlevel = \"warning\"\n",
        base(free_udp_port(), "ipv4 = \"127.0.0.1\"", "").replace("[http]\nenabled = false\n", "")
    );
    refuses(&cfg, &["log.level", "did you mean \"warn\""], true);
}

#[test]
fn world_readable_secrets_file_is_refused_and_a_private_one_is_read() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("secrets");
    let secrets = dir.file("secrets", "# comment\nfile-secret-1\n\n");
    std::fs::set_permissions(&secrets, PermissionsExt::from_mode(0o644)).unwrap();
    let cfg = dir.file(
        "t.toml",
        &format!("[auth]\nsecrets_file = \"{}\"\n", secrets.display()),
    );
    let mut cmd = Command::new(BIN);
    cmd.args(["credentials", "--user", "u", "--config"])
        .arg(&cfg);
    let out = run(cmd);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("auth.secrets_file") && err.contains("0644"),
        "{err}"
    );
    std::fs::set_permissions(&secrets, PermissionsExt::from_mode(0o640)).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["credentials", "--user", "u", "--config"])
        .arg(&cfg);
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let user = v["username"].as_str().unwrap();
    assert_eq!(
        v["password"].as_str().unwrap(),
        turnpike::auth::rest_password("file-secret-1", user)
    );
}

/// A NOTIFY_SOCKET of our own: what the server tells systemd.
struct Notify {
    sock: UnixDatagram,
    _dir: Scratch,
    path: PathBuf,
}

impl Notify {
    fn new(tag: &str) -> Notify {
        let dir = Scratch::new(&format!("notify-{tag}"));
        let path = dir.0.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        Notify {
            sock,
            _dir: dir,
            path,
        }
    }

    /// Next message containing `what`, within `within`; the messages skipped are returned
    /// too.
    fn wait_for(&self, what: &str, within: Duration) -> (String, Vec<String>) {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {what:?} within {within:?}; saw {seen:?}"
            );
            self.sock.set_read_timeout(Some(left)).unwrap();
            if let Ok(n) = self.sock.recv(&mut buf) {
                let m = String::from_utf8_lossy(&buf[..n]).into_owned();
                if m.lines().any(|l| l == what) {
                    return (m, seen);
                }
                seen.push(m);
            }
        }
    }
}

struct Server {
    proc: Proc,
    udp: SocketAddr,
    http: SocketAddr,
}

fn start(notify: &Notify, dir: &Scratch, server_extra: &str, env: &[(&str, &str)]) -> Server {
    let port = free_udp_port();
    let http_port = free_tcp_port();
    let cfg = dir.file(
        "t.toml",
        &format!(
            "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 2\n{server_extra}\n\
             [relay]\nipv4 = \"127.0.0.1\"\n[auth]\nsecrets = [\"ops-secret-1\"]\n\
             [peers]\nallow = [\"127.0.0.0/8\"]\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n"
        ),
    );
    let child = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &notify.path)
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    Server {
        proc: Proc(child),
        udp: format!("127.0.0.1:{port}").parse().unwrap(),
        http: format!("127.0.0.1:{http_port}").parse().unwrap(),
    }
}

fn client(server: SocketAddr, user: &str) -> RawClient {
    let (u, p) = turnpike::auth::mint_credential("ops-secret-1", user, 600, support::unix_now());
    RawClient::new(server, u, p)
}

fn stderr_of(mut s: Server) -> String {
    let mut err = String::new();
    s.proc
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

#[test]
fn notify_ready_after_binding_reloading_around_sighup_and_watchdog_pings() {
    let n = Notify::new("ready");
    let dir = Scratch::new("ready");
    let s = start(&n, &dir, "", &[("WATCHDOG_USEC", "4500000")]);
    let (ready, _) = n.wait_for("READY=1", Duration::from_secs(15));
    // READY=1 means it relays: a Binding and an Allocate succeed at once, without retrying.
    let mut c = client(s.udp, "ready");
    assert_eq!(error_code(&c.allocate()), None, "{ready}");
    n.wait_for("WATCHDOG=1", Duration::from_secs(1));
    // Pinged again only after the shards have beaten (every 1.5 s here).
    n.wait_for("WATCHDOG=1", Duration::from_secs(5));
    signal(&s.proc.0, libc::SIGHUP);
    let (reloading, _) = n.wait_for("RELOADING=1", Duration::from_secs(5));
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    n.wait_for("READY=1", Duration::from_secs(5));
    signal(&s.proc.0, libc::SIGINT);
    n.wait_for("STOPPING=1", Duration::from_secs(5));
}

#[test]
fn sigterm_drains_readyz_503_new_allocate_redirected_existing_relays_until_it_ends() {
    let n = Notify::new("drain");
    let dir = Scratch::new("drain");
    let echo = support::echo_peer();
    let mut s = start(
        &n,
        &dir,
        "drain_timeout = \"20s\"\nalternate = [\"[2001:db8::50]:3478\", \"192.0.2.50:3478\"]",
        &[],
    );
    n.wait_for("READY=1", Duration::from_secs(15));
    assert_eq!(support::http_get(s.http, "GET", "/readyz", &[]).0, 200);
    let mut a = client(s.udp, "alice");
    assert_eq!(error_code(&a.allocate()), None);
    assert!(relays(&mut a, echo));

    // Challenged before the drain: its signed Allocate comes during it.
    let mut b = client(s.udp, "bob");
    let t0 = Instant::now();
    signal(&s.proc.0, libc::SIGTERM);
    n.wait_for("STOPPING=1", Duration::from_secs(5));
    assert_eq!(support::http_get(s.http, "GET", "/readyz", &[]).0, 503);
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "readyz took {:?}",
        t0.elapsed()
    );
    // A newcomer is sent to the IPv4 alternate, in the plain STUN address encoding:
    // before the challenge when unsigned, after authentication when signed.
    for sign in [false, true] {
        let r = b.exchange(METHOD_ALLOCATE, vec![], sign);
        assert_eq!(error_code(&r), Some(300));
        let mut alt = stun::addr::MappedAddress::default();
        alt.get_from_as(&r, stun::attributes::ATTR_ALTERNATE_SERVER)
            .unwrap();
        assert_eq!(
            SocketAddr::new(alt.ip, alt.port),
            "192.0.2.50:3478".parse().unwrap()
        );
        assert_eq!(r.contains(stun::attributes::ATTR_NONCE), sign);
    }
    // Alice's call carries on: relaying and refreshing, for a few seconds.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        assert!(relays(&mut a, echo), "relay stopped during the drain");
        let r = a.exchange(
            METHOD_REFRESH,
            vec![Box::new(turn::proto::lifetime::Lifetime(
                Duration::from_secs(600),
            ))],
            true,
        );
        assert_eq!(error_code(&r), None);
    }
    assert!(s.proc.0.try_wait().unwrap().is_none(), "exited mid-call");
    // The call ends: the server exits 0 within moments, long before drain_timeout.
    let r = a.exchange(
        METHOD_REFRESH,
        vec![Box::new(turn::proto::lifetime::Lifetime(Duration::ZERO))],
        true,
    );
    assert_eq!(error_code(&r), None);
    let ended = Instant::now();
    let status = loop {
        if let Some(st) = s.proc.0.try_wait().unwrap() {
            break st;
        }
        assert!(ended.elapsed() < Duration::from_secs(5), "still draining");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let err = stderr_of(s);
    assert!(err.contains("drained"), "{err}");
}

#[test]
fn drain_ends_at_drain_timeout_with_calls_still_up_and_exits_zero() {
    let n = Notify::new("timeout");
    let dir = Scratch::new("timeout");
    let mut s = start(&n, &dir, "drain_timeout = \"2s\"", &[]);
    n.wait_for("READY=1", Duration::from_secs(15));
    let mut a = client(s.udp, "carol");
    assert_eq!(error_code(&a.allocate()), None);
    let t0 = Instant::now();
    signal(&s.proc.0, libc::SIGTERM);
    // STOPPING=1 comes once every shard refuses new allocations.
    n.wait_for("STOPPING=1", Duration::from_secs(5));
    // No alternates: a newcomer gets 403 while the node drains.
    let mut b = client(s.udp, "dave");
    assert_eq!(error_code(&b.allocate()), Some(403));
    let status = loop {
        if let Some(st) = s.proc.0.try_wait().unwrap() {
            break st;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "drain did not end");
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = t0.elapsed();
    assert!(status.success(), "{status:?}");
    assert!(took >= Duration::from_millis(1900), "exited after {took:?}");
    let err = stderr_of(s);
    assert!(err.contains("drain timeout"), "{err}");
    assert!(
        err.contains("reason=shutdown") || err.contains("shutdown"),
        "{err}"
    );
}

#[test]
fn sigusr1_drains_without_stopping_and_sigusr2_resumes() {
    let n = Notify::new("usr1");
    let dir = Scratch::new("usr1");
    let s = start(&n, &dir, "", &[]);
    n.wait_for("READY=1", Duration::from_secs(15));
    signal(&s.proc.0, libc::SIGUSR1);
    let deadline = Instant::now() + Duration::from_secs(3);
    while support::http_get(s.http, "GET", "/readyz", &[]).0 != 503 {
        assert!(Instant::now() < deadline, "readyz stayed 200");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The status line comes once every shard applied the drain.
    n.wait_for(
        "STATUS=draining (SIGUSR1): new allocations refused",
        Duration::from_secs(5),
    );
    assert_eq!(error_code(&client(s.udp, "erin").allocate()), Some(403));
    signal(&s.proc.0, libc::SIGUSR2);
    let deadline = Instant::now() + Duration::from_secs(3);
    while support::http_get(s.http, "GET", "/readyz", &[]).0 != 200 {
        assert!(Instant::now() < deadline, "readyz stayed 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(error_code(&client(s.udp, "erin").allocate()), None);
}

#[test]
fn readyz_turns_503_when_a_shard_fails_every_relay_bind() {
    // Started in-process, past the startup checks, on a relay address this host lacks:
    // what a node whose address went away meets.
    let port = free_udp_port();
    let cfg = turnpike::config::Config::from_toml(&format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 1\n[relay]\nipv4 = \"192.0.2.1\"\n\
         [auth]\nsecrets = [\"ops-secret-1\"]\n"
    ))
    .unwrap();
    let relay = turnpike::runtime::Node::start(
        &turnpike::settings::Settings::with_secrets(cfg.clone(), vec!["ops-secret-1".into()])
            .unwrap(),
        Default::default(),
    )
    .unwrap();
    assert!(relay.is_ready());
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(error_code(&client(server, "x").allocate()), Some(508));
    assert!(!relay.is_ready(), "every bind failed, yet ready");
    relay.shutdown();
}

#[test]
fn watchdog_check_fails_when_a_shard_stops_beating() {
    let (relay, _) = support::start(false, "50000-50999");
    let mut last = Vec::new();
    turnpike::app::notify::shards_alive(&relay, &mut last);
    std::thread::sleep(Duration::from_millis(2200));
    assert!(turnpike::app::notify::shards_alive(&relay, &mut last));
    // No beat since the check just made: a loop that did not turn.
    assert!(!turnpike::app::notify::shards_alive(&relay, &mut last));
    std::thread::sleep(Duration::from_millis(2200));
    relay.status[1].set_running(false);
    assert!(!turnpike::app::notify::shards_alive(&relay, &mut last));
    relay.shutdown();
}
