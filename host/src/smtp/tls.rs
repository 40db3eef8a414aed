//! STARTTLS policy of the outbound channel (RFC 3207): the mode the operator chose, the
//! rustls configuration it stands for, and the handshake. Does no SMTP: `client` sends
//! STARTTLS and EHLO; `layer` swaps the stream under lettre.
//!
//! Opportunistic mode encrypts without authenticating (RFC 7435 section 3: unauthenticated
//! encryption beats clear text, and an MX host name is not authenticated by DNS anyway
//! without DANE, RFC 7672), as Postfix's `smtp_tls_security_level = may`. Required mode
//! verifies the certificate against the system's trust roots plus `tls_ca_file`, as
//! Postfix's `secure` level.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// `[smtp.outbound] starttls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartTls {
    /// STARTTLS when the server offers it, any certificate; clear text otherwise.
    #[default]
    Opportunistic,
    /// A server that cannot give a verified TLS session is passed over.
    Required,
    /// Never STARTTLS.
    Off,
}

impl StartTls {
    pub const CHOICES: &'static str = "use \"opportunistic\", \"required\" or \"off\"";

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "opportunistic" => Some(Self::Opportunistic),
            "required" => Some(Self::Required),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opportunistic => "opportunistic",
            Self::Required => "required",
            Self::Off => "off",
        }
    }
}

/// The mode and the rustls configuration it uses, built once (the system's roots are read
/// from disk) and shared by every channel.
#[derive(Clone)]
pub struct TlsPolicy {
    mode: StartTls,
    ca_file: Option<PathBuf>,
    config: Option<Arc<ClientConfig>>,
}

impl TlsPolicy {
    /// `ca_file` (PEM) adds trust roots in required mode; the other modes ignore it.
    pub fn new(mode: StartTls, ca_file: Option<&Path>) -> Result<Self, String> {
        let config = match mode {
            StartTls::Off => None,
            StartTls::Opportunistic => Some(client_config(|b| {
                Ok(b.dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
                    .with_no_client_auth())
            })?),
            StartTls::Required => {
                let roots = trust_roots(ca_file)?;
                Some(client_config(|b| {
                    Ok(b.with_root_certificates(roots).with_no_client_auth())
                })?)
            }
        };
        Ok(Self {
            mode,
            ca_file: ca_file.map(Path::to_path_buf),
            config,
        })
    }

    pub fn mode(&self) -> StartTls {
        self.mode
    }

    /// The TLS handshake after the server's 220 to STARTTLS. `host` is the name the
    /// certificate must carry in required mode (the MX host or smart host name).
    pub async fn handshake<S>(&self, host: &str, stream: S) -> io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config = self
            .config
            .clone()
            .ok_or_else(|| io::Error::other("STARTTLS is off"))?;
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|_| io::Error::other(format!("{host:?} is not a host name")))?
            .to_owned();
        TlsConnector::from(config).connect(name, stream).await
    }
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsPolicy")
            .field("mode", &self.mode)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// Same mode and CA file: the configurations are then built alike.
impl PartialEq for TlsPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.mode == other.mode && self.ca_file == other.ca_file
    }
}

impl Eq for TlsPolicy {}

/// The certificates of a PEM file; an error says what is wrong with it.
pub fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in it", path.display()));
    }
    Ok(certs)
}

/// ring: no cmake or C toolchain beyond cc (aws-lc-rs needs cmake); named here rather than
/// taken from the process default so that nothing else in the process can change it.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

fn client_config(
    finish: impl FnOnce(
        rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>,
    ) -> Result<ClientConfig, String>,
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    finish(builder).map(Arc::new)
}

/// The system's trust roots (as OpenSSL finds them: SSL_CERT_FILE, SSL_CERT_DIR, the
/// distribution's bundle) plus those of `ca_file`. Unreadable system certificates are
/// skipped (logged); an unreadable `ca_file` is an error.
fn trust_roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "a system trust root was not loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(added, ignored, "system trust roots");
    }
    if let Some(path) = ca_file {
        for cert in load_ca_file(path)? {
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err("no trust root: neither the system's nor tls_ca_file has any".into());
    }
    Ok(roots)
}

/// Opportunistic mode: any certificate (RFC 7435 section 3); the handshake signatures
/// are still checked, so the session is really keyed with the peer that sent the
/// certificate.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_their_config_names_only() {
        for mode in [StartTls::Opportunistic, StartTls::Required, StartTls::Off] {
            assert_eq!(StartTls::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(StartTls::parse("may"), None);
        assert_eq!(StartTls::parse("Required"), None);
        assert_eq!(StartTls::default(), StartTls::Opportunistic);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), "not a certificate\n").unwrap();
        let e = load_ca_file(file.path()).unwrap_err();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let e = TlsPolicy::new(StartTls::Required, Some(Path::new("/nonexistent.pem")));
        assert!(e.unwrap_err().contains("/nonexistent.pem"));
    }

    #[test]
    fn off_has_no_configuration_and_the_others_build() {
        assert!(
            TlsPolicy::new(StartTls::Off, None)
                .unwrap()
                .config
                .is_none()
        );
        let p = TlsPolicy::new(StartTls::Opportunistic, None).unwrap();
        assert!(p.config.is_some());
    }
}
