//! A test CA and a server certificate for the TLS receiver ([`crate::Receiver::start_tls`]).
//!
//! The certificate names `DNS:localhost` and `IP:127.0.0.1`. [`TestCa::bundle`] is a copy of the
//! system's CA bundle with the test CA appended: given to a Lambda as `SSL_CERT_FILE`, the Lambda
//! parses as many roots as it would trusting the system bundle, and also trusts the receiver.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The system bundle copied into [`TestCa::bundle`].
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate (PEM file).
    pub ca: PathBuf,
    /// The system bundle plus the CA (PEM file).
    pub bundle: PathBuf,
    pub server_cert_pem: Vec<u8>,
    pub server_key_pem: Vec<u8>,
}

/// The test CA, made once per process with `openssl`.
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| make(&crate::services::scratch_dir().join("receiver-tls")))
}

/// Runs `openssl ARGS` in `dir`; panics with its stderr when it fails.
pub(crate) fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (make deps installs it)");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args[0],
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A self-signed CA in `dir` (`NAME.crt`, `NAME.key`): returns (certificate path, key path).
pub(crate) fn make_ca(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &format!("/CN={subject}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    (dir.join(crt), dir.join(key))
}

/// A server certificate for `subject_alt_name` (e.g. `DNS:localhost`) signed by the CA `ca.crt`
/// in `dir`: writes `server.crt` and `server.key` there.
pub(crate) fn make_server_cert(dir: &Path, subject_alt_name: &str) {
    std::fs::write(
        dir.join("server.ext"),
        format!(
            "subjectAltName={subject_alt_name}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .expect("server.ext");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}

fn make(dir: &Path) -> TestCa {
    std::fs::create_dir_all(dir).expect("tls scratch dir");
    make_ca(dir, "ca", "local-invoke receiver CA");
    make_server_cert(dir, "DNS:localhost,IP:127.0.0.1");
    let ca_pem = std::fs::read_to_string(dir.join("ca.crt")).expect("ca.crt");
    let mut bundle = std::fs::read_to_string(SYSTEM_BUNDLE)
        .unwrap_or_else(|e| panic!("{SYSTEM_BUNDLE}: {e} (the ca-certificates package provides it)"));
    if !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str(&ca_pem);
    std::fs::write(dir.join("bundle.pem"), bundle).expect("bundle.pem");
    TestCa {
        ca: dir.join("ca.crt"),
        bundle: dir.join("bundle.pem"),
        server_cert_pem: std::fs::read(dir.join("server.crt")).expect("server.crt"),
        server_key_pem: std::fs::read(dir.join("server.key")).expect("server.key"),
    }
}

/// A rustls server configuration (ring) presenting the test server certificate.
pub(crate) fn server_config(ca: &TestCa) -> std::sync::Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let certs = CertificateDer::pem_slice_iter(&ca.server_cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("server.crt");
    let key = PrivateKeyDer::from_pem_slice(&ca.server_key_pem).expect("server.key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate and key");
    std::sync::Arc::new(config)
}
