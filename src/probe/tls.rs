//! The `turns:` certificate check, done the way a browser does it (public roots, the URI's
//! host name, validity dates), while remembering what the server presented so that a
//! failure can say which of chain, name or dates is wrong.

use std::net::TcpStream;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// What the server's certificate said, whether or not it verified.
#[derive(Debug, Default, Clone)]
pub struct CertFacts {
    /// DER of the end-entity certificate.
    pub leaf: Option<Vec<u8>>,
    /// Certificates sent after the leaf (intermediates).
    pub intermediates: usize,
    pub error: Option<rustls::Error>,
}

/// Delegates every decision to webpki and records the chain and its verdict.
#[derive(Debug)]
struct Recording {
    inner: Arc<WebPkiServerVerifier>,
    facts: Arc<Mutex<CertFacts>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let r = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        let mut f = self.facts.lock().unwrap_or_else(|e| e.into_inner());
        f.leaf = Some(end_entity.to_vec());
        f.intermediates = intermediates.len();
        f.error = r.as_ref().err().cloned();
        r
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Public web roots (what browsers trust), plus the CAs in `extra_ca` (PEM) if given.
pub fn roots(extra_ca: Option<&Path>) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(path)
            .with_context(|| format!("reading --ca {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("parsing --ca {}", path.display()))?;
        anyhow::ensure!(!certs.is_empty(), "--ca {}: no certificate", path.display());
        for c in certs {
            roots
                .add(c)
                .with_context(|| format!("--ca {}: not a usable CA", path.display()))?;
        }
    }
    Ok(roots)
}

/// Runs the TLS handshake on `tcp` for `host`. Returns the connection when the
/// certificate verified, and in every case what the certificate said.
pub fn handshake(
    tcp: &mut TcpStream,
    host: &str,
    roots: &RootCertStore,
) -> (Result<ClientConnection, String>, CertFacts) {
    let facts = Arc::new(Mutex::new(CertFacts::default()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let result = (|| {
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots.clone()), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Recording {
                inner,
                facts: facts.clone(),
            }))
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| format!("{host:?} is not a valid TLS server name"))?;
        let mut conn = ClientConnection::new(Arc::new(cfg), name).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(tcp).map_err(|e| e.to_string())?;
        }
        Ok(conn)
    })();
    let facts = facts.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (result, facts)
}

/// Names and expiry read from a certificate.
pub struct LeafInfo {
    pub names: Vec<String>,
    /// Whole days until notAfter; negative once expired.
    pub days_left: i64,
}

pub fn leaf_info(der: &[u8], now_unix: i64) -> Option<LeafInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => names.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names
                        .push(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?).to_string()),
                    16 => names.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?).to_string(),
                    ),
                    _ => {}
                },
                _ => {}
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_owned());
            }
        }
    }
    let not_after = cert.validity().not_after.timestamp();
    Some(LeafInfo {
        names,
        days_left: (not_after - now_unix).div_euclid(86400),
    })
}

/// A verification error in words and its problem name.
pub fn explain(e: &rustls::Error, host: &str, info: Option<&LeafInfo>) -> (&'static str, String) {
    let names = info.map_or_else(String::new, |i| i.names.join(", "));
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => (
                "tls_wrong_name",
                format!("the certificate is for {names}, not for {host}: browsers refuse it (error 701)"),
            ),
            CertificateError::UnknownIssuer => (
                "tls_untrusted_chain",
                "the certificate chain does not lead to a trusted root: an intermediate certificate is missing from the chain file, or it is self-signed".to_owned(),
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                ("tls_expired", "the certificate has expired".to_owned())
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => (
                "tls_not_yet_valid",
                "the certificate is not valid yet (server or this machine's clock is wrong?)".to_owned(),
            ),
            other => ("tls_bad_certificate", format!("certificate rejected: {other:?}")),
        },
        other => ("tls_handshake_failed", format!("TLS handshake failed: {other}")),
    }
}
