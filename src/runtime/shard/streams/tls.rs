//! Why a `turns:` connection's TLS handshake failed, as a metric label. The certificate
//! itself is loaded with the settings (`settings::tls`).

/// Why a TLS handshake failed: the `reason` label of `turnpike_tls_handshake_failures_total`,
/// declared with the other metric labels; which rustls error is which is decided here.
pub use crate::metrics::labels::TlsFailure;

impl TlsFailure {
    /// The label for an error rustls reported during the handshake.
    pub fn of(e: &rustls::Error) -> TlsFailure {
        use rustls::Error as E;
        match e {
            E::AlertReceived(_) => TlsFailure::Alert,
            E::PeerIncompatible(_) => TlsFailure::Incompatible,
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_)
            | E::DecryptError => TlsFailure::BadClientHello,
            _ => TlsFailure::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TlsFailure;
    use rustls::{AlertDescription, Error, InvalidMessage, PeerIncompatible};

    #[test]
    fn rustls_errors_map_to_the_fixed_reasons() {
        let cases = [
            (
                Error::AlertReceived(AlertDescription::UnknownCA),
                TlsFailure::Alert,
            ),
            (
                Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
                TlsFailure::Incompatible,
            ),
            (
                Error::InvalidMessage(InvalidMessage::InvalidContentType),
                TlsFailure::BadClientHello,
            ),
            (Error::General("x".into()), TlsFailure::Other),
        ];
        for (e, want) in cases {
            assert_eq!(TlsFailure::of(&e), want, "{e}");
        }
    }
}
