//! `turnpike import-coturn`: turns a coturn `turnserver.conf` into an equivalent
//! `turnserver.toml`, and lists every option it could not carry over and why, so an admin
//! moving from coturn reviews a short list instead of the whole manual.

mod options;
mod parse;
mod ranges;
mod render;
mod tables;
mod unmapped;

#[cfg(test)]
use ipnet::IpNet;

use crate::config::Config;
use options::{Line, State};
#[cfg(test)]
use parse::parse_alternate;
use parse::parse_line;
pub use ranges::{peer_range_to_cidrs, subtract};
use render::render;
pub use unmapped::Unmapped;

#[derive(Debug)]
pub struct Import {
    /// The turnserver.toml text; parses with `Config::from_toml`.
    pub toml: String,
    /// The parsed result, for callers that want the values.
    pub config: Config,
    pub unmapped: Vec<Unmapped>,
    /// Options converted with a difference in meaning the admin should know about.
    pub notes: Vec<Unmapped>,
}

/// Converts coturn config text. Never fails on odd input: each line it cannot use lands in
/// `unmapped`. Fails only if the result would not be a valid turnpike config.
pub fn convert(text: &str, source: &str) -> anyhow::Result<Import> {
    let mut st = State::default();
    let mut unmapped = Vec::new();
    let mut notes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let Some((name, v)) = parse_line(raw) else {
            continue;
        };
        let mut line = Line {
            no: i + 1,
            name: &name,
            unmapped: &mut unmapped,
            notes: &mut notes,
        };
        st.apply(&mut line, &v);
    }
    let toml = render(&st, &mut unmapped, source);
    let config = Config::from_toml(&toml)
        .map_err(|e| anyhow::anyhow!("the converted configuration is not valid: {e:#}"))?;
    Ok(Import {
        toml,
        config,
        unmapped,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coturn_ranges_become_exact_cidrs() {
        let cidrs = |v: &str| -> Vec<String> {
            peer_range_to_cidrs(v)
                .unwrap()
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(cidrs("10.0.0.0-10.255.255.255"), ["10.0.0.0/8"]);
        assert_eq!(cidrs("192.0.2.7"), ["192.0.2.7/32"]);
        assert_eq!(
            cidrs("172.16.0.0-172.31.255.255 "),
            ["172.16.0.0/12"],
            "trailing space"
        );
        assert_eq!(
            cidrs("192.168.1.3-192.168.1.9"),
            ["192.168.1.3/32", "192.168.1.4/30", "192.168.1.8/31"]
        );
        assert_eq!(
            cidrs("fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ["fc00::/7"]
        );
        assert_eq!(cidrs("100.64.0.0/10"), ["100.64.0.0/10"]);
        for bad in [
            "10.0.0.9-10.0.0.1",
            "10.0.0.1-::1",
            "example.com",
            "1.2.3.4-",
        ] {
            assert!(peer_range_to_cidrs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_ranges_are_cut_out_of_denied_ones() {
        let nets = |v: &[&str]| -> Vec<IpNet> { v.iter().map(|n| n.parse().unwrap()).collect() };
        let got = subtract(
            &nets(&["10.0.0.0/8", "192.168.0.0/16", "fc00::/7"]),
            &nets(&["10.0.0.20/32", "10.0.1.0/26", "fd00::/8"]),
        );
        let got: Vec<String> = got.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            got,
            [
                "10.0.0.0/28",
                "10.0.0.16/30",
                "10.0.0.21/32",
                "10.0.0.22/31",
                "10.0.0.24/29",
                "10.0.0.32/27",
                "10.0.0.64/26",
                "10.0.0.128/25",
                "10.0.1.64/26",
                "10.0.1.128/25",
                "10.0.2.0/23",
                "10.0.4.0/22",
                "10.0.8.0/21",
                "10.0.16.0/20",
                "10.0.32.0/19",
                "10.0.64.0/18",
                "10.0.128.0/17",
                "10.1.0.0/16",
                "10.2.0.0/15",
                "10.4.0.0/14",
                "10.8.0.0/13",
                "10.16.0.0/12",
                "10.32.0.0/11",
                "10.64.0.0/10",
                "10.128.0.0/9",
                "192.168.0.0/16",
                "fc00::/8",
            ]
        );
        // A hole covering the whole net removes it.
        assert!(subtract(&nets(&["10.0.0.0/24"]), &nets(&["10.0.0.0/8"])).is_empty());
    }

    #[test]
    fn alternate_server_forms() {
        let p = |v: &str| parse_alternate(v).map(|a| a.to_string());
        assert_eq!(p("203.0.113.8:3479").as_deref(), Some("203.0.113.8:3479"));
        assert_eq!(p("203.0.113.8").as_deref(), Some("203.0.113.8:3478"));
        assert_eq!(
            p("[2001:db8::8]:5000").as_deref(),
            Some("[2001:db8::8]:5000")
        );
        assert_eq!(p("2001:db8::8").as_deref(), Some("[2001:db8::8]:3478"));
        for bad in ["turn.example.com:3478", "0.0.0.0:3478", "1.2.3.4:0", ""] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn line_forms_and_flags() {
        assert_eq!(
            parse_line("  realm=\"example.org\" "),
            Some(("realm".into(), "example.org".into()))
        );
        assert_eq!(
            parse_line("--listening-port 3479"),
            Some(("listening-port".into(), "3479".into()))
        );
        assert_eq!(
            parse_line("fingerprint"),
            Some(("fingerprint".into(), "".into()))
        );
        assert_eq!(parse_line("# user=a:b"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn empty_input_is_coturns_defaults_and_valid() {
        let imp = convert("", "test").unwrap();
        let s = &imp.config.server;
        assert_eq!(s.listen_udp, ["0.0.0.0:3478".parse().unwrap()]);
        assert_eq!(s.listen_tcp, ["0.0.0.0:3478".parse().unwrap()]);
        assert!(s.listen_tls.is_empty());
        assert!(imp.unmapped.is_empty(), "{:?}", imp.unmapped);
    }

    #[test]
    fn bad_values_are_listed_not_fatal_and_never_echo_secrets() {
        let imp = convert(
            "listening-port=abc\nstatic-auth-secret=short\nuser=bob:0xdeadbeefcafe\n\
             denied-peer-ip=10.0.0.9-10.0.0.1\nmin-port=60000\nmax-port=50000\nbogus-option=1\n",
            "t",
        )
        .unwrap();
        let listed: Vec<String> = imp.unmapped.iter().map(|u| u.to_string()).collect();
        let all = listed.join("\n");
        for needle in [
            "line 1 `listening-port`",
            "line 2 `static-auth-secret`",
            "line 3 `user`: user \"bob\" has a hashed key",
            "line 4 `denied-peer-ip`",
            "`min-port`: min-port is above max-port",
            "line 7 `bogus-option`: unknown coturn option",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert!(!all.contains("short") && !all.contains("deadbeef"), "{all}");
        assert_eq!(imp.config.relay.ports, (49152, 65535));
        assert!(imp.config.auth.secrets.is_empty());
    }
}
