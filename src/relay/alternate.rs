//! Where a draining or full node sends new clients (`admission`).

use std::net::SocketAddr;

/// A node a redirected client is sent to: its address (ALTERNATE-SERVER) and, for a TLS
/// listener, the name its certificate carries (ALTERNATE-DOMAIN, RFC 8489 §14.16), which
/// the client verifies instead of the bare address. TLS clients go only to TLS alternates
/// and the others only to plain ones: each reconnects to the address with its own
/// transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternate {
    pub addr: SocketAddr,
    pub domain: Option<String>,
}

impl Alternate {
    pub fn plain(addr: SocketAddr) -> Alternate {
        Alternate { addr, domain: None }
    }

    pub fn tls(addr: SocketAddr, domain: &str) -> Alternate {
        Alternate {
            addr,
            domain: Some(domain.to_owned()),
        }
    }
}
