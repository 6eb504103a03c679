use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use ipnet::IpNet;

use turnpike::app::checks;
use turnpike::auth::mint_credential;
use turnpike::config::{Config, LogFormat, parse_port_range};
use turnpike::http::credential_json;
use turnpike::runtime::clock::unix_now;
use turnpike::settings::Settings;
use turnpike::settings::addresses::{advertised_ipv4, uris};

/// turnpike: a TURN/STUN relay server for WebRTC.
///
/// With no --config, it runs on a safe embedded default (UDP 0.0.0.0:3478, internal peers
/// refused). REST secrets come from the config, else from TURNPIKE_SECRET, else one is
/// generated for this run and printed.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    /// Configuration file (see turnserver.toml for every key and its default).
    #[arg(short, long, env = "TURNPIKE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// UDP listen address; repeat for several. Overrides server.listen_udp.
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// TCP listen address; repeatable. Overrides server.listen_tcp.
    #[arg(long)]
    listen_tcp: Vec<SocketAddr>,
    /// TLS listen address; repeatable. Overrides server.listen_tls (needs tls.cert/key).
    #[arg(long)]
    listen_tls: Vec<SocketAddr>,
    /// PEM certificate chain for TLS listeners. Overrides tls.cert.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS listeners. Overrides tls.key.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Overrides server.realm.
    #[arg(long)]
    realm: Option<String>,
    /// Relay bind address (IPv4 or IPv6). Overrides relay.ipv4 / relay.ipv6.
    #[arg(long)]
    relay_ip: Vec<IpAddr>,
    /// Public address behind a 1:1 NAT. Overrides relay.advertised_ipv4 / _ipv6.
    #[arg(long)]
    advertised_ip: Vec<IpAddr>,
    /// Relay port range, e.g. 49152-65535. Overrides relay.ports.
    #[arg(long)]
    ports: Option<String>,
    /// Number of shards (0 = one per core). Overrides server.shards.
    #[arg(long)]
    shards: Option<usize>,
    /// Peer CIDR to relay to despite the default policy; repeatable. Adds to peers.allow.
    #[arg(long)]
    allow_peer: Vec<IpNet>,
    /// HTTP endpoint address. Overrides http.listen.
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Overrides log.format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Overrides log.level (a tracing filter such as "info" or "turnpike=debug").
    #[arg(long)]
    log_level: Option<String>,
    /// File of REST secrets, one per line. Overrides auth.secrets_file.
    #[arg(long, env = "TURNPIKE_SECRETS_FILE", global = true)]
    secrets_file: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Subcommand>,
}

