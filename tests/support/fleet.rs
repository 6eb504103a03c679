//! A fleet in network namespaces this test creates (`netns`): a real `redis-server`
//! (Debian's, which the test command installs) on 198.51.100.10 and turnpike nodes as
//! child processes sharing it, each on its own host (198.51.100.1, .2, ...) with one UDP
//! listener, its own relay ports, the admin API and a 500 ms heartbeat. The test's thread
//! is the host 198.51.100.20, where its echo peer also runs.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::netns::Net;
use super::{BIN, Lines, Proc, RawClient, Scratch, echo_peer_at, http_get};

pub const FLEET_SECRET: &str = "fleet-secret-1";
pub const FLEET_TOKEN: &str = "fleet-credentials-token";
pub const FLEET_ADMIN: &str = "fleet-admin-token-0123";
pub const HEARTBEAT: Duration = Duration::from_millis(500);
pub const TTL: Duration = Duration::from_secs(2);
const REDIS_HOST: u8 = 10;
const CLIENT_HOST: u8 = 20;

/// The fleet's network; the thread that made it is its client host from then on.
pub struct FleetNet {
    net: Net,
    redis_ns: String,
    /// The hosts given to nodes so far (the next one is 198.51.100.<len + 1>).
    nodes: usize,
}

impl FleetNet {
    pub fn new() -> FleetNet {
        require_redis();
        let mut net = Net::new();
        let client = net.host("client", CLIENT_HOST);
        let redis_ns = net.host("redis", REDIS_HOST);
        net.enter(&client);
        FleetNet {
            net,
            redis_ns,
            nodes: 0,
        }
    }

    pub fn redis_url(&self) -> String {
        format!("redis://{}:6379", Net::addr(REDIS_HOST))
    }

    /// A `redis-server` on its host (no persistence), once it listens.
    pub fn redis(&self) -> Proc {
        let ip = Net::addr(REDIS_HOST).to_string();
        let p = Proc::spawn(
            Net::cmd(&self.redis_ns, "redis-server")
                .args(["--port", "6379", "--bind", &ip])
                // No password on a network of this test's own: let the nodes' hosts in.
                .args(["--protected-mode", "no"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null()),
        );
        wait_until("redis-server listening", Duration::from_secs(10), || {
            TcpStream::connect((ip.as_str(), 6379)).is_ok()
        });
        p
    }

    /// `program` to be run on Redis's host.
    pub fn on_redis_host(&self, program: &str) -> Command {
        Net::cmd(&self.redis_ns, program)
    }

    /// An echo peer on the client host (nodes may relay to it).
    pub fn peer(&self) -> SocketAddr {
        echo_peer_at(&format!("{}:0", Net::addr(CLIENT_HOST)))
    }

    /// Node `name` in `region` with relay `ports`, registered in Redis.
    pub fn node(
        &mut self,
        dir: &Scratch,
        name: &'static str,
        region: &str,
        ports: &str,
    ) -> FleetNode {
        self.node_with(dir, name, ports, Some(region), Extra::default())
    }

    /// Node `name` with relay `ports` on a host of its own, in the fleet (with its
    /// region) or alone (None), with `extra` config lines.
    pub fn node_with(
        &mut self,
        dir: &Scratch,
        name: &'static str,
        ports: &str,
        region: Option<&str>,
        extra: Extra,
    ) -> FleetNode {
        self.nodes += 1;
        let last = u8::try_from(self.nodes).unwrap();
        let ns = self.net.host(name, last);
        let ip = Net::addr(last);
        let peer = Net::addr(CLIENT_HOST);
        let Extra {
            server,
            relay,
            cluster: cluster_extra,
            max_allocations,
            unready,
        } = extra;
        let max = if max_allocations == 0 {
            10
        } else {
            max_allocations
        };
        let redis_url = self.redis_url();
        let fleet = region.map_or(String::new(), |region| {
            format!(
                "[cluster]\nredis_url = \"{redis_url}\"\nnode_name = \"{name}\"\n\
                 region = \"{region}\"\nheartbeat = \"500ms\"\nttl = \"2s\"\ncredential_nodes = 3\n\
                 {cluster_extra}"
            )
        });
        let config = dir.file(
            &format!("{name}.toml"),
            &format!(
                "[server]\nlisten_udp = [\"{ip}:3478\"]\nshards = 1\n\
                 alternate = [\"192.0.2.9:3478\"]\n{server}\
                 [relay]\nipv4 = \"{ip}\"\nports = \"{ports}\"\nmax_allocations = {max}\n{relay}\
                 [auth]\nsecrets = [\"{FLEET_SECRET}\"]\n[peers]\nallow = [\"{peer}/32\"]\n\
                 [http]\nlisten = \"{ip}:9641\"\ncredentials_token = \"{FLEET_TOKEN}\"\n\
                 admin_token = \"{FLEET_ADMIN}\"\n{fleet}"
            ),
        );
        let (proc, lines) = spawn(&ns, &config, region.is_some(), !unready);
        FleetNode {
            name,
            proc,
            lines,
            udp: SocketAddr::new(ip.into(), 3478),
            http: SocketAddr::new(ip.into(), 9641),
            config,
            ns,
        }
    }
}

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
    /// `relay.max_allocations` (0: 10).
    pub max_allocations: usize,
    /// Return at once, without waiting for the node to start (the test waits itself).
    pub unready: bool,
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
    /// The namespace of its host.
    pub ns: String,
}

impl FleetNode {
    /// Stops the process (SIGKILL) and starts it again from the same config; `wait`: until
    /// it is ready.
    pub fn restart_with(&mut self, wait: bool) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
        (self.proc, self.lines) = spawn(&self.ns, &self.config, true, wait);
    }

    pub fn restart(&mut self) {
        self.restart_with(true);
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

/// The binary on `config` in namespace `ns`; if `wait`, once it registered in Redis
/// and its HTTP endpoint is up (`fleet`: HTTP starts after the first heartbeat), or once
/// it started.
fn spawn(ns: &str, config: &PathBuf, fleet: bool, wait: bool) -> (Proc, Lines) {
    let mut child = Net::cmd(ns, BIN)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::collect(&mut child);
    if wait && fleet {
        lines.wait_for("cluster: registered in Redis", Duration::from_secs(10));
        lines.wait_for("HTTP endpoint up", Duration::from_secs(10));
    } else if wait {
        lines.wait_for("turnpike started", Duration::from_secs(10));
    }
    (Proc(child), lines)
}
