//! TLS for `turns:` listeners (rustls with the ring provider).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Loads a PEM certificate chain and key. Errors name the file, so a bad path or a key
/// that does not match the certificate is caught at start (or on reload) with a reason.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls.cert: reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert: parsing {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert: no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls.key: reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert/tls.key: the key does not fit the certificate")?;
    Ok(Arc::new(cfg))
}

/// Why a TLS handshake failed: the `reason` label of
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
        let labels: std::collections::HashSet<_> =
            TlsFailure::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), TlsFailure::COUNT, "labels are distinct");
    }
}
