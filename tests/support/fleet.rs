//! A fleet on loopback: a real `redis-server` (Debian's; tests skip with a note when it is
//! not installed) and turnpike nodes as child processes sharing it, each with one UDP
//! listener, its own relay ports, the admin API and a 500 ms heartbeat.

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

/// Whether `redis-server` is installed (a note on stderr when it is not).
pub fn have_redis() -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
    }
    found
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
        let (port, http_port) = (free_udp_port(), free_tcp_port());
        let config = dir.file(
            &format!("{name}.toml"),
            &format!(
                "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 1\n\
                 alternate = [\"127.0.0.1:9\"]\n\
                 [relay]\nipv4 = \"127.0.0.1\"\nports = \"{ports}\"\nmax_allocations = 10\n\
                 [auth]\nsecrets = [\"{FLEET_SECRET}\"]\n[peers]\nallow = [\"127.0.0.0/8\"]\n\
                 [http]\nlisten = \"127.0.0.1:{http_port}\"\ncredentials_token = \"{FLEET_TOKEN}\"\n\
                 admin_token = \"{FLEET_ADMIN}\"\n\
                 [cluster]\nredis_url = \"redis://127.0.0.1:{redis}\"\nnode_name = \"{name}\"\n\
                 region = \"{region}\"\nheartbeat = \"500ms\"\nttl = \"2s\"\ncredential_nodes = 3\n"
            ),
        );
        let (proc, lines) = spawn(&config);
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
        (self.proc, self.lines) = spawn(&self.config);
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

/// The binary on `config`, once it registered in Redis.
fn spawn(config: &PathBuf) -> (Proc, Lines) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Lines::collect(&mut child);
    lines.wait_for("cluster: registered in Redis", Duration::from_secs(10));
    (Proc(child), lines)
}
