//! The rules serde cannot express, one check per section, in the order the errors are
//! reported (the first broken rule is the one named); each error names its key.

use std::time::Duration;

use anyhow::bail;

use super::{Auth, Config, Http, Relay};

impl Config {
    /// Checks the rules serde cannot express; each error names its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_server()?;
        self.relay.validate()?;
        self.auth.validate()?;
        self.http.validate()?;
        validate_log_level(&self.log.level)?;
        self.validate_listeners()?;
        if let Some(c) = &self.cluster {
            c.validate()?;
        }
        self.validate_alternates()
    }

    fn validate_server(&self) -> anyhow::Result<()> {
        let s = &self.server;
        if s.listen_udp.is_empty() && s.listen_tcp.is_empty() && s.listen_tls.is_empty() {
            bail!("server.listen_udp: at least one listener (UDP, TCP or TLS) is needed");
        }
        if !s.listen_tls.is_empty() && (self.tls.cert.is_none() || self.tls.key.is_none()) {
            bail!("tls.cert, tls.key: server.listen_tls needs a certificate and a key");
        }
        if s.max_connections == 0 || s.idle_timeout.is_zero() {
            bail!("server.max_connections / idle_timeout: must be above 0");
        }
        if s.max_connections_per_ip == 0 || s.tls_handshake_timeout.is_zero() {
            bail!("server.max_connections_per_ip / tls_handshake_timeout: must be above 0");
        }
        // RFC 8489 allows 763 bytes; every one is sent to unauthenticated clients.
        if s.realm.is_empty() || s.realm.len() > 64 {
            bail!("server.realm: must be 1 to 64 bytes");
        }
        Ok(())
    }

    /// A listener named twice would bind twice; UDP and TCP ports are separate spaces,
    /// TCP and TLS listeners share one.
    fn validate_listeners(&self) -> anyhow::Result<()> {
        let s = &self.server;
        let udp = s.listen_udp.iter().map(|a| ("server.listen_udp", a, 0));
        let tcp = s.listen_tcp.iter().map(|a| ("server.listen_tcp", a, 1));
        let tls = s.listen_tls.iter().map(|a| ("server.listen_tls", a, 1));
        let all: Vec<_> = udp.chain(tcp).chain(tls).collect();
        for (i, (key, a, proto)) in all.iter().enumerate() {
            if let Some((other, _, _)) = all[..i]
                .iter()
                .find(|(_, b, p)| p == proto && b == a && a.port() != 0)
            {
                bail!("{key}: {a} is listed twice (also in {other})");
            }
        }
        Ok(())
    }

    fn validate_alternates(&self) -> anyhow::Result<()> {
        for a in &self.server.alternate {
            if a.ip().is_unspecified() || a.port() == 0 {
                bail!("server.alternate: {a} must be a concrete address and port");
            }
        }
        for a in &self.server.alternate_tls {
            a.validate()?;
        }
        Ok(())
    }
}

impl Relay {
    fn validate(&self) -> anyhow::Result<()> {
        if self.default_lifetime.is_zero() || self.max_lifetime < self.default_lifetime {
            bail!("relay.default_lifetime: must be above 0 and at most relay.max_lifetime");
        }
        if self.max_lifetime > Duration::from_secs(u32::MAX as u64) {
            bail!("relay.max_lifetime: too long");
        }
        self.validate_addresses()?;
        if self.max_allocations == 0 || self.max_allocations_per_user == 0 {
            bail!("relay.max_allocations / max_allocations_per_user: must be above 0");
        }
        if self.max_permissions_per_allocation == 0 || self.max_channels_per_allocation == 0 {
            bail!(
                "relay.max_permissions_per_allocation / max_channels_per_allocation: must be above 0"
            );
        }
        Ok(())
    }

    /// Each address is of its key's family; advertised ones are concrete.
    fn validate_addresses(&self) -> anyhow::Result<()> {
        for (key, ip, v4) in [
            ("relay.ipv4", self.ipv4, true),
            ("relay.advertised_ipv4", self.advertised_ipv4, true),
            ("relay.ipv6", self.ipv6, false),
            ("relay.advertised_ipv6", self.advertised_ipv6, false),
        ] {
            if let Some(ip) = ip {
                if ip.is_ipv4() != v4 {
                    bail!(
                        "{key}: {ip} is not an IPv{} address",
                        if v4 { 4 } else { 6 }
                    );
                }
                if ip.is_unspecified() && key.starts_with("relay.advertised") {
                    bail!("{key}: must be a concrete address, not {ip}");
                }
            }
        }
        Ok(())
    }
}

impl Auth {
    fn validate(&self) -> anyhow::Result<()> {
        if self.nonce_lifetime < Duration::from_secs(30) {
            bail!("auth.nonce_lifetime: must be at least 30s");
        }
        if self.max_session_duration.is_zero() || self.max_credential_ttl.is_zero() {
            bail!("auth.max_session_duration / max_credential_ttl: must be above 0");
        }
        for (i, s) in self.secrets.iter().enumerate() {
            if s.expose().len() < 8 {
                bail!("auth.secrets[{i}]: a secret must be at least 8 bytes");
            }
        }
        for (i, u) in self.users.iter().enumerate() {
            if u.username.is_empty() || u.password.is_empty() {
                bail!("auth.users[{i}]: username and password must not be empty");
            }
        }
        Ok(())
    }
}

impl Http {
    fn validate(&self) -> anyhow::Result<()> {
        if let Some(t) = &self.credentials_token
            && t.expose().len() < 16
        {
            bail!("http.credentials_token: must be at least 16 bytes");
        }
        if let Some(t) = &self.admin_token
            && t.expose().len() < 16
        {
            bail!("http.admin_token: must be at least 16 bytes");
        }
        if self.credentials_ttl.is_zero() || self.credentials_ttl > self.credentials_max_ttl {
            bail!("http.credentials_ttl: must be above 0 and at most http.credentials_max_ttl");
        }
        for u in &self.uris {
            if !(u.starts_with("turn:") || u.starts_with("turns:") || u.starts_with("stun:")) {
                bail!("http.uris: {u:?} is not a turn:, turns: or stun: URI");
            }
        }
        Ok(())
    }
}

/// `log.level` is a tracing filter, where a bare word that is no level is a target name:
/// "warning" would silently mean "everything from a module named warning" and so nothing.
/// Bare words must be levels; targets are written `target=level`.
pub fn validate_log_level(filter: &str) -> anyhow::Result<()> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    for d in filter.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = d
            .rsplit_once('=')
            .map_or(d, |(_, l)| l)
            .to_ascii_lowercase();
        if !LEVELS.contains(&level.as_str()) {
            let hint = match level.as_str() {
                "warning" => " (did you mean \"warn\"?)",
                "err" | "fatal" | "critical" => " (did you mean \"error\"?)",
                "verbose" => " (did you mean \"debug\"?)",
                _ => "",
            };
            bail!(
                "log.level: {d:?} is not a level{hint}; use one of {} or \"target=level\"",
                LEVELS.join(", ")
            );
        }
    }
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("log.level: {e}"))?;
    Ok(())
}
