//! TURN/STUN URIs as browsers take them (RFC 7064/7065):
//! `turn:host[:port][?transport=udp|tcp]`, `turns:host[:port][?transport=tcp]`.

use std::fmt;

/// How the probe talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// The IP protocol the port is on, for messages like "3478/tcp".
    pub fn ip_protocol(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp | Transport::Tls => "tcp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnUri {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// The URI as given, for the report.
    pub text: String,
}

impl fmt::Display for TurnUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl TurnUri {
    pub fn parse(s: &str) -> Result<TurnUri, String> {
        let (scheme, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?}: expected turn:HOST[:PORT][?transport=udp|tcp]"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "turn" => false,
            "turns" => true,
            other => return Err(format!("{s:?}: scheme {other:?} is not turn or turns")),
        };
        let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut transport = None;
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            match kv.split_once('=') {
                Some(("transport", "udp")) => transport = Some(Transport::Udp),
                Some(("transport", "tcp")) => transport = Some(Transport::Tcp),
                _ => return Err(format!("{s:?}: unknown query {kv:?} (transport=udp|tcp)")),
            }
        }
        let transport = match (secure, transport) {
            (true, None | Some(Transport::Tcp)) => Transport::Tls,
            (true, Some(_)) => return Err(format!("{s:?}: turns: runs over tcp only")),
            (false, t) => t.unwrap_or(Transport::Udp),
        };
        let default_port = if secure { 5349 } else { 3478 };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{s:?}: unclosed '[' in IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("{s:?}: unexpected {after:?} after ']'")),
            };
            (h, port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            None => default_port,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{s:?}: {p:?} is not a port number"))?,
        };
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("{s:?}: missing or bad host"));
        }
        Ok(TurnUri {
            host: host.to_owned(),
            port,
            transport,
            text: s.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_browsers_accept() {
        let u = TurnUri::parse("turn:turn.example.com?transport=udp").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("turn.example.com", 3478, Transport::Udp)
        );
        let u = TurnUri::parse("turn:10.0.0.1:3479?transport=tcp").unwrap();
        assert_eq!((u.port, u.transport), (3479, Transport::Tcp));
        let u = TurnUri::parse("turns:turn.example.com:443?transport=tcp").unwrap();
        assert_eq!((u.port, u.transport), (443, Transport::Tls));
        let u = TurnUri::parse("turns:[2001:db8::1]").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("2001:db8::1", 5349, Transport::Tls)
        );
        let u = TurnUri::parse("turn:[::1]:3478").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 3478));
    }

    #[test]
    fn rejects_bad_uris_with_a_reason() {
        for bad in [
            "http://x",
            "turn:",
            "turn:host:99999",
            "turn:host:0",
            "turn:host?transport=sctp",
            "turns:host?transport=udp",
            "turn:[::1",
            "stun:host",
            "nohost",
        ] {
            assert!(TurnUri::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
