//! coturn's peer address ranges as CIDRs, and the allow-over-deny cut.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};

/// coturn peer ranges: a single address, "first-last" (inclusive), or a CIDR.
pub fn peer_range_to_cidrs(v: &str) -> Result<Vec<IpNet>, String> {
    if let Ok(net) = v.parse::<IpNet>() {
        return Ok(vec![net.trunc()]);
    }
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (v.trim(), v.trim()),
    };
    let bad = || format!("{v:?} is not an address, CIDR or \"first-last\" range");
    let a: IpAddr = a.parse().map_err(|_| bad())?;
    let b: IpAddr = b.parse().map_err(|_| bad())?;
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
            Ok(Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect())
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => {
            Ok(Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect())
        }
        _ => Err(format!(
            "{v:?}: both ends must be of one family, first <= last"
        )),
    }
}

/// `nets` without the addresses in `holes`. coturn's allowed-peer-ip overrides its
/// denied-peer-ip, while in turnpike deny wins; cutting the allowed ranges out of the deny
/// list keeps coturn's meaning.
pub fn subtract(nets: &[IpNet], holes: &[IpNet]) -> Vec<IpNet> {
    let span = |n: &IpNet| -> (u128, u128) {
        match n {
            IpNet::V4(n) => (
                u32::from(n.network()) as u128,
                u32::from(n.broadcast()) as u128,
            ),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        }
    };
    let mut out = Vec::new();
    for net in nets {
        let mut pieces = vec![span(net)];
        for hole in holes
            .iter()
            .filter(|h| h.addr().is_ipv4() == net.addr().is_ipv4())
        {
            let (hs, he) = span(hole);
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    if he < s || hs > e {
                        return vec![(s, e)];
                    }
                    let mut keep = vec![];
                    if hs > s {
                        keep.push((s, hs - 1));
                    }
                    if he < e {
                        keep.push((he + 1, e));
                    }
                    keep
                })
                .collect();
        }
        for (s, e) in pieces {
            match net {
                IpNet::V4(_) => out.extend(
                    Ipv4Subnets::new((s as u32).into(), (e as u32).into(), 0).map(IpNet::V4),
                ),
                IpNet::V6(_) => out.extend(Ipv6Subnets::new(s.into(), e.into(), 0).map(IpNet::V6)),
            }
        }
    }
    out
}
