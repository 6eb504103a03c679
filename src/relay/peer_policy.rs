//! Which peer addresses the relay may send to. A TURN server is an open door into the
//! network it sits in, so internal ranges are refused unless an admin allows them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

/// Ranges refused by default: every IANA special-purpose range (RFC 6890 registries) that
/// is not globally reachable, plus multicast. IPv6 spellings of IPv4 addresses are
/// unwrapped before matching (see `embedded_ipv4`). The documentation ranges (192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, 3fff::/20) are left out on purpose:
/// they route nowhere on the internet, and test labs, ours included, number simulated
/// public networks from them. Admins whose networks use them add them to `peers.deny`.
const DEFAULT_DENY: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "192.0.0.0/24",
    // Benchmarking (RFC 2544) and the deprecated 6to4 relay anycast (RFC 7526).
    "198.18.0.0/15",
    "192.88.99.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    // Discard-only (RFC 6666) and the dummy IPv6 prefix (RFC 9780).
    "100::/64",
    "100:0:0:1::/64",
    // IETF protocol assignments that are not globally reachable: benchmarking (RFC 5180)
    // and the deprecated ORCHID (RFC 4843).
    "2001:2::/48",
    "2001:10::/28",
    // SRv6 SIDs (RFC 9602).
    "5f00::/16",
    "fe80::/10",
    "fec0::/10",
    "fc00::/7",
    "ff00::/8",
    // Local-use NAT64 (RFC 8215) translates into whatever network the operator chose.
    "64:ff9b:1::/48",
];

#[derive(Debug, Clone)]
pub struct PeerPolicy {
    default_deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    deny: Vec<IpNet>,
    own: OwnAddresses,
}

/// The server's own addresses. A relay that reaches them lets a client talk to the host's
/// services from inside (a Binding relayed to our own listener is answered; a nested
/// allocation hides the real client), so they are peers only where other allocations'
/// relay sockets live: within the relay port range (relay-to-relay calls between two
/// browsers on this server are legitimate).
#[derive(Debug, Clone, Default)]
pub struct OwnAddresses {
    /// Every listening socket; an unspecified IP stands for every address in `ips`.
    pub listeners: Vec<SocketAddr>,
    /// The host's interface addresses, relay and advertised addresses (canonical form).
    pub ips: Vec<IpAddr>,
    /// The whole configured relay port range (every shard's slice).
    pub relay_ports: (u16, u16),
}

impl Default for PeerPolicy {
    fn default() -> Self {
        PeerPolicy::new(Vec::new(), Vec::new())
    }
}

impl PeerPolicy {
    pub fn new(allow: Vec<IpNet>, deny: Vec<IpNet>) -> Self {
        let default_deny = DEFAULT_DENY
            .iter()
            .map(|s| s.parse().expect("valid built-in CIDR"))
            .collect();
        PeerPolicy {
            default_deny,
            allow,
            deny,
            own: OwnAddresses::default(),
        }
    }

    pub fn with_own_addresses(mut self, mut own: OwnAddresses) -> Self {
        for ip in &mut own.ips {
            *ip = ip.to_canonical();
        }
        self.own = own;
        self
    }

    /// `permits` for a concrete peer socket, which also keeps the relay away from the
    /// server's own services (see `OwnAddresses`).
    pub fn permits_peer(&self, peer: SocketAddr) -> bool {
        self.permits(peer.ip()) && !self.is_own_service(peer)
    }

    /// True for the server's listeners (always, whatever `peers.allow` says) and for its
    /// other addresses outside the relay port range, unless the admin allowed the address
    /// (a loopback test setup relays to peers on the relay's own 127.0.0.1).
    pub fn is_own_service(&self, peer: SocketAddr) -> bool {
        if self.own.ips.is_empty() && self.own.listeners.is_empty() {
            return false;
        }
        let ip = peer.ip().to_canonical();
        let own_ip = self.own.ips.contains(&ip);
        let listener = self.own.listeners.iter().any(|l| {
            l.port() == peer.port()
                && (l.ip().to_canonical() == ip || (l.ip().is_unspecified() && own_ip))
        });
        if listener {
            return true;
        }
        let (lo, hi) = self.own.relay_ports;
        own_ip && !(lo..=hi).contains(&peer.port()) && !self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Own addresses that `peers.allow` opens to relaying (worth a warning at start).
    pub fn allowed_own_addresses(&self) -> Vec<IpAddr> {
        self.own
            .ips
            .iter()
            .filter(|ip| self.allow.iter().any(|n| n.contains(*ip)))
            .copied()
            .collect()
    }

    /// True when the relay may send to `ip`. The admin's deny list wins over their allow
    /// list, which wins over the built-in deny list.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let [a, b] = embedded_ipv4(ip);
        let forms = [Some(ip), a.map(IpAddr::V4), b.map(IpAddr::V4)];
        let matches = |nets: &[IpNet]| {
            forms
                .iter()
                .flatten()
                .any(|a| nets.iter().any(|n| n.contains(a)))
        };
        if matches(&self.deny) {
            return false;
        }
        if matches(&self.allow) {
            return true;
        }
        !matches(&self.default_deny)
    }
}

