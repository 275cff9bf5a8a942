//! rustls configuration for FTPS.
//!
//! Certificates are checked against the system roots, plus `--ca-file`
//! (a PEM bundle of private CAs); `--insecure` turns checking off. Every
//! control connection gets its own clone of the configuration with its own
//! session cache: data connections resume *their* control connection's
//! session (vsftpd `require_ssl_reuse=YES` refuses them otherwise), and a
//! cache shared across parallel connections hands out the wrong tickets
//! (measured: two thirds of 32 parallel connections failed with 522).

use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{ErrorKind, OpError};

/// TLS settings from the command line.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// Extra trusted CA certificates (PEM).
    pub ca_file: Option<std::path::PathBuf>,
    /// Skip certificate verification entirely.
    pub insecure: bool,
}

fn provider() -> CryptoProvider {
    let mut provider = ring::default_provider();
    // vsftpd offers only P-256: asking for it first saves a TLS 1.3 round trip.
    provider.kx_groups.sort_by_key(|group| group.name() != rustls::NamedGroup::secp256r1);
    provider
}

/// The base configuration, built once per backend.
pub fn base_config(options: &TlsOptions) -> Result<ClientConfig, OpError> {
    let tls_err = |message: String| OpError::new(ErrorKind::Connect, "tls", "", message);
    let provider = Arc::new(provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(e.to_string()))?;
    let config = if options.insecure {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(NoVerification(provider))).with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(path) = &options.ca_file {
            for cert in load_pem(path)? {
                roots.add(cert).map_err(|e| tls_err(format!("--ca-file {}: {e}", path.display())))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// A copy of `base` with a session cache of its own, for one control
/// connection and the data connections it opens.
pub fn per_connection(base: &ClientConfig) -> Arc<ClientConfig> {
    let mut config = base.clone();
    config.resumption = Resumption::in_memory_sessions(8);
    Arc::new(config)
}

fn load_pem(path: &Path) -> Result<Vec<CertificateDer<'static>>, OpError> {
    let err = |message: String| OpError::new(ErrorKind::Connect, "read", path.display(), message);
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// `--insecure`: accepts any certificate (signatures are still checked, so
/// the handshake itself stays sound).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Implicit TLS through a SOCKS5 proxy. suppaftp opens the control
/// connection of an implicit-TLS session itself (`connect_secure_implicit`
/// takes an address, not a stream) and then hands that socket to the TLS
/// connector. This connector takes the first socket it is handed for a
/// placeholder and secures the proxied one instead; every later call (the
/// data connections, which barge opens through the proxy itself) is
/// secured as given. The placeholder is a loopback listener nobody reads.
#[derive(Debug)]
pub struct ImplicitThroughProxy {
    inner: suppaftp::tokio::AsyncRustlsConnector,
    proxied: std::sync::Mutex<Option<tokio::net::TcpStream>>,
}

impl ImplicitThroughProxy {
    pub fn new(inner: suppaftp::tokio::AsyncRustlsConnector, proxied: tokio::net::TcpStream) -> Self {
        ImplicitThroughProxy { inner, proxied: std::sync::Mutex::new(Some(proxied)) }
    }
}

#[async_trait::async_trait]
impl suppaftp::tokio::AsyncTlsConnector for ImplicitThroughProxy {
    type Stream = suppaftp::tokio::AsyncRustlsStream;

    async fn connect(&self, domain: &str, stream: tokio::net::TcpStream) -> suppaftp::FtpResult<Self::Stream> {
        let proxied = self.proxied.lock().unwrap_or_else(|p| p.into_inner()).take();
        match proxied {
            Some(proxied) => {
                drop(stream);
                self.inner.connect(domain, proxied).await
            }
            None => self.inner.connect(domain, stream).await,
        }
    }
}
