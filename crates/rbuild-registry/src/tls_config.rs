//! TLS for registries given `--registry-certificate HOST=FILE`: the file's certificates are
//! trusted as CAs for HOST, and a certificate the server presents that is byte for byte one of
//! them is trusted as it is (a self-signed leaf, as `openssl req -x509` makes: webpki refuses
//! such a certificate as a CA used as an end entity; skopeo, Docker and Kaniko accept it). The
//! name the client asked for must still be one of the certificate's names. Also the check of
//! every certificate file before anything is built.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::options::{Endpoint, RegistryOptions};
use crate::RegistryError;

/// The certificates of a PEM file; an error naming the file when it has none or cannot be read.
fn read_certificates(
    what: &str,
    host: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, RegistryError> {
    let bad = |reason: String| {
        RegistryError::Config(format!("{what} {} for {host}: {reason}", path.display()))
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

fn read_key(host: &str, path: &Path) -> Result<PrivateKeyDer<'static>, RegistryError> {
    let pem = std::fs::read(path).map_err(|e| {
        RegistryError::Config(format!("client key {} for {host}: {e}", path.display()))
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        RegistryError::Config(format!(
            "client key {} for {host}: no PEM private key ({e})",
            path.display()
        ))
    })
}

impl RegistryOptions {
    /// Reads and parses every certificate and key file the options name, so that a missing or
    /// broken file is reported before a build starts rather than at push time.
    pub fn check_certificate_files(&self) -> Result<(), RegistryError> {
        for (host, path) in &self.ca_certificates {
            read_certificates("CA certificate", host, path)?;
        }
        for (host, cert, key) in &self.client_certificates {
            read_certificates("client certificate", host, cert)?;
            read_key(host, key)?;
        }
        Ok(())
    }
}

/// The TLS configuration for `endpoint` when `--registry-certificate` names files for it (and
/// verification is on); `None` leaves reqwest's own (the system's roots).
pub(crate) fn client_config(
    options: &RegistryOptions,
    endpoint: &Endpoint,
) -> Result<Option<rustls::ClientConfig>, RegistryError> {
    if endpoint.skip_tls_verify {
        return Ok(None);
    }
    let mut pinned = Vec::new();
    for (host, path) in &options.ca_certificates {
        if host == &endpoint.host {
            pinned.extend(read_certificates("CA certificate", host, path)?);
        }
    }
    if pinned.is_empty() {
        return Ok(None);
    }
    let config_error =
        |e: String| RegistryError::Config(format!("TLS setup for {}: {e}", endpoint.host));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots.add_parsable_certificates(pinned.iter().cloned());
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| config_error(e.to_string()))?;
    let verifier = PinnedOrWebPki {
        pinned,
        inner,
        provider: provider.clone(),
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let client = options
        .client_certificates
        .iter()
        .find(|(host, _, _)| host == &endpoint.host);
    let config = match client {
        Some((host, cert, key)) => builder
            .with_client_auth_cert(
                read_certificates("client certificate", host, cert)?,
                read_key(host, key)?,
            )
            .map_err(|e| config_error(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Some(config))
}

/// Trusts a presented certificate equal to a pinned one (for its names), else asks webpki.
#[derive(Debug)]
struct PinnedOrWebPki {
    pinned: Vec<CertificateDer<'static>>,
    inner: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .pinned
            .iter()
            .any(|p| p.as_ref() == end_entity.as_ref())
        {
            let cert = webpki::EndEntityCert::try_from(end_entity)
                .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
            cert.verify_is_valid_for_subject_name(server_name)
                .map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
                })?;
            return Ok(ServerCertVerified::assertion());
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
