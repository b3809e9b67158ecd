//! Which certificates the response PUT trusts: the roots compiled into the binary, or the bundle
//! `SSL_CERT_FILE` names, which then replaces them. The receiver speaks TLS with a certificate from
//! a test CA that no public root vouches for.

use std::time::Duration;

use local_invoke::tls::test_ca;
use local_invoke::{Harness, Profile};
use serde_json::json;

const TYPE: &str = "Custom::FaultInjection";

pub(crate) fn trials() -> Vec<libtest_mimic::Trial> {
    trials![
        trust;
        ssl_cert_file_bundle_with_the_test_ca_is_trusted,
        ssl_cert_file_with_only_the_test_ca_is_trusted,
        compiled_in_roots_refuse_the_test_ca,
    ]
}

async fn ssl_cert_file_bundle_with_the_test_ca_is_trusted() {
    trusted(test_ca().bundle.to_str().expect("utf-8 path")).await
}

async fn ssl_cert_file_with_only_the_test_ca_is_trusted() {
    trusted(test_ca().ca.to_str().expect("utf-8 path")).await
}

async fn trusted(ssl_cert_file: &str) {
    let h = Harness::start_tls(
        "fault-injection",
        Profile::Debug,
        &[("SSL_CERT_FILE", ssl_cert_file)],
    )
    .await;
    let event = h.events.create(TYPE, "Trusted", json!({"Label": "trust"}));
    let x = h.call(event).await;
    assert_eq!(x.status(), Some("SUCCESS"), "logs:\n{}", h.logs());
    assert_eq!(x.data("Label"), Some("trust"));
    assert!(x.puts.len() == 1, "one PUT over TLS: {:#?}", x.puts);
}

async fn compiled_in_roots_refuse_the_test_ca() {
    let h = Harness::start_tls("fault-injection", Profile::Debug, &[]).await;
    let event = h.events.create(TYPE, "Refused", json!({"Label": "trust"}));
    let x = h.call_with_timeout(event, Duration::from_secs(4)).await;
    // The handshake fails, so nothing reaches the receiver; the Lambda tells the runtime it could
    // not deliver, and says why in its log.
    assert!(x.puts.is_empty(), "no PUT can get through: {:#?}", x.puts);
    assert!(
        x.outcome.is_error(),
        "the failed delivery must reach the runtime: {:?}",
        x.outcome
    );
    let logs = h.logs();
    assert!(
        logs.contains("could not deliver the response"),
        "the log must say the response was not delivered:\n{logs}"
    );
    assert!(
        logs.to_lowercase().contains("certificate") || logs.contains("UnknownIssuer"),
        "the log must say the certificate was refused:\n{logs}"
    );
}