#[derive(clap::Subcommand, Debug)]
enum Subcommand {
    /// Validate the configuration (and that its files, relay address and ports are usable)
    /// and print the effective settings.
    CheckConfig {
        /// Print nothing on success (for ExecReload).
        #[arg(short, long)]
        quiet: bool,
    },
    /// Print a TURN REST credential (JSON) minted with the first configured secret.
    Credentials {
        /// User id embedded in the username ("<expiry>:<user>").
        #[arg(long)]
        user: String,
        /// How long the credential is valid, e.g. "1h", "90m".
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// TURN URI to put in the iceServers entry; repeatable.
        #[arg(long)]
        uri: Vec<String>,
        /// With [cluster]: prefer the fleet's nodes in this region.
        #[arg(long)]
        region: Option<String>,
    },
    /// Convert a coturn turnserver.conf into a turnserver.toml (stdout, or -o FILE) and
    /// list on stderr every option that could not be converted.
    ImportCoturn {
        /// The coturn configuration, e.g. /etc/turnserver.conf.
        coturn_conf: PathBuf,
        /// Write here (mode 0600: it holds secrets) instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Exit 0 if the running server's GET /readyz (at http.listen) answers 200, else 1:
    /// a container HEALTHCHECK for images that have no curl.
    Healthcheck,
    /// Check a TURN server from the outside and name what is wrong: DNS, Binding,
    /// Allocate, a relayed round trip, Refresh, TLS, clock skew. Works against any TURN
    /// server (coturn too). Exit code 1 when a step fails.
    Probe(ProbeArgs),
}

#[derive(clap::Args, Debug)]
struct ProbeArgs {
    /// TURN URIs, e.g. turn:turn.example.com:3478?transport=udp or
    /// turns:turn.example.com:443?transport=tcp.
    #[arg(required = true)]
    uri: Vec<String>,
    /// TURN REST secret to mint credentials with (default: the first auth.secrets entry of
    /// --config, else TURNPIKE_SECRET).
    #[arg(long, env = "TURNPIKE_PROBE_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// A fixed username (instead of a secret).
    #[arg(long, requires = "password")]
    username: Option<String>,
    #[arg(long, requires = "username")]
    password: Option<String>,
    /// User id in minted credentials.
    #[arg(long, default_value = "turnpike-probe")]
    user: String,
    /// Lifetime of the minted credential, like an app backend's.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Extra CA certificates (PEM) to trust for turns:, besides the public web roots.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// How long to wait for each answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn probe(args: &ProbeArgs, cfg: &Config) -> anyhow::Result<bool> {
    use turnpike::probe::{Credentials, Options};
    let credentials = match (&args.username, &args.password, &args.secret) {
        (Some(u), Some(p), _) => Credentials::Fixed {
            username: u.clone(),
            password: p.clone(),
        },
        (_, _, Some(s)) => Credentials::Secret(s.clone()),
        _ => match cfg.auth.minting_secret() {
            Some(s) => Credentials::Secret(s),
            None => bail!(
                "no credential: pass --secret, --username/--password, or --config with auth.secrets"
            ),
        },
    };
    let opts = Options {
        credentials,
        user: args.user.clone(),
        ttl: args.ttl,
        ca: args.ca.clone(),
        timeout: args.timeout,
    };
    let reports = turnpike::probe::run(&args.uri, &opts)?;
    if args.json {
        println!("{}", turnpike::probe::json(&reports));
    } else {
        for r in &reports {
            print!("{}", r.human());
        }
    }
    Ok(reports.iter().all(|r| r.ok))
}

fn effective_config(cli: &Cli) -> anyhow::Result<Config> {
    let mut cfg = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if !cli.listen.is_empty() {
        cfg.server.listen_udp = cli.listen.clone();
    }
    if !cli.listen_tcp.is_empty() {
        cfg.server.listen_tcp = cli.listen_tcp.clone();
    }
    if !cli.listen_tls.is_empty() {
        cfg.server.listen_tls = cli.listen_tls.clone();
    }
    if let Some(p) = &cli.tls_cert {
        cfg.tls.cert = Some(p.clone());
    }
    if let Some(p) = &cli.tls_key {
        cfg.tls.key = Some(p.clone());
    }
    if let Some(r) = &cli.realm {
        cfg.server.realm = r.clone();
    }
    for ip in &cli.relay_ip {
        if ip.is_ipv4() {
            cfg.relay.ipv4 = Some(*ip);
        } else {
            cfg.relay.ipv6 = Some(*ip);
        }
    }
    for ip in &cli.advertised_ip {
        if ip.is_ipv4() {
            cfg.relay.advertised_ipv4 = Some(*ip);
        } else {
            cfg.relay.advertised_ipv6 = Some(*ip);
        }
    }
    if let Some(p) = &cli.ports {
        cfg.relay.ports = parse_port_range(p).map_err(|e| anyhow::anyhow!("--ports: {e}"))?;
    }
    if let Some(s) = cli.shards {
        cfg.server.shards = s;
    }
    cfg.peers.allow.extend(cli.allow_peer.iter().cloned());
    if let Some(a) = cli.http_listen {
        cfg.http.listen = a;
    }
    if let Some(f) = cli.log_format {
        cfg.log.format = f;
    }
    if let Some(l) = &cli.log_level {
        cfg.log.level = l.clone();
    }
    if let Some(f) = &cli.secrets_file {
        cfg.auth.secrets_file = Some(f.clone());
    }
    cfg.load_secrets_file()?;
    cfg.validate().context("invalid settings")?;
    Ok(cfg)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Needs no turnpike config: it makes one.
    if let Some(Subcommand::ImportCoturn {
        coturn_conf,
        output,
    }) = &cli.command
    {
        return import_coturn(coturn_conf, output.as_deref());
    }
    let cfg = effective_config(&cli)?;
    match &cli.command {
        Some(Subcommand::CheckConfig { quiet }) => {
            let settings = Settings::new(cfg)?;
            checks::check_config(&settings)?;
            if settings.config.fastpath.enabled {
                // Loads and attaches for real, then detaches (dropped): the only proof.
                match turnpike::runtime::fastpath::attach(&settings) {
                    Ok(a) => eprintln!(
                        "fastpath: would attach to {} in mode {} (attached and detached again)",
                        a.interface,
                        a.mode.label()
                    ),
                    Err(why) => eprintln!(
                        "fastpath: would not attach: {why}; the server would relay on the socket path"
                    ),
                }
            }
            if !quiet {
                println!("{:#?}", settings.config);
            }
            return Ok(());
        }
        Some(Subcommand::Credentials {
            user,
            ttl,
            uri,
            region,
        }) => {
            let Some(secret) = cfg.auth.minting_secret() else {
                bail!("no secret: set auth.secrets in the config or TURNPIKE_SECRET");
            };
            let (username, password) = mint_credential(&secret, user, ttl.as_secs(), unix_now());
            let uris = if !uri.is_empty() {
                uri.clone()
            } else {
                fleet_or_own_uris(&cfg, region.as_deref())
            };
            println!(
                "{}",
                credential_json(&username, &password, ttl.as_secs(), &uris)
            );
            return Ok(());
        }
        Some(Subcommand::ImportCoturn { .. }) => unreachable!("handled before loading a config"),
        Some(Subcommand::Healthcheck) => return healthcheck(cfg.http.listen),
        Some(Subcommand::Probe(args)) => {
            let ok = probe(args, &cfg)?;
            std::process::exit(if ok { 0 } else { 1 });
        }
        None => {}
    }
    turnpike::app::start(cfg, || effective_config(&cli))
}

/// The URIs `turnpike credentials` hands out: with [cluster], the fleet's best nodes
/// (Redis asked for at most a second); else, or when Redis does not answer, the
/// configured ones (saying so on stderr).
fn fleet_or_own_uris(cfg: &Config, region: Option<&str>) -> Vec<String> {
    let own = uris(cfg, advertised_ipv4(cfg));
    let Some(cluster) = turnpike::settings::cluster::from_config(cfg, &own) else {
        return own;
    };
    let fallback = cluster.uris.clone();
    let asked = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(turnpike::fleet::credential_uris_once(
                cluster,
                region,
                Duration::from_secs(1),
            ))
        });
    match asked {
        Ok(u) => u,
        Err(e) => {
            eprintln!("cluster: Redis unreachable ({e:#}); using this node's configured URIs");
            fallback
        }
    }
}

