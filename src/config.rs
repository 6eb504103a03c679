//! `turnserver.toml`: typed, validated, every key optional with a safe default.
//! Unknown keys are errors (a typo must not silently fall back to a default).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::{Deserialize, Deserializer};

mod alternate;
mod cluster;
mod fastpath;
mod secret;
mod validate;

pub use alternate::{TlsAlternate, is_dns_name};
pub use cluster::{Cluster, OnRedisDown};
pub use fastpath::{FastPath, FastPathMode};
pub use secret::Secret;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub tls: Tls,
    pub relay: Relay,
    pub auth: Auth,
    pub peers: Peers,
    pub log: Log,
    pub http: Http,
    /// `[cluster]`: absent means a single node.
    pub cluster: Option<Cluster>,
    /// `[fastpath]`: the kernel fast path (off by default).
    pub fastpath: FastPath,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    pub realm: String,
    /// Answers without authentication (401 challenges, Binding, 400) per second per UDP
    /// source /24 or /56; 0 = no limit.
    pub unauthenticated_rate: u32,
    pub listen_udp: Vec<SocketAddr>,
    pub listen_tcp: Vec<SocketAddr>,
    pub listen_tls: Vec<SocketAddr>,
    pub shards: usize,
    /// Most TCP/TLS client connections at once.
    pub max_connections: usize,
    /// A TCP/TLS connection that holds no allocation is closed after this long without
    /// a complete message.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// On SIGTERM, how long existing allocations may keep relaying before the server exits.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Other nodes to send new clients to (300 Try Alternate) while draining or full.
    pub alternate: Vec<SocketAddr>,
    /// Where TLS clients go instead, with their certificates' names.
    pub alternate_tls: Vec<TlsAlternate>,
    /// Most TCP/TLS connections from one IPv4 address or IPv6 /64.
    pub max_connections_per_ip: usize,
    /// A TLS handshake not finished this long after accept is abandoned.
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    /// Serve plain STUN/TURN arriving on a TLS listener (first byte decides), as coturn.
    pub tls_accepts_plain: bool,
    /// Load balancers whose TCP/TLS connections begin with a PROXY protocol v2 header
    /// naming the real client (CIDRs; empty: none). Not for UDP.
    pub proxy_protocol: Vec<IpNet>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            realm: "turnpike".into(),
            unauthenticated_rate: 200,
            listen_udp: vec!["0.0.0.0:3478".parse().unwrap()],
            listen_tcp: vec![],
            listen_tls: vec![],
            shards: 0,
            max_connections: 10_000,
            idle_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
            alternate: vec![],
            alternate_tls: vec![],
            max_connections_per_ip: 256,
            tls_handshake_timeout: Duration::from_secs(10),
            tls_accepts_plain: true,
            proxy_protocol: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain and private key for `server.listen_tls`.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Relay {
    pub ipv4: Option<IpAddr>,
    pub ipv6: Option<IpAddr>,
    pub advertised_ipv4: Option<IpAddr>,
    pub advertised_ipv6: Option<IpAddr>,
    #[serde(deserialize_with = "port_range")]
    pub ports: (u16, u16),
    #[serde(with = "humantime_serde")]
    pub default_lifetime: Duration,
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    pub max_allocations: usize,
    pub max_allocations_per_user: usize,
    pub max_permissions_per_allocation: usize,
    pub max_channels_per_allocation: usize,
    /// Relayed bits per second per allocation / per user id, both directions (0 = off).
    pub max_bps_per_allocation: u64,
    pub max_bps_per_user: u64,
    pub strict_channel_numbers: bool,
    /// Send runs of equal-sized datagrams for one destination as one UDP GSO message.
    pub gso: bool,
}

