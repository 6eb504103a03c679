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