/// GET /readyz at `listen` (loopback when it is a wildcard address), 3 s at most.
fn healthcheck(listen: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let timeout = Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to the HTTP endpoint {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    // One write: a server that answers early must not see the request in pieces.
    let req = format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes())?;
    let mut head = Vec::new();
    s.take(4096).read_to_end(&mut head)?;
    let head = String::from_utf8_lossy(&head);
    let status = head.split_whitespace().nth(1).unwrap_or("none");
    if status != "200" {
        bail!("GET http://{addr}/readyz answered {status}, not 200");
    }
    Ok(())
}

fn import_coturn(path: &std::path::Path, output: Option<&std::path::Path>) -> anyhow::Result<()> {
    use std::io::Write;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading coturn config {}", path.display()))?;
    let imp = turnpike::import_coturn::convert(&text, &path.display().to_string())?;
    for u in &imp.notes {
        eprintln!("import-coturn: note: {u}");
    }
    for u in &imp.unmapped {
        eprintln!("import-coturn: not converted: {u}");
    }
    eprintln!(
        "import-coturn: {} option(s) not converted",
        imp.unmapped.len()
    );
    match output {
        Some(out) => {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(out)
                .with_context(|| format!("creating {}", out.display()))?;
            f.write_all(imp.toml.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
        }
        None => std::io::stdout().write_all(imp.toml.as_bytes())?,
    }
    Ok(())
}
