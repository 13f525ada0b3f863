//! TLS termination with rustls: certificates and keys read from PEM files
//! (checked when the configuration is compiled), one certificate chosen by
//! SNI among several, TLS 1.2/1.3 with AEAD suites only, optional client
//! certificates, ALPN `h2`/`http/1.1`. Each listener's acceptor is swapped
//! whole on reload: new connections get the new certificates, open ones
//! keep theirs.

mod conn;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::config::{TlsSettings, TlsVersion};
pub use conn::TlsConn;

/// What is wrong with a certificate pair, and in which of the two files.
#[derive(Debug)]
pub enum CertError {
    Cert(String),
    Key(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM chain and its key, checks that they belong together, and
/// answers the signing key with the leaf's notAfter (Unix seconds).
pub fn load_certificate(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, i64), CertError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| CertError::Cert(format!("cannot read {}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            CertError::Cert(format!(
                "{}: not a PEM certificate chain: {e}",
                cert.display()
            ))
        })?;
    let Some(leaf) = chain.first() else {
        return Err(CertError::Cert(format!(
            "{}: no certificate in the file",
            cert.display()
        )));
    };
    let not_after = match x509_parser::parse_x509_certificate(leaf) {
        Ok((_, parsed)) => parsed.validity().not_after.timestamp(),
        Err(e) => {
            return Err(CertError::Cert(format!(
                "{}: the first certificate does not parse: {e}",
                cert.display()
            )))
        }
    };
    let der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        CertError::Key(format!(
            "{}: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            key.display()
        ))
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| CertError::Key(format!("{}: unsupported private key: {e}", key.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| {
        CertError::Key(format!(
            "{} does not match the certificate {}",
            key.display(),
            cert.display()
        ))
    })?;
    Ok((Arc::new(certified), not_after))
}

/// The CA certificates of a PEM bundle, for client certificates.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("{}: not a PEM bundle: {e}", path.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in the file", path.display()));
    }
    Ok(roots)
}

/// The CAs of a PEM bundle, as Pingora's upstream connector takes them;
/// each must parse, so that the connector never meets one that does not.
pub fn load_upstream_ca(path: &Path) -> Result<Arc<pingora::protocols::tls::CaType>, String> {
    let mut certs = Vec::new();
    for c in CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
    {
        let der = c.map_err(|e| format!("{}: not a PEM bundle: {e}", path.display()))?;
        x509_parser::parse_x509_certificate(&der)
            .map_err(|e| format!("{}: a certificate does not parse: {e}", path.display()))?;
        certs.push(pingora::utils::tls::WrappedX509::new(
            der.to_vec(),
            pingora::utils::tls::parse_x509,
        ));
    }
    if certs.is_empty() {
        return Err(format!("{}: no CA certificate in the file", path.display()));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}

/// `2026-12-14` for a Unix time.
pub fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| unix.to_string())
}

/// Picks the certificate for a ClientHello's server name: an exact host,
/// then a `*.` wildcard for its first label, then the default.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    fn new(settings: &TlsSettings) -> Option<SniResolver> {
        let default = settings.certificates.first()?.key.clone();
        let (mut exact, mut wildcard) = (HashMap::new(), HashMap::new());
        for c in &settings.certificates {
            for h in &c.hosts {
                match h.strip_prefix("*.") {
                    Some(parent) => wildcard.insert(parent.to_string(), c.key.clone()),
                    None => exact.insert(h.clone(), c.key.clone()),
                };
            }
        }
        Some(SniResolver {
            default,
            exact,
            wildcard,
        })
    }

    fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(k) = self.exact.get(&name) {
            return k.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// The rustls configuration of one listener.
pub fn server_config(settings: &TlsSettings, http2: bool) -> Result<rustls::ServerConfig, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = match settings.min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?;
    let builder = match &settings.client_auth {
        None => builder.with_no_client_auth(),
        Some(auth) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(auth.roots.clone(), provider());
            let verifier = if auth.required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
        }
    };
    let resolver = SniResolver::new(settings).ok_or("no certificate")?;
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

/// A listener's acceptor, replaced whole on reload.
pub struct TlsAcceptor {
    pub name: String,
    /// The listener's port: what a reloaded configuration is matched by.
    pub port: u16,
    config: ArcSwap<rustls::ServerConfig>,
}

impl TlsAcceptor {
    pub fn new(
        name: String,
        port: u16,
        settings: &TlsSettings,
        http2: bool,
    ) -> Result<TlsAcceptor, String> {
        Ok(TlsAcceptor {
            name,
            port,
            config: ArcSwap::from_pointee(server_config(settings, http2)?),
        })
    }

    /// New certificates (and versions, client CAs) for new connections.
    pub fn install(&self, config: rustls::ServerConfig) {
        self.config.store(Arc::new(config));
    }

    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        self.config.load_full()
    }
}

/// Why a handshake failed, as the `reason` label of
/// `tollgate_tls_handshake_failures_total`.
pub fn failure_reason(e: &std::io::Error) -> &'static str {
    use rustls::{AlertDescription, Error as E, PeerIncompatible, PeerMisbehaved};
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
        return match e.kind() {
            std::io::ErrorKind::UnexpectedEof => "eof",
            std::io::ErrorKind::TimedOut => "timeout",
            _ => "io",
        };
    };
    match tls {
        E::PeerIncompatible(PeerIncompatible::Tls12NotOfferedOrEnabled)
        | E::PeerIncompatible(PeerIncompatible::SupportedVersionsExtensionRequired) => {
            "protocol_version"
        }
        E::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon) => "no_shared_cipher",
        E::PeerIncompatible(_) => "incompatible",
        E::NoCertificatesPresented => "no_client_certificate",
        E::InvalidCertificate(_) => "bad_client_certificate",
        E::AlertReceived(AlertDescription::UnknownCA | AlertDescription::BadCertificate) => {
            "client_rejected_certificate"
        }
        E::AlertReceived(_) => "alert",
        E::PeerMisbehaved(PeerMisbehaved::ServerNameMustContainOneHostName) => "bad_sni",
        E::InvalidMessage(_) | E::PeerMisbehaved(_) => "malformed",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_picks_exact_then_wildcard_then_default() {
        let key = |_: &str| -> Arc<CertifiedKey> {
            let signing = provider()
                .key_provider
                .load_private_key(PrivateKeyDer::Pkcs8(rcgen_key_der().into()))
                .expect("key");
            Arc::new(CertifiedKey::new(vec![], signing))
        };
        let (d, a, w) = (key("d"), key("a"), key("w"));
        let r = SniResolver {
            default: d.clone(),
            exact: HashMap::from([("api.example.com".to_string(), a.clone())]),
            wildcard: HashMap::from([("example.org".to_string(), w.clone())]),
        };
        assert!(Arc::ptr_eq(&r.pick(Some("API.example.com.")), &a));
        assert!(Arc::ptr_eq(&r.pick(Some("x.example.org")), &w));
        assert!(Arc::ptr_eq(&r.pick(Some("a.b.example.org")), &d));
        assert!(Arc::ptr_eq(&r.pick(Some("example.org")), &d));
        assert!(Arc::ptr_eq(&r.pick(None), &d));
    }

    /// A P-256 PKCS#8 key made with the crate the gateway signs tokens with.
    fn rcgen_key_der() -> Vec<u8> {
        use p256::pkcs8::EncodePrivateKey;
        p256::SecretKey::random(&mut rand::thread_rng())
            .to_pkcs8_der()
            .expect("pkcs8")
            .as_bytes()
            .to_vec()
    }
}
