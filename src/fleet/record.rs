//! One node's entry in the registry: who it is, where clients reach it and how loaded it
//! is, as it last wrote it (JSON under `turnpike:node:<name>`).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::relay::Alternate;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub region: String,
    /// Its public TURN URIs.
    pub uris: Vec<String>,
    pub allocations: u64,
    /// `relay.max_allocations`: load is `allocations / max_allocations`.
    pub max_allocations: u64,
    pub relay_ports_in_use: u64,
    pub relay_ports_total: u64,
    /// Relayed payload bits per second (both directions) over its last heartbeat.
    pub bits_per_second: u64,
    pub draining: bool,
    pub full: bool,
    /// The turnpike version it runs.
    pub version: String,
    /// When it wrote the record, by its own clock (Unix milliseconds).
    pub unix_ms: u64,
}

impl NodeRecord {
    /// Milliseconds since the node wrote the record (0 when its clock is ahead of ours).
    pub fn age_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.unix_ms)
    }

    /// Heard from within `ttl_ms`.
    pub fn is_live(&self, now_ms: u64, ttl_ms: u64) -> bool {
        self.age_ms(now_ms) <= ttl_ms
    }

    /// Live, not draining, not full: new clients may be sent here.
    pub fn has_room(&self, now_ms: u64, ttl_ms: u64) -> bool {
        self.is_live(now_ms, ttl_ms) && !self.draining && !self.full
    }

    /// Allocations as a share of the most it takes (a full node counts as 1).
    pub fn load(&self) -> f64 {
        if self.full || self.max_allocations == 0 {
            return 1.0;
        }
        self.allocations as f64 / self.max_allocations as f64
    }

    /// Where its plain `turn:` listeners are, for ALTERNATE-SERVER: every `turn:` URI
    /// whose host is an IP literal and whose transport is UDP or unnamed (a host name
    /// cannot go in ALTERNATE-SERVER, and `turns:` needs ALTERNATE-DOMAIN).
    /// Where a TLS client redirected to this node goes: the host of its first `turns:` URI
    /// that names a DNS host (the certificate's, sent as ALTERNATE-DOMAIN) at that URI's
    /// port (default 5349), on the address of its first IP-literal `turn:` URI. None
    /// without both.
    pub fn tls_alternate(&self) -> Option<Alternate> {
        let ip = self.listener_addresses().first()?.ip();
        self.uris.iter().find_map(|u| {
            let rest = u.strip_prefix("turns:")?;
            let hostport = rest.split_once('?').map_or(rest, |(h, _)| h);
            let (host, port) = match hostport.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (hostport, 5349),
            };
            crate::config::is_dns_name(host)
                .then(|| Alternate::tls(SocketAddr::new(ip, port), host))
        })
    }

    pub fn listener_addresses(&self) -> Vec<SocketAddr> {
        self.uris
            .iter()
            .filter_map(|u| turn_uri_address(u))
            .collect()
    }
}

/// The address of a `turn:HOST[:PORT][?transport=udp]` URI with an IP literal host.
pub fn turn_uri_address(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("turn:")?;
    let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
    if !(query.is_empty() || query.eq_ignore_ascii_case("transport=udp")) {
        return None;
    }
    if let Ok(a) = hostport.parse::<SocketAddr>() {
        return Some(a);
    }
    let bare = hostport.trim_start_matches('[').trim_end_matches(']');
    bare.parse().ok().map(|ip| SocketAddr::new(ip, 3478))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_address_comes_from_an_ip_literal_udp_turn_uri_only() {
        let a = |u: &str| turn_uri_address(u);
        assert_eq!(
            a("turn:192.0.2.1:3479?transport=udp"),
            Some("192.0.2.1:3479".parse().unwrap())
        );
        assert_eq!(a("turn:192.0.2.1"), Some("192.0.2.1:3478".parse().unwrap()));
        assert_eq!(
            a("turn:[2001:db8::1]:5000"),
            Some("[2001:db8::1]:5000".parse().unwrap())
        );
        assert_eq!(
            a("turn:[2001:db8::1]"),
            Some("[2001:db8::1]:3478".parse().unwrap())
        );
        assert_eq!(a("turn:turn.example.com:3478"), None);
        assert_eq!(a("turns:192.0.2.1:443?transport=tcp"), None);
        assert_eq!(a("turn:192.0.2.1:3478?transport=tcp"), None);
    }
}
