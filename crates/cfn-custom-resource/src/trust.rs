//! The root certificates every HTTPS client in these Lambdas trusts (the response PUT and the AWS
//! SDK): Mozilla's roots compiled into the binary (`webpki-root-certs`), or, when `SSL_CERT_FILE`
//! names a PEM bundle, that bundle instead (local tests add their own CA that way).
//!
//! Nothing here runs before it is needed: the roots are parsed on the first TLS client built,
//! which is on the first response or the first AWS call, never on the way to the first
//! `GET /invocation/next`. Reading and parsing the system bundle (about 140 roots) used to be half
//! of the cold start.
//!
//! `SSL_CERT_FILE` is the convention OpenSSL-based tools share, not one of this project's
//! [`settings`](crate::settings): it is read on first use, not at init, and a bundle that cannot
//! be read or holds no certificate falls back to the compiled-in roots with a warning (a TLS
//! handshake then fails naming the certificate it could not verify).

use std::sync::{Arc, LazyLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The trusted roots as DER certificates: the `SSL_CERT_FILE` bundle when it is set and holds at
/// least one certificate, the compiled-in roots otherwise.
static ROOTS: LazyLock<Vec<CertificateDer<'static>>> = LazyLock::new(load);

fn load() -> Vec<CertificateDer<'static>> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        match std::fs::read(&path) {
            Ok(pem) => {
                let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
                    .filter_map(Result::ok)
                    .collect();
                if !certs.is_empty() {
                    return certs;
                }
                tracing::warn!(
                    path = %path.to_string_lossy(),
                    "SSL_CERT_FILE holds no PEM certificate; trusting the compiled-in roots instead"
                );
            }
            Err(error) => tracing::warn!(
                path = %path.to_string_lossy(),
                %error,
                "SSL_CERT_FILE cannot be read; trusting the compiled-in roots instead"
            ),
        }
    }
    webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec()
}

/// A root store with the trusted roots (certificates rustls cannot parse are skipped).
pub(crate) fn root_store() -> Arc<RootCertStore> {
    static STORE: LazyLock<Arc<RootCertStore>> = LazyLock::new(|| {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(ROOTS.iter().cloned());
        Arc::new(store)
    });
    STORE.clone()
}

/// A rustls client configuration (ring, safe defaults) trusting [`root_store`].
pub(crate) fn client_config() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(root_store())
        .with_no_client_auth()
}

/// The trusted roots as one PEM bundle (the AWS SDK's trust store takes PEM).
#[cfg(feature = "aws")]
pub(crate) fn roots_pem() -> Vec<u8> {
    let mut pem = Vec::with_capacity(ROOTS.iter().map(|c| c.len() * 4 / 3 + 80).sum());
    for cert in ROOTS.iter() {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in base64(cert).as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

#[cfg(feature = "aws")]
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiled_roots_parse() {
        let mut store = RootCertStore::empty();
        let (valid, _) =
            store.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
        assert!(valid > 100, "only {valid} compiled-in roots parse");
    }

    #[cfg(feature = "aws")]
    #[test]
    fn pem_round_trips() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        let pem = roots_pem();
        let back: Vec<_> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .expect("PEM");
        assert_eq!(back, *ROOTS);
    }
}
