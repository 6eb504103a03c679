//! A fleet on loopback: a real `redis-server` (Debian's, which the test command installs)
//! and turnpike nodes as child processes sharing it, each with one UDP listener, its own
//! relay ports, the admin API and a 500 ms heartbeat.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{BIN, Lines, Proc, RawClient, Scratch, free_tcp_port, free_udp_port, http_get};

pub const FLEET_SECRET: &str = "fleet-secret-1";
pub const FLEET_TOKEN: &str = "fleet-credentials-token";
pub const FLEET_ADMIN: &str = "fleet-admin-token-0123";
pub const HEARTBEAT: Duration = Duration::from_millis(500);
pub const TTL: Duration = Duration::from_secs(2);

/// Fails the test when `redis-server` is missing (scripts/test.sh installs it).
pub fn require_redis() {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    assert!(
        found,
        "redis-server is not installed (apt-get install redis-server)"
    );
}

/// Lines added to a node's config sections (each ends with a newline).
#[derive(Default, Clone, Copy)]
pub struct Extra<'a> {
    pub server: &'a str,
    pub relay: &'a str,
    pub cluster: &'a str,
}

/// A `redis-server` on `port` (no persistence), once it listens.
pub fn redis(port: u16) -> Proc {
    let p = Proc::spawn(
        Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null()),
    );
    wait_until("redis-server listening", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    p
}

/// Polls `ok` every 20 ms; how long it took (panics after `within`).
#[track_caller]
pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t.elapsed()
}

/// GET `path` (200 expected) as JSON.
pub fn json(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> serde_json::Value {
    let (status, _, body) = http_get(addr, "GET", path, headers);
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

pub struct FleetNode {
    pub name: &'static str,
    pub proc: Proc,
    pub lines: Lines,
    pub udp: SocketAddr,
    pub http: SocketAddr,
    pub config: PathBuf,
}

impl FleetNode {
    /// Node `name` in `region` with relay `ports`, registered in Redis on `redis`.
    pub fn start(
        dir: &Scratch,
        name: &'static str,
        region: &str,
        ports: &str,
        redis: u16,
    ) -> FleetNode {
        Self::start_with(dir, name, ports, Some((region, redis)), Extra::default())
    }

    /// Node `name` with relay `ports`, in the fleet on Redis port `cluster.1` (region
    /// `cluster.0`) or alone (None), with `extra` config lines.
    pub fn start_with(
        dir: &Scratch,
        name: &'static str,
        ports: &str,
        cluster: Option<(&str, u16)>,
        extra: Extra,
    ) -> FleetNode {
        let (port, http_port) = (free_udp_port(), free_tcp_port());
        let Extra {
            server,
            relay,
            cluster: cluster_extra,
        } = extra;
        let fleet = cluster.map_or(String::new(), |(region, redis)| {
            format!(
                "[cluster]\nredis_url = \"redis://127.0.0.1:{redis}\"\nnode_name = \"{name}\"\n\
                 region = \"{region}\"\nheartbeat = \"500ms\"\nttl = \"2s\"\ncredential_nodes = 3\n\
                 {cluster_extra}"
            )
        });
        let config = dir.file(
            &format!("{name}.toml"),
            &format!(
                "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 1\n\
                 alternate = [\"127.0.0.1:9\"]\n{server}\
                 [relay]\nipv4 = \"127.0.0.1\"\nports = \"{ports}\"\nmax_allocations = 10\n{relay}\
                 [auth]\nsecrets = [\"{FLEET_SECRET}\"]\n[peers]\nallow = [\"127.0.0.0/8\"]\n\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\ncredentials_token = \"{FLEET_TOKEN}\"\n\
                 admin_token = \"{FLEET_ADMIN}\"\n{fleet}"
            ),
        );
        let (proc, lines) = spawn(&config, cluster.is_some());
        FleetNode {
            name,
            proc,
            lines,
            udp: format!("127.0.0.1:{port}").parse().unwrap(),
            http: format!("127.0.0.1:{http_port}").parse().unwrap(),
            config,
        }
    }

    /// Stops the process (SIGKILL) and starts it again from the same config.
    pub fn restart(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        (self.proc, self.lines) = spawn(&self.config, true);
    }

    pub fn uri(&self) -> String {
        format!("turn:{}?transport=udp", self.udp)
    }

    /// A UDP client of this node with a fresh credential for `user`.
    pub fn client(&self, user: &str) -> RawClient {
        let (u, p) = turnpike::auth::mint_credential(FLEET_SECRET, user, 600, super::unix_now());
        RawClient::new(self.udp, u, p)
    }

    /// An admin API call: (status, body as JSON or Null).
    pub fn admin(&self, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
        let bearer = format!("Bearer {FLEET_ADMIN}");
        let h = [("Authorization", bearer.as_str())];
        let (status, _, text) = super::http_request(self.http, method, path, &h, body.as_bytes());
        (status, serde_json::from_str(&text).unwrap_or_default())
    }
}

/// The binary on `config`, once it registered in Redis (`fleet`) or started.
fn spawn(config: &PathBuf, fleet: bool) -> (Proc, Lines) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::collect(&mut child);
    let ready = if fleet {
        "cluster: registered in Redis"
    } else {
        "turnpike started"
    };
    lines.wait_for(ready, Duration::from_secs(10));
    (Proc(child), lines)
}
