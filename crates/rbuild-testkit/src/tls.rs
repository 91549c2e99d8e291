//! Certificates made in the test: a CA, a server certificate for loopback signed by it, and a
//! self-signed token-signing certificate. Files are written as PEM next to each other.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::TestkitError;

/// A CA, a server certificate for `127.0.0.1`, `::1` and `localhost`, and a client
/// certificate, as PEM files.
#[derive(Debug, Clone)]
pub struct TestTls {
    /// The CA certificate clients must trust.
    pub ca_cert: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server's private key.
    pub server_key: PathBuf,
    /// A client certificate signed by the same CA (for registries that require one).
    pub client_cert: PathBuf,
    /// The client certificate's private key.
    pub client_key: PathBuf,
}

impl TestTls {
    /// Generates fresh material into `dir`.
    pub fn generate(dir: &Path) -> Result<TestTls, TestkitError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "rbuild testkit CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key)?;

        let server_key = KeyPair::generate()?;
        let mut params = loopback_params("rbuild testkit registry")?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca, &ca_key)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "rbuild testkit client");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &ca, &ca_key)?;

        let tls = TestTls {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
        };
        write(&tls.client_cert, &client.pem())?;
        write(&tls.client_key, &client_key.serialize_pem())?;
        write(&tls.ca_cert, &ca.pem())?;
        write(&tls.server_cert, &server.pem())?;
        write(&tls.server_key, &server_key.serialize_pem())?;
        Ok(tls)
    }

    /// A self-signed server certificate for loopback, as `openssl req -x509` makes one (it
    /// says CA:TRUE and signs itself): `ca_cert` and `server_cert` are the same file. The
    /// client files are those of a separate CA (unused by such a registry).
    pub fn generate_self_signed_leaf(dir: &Path) -> Result<TestTls, TestkitError> {
        let mut tls = TestTls::generate(dir)?;
        let key = KeyPair::generate()?;
        let mut params = loopback_params("rbuild testkit self-signed registry")?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key)?;
        tls.server_cert = dir.join("self-signed.crt");
        tls.server_key = dir.join("self-signed.key");
        tls.ca_cert = tls.server_cert.clone();
        write(&tls.server_cert, &cert.pem())?;
        write(&tls.server_key, &key.serialize_pem())?;
        Ok(tls)
    }
}

/// A self-signed ECDSA P-256 certificate and key that sign registry tokens (ES256).
pub(crate) struct SigningCert {
    /// The certificate in DER (goes into the JWT `x5c` header).
    pub cert_der: Vec<u8>,
    /// The PKCS#8 private key (for `ring`).
    pub key_pkcs8: Vec<u8>,
    /// The PEM file given to the registry as `rootcertbundle`.
    pub bundle: PathBuf,
}

impl SigningCert {
    pub fn generate(dir: &Path) -> Result<SigningCert, TestkitError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "rbuild testkit token signer");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ];
        let cert = params.self_signed(&key)?;
        let bundle = dir.join("token-signer.crt");
        write(&bundle, &cert.pem())?;
        Ok(SigningCert {
            cert_der: cert.der().to_vec(),
            key_pkcs8: key.serialize_der(),
            bundle,
        })
    }
}

/// Certificate parameters for `localhost`, `127.0.0.1` and `::1`, named `common_name`.
fn loopback_params(common_name: &str) -> Result<CertificateParams, TestkitError> {
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params.subject_alt_names.extend([
        SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    Ok(params)
}

fn write(path: &Path, text: &str) -> Result<(), TestkitError> {
    std::fs::write(path, text).map_err(|e| TestkitError::io(format!("write {}", path.display()), e))
}
