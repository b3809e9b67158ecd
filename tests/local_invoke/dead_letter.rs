//! The dead-letter responder: an execution environment that dies on every attempt never answers;
//! after Lambda's retries its destination record reaches `dead-letter-responder`, which answers
//! FAILED once, and the rollback Delete CloudFormation then sends is answered by the real handler.

use std::time::Duration;

use cfn_custom_resource::marker_physical_id;
use libtest_mimic::Trial;
use local_invoke::{Harness, Profile, RuntimeOutcome, SIGNATURE, binary_path, last_aws_calls};
use serde_json::{Value, json};

const TYPE: &str = "Custom::AdminSecret";

pub(crate) fn trials() -> Vec<Trial> {
    trials![
        dead_letter;
        crashed_create_is_answered_once_then_its_rollback_delete_succeeds,
    ]
}

/// The record Lambda sends to the on-failure destination once it gave up on `event`
/// (tests/events/dead-letter-responder-record.json has the same shape).
fn destination_record(event: &Value, attempts: u64) -> Value {
    json!({
        "version": "1.0",
        "timestamp": "2026-12-06T21:14:03.712Z",
        "requestContext": {
            "requestId": "8e5f3a3c-1b2d-4c6e-9f0a-0d1e2f3a4b5c",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:admin-secret:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": "RequestId: 8e5f3a3c-1b2d-4c6e-9f0a-0d1e2f3a4b5c Error: Runtime exited with error: signal: aborted",
            "errorType": "Runtime.ExitError",
        },
    })
}

async fn crashed_create_is_answered_once_then_its_rollback_delete_succeeds() {
    // An admin-secret-shaped Create to a function whose environment runs out of memory on every
    // invocation (fault-injection with FAULT_INJECTION_CRASH: any properties, then the abort).
    let crash = [("FAULT_INJECTION_CRASH", "out-of-memory")];
    let mut crashing = Harness::start("fault-injection", &crash).await;
    let properties = json!({
        "ParameterName": format!("/dead-letter/{}/admin-password", local_invoke::postgres::random_hex(6)),
        "KeyId": "alias/platform-rds",
    });
    let create = crashing.events.create(TYPE, "AdminSecret", properties.clone());
    every_attempt_dies(&mut crashing, &crash, &create).await;
    let responder = responder_answers_the_record_once(&crashing, &create).await;
    let marker = the_one_response_is_failed(&crashing, &create, &responder);
    rollback_delete_succeeds(&crashing, &marker, properties).await;
}

/// Lambda's first attempt and its two retries, each in a new execution environment: each dies
/// of a failed allocation, and none answers.
async fn every_attempt_dies(crashing: &mut Harness, crash: &[(&str, &str)], create: &Value) {
    let mut crash_logs = String::new();
    for attempt in 1..=3 {
        if attempt > 1 {
            crash_logs.push_str(&crashing.restart(crash).await);
        }
        let answered = crashing.call_unless_killed(create.clone()).await;
        assert!(
            answered.is_none(),
            "attempt {attempt} reported instead of dying: {answered:?}"
        );
    }
    crash_logs.push_str(&crashing.logs());
    assert_eq!(
        crash_logs.matches("memory allocation of").count(),
        3,
        "each attempt dies of a failed allocation:\n{crash_logs}"
    );
    assert!(
        crashing.all_puts_for(create).is_empty(),
        "no environment answered"
    );
}

/// The responder gets the destination record; a record that is no CloudFormation request
/// first, which it must ignore. One PUT in all, for the record. Returns the responder.
async fn responder_answers_the_record_once(crashing: &Harness, create: &Value) -> Harness {
    let receiver = crashing.receiver.clone();
    let responder = Harness::around(
        &binary_path("dead-letter-responder", Profile::Debug),
        receiver.clone(),
        &[],
    )
    .await;
    let mut not_cloudformation = destination_record(create, 3);
    not_cloudformation["requestPayload"] = json!({"source": "aws.events", "detail": {}});
    let ignored = responder
        .runtime_api
        .invoke(not_cloudformation, Duration::from_secs(30))
        .await;
    let outcome = ignored
        .outcome(Duration::from_secs(40))
        .await
        .expect("an outcome");
    assert!(
        matches!(&outcome, RuntimeOutcome::Response(body) if body.contains("\"answered\":false")),
        "{outcome:?}"
    );
    let puts_before = receiver.all_puts().len();

    let invocation = responder
        .runtime_api
        .invoke(destination_record(create, 3), Duration::from_secs(30))
        .await;
    let outcome = invocation
        .outcome(Duration::from_secs(40))
        .await
        .expect("an outcome");
    assert!(
        matches!(&outcome, RuntimeOutcome::Response(body) if body.contains("\"answered\":true")),
        "{outcome:?}\n{}",
        responder.logs()
    );
    tokio::time::sleep(local_invoke::SETTLE).await;
    assert_eq!(
        receiver.all_puts().len(),
        puts_before + 1,
        "one PUT for the record, none for the ignored one"
    );
    responder
}

/// The crashed Create's one response: FAILED, for its request, with the marker physical id and a
/// Reason naming the crash, the attempts and the function; no ResponseURL signature in it or in
/// the responder's logs. Returns the marker id.
fn the_one_response_is_failed(crashing: &Harness, create: &Value, responder: &Harness) -> String {
    let puts = crashing.all_puts_for(create);
    assert_eq!(puts.len(), 1, "exactly one PUT for the crashed Create: {puts:#?}");
    let put = &puts[0];
    assert!((200..300).contains(&put.answered));
    assert!(put.body.len() <= 4096);
    assert!(put.header("content-type").is_none_or(str::is_empty));
    let body = &put.json;
    assert_eq!(body["Status"], "FAILED", "{body}");
    for key in ["StackId", "RequestId", "LogicalResourceId"] {
        assert_eq!(body[key], create[key], "{key}");
    }
    let marker = marker_physical_id("AdminSecret", create["RequestId"].as_str().unwrap());
    assert_eq!(body["PhysicalResourceId"], marker, "{body}");
    let reason = body["Reason"].as_str().expect("a Reason");
    assert!(
        reason.contains("execution environment crashed") && reason.contains("3 attempts"),
        "{reason}"
    );
    assert!(reason.contains("admin-secret"), "names the function: {reason}");
    let logs = responder.logs();
    for text in [reason, logs.as_str()] {
        assert!(
            !text.contains(SIGNATURE),
            "the ResponseURL's signature leaked: {text}"
        );
    }
    assert!(logs.contains("ignored"), "the ignored record is logged:\n{logs}");
    marker
}

/// CloudFormation's rollback: a Delete of the marker id, to the real admin-secret binary. It is
/// answered SUCCESS without an AWS call (its endpoint is unreachable: any call would fail).
async fn rollback_delete_succeeds(crashing: &Harness, marker: &str, properties: Value) {
    let admin = Harness::around(
        &binary_path("admin-secret", Profile::Debug),
        crashing.receiver.clone(),
        &[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_MAX_ATTEMPTS", "1"),
        ],
    )
    .await;
    let delete = crashing.events.delete(TYPE, "AdminSecret", marker, properties);
    let exchange = admin.call(delete).await;
    assert_eq!(
        exchange.status(),
        Some("SUCCESS"),
        "{exchange:#?}\n{}",
        admin.logs()
    );
    assert_eq!(exchange.physical_id(), Some(marker));
    assert_eq!(last_aws_calls(&admin.logs()), 0, "{}", admin.logs());
}
