//! Logs never carry a secret at any level: every Lambda at `AWS_LAMBDA_LOG_LEVEL=TRACE`, in text
//! and JSON, through Create, Update and Delete; its whole output is searched for every password
//! it handled and for the ResponseURL's signature.

use libtest_mimic::Trial;
use local_invoke::Harness;
use serde_json::json;

use crate::{admin_secret, service_database};

/// The signature part of every harness ResponseURL (`local_invoke::SIGNATURE` without its name).
const SIGNATURE_VALUE: &str = "f00dfacecafe5ec7e7deadbeef0123456789";

pub(crate) fn trials() -> Vec<Trial> {
    trials![
        leaks;
        admin_secret::trace_logs_hold_no_secret,
        service_database::trace_logs_hold_no_secret,
        fault_injection_trace_logs_hold_no_secret,
    ]
}

/// The Lambda logged something (so TRACE was on), and none of `secrets` nor the signature.
pub(crate) fn assert_clean(logs: &str, secrets: &[&str]) {
    assert!(
        local_invoke::SIGNATURE.ends_with(SIGNATURE_VALUE),
        "the harness signature changed"
    );
    assert!(logs.lines().count() > 5, "too little logged at TRACE:\n{logs}");
    assert!(
        !logs.contains(SIGNATURE_VALUE),
        "the ResponseURL signature is in the logs"
    );
    assert!(
        !logs.contains("X-Amz-Credential"),
        "the ResponseURL query is in the logs"
    );
    for (i, secret) in secrets.iter().enumerate() {
        assert!(secret.len() >= 8, "secret {i} is too short to search for");
        assert!(!logs.contains(secret), "secret {i} is in the logs");
        // Escaped in a body (`\"`, `\\`, `\u..`) the whole secret would not match; its longest
        // run of letters and digits still would.
        let run = secret
            .split(|c: char| !c.is_ascii_alphanumeric())
            .max_by_key(|run| run.len())
            .unwrap_or_default();
        if run.len() >= 6 {
            assert!(!logs.contains(run), "part of secret {i} is in the logs");
        }
    }
}

async fn fault_injection_trace_logs_hold_no_secret() {
    const TYPE: &str = "Custom::FaultInjection";
    const SECRET: &str = "fi-Q7xv2LmN8pRtK4";
    for json_logs in [false, true] {
        let mut env = vec![("AWS_LAMBDA_LOG_LEVEL", "TRACE")];
        if json_logs {
            env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON"));
        }
        let h = Harness::start("fault-injection", &env).await;
        let props = json!({"Label": "leaks", "Secret": SECRET});
        for exchange in [
            h.events.create(TYPE, "Leaks", props.clone()),
            h.events
                .update(TYPE, "Leaks", "fault-Leaks", props.clone(), props.clone()),
            h.events.delete(TYPE, "Leaks", "fault-Leaks", props.clone()),
        ] {
            let answer = h.call(exchange).await;
            assert_eq!(answer.status(), Some("SUCCESS"), "{}", h.logs());
        }
        assert_clean(&h.logs(), &[SECRET]);
    }
}
