//! Reading coturn's file: its line forms, flag values and alternate-server addresses.

use std::net::{IpAddr, SocketAddr};

pub(super) fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "" | "1" | "true" | "yes" | "on"
    )
}

/// One `name[=value]` or `name value` line, comments and blanks skipped.
pub(super) fn parse_line(raw: &str) -> Option<(String, String)> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.trim_start_matches("--");
    let (name, value) = match line.find(['=', ' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    let value = value.trim_start_matches('=').trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((name.trim().to_owned(), value.to_owned()))
}

/// coturn's alternate-server value: "ip", "ip:port" or "[ipv6]:port"; 3478 when no port.
pub(super) fn parse_alternate(v: &str) -> Option<SocketAddr> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Some(a).filter(|a| a.port() != 0 && !a.ip().is_unspecified());
    }
    let ip = v.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = ip.parse().ok().filter(|ip: &IpAddr| !ip.is_unspecified())?;
    Some(SocketAddr::new(ip, 3478))
}