impl Default for Relay {
    fn default() -> Self {
        Relay {
            ipv4: None,
            ipv6: None,
            advertised_ipv4: None,
            advertised_ipv6: None,
            ports: (49152, 65535),
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            max_allocations: 10_000,
            max_allocations_per_user: 100,
            max_permissions_per_allocation: 64,
            max_channels_per_allocation: 64,
            max_bps_per_allocation: 0,
            max_bps_per_user: 0,
            strict_channel_numbers: false,
            gso: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    pub secrets: Vec<Secret>,
    #[serde(with = "humantime_serde")]
    pub nonce_lifetime: Duration,
    pub users: Vec<User>,
    /// A file with one REST secret per line (after those in `secrets`), reread on reload.
    pub secrets_file: Option<PathBuf>,
    /// Refuse requests signed with an expired REST credential, even on the allocation it
    /// created, and end that allocation when its credential expires.
    pub strict_expiry: bool,
    /// How long after its creation an allocation may keep using an expired credential.
    #[serde(with = "humantime_serde")]
    pub max_session_duration: Duration,
    /// REST credentials whose expiry lies further ahead are refused.
    #[serde(with = "humantime_serde")]
    pub max_credential_ttl: Duration,
}

impl Auth {
    pub fn expiry_policy(&self) -> crate::auth::ExpiryPolicy {
        crate::auth::ExpiryPolicy {
            strict: self.strict_expiry,
            max_session_secs: self.max_session_duration.as_secs(),
            max_ttl_secs: self.max_credential_ttl.as_secs(),
        }
    }

    /// The REST secrets as plain strings, for the authenticator.
    pub fn secret_strings(&self) -> Vec<String> {
        self.secrets.iter().map(|s| s.expose().to_owned()).collect()
    }

    /// The secret that mints credentials: the config's first, else TURNPIKE_SECRET.
    pub fn minting_secret(&self) -> Option<String> {
        self.secrets
            .first()
            .map(|s| s.expose().to_owned())
            .or_else(env_secret)
    }
}

/// TURNPIKE_SECRET, when set and not empty.
pub(crate) fn env_secret() -> Option<String> {
    std::env::var("TURNPIKE_SECRET")
        .ok()
        .filter(|s| !s.is_empty())
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            secrets: vec![],
            nonce_lifetime: Duration::from_secs(600),
            users: vec![],
            secrets_file: None,
            strict_expiry: false,
            max_session_duration: Duration::from_secs(12 * 3600),
            max_credential_ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub username: String,
    pub password: String,
}

// Written by hand so a config dump can never print a password.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Peers {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
    Logfmt,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    pub format: LogFormat,
    pub level: String,
    pub redact_client_address: bool,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: LogFormat::Text,
            level: "info".into(),
            redact_client_address: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Serve /metrics, /healthz, /readyz (and the credential API when a token is set).
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Bearer token that enables GET /api/v1/credentials. Unset: the API is off (404).
    pub credentials_token: Option<Secret>,
    /// Lifetime of minted credentials when the request names none; the most it may ask.
    #[serde(with = "humantime_serde")]
    pub credentials_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub credentials_max_ttl: Duration,
    /// TURN URIs handed out with a credential. Empty: one `turn:` URI per UDP listener,
    /// using the advertised relay address for wildcard listeners.
    pub uris: Vec<String>,
    /// Origins allowed to call the credential API from a browser (CORS); "*" for any.
    pub cors_origins: Vec<String>,
    /// The bearer token of the admin API (sessions, nodes, revocations); the credentials
    /// token does not open it. Absent: those endpoints answer 404.
    pub admin_token: Option<Secret>,
    /// Serve the self-test page at GET /selftest.
    pub selftest: bool,
    /// Serve the browser module at GET /client/turnpike.js and take its signed call
    /// reports at POST /api/v1/reports.
    pub client: bool,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            enabled: true,
            listen: "127.0.0.1:9641".parse().unwrap(),
            credentials_token: None,
            credentials_ttl: Duration::from_secs(3600),
            credentials_max_ttl: Duration::from_secs(86400),
            uris: vec![],
            cors_origins: vec![],
            admin_token: None,
            selftest: false,
            client: false,
        }
    }
}

fn port_range<'de, D: Deserializer<'de>>(d: D) -> Result<(u16, u16), D::Error> {
    let s = String::deserialize(d)?;
    parse_port_range(&s).map_err(serde::de::Error::custom)
}

pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("port range {s:?} must look like \"49152-65535\""))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|_| format!("{p:?} in port range {s:?} is not a port number"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo == 0 || lo > hi {
        return Err(format!(
            "port range {s:?} must be ascending and start above 0"
        ));
    }
    Ok((lo, hi))
}

