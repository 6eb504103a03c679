//! `server.alternate_tls`: where TLS clients are redirected, with the name the alternate's
//! certificate carries (sent as ALTERNATE-DOMAIN, RFC 8489 §14.16).

use std::net::SocketAddr;

use anyhow::bail;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsAlternate {
    /// The alternate's TLS listener, e.g. "203.0.113.8:5349".
    pub address: SocketAddr,
    /// A DNS name on its certificate, e.g. "turn-b.example.com".
    pub domain: String,
}

impl TlsAlternate {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let a = self.address;
        if a.ip().is_unspecified() || a.port() == 0 {
            bail!("server.alternate_tls: {a} must be a concrete address and port");
        }
        let d = &self.domain;
        if !is_dns_name(d) {
            bail!("server.alternate_tls: domain {d:?} is not a DNS name (the certificate's)");
        }
        Ok(())
    }
}

/// A name a certificate can be checked against: a DNS name, not an IP literal.
pub fn is_dns_name(name: &str) -> bool {
    matches!(
        rustls::pki_types::ServerName::try_from(name),
        Ok(rustls::pki_types::ServerName::DnsName(_))
    )
}
