//! IPv4 or IPv6: a metric label and the index of the core's per-family arrays.

crate::label_table::label_table! {
    /// An IP address family: the `family` metric label, and the index of per-family arrays.
    pub enum AddrFamily {
        Ipv4 = "ipv4",
        Ipv6 = "ipv6",
    }
}

impl AddrFamily {
    pub fn of(ip: std::net::IpAddr) -> AddrFamily {
        if ip.is_ipv4() {
            AddrFamily::Ipv4
        } else {
            AddrFamily::Ipv6
        }
    }
}
