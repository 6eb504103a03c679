//! `turnpike import-coturn` on three real-world-style coturn configs: the values of the
//! produced turnserver.toml, the list of options it could not convert, and that
//! `turnpike check-config` accepts the result.

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{BIN, Scratch};
use turnpike::config::Config;
use turnpike::relay::peer_policy::PeerPolicy;

struct Imported {
    toml: String,
    cfg: Config,
    /// (line, option) of every "not converted" line on stderr.
    unmapped: BTreeSet<(usize, String)>,
    stderr: String,
}

/// Runs the importer on `fixture` (after replacing each (from, to) in its text) with
/// `-o`, checks stdout mode gives the same text, and that check-config accepts the result
/// once `local` has also put this host's addresses in place of the fixture's relay
/// addresses (check-config proves the relay address binds here).
fn import(fixture: &str, replace: &[(&str, &str)], local: &[(&str, &str)], dir: &Path) -> Imported {
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/coturn")
            .join(fixture),
    )
    .unwrap();
    for (from, to) in replace {
        text = text.replace(from, to);
    }
    let mut on_this_host = text.clone();
    for (from, to) in local {
        assert!(on_this_host.contains(from), "{from} not in {fixture}");
        on_this_host = on_this_host.replace(from, to);
    }
    let local_conf = dir.join("local.conf");
    std::fs::write(&local_conf, &on_this_host).unwrap();
    let local_out = dir.join("local.toml");
    let out = Command::new(BIN)
        .arg("import-coturn")
        .arg(&local_conf)
        .arg("-o")
        .arg(&local_out)
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let check = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&local_out)
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check-config refused:\n{}\n{}",
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(&local_out).unwrap()
    );

    let conf = dir.join("turnserver.conf");
    std::fs::write(&conf, &text).unwrap();
    let out_path = dir.join("turnserver.toml");
    let out = Command::new(BIN)
        .arg("import-coturn")
        .arg(&conf)
        .arg("-o")
        .arg(&out_path)
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "-o writes nothing to stdout");
    let toml = std::fs::read_to_string(&out_path).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "output holds secrets: mode {mode:o}");

    let stdout_run = Command::new(BIN)
        .arg("import-coturn")
        .arg(&conf)
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    assert!(stdout_run.status.success());
    assert_eq!(String::from_utf8(stdout_run.stdout).unwrap(), toml);

    let unmapped = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("import-coturn: not converted: "))
        .map(|l| {
            let (line, rest) = match l.strip_prefix("line ") {
                Some(r) => {
                    let (n, rest) = r.split_once(' ').unwrap();
                    (n.parse().unwrap(), rest)
                }
                None => (0, l),
            };
            let opt = rest.split('`').nth(1).unwrap().to_owned();
            (line, opt)
        })
        .collect::<BTreeSet<_>>();
    assert!(
        stderr.contains(&format!("{} option(s) not converted", unmapped.len())),
        "{stderr}"
    );
    let cfg = Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e:#}\n{toml}"));
    Imported {
        toml,
        cfg,
        unmapped,
        stderr,
    }
}

fn addrs(v: &[&str]) -> Vec<SocketAddr> {
    v.iter().map(|a| a.parse().unwrap()).collect()
}

fn set(v: &[(usize, &str)]) -> BTreeSet<(usize, String)> {
    v.iter().map(|(l, o)| (*l, o.to_string())).collect()
}

#[test]
fn rest_secret_behind_nat() {
    let dir = Scratch::new("import-rest");
    let imp = import(
        "rest-secret.conf",
        &[],
        &[(
            "external-ip=203.0.113.7/10.0.0.5",
            "external-ip=203.0.113.7/127.0.0.1",
        )],
        &dir,
    );
    let c = &imp.cfg;
    assert_eq!(c.server.realm, "turn.example.com");
    assert_eq!(c.server.listen_udp, addrs(&["0.0.0.0:3478"]));
    assert_eq!(c.server.listen_tcp, addrs(&["0.0.0.0:3478"]));
    assert!(c.server.listen_tls.is_empty());
    assert_eq!(
        c.auth.secret_strings(),
        ["9f4b2c71e8d05a36b1c4f0e2d7a98c53"]
    );
    assert!(c.auth.users.is_empty());
    // external-ip=public/private: bind the private address, advertise the public one.
    assert_eq!(c.relay.ipv4, Some("10.0.0.5".parse().unwrap()));
    assert_eq!(
        c.relay.advertised_ipv4,
        Some("203.0.113.7".parse().unwrap())
    );
    assert_eq!(c.relay.ports, (49160, 49999));
    assert_eq!(c.relay.max_allocations, 100);
    assert_eq!(c.auth.nonce_lifetime, Duration::from_secs(600));
    assert_eq!(
        c.server.alternate,
        addrs(&["203.0.113.8:3478", "[2001:db8::8]:3478"])
    );
    assert!(
        imp.stderr.contains(
            "import-coturn: note: line 23 `alternate-server`: coturn redirects every Allocate"
        ),
        "{}",
        imp.stderr
    );
    assert_eq!(
        imp.unmapped,
        set(&[(19, "log-file"), (20, "simple-log"), (21, "pidfile"),]),
        "{}",
        imp.stderr
    );
    // bps-capacity=0 means "no limit" in coturn, like turnpike: it is not on the list.
}

