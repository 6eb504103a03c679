//! Label sets of the shell's metrics, declared once: enums with a `label()` and an `ALL`
//! in index order, so counter arrays are indexed by the enum.

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

impl Refused {
    pub const ALL: [Refused; 2] = [Refused::Total, Refused::PerIp];

    pub fn label(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerIp => "max_connections_per_ip",
        }
    }
}

/// `turnpike_tls_handshake_failures_total`. A small fixed set, so a flood of odd clients
/// cannot grow the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailure {
    /// Not a TLS record, or a handshake message rustls could not accept.
    BadClientHello,
    /// A valid hello with nothing in common (protocol version, cipher suite).
    Incompatible,
    /// The client sent an alert, e.g. it does not trust the certificate.
    Alert,
    /// Plain STUN on a TLS listener while `server.tls_accepts_plain` is false.
    PlaintextRefused,
    /// Not finished within `server.tls_handshake_timeout`.
    Timeout,
    /// The client closed the connection mid-handshake.
    Closed,
    Other,
}

impl TlsFailure {
    pub const COUNT: usize = 7;
    pub const ALL: [TlsFailure; TlsFailure::COUNT] = [
        TlsFailure::BadClientHello,
        TlsFailure::Incompatible,
        TlsFailure::Alert,
        TlsFailure::PlaintextRefused,
        TlsFailure::Timeout,
        TlsFailure::Closed,
        TlsFailure::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TlsFailure::BadClientHello => "bad_client_hello",
            TlsFailure::Incompatible => "incompatible",
            TlsFailure::Alert => "alert",
            TlsFailure::PlaintextRefused => "plaintext_refused",
            TlsFailure::Timeout => "timeout",
            TlsFailure::Closed => "closed",
            TlsFailure::Other => "other",
        }
    }
}