impl Config {
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let cfg: Config = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        // An empty file is a truncated write or a wrong path far more often than a wish
        // for every default (which would drop secrets and policy on a reload).
        if text.trim().is_empty() {
            bail!(
                "config file {} is empty (run without --config for the built-in defaults)",
                path.display()
            );
        }
        Config::from_toml(&text).with_context(|| format!("in config file {}", path.display()))
    }

    /// Reads `auth.secrets_file` (one secret per line; blank lines and `#` comments
    /// skipped) and appends its secrets. A file every user can read is refused: it holds
    /// the key to every credential.
    pub fn load_secrets_file(&mut self) -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let Some(path) = &self.auth.secrets_file else {
            return Ok(());
        };
        let meta = std::fs::metadata(path)
            .with_context(|| format!("auth.secrets_file: {}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o004 != 0 {
            bail!(
                "auth.secrets_file: {} is readable by every user (mode {mode:04o}); \
                 run chmod o-rwx on it (0640 root:turnpike is the packaged layout)",
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("auth.secrets_file: reading {}", path.display()))?;
        let start = self.auth.secrets.len();
        self.auth.secrets.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(|l| Secret(l.to_owned())),
        );
        for (i, s) in self.auth.secrets[start..].iter().enumerate() {
            if s.expose().len() < 8 {
                bail!(
                    "auth.secrets_file: the secret on line {} of {} is shorter than 8 bytes",
                    i + 1,
                    path.display()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_config_parses_and_equals_the_defaults() {
        let text = include_str!("../turnserver.toml");
        let cfg = Config::from_toml(text).unwrap();
        let def = Config::default();
        assert_eq!(format!("{cfg:?}"), format!("{def:?}"));
    }

    #[test]
    fn unknown_key_is_rejected_and_named() {
        let err = Config::from_toml("[relay]\nportz = \"1-2\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("portz"), "{err:#}");
        let err = Config::from_toml("[sever]\n").unwrap_err();
        assert!(format!("{err:#}").contains("sever"), "{err:#}");
    }

    #[test]
    fn bad_values_name_the_key() {
        for (text, needle) in [
            ("[relay]\nports = \"60000-50000\"", "ports"),
            ("[relay]\nports = \"abc\"", "ports"),
            (
                "[relay]\ndefault_lifetime = \"2h\"",
                "relay.default_lifetime",
            ),
            ("[relay]\ndefault_lifetime = \"ten\"", "default_lifetime"),
            ("[relay]\nipv4 = \"::1\"", "relay.ipv4"),
            ("[server]\nlisten_udp = [\"nope\"]", "listen_udp"),
            ("[server]\nlisten_udp = []", "server.listen_udp"),
            ("[server]\nlisten_tls = [\"0.0.0.0:443\"]", "tls.cert"),
            (
                "[server]\nmax_connections_per_ip = 0",
                "server.max_connections_per_ip",
            ),
            ("[peers]\nallow = [\"10.0.0.0/33\"]", "allow"),
            (
                "[server]\nproxy_protocol = [\"10.0.0.1\"]",
                "proxy_protocol",
            ),
            ("[auth]\nsecrets = [\"short\"]", "auth.secrets[0]"),
            ("[log]\nformat = \"xml\"", "format"),
            ("[fastpath]\nmode = \"fast\"", "mode"),
            ("[fastpath]\nenable = true", "enable"),
            ("[log]\nlevel = \"warning\"", "did you mean \"warn\""),
            ("[log]\nlevel = \"turnpike=loud\"", "log.level"),
            (
                "[server]\nlisten_udp = [\"0.0.0.0:3478\", \"0.0.0.0:3478\"]",
                "listed twice",
            ),
            (
                "[server]\nlisten_tcp = [\"0.0.0.0:443\"]\nlisten_tls = [\"0.0.0.0:443\"]\n\
                 [tls]\ncert = \"c\"\nkey = \"k\"",
                "server.listen_tls",
            ),
            (
                "[server]\nalternate = [\"0.0.0.0:3478\"]",
                "server.alternate",
            ),
            ("[cluster]\nnode_name = \"a\"", "redis_url"),
            ("[cluster]\nredis_url = \"http://x\"", "cluster.redis_url"),
            (
                "[cluster]\nredis_url = \"redis://127.0.0.1\"\nttl = \"1s\"",
                "cluster.ttl",
            ),
            (
                "[cluster]\nredis_url = \"redis://127.0.0.1\"\nuris = [\"http://a\"]",
                "cluster.uris",
            ),
            (
                "[cluster]\nredis_url = \"redis://127.0.0.1\"\nnode_name = \"a b\"",
                "cluster.node_name",
            ),
            (
                "[cluster]\nredis_url = \"redis://127.0.0.1\"\nheartbat = \"1s\"",
                "heartbat",
            ),
        ] {
            let err = format!("{:#}", Config::from_toml(text).unwrap_err());
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn debug_output_never_shows_passwords_secrets_or_tokens() {
        let cfg = Config::from_toml(
            "[auth]\nsecrets = [\"rest-secret-xyz\"]\n[[auth.users]]\nusername = \"alice\"\n\
             password = \"hunter2-secret\"\n[http]\ncredentials_token = \"bearer-token-0123456789\"\n",
        )
        .unwrap();
        let dump = format!("{cfg:?}");
        assert!(dump.contains("alice"), "{dump}");
        for secret in ["hunter2", "rest-secret", "bearer-token"] {
            assert!(!dump.contains(secret), "{secret} leaked: {dump}");
        }
    }
}