/// The IPv4 addresses an IPv6 address stands for: IPv4-mapped (::ffff:a.b.c.d),
/// IPv4-translated (::ffff:0:a.b.c.d, RFC 2765), IPv4-compatible (::a.b.c.d), NAT64
/// well-known prefix (64:ff9b::/96), 6to4 (2002::/16), and Teredo (2001::/32: its server
/// and its obfuscated client address). Without this, ::ffff:127.0.0.1 would reach loopback
/// past the IPv4 rules.
pub fn embedded_ipv4(ip: IpAddr) -> [Option<Ipv4Addr>; 2] {
    let IpAddr::V6(v6) = ip else {
        return [None, None];
    };
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] => [Some(tail), None],
        // ::1 and :: are IPv6 loopback/unspecified, handled by their own rules.
        [0, 0, 0, 0, 0, 0, _, _] if v6 != Ipv6Addr::LOCALHOST && !v6.is_unspecified() => {
            [Some(tail), None]
        }
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => [Some(tail), None],
        [0x2002, _, _, _, _, _, _, _] => [Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])), None],
        [0x2001, 0, _, _, _, _, _, _] => [
            Some(Ipv4Addr::new(o[4], o[5], o[6], o[7])),
            Some(Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15])),
        ],
        _ => [None, None],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_policy_denies_internal_ranges() {
        let p = PeerPolicy::default();
        for a in [
            "127.0.0.1",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "fd00::1",
            "fc00::1",
            "ff02::1",
            "198.18.0.1",
            "198.19.255.254",
            "192.88.99.1",
            "100::1",
            "100:0:0:1::1",
            "2001:2::1",
            "2001:10::1",
            "2001:1f:ffff::1",
            "5f00::1",
        ] {
            assert!(!p.permits(ip(a)), "{a} must be denied");
        }
    }

    #[test]
    fn default_policy_denies_ipv6_spellings_of_internal_ipv4() {
        let p = PeerPolicy::default();
        for a in [
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::192.168.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            // IPv4-translated (RFC 2765).
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            // Teredo: server 127.0.0.1, or client 10.0.0.1 (stored as its complement).
            "2001:0:7f00:1::1",
            "2001:0:808:808:0:0:f5ff:fffe",
        ] {
            assert!(!p.permits(ip(a)), "{a} must be denied");
        }
    }

    #[test]
    fn default_policy_permits_public_addresses() {
        let p = PeerPolicy::default();
        for a in [
            "8.8.8.8",
            "198.51.100.10",
            "203.0.113.5",
            "172.32.0.1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
            // Teredo with a public server and a public client (8.8.4.4 complemented).
            "2001:0:808:808:0:0:f7f7:fbfb",
            "2001:20::1",
        ] {
            assert!(p.permits(ip(a)), "{a} must be permitted");
        }
    }

    fn own() -> PeerPolicy {
        PeerPolicy::new(vec!["127.0.0.0/8".parse().unwrap()], vec![]).with_own_addresses(
            OwnAddresses {
                listeners: vec![
                    "0.0.0.0:3478".parse().unwrap(),
                    "[::]:3478".parse().unwrap(),
                ],
                ips: vec![ip("127.0.0.1"), ip("203.0.113.9"), ip("::1")],
                relay_ports: (49152, 65535),
            },
        )
    }

    fn sock(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn own_listeners_are_refused_even_when_allowed() {
        let p = own();
        for a in [
            "127.0.0.1:3478",
            "203.0.113.9:3478",
            "[::ffff:203.0.113.9]:3478",
            "[::1]:3478",
        ] {
            assert!(!p.permits_peer(sock(a)), "{a} is our listener");
        }
        assert!(p.permits_peer(sock("203.0.113.10:3478")), "another host");
    }

    #[test]
    fn own_addresses_are_peers_only_within_the_relay_range() {
        let p = own();
        assert!(p.permits_peer(sock("203.0.113.9:50000")), "relay-to-relay");
        assert!(!p.permits_peer(sock("203.0.113.9:53")), "a host service");
        assert!(!p.permits_peer(sock("[::ffff:203.0.113.9]:53")));
        // The admin allowed loopback: test setups relay to peers on 127.0.0.1.
        assert!(p.permits_peer(sock("127.0.0.1:53")));
        assert_eq!(p.allowed_own_addresses(), vec![ip("127.0.0.1")]);
    }

    #[test]
    fn admin_allow_list_overrides_default_deny_and_deny_list_wins() {
        let p = PeerPolicy::new(
            vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            vec![
                "10.9.0.0/16".parse().unwrap(),
                "203.0.113.0/24".parse().unwrap(),
            ],
        );
        assert!(p.permits(ip("127.0.0.1")));
        assert!(p.permits(ip("::ffff:127.0.0.1")));
        assert!(p.permits(ip("10.1.1.1")));
        assert!(!p.permits(ip("10.9.1.1")));
        assert!(!p.permits(ip("203.0.113.7")));
        assert!(!p.permits(ip("::ffff:203.0.113.7")));
        assert!(!p.permits(ip("192.168.0.1")));
    }
}
