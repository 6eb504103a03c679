//! Where the program runs on an interface: native XDP, generic XDP, or a TC (clsact
//! ingress) classifier, in that order of preference.

/// How the program is attached: `turnpike_fastpath_info{mode}`'s label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Native XDP, in the driver: the fastest, where the driver supports it.
    Xdp,
    /// Generic XDP, after the kernel built the skb: any interface, slower.
    XdpGeneric,
    /// A TC ingress classifier: where XDP is refused (some cloud NICs).
    Tc,
}

impl AttachMode {
    pub const ALL: [AttachMode; 3] = [AttachMode::Xdp, AttachMode::XdpGeneric, AttachMode::Tc];

    pub fn label(self) -> &'static str {
        match self {
            AttachMode::Xdp => "xdp",
            AttachMode::XdpGeneric => "xdp-generic",
            AttachMode::Tc => "tc",
        }
    }
}

/// What `attach` is asked for: one mode, or the first that works (`auto`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Auto,
    Only(AttachMode),
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Mode::Auto);
        }
        AttachMode::ALL
            .into_iter()
            .find(|m| m.label() == s)
            .map(Mode::Only)
            .ok_or_else(|| format!("unknown fast path mode {s:?} (auto, xdp, xdp-generic, tc)"))
    }
}

impl Mode {
    /// The modes to try, best first.
    pub fn candidates(self) -> Vec<AttachMode> {
        match self {
            Mode::Auto => AttachMode::ALL.to_vec(),
            Mode::Only(m) => vec![m],
        }
    }
}
