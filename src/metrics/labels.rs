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
