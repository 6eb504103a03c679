//! Which peer addresses the relay may send to. A TURN server is an open door into the
//! network it sits in, so internal ranges are refused unless an admin allows them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Ranges refused by default: loopback, unspecified, RFC 1918, CGNAT, link-local, multicast,
/// broadcast/reserved, IPv6 unique-local and site-local. IPv6 spellings of IPv4 addresses
/// are unwrapped before matching (see `embedded_ipv4`).
const DEFAULT_DENY: &[&str] = &[
    "0.0.0.0/8",
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "192.0.0.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
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
        }
    }

    /// True when the relay may send to `ip`. The admin's deny list wins over their allow
    /// list, which wins over the built-in deny list.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let forms = [Some(ip), embedded_ipv4(ip).map(IpAddr::V4)];
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

/// The IPv4 address an IPv6 address stands for, when it is IPv4-mapped (::ffff:a.b.c.d),
/// IPv4-compatible (::a.b.c.d), NAT64 well-known prefix (64:ff9b::/96) or 6to4 (2002::/16).
/// Without this, ::ffff:127.0.0.1 would reach loopback past the IPv4 rules.
pub fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::1 and :: are IPv6 loopback/unspecified, handled by their own rules.
        [0, 0, 0, 0, 0, 0, _, _] if v6 != Ipv6Addr::LOCALHOST && !v6.is_unspecified() => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, _, _, _, _, _, _, _] => Some(Ipv4Addr::new(o[2], o[3], o[4], o[5])),
        _ => None,
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
        ] {
            assert!(p.permits(ip(a)), "{a} must be permitted");
        }
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
