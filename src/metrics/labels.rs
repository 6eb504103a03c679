//! Label sets of the shell's metrics, declared once as tables: enums with a `label()` and
//! an `ALL` in index order, so counter arrays are indexed by the enum.

use crate::label_table::label_table;

label_table! {
    /// Why a connection was refused at accept.
    pub enum Refused {
        Total = "max_connections",
        PerIp = "max_connections_per_ip",
    }
}

label_table! {
    /// `turnpike_tls_handshake_failures_total`. A small fixed set, so a flood of odd
    /// clients cannot grow the metric.
    pub enum TlsFailure {
        /// Not a TLS record, or a handshake message rustls could not accept.
        BadClientHello = "bad_client_hello",
        /// A valid hello with nothing in common (protocol version, cipher suite).
        Incompatible = "incompatible",
        /// The client sent an alert, e.g. it does not trust the certificate.
        Alert = "alert",
        /// Plain STUN on a TLS listener while `server.tls_accepts_plain` is false.
        PlaintextRefused = "plaintext_refused",
        /// Not finished within `server.tls_handshake_timeout`.
        Timeout = "timeout",
        /// The client closed the connection mid-handshake.
        Closed = "closed",
        Other = "other",
    }
}

label_table! {
    /// `turnpike_proxy_protocol_errors_total`: why a connection from a
    /// `server.proxy_protocol` source was closed before its PROXY v2 header was read.
    pub enum ProxyError {
        /// It did not begin with the v2 signature: no header, or the v1 text form.
        BadSignature = "bad_signature",
        /// A version other than 2.
        BadVersion = "bad_version",
        /// A command other than LOCAL or PROXY.
        BadCommand = "bad_command",
        /// PROXY for something other than TCP over IPv4 or IPv6 (UDP, UNIX, UNSPEC).
        Unsupported = "unsupported",
        /// A length too short for the addresses of its family.
        BadLength = "bad_length",
        /// More TLV bytes than turnpike accepts (512).
        TooLong = "too_long",
        /// The connection closed in the middle of the header.
        Truncated = "truncated",
        /// No complete header within `server.tls_handshake_timeout`.
        Timeout = "timeout",
        /// The client address and port it names is already connected to this listener.
        Duplicate = "duplicate",
    }
}
