//! `[fastpath]`: relay UDP ChannelData in the kernel (XDP, else TC). Off by default; when
//! it cannot load or attach, the server runs on the socket path and says why.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FastPath {
    pub enabled: bool,
    /// The interface clients and peers reach the relay through (default: the one that
    /// holds `relay.ipv4`).
    pub interface: Option<String>,
    pub mode: FastPathMode,
}

/// `fastpath.mode`: where the program attaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FastPathMode {
    /// Native XDP, else generic XDP, else TC: the first the interface accepts.
    #[default]
    Auto,
    Xdp,
    XdpGeneric,
    Tc,
}

impl FastPathMode {
    /// The loader's name for it (`fastpath::Mode`'s `FromStr`).
    pub fn label(self) -> &'static str {
        match self {
            FastPathMode::Auto => "auto",
            FastPathMode::Xdp => "xdp",
            FastPathMode::XdpGeneric => "xdp-generic",
            FastPathMode::Tc => "tc",
        }
    }
}
