//! TLS for `turns:` listeners (rustls with the ring provider): the server config, loaded
//! from the PEM files at start and on reload.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Config;

/// The TLS server config for `server.listen_tls`, if there are TLS listeners.
pub fn for_listeners(cfg: &Config) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    match (
        &cfg.tls.cert,
        &cfg.tls.key,
        cfg.server.listen_tls.is_empty(),
    ) {
        (Some(c), Some(k), false) => Ok(Some(load(c, k)?)),
        _ => Ok(None),
    }
}

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