#[test]
fn static_users_and_tls() {
    let dir = Scratch::new("import-tls");
    // check-config reads the certificate files: give it real ones where the config says.
    let ck = rcgen::generate_simple_self_signed(vec!["turn.example.org".into()]).unwrap();
    std::fs::write(dir.join("fullchain.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.join("privkey.pem"), ck.signing_key.serialize_pem()).unwrap();
    let tls_dir = format!("{}/", dir.display());
    let imp = import(
        "static-users-tls.conf",
        &[("/etc/letsencrypt/live/turn.example.org/", &tls_dir)],
        &[
            ("relay-ip=192.0.2.10", "relay-ip=127.0.0.1"),
            ("relay-ip=2001:db8::10", "relay-ip=::1"),
        ],
        &dir,
    );
    let c = &imp.cfg;
    assert_eq!(c.server.realm, "example.org");
    let both = |port| {
        addrs(&[
            &format!("192.0.2.10:{port}"),
            &format!("[2001:db8::10]:{port}"),
        ])
    };
    assert_eq!(c.server.listen_udp, both(3478));
    assert_eq!(c.server.listen_tcp, both(3478));
    assert_eq!(c.server.listen_tls, both(5349));
    assert_eq!(c.tls.cert, Some(dir.join("fullchain.pem")));
    assert_eq!(c.tls.key, Some(dir.join("privkey.pem")));
    assert_eq!(c.relay.ipv4, Some("192.0.2.10".parse().unwrap()));
    assert_eq!(c.relay.ipv6, Some("2001:db8::10".parse().unwrap()));
    assert_eq!(c.relay.max_lifetime, Duration::from_secs(1800));
    assert!(c.auth.secrets.is_empty());
    let users: Vec<(&str, &str)> = c
        .auth
        .users
        .iter()
        .map(|u| (u.username.as_str(), u.password.as_str()))
        .collect();
    assert_eq!(
        users,
        [("alice", "wonderland-2024"), ("carol", "s3cret-Passw0rd")]
    );
    assert_eq!(c.log.level, "debug");
    assert_eq!(
        imp.unmapped,
        set(&[
            (12, "user"),
            (15, "cipher-list"),
            (16, "dh-file"),
            (21, "proc-user"),
            (22, "proc-group"),
            (23, "syslog"),
            (25, "cli-password"),
        ]),
        "{}",
        imp.stderr
    );
    assert!(
        imp.stderr.contains("user \"bob\" has a hashed key"),
        "{}",
        imp.stderr
    );
    // Secrets and keys never reach stderr.
    for secret in ["0x7f0c", "qwerty-admin", "wonderland", "s3cret"] {
        assert!(
            !imp.stderr.contains(secret),
            "{secret} leaked: {}",
            imp.stderr
        );
    }
}

#[test]
fn denied_peer_ranges_and_quotas() {
    let dir = Scratch::new("import-peers");
    let imp = import("peer-ranges-quotas.conf", &[], &[], &dir);
    let c = &imp.cfg;
    assert_eq!(c.server.listen_udp, addrs(&["0.0.0.0:3478"]));
    assert!(c.server.listen_tcp.is_empty(), "no-tcp");
    assert!(c.server.listen_tls.is_empty(), "no-tls");
    assert_eq!(c.server.shards, 4);
    assert_eq!(c.relay.max_allocations, 1200);
    assert_eq!(c.relay.max_allocations_per_user, 12);
    // max-bps=3000000 bytes/s each way = 48 Mbit/s both ways together.
    assert_eq!(c.relay.max_bps_per_allocation, 48_000_000);
    assert!(
        imp.stderr
            .contains("import-coturn: note: line 12 `max-bps`: bytes/s per direction"),
        "{}",
        imp.stderr
    );
    assert_eq!(c.relay.max_bps_per_user, 0);
    assert_eq!(
        c.auth.secret_strings(),
        ["Zx81m2PqL0vR7sT4uW9yB3nC6dE5fG1h"]
    );
    let deny: Vec<String> = c.peers.deny.iter().map(|n| n.to_string()).collect();
    for cidr in [
        "0.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "172.16.0.0/12",
        "198.18.0.0/15",
        "240.0.0.0/4",
        "::1/128",
        "64:ff9b::/96",
        "::ffff:0.0.0.0/96",
        "2001::/23",
        "fc00::/7",
        "fe80::/10",
    ] {
        assert!(deny.contains(&cidr.to_owned()), "{cidr} not in {deny:?}");
    }
    let allow: Vec<String> = c.peers.allow.iter().map(|n| n.to_string()).collect();
    assert_eq!(allow, ["10.0.0.20/32", "10.0.1.0/26"]);
    // coturn's allowed-peer-ip wins over its denied ranges; turnpike's policy must agree.
    let policy = PeerPolicy::new(c.peers.allow.clone(), c.peers.deny.clone());
    for (ip, ok) in [
        ("10.0.0.20", true),
        ("10.0.1.63", true),
        ("10.0.0.21", false),
        ("10.0.1.64", false),
        ("10.200.0.1", false),
        ("172.20.0.1", false),
        ("198.51.100.9", false),
        ("fd00::1", false),
        ("8.8.8.8", true),
        ("2606:4700::1111", true),
    ] {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(policy.permits(ip), ok, "{ip}\n{}", imp.toml);
    }
    assert_eq!(imp.unmapped, set(&[(39, "mobility")]), "{}", imp.stderr);
}

#[test]
fn unreadable_input_is_a_clear_error() {
    let out = Command::new(BIN)
        .args(["import-coturn", "/nonexistent/turnserver.conf"])
        .env_remove("TURNPIKE_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reading coturn config /nonexistent/turnserver.conf"),
        "{err}"
    );
}
