//! The response guarantee, proven against the real fault-injection binary: every invocation ends
//! in exactly one well-formed response, on success, error, panic, hang, malformed input and a
//! misbehaving ResponseURL.

use std::time::{Duration, Instant};

use libtest_mimic::Trial;
use local_invoke::{Behaviour, Deadline, Exchange, Harness, Profile, RuntimeOutcome};
use serde_json::{Value, json};

const TYPE: &str = "Custom::FaultInjection";
const SIGNATURE_VALUE: &str = "f00dfacecafe5ec7e7deadbeef0123456789";
const SECRET_VALUE: &str = "s3cr3t-VALUE-that-must-not-leak";

/// A fault-injection Lambda whose watchdog keeps 1.5 s back before the deadline.
async fn fault() -> Harness {
    Harness::start("fault-injection", &[("CFN_RESPONSE_MARGIN_MS", "1500")]).await
}

/// Checks what every response must satisfy, whatever its status, and returns its JSON.
fn well_formed<'a>(exchange: &'a Exchange, event: &Value) -> &'a Value {
    let response = exchange.response();
    let put = exchange
        .puts
        .iter()
        .find(|p| (200..300).contains(&p.answered))
        .unwrap();
    assert_eq!(put.method, "PUT");
    assert!(put.body.len() <= 4096, "body is {} bytes", put.body.len());
    assert_eq!(
        put.header("content-length"),
        Some(put.body.len().to_string().as_str())
    );
    assert!(
        put.header("content-type").is_none_or(str::is_empty),
        "Content-Type must be absent or empty: {:?}",
        put.header("content-type")
    );
    for key in ["StackId", "RequestId", "LogicalResourceId"] {
        assert_eq!(response[key], event[key], "{key} must be copied from the request");
    }
    let physical_id = response["PhysicalResourceId"]
        .as_str()
        .expect("PhysicalResourceId");
    assert!(!physical_id.is_empty() && physical_id.len() <= 1024);
    match response["Status"].as_str() {
        Some("SUCCESS") => {}
        Some("FAILED") => assert!(
            exchange.reason().is_some_and(|r| !r.is_empty()),
            "FAILED needs a Reason"
        ),
        other => panic!("bad Status {other:?}"),
    }
    response
}

fn props(extra: Value) -> Value {
    let mut base = json!({"Label": "guarantee", "Secret": SECRET_VALUE});
    base.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    base
}

fn assert_runtime_ok(exchange: &Exchange) {
    assert!(
        matches!(exchange.outcome, RuntimeOutcome::Response(_)),
        "the runtime must get Ok once a response was delivered: {:?}",
        exchange.outcome
    );
}

pub(crate) fn trials() -> Vec<Trial> {
    trials![
        guarantee;
        success_create_update_delete,
        handler_error_fails_create_with_marker_id,
        partial_physical_id_on_failed_create,
        failed_update_keeps_the_event_physical_id,
        panic_in_each_phase_then_next_invocation_succeeds,
        panic_in_release_build_gives_failed,
        hang_fails_before_the_deadline_once,
        not_an_object_gives_no_put_and_a_log_line,
        events_serde_json_refuses_are_answered_failed,
        missing_and_unknown_request_type_fail,
        missing_and_mistyped_properties_name_the_property,
        stringly_numbers_and_booleans_accepted,
        huge_multibyte_reason_is_truncated,
        oversized_data_becomes_failed,
        response_url_500_three_times_then_200,
        response_url_403_is_not_retried,
        response_url_slow_still_delivers,
        response_url_dropped_connection_is_retried,
        response_url_refused_gives_up_before_deadline,
        delete_after_failed_create_skips_the_handler,
        update_with_replacement_id,
        no_signature_or_secret_in_logs_text_and_json,
        invalid_old_properties_never_fail_an_update,
        watchdog_failed_create_carries_the_published_id,
        implausible_deadlines_get_the_default_budget,
        margin_longer_than_time_left_fails_before_the_handler,
        invalid_timing_setting_fails_in_time_naming_it,
        one_put_is_attempted_even_past_the_deadline,
        s3_request_timeout_400_is_retried_other_400_is_final,
        oversized_data_on_update_keeps_the_event_id,
    ]
}

async fn success_create_update_delete() {
    let h = fault().await;
    let create = h
        .events
        .create(TYPE, "Thing", props(json!({"Data": {"Answer": "42"}})));
    let x = h.call(create.clone()).await;
    let r = well_formed(&x, &create);
    assert_eq!(r["Status"], "SUCCESS", "{r}");
    assert_eq!(r["PhysicalResourceId"], "fault-Thing");
    assert_eq!(r["Data"]["Answer"], "42");
    assert_eq!(r["Data"]["Label"], "guarantee");
    assert_runtime_ok(&x);
    assert_eq!(x.outcome, RuntimeOutcome::Response("null".into()));

    let update = h.events.update(
        TYPE,
        "Thing",
        "fault-Thing",
        props(json!({"Count": 2})),
        props(json!({})),
    );
    let x = h.call(update.clone()).await;
    let r = well_formed(&x, &update);
    assert_eq!(
        (r["Status"].as_str(), r["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some("fault-Thing"))
    );
    assert_eq!(r["Data"]["Count"], "2");

    let delete = h.events.delete(TYPE, "Thing", "fault-Thing", props(json!({})));
    let x = h.call(delete.clone()).await;
    let r = well_formed(&x, &delete);
    assert_eq!(r["Status"], "SUCCESS");
    assert_eq!(
        r["PhysicalResourceId"], "fault-Thing",
        "Delete must answer with exactly the event's id"
    );
    assert_eq!(x.puts.len(), 1);
    assert_runtime_ok(&x);
}

async fn handler_error_fails_create_with_marker_id() {
    let h = fault().await;
    let create = h
        .events
        .create(TYPE, "Broken", props(json!({"OnCreate": "error"})));
    let x = h.call(create.clone()).await;
    let r = well_formed(&x, &create);
    assert_eq!(r["Status"], "FAILED");
    assert_eq!(x.reason(), Some("injected Create error"));
    let marker = format!("create-failed:Broken:{}", create["RequestId"].as_str().unwrap());
    assert_eq!(x.physical_id(), Some(marker.as_str()));
    assert_runtime_ok(&x);
    // The same request again gives the same marker: deterministic.
    let again = h.call(create.clone()).await;
    assert_eq!(again.puts.len(), 1, "the retry's own PUT");
    assert_eq!(again.physical_id(), Some(marker.as_str()));
}

async fn partial_physical_id_on_failed_create() {
    let h = fault().await;
    let create = h
        .events
        .create(TYPE, "Half", props(json!({"OnCreate": "error-with-partial-id"})));
    let x = h.call(create.clone()).await;
    well_formed(&x, &create);
    assert_eq!(
        (x.status(), x.physical_id()),
        (Some("FAILED"), Some("partial-create:partial-fault-id"))
    );

    // CloudFormation's rollback Delete reaches the handler with the id it had made, flagged.
    let delete = h.events.delete(
        TYPE,
        "Half",
        x.physical_id().expect("a physical id"),
        props(json!({})),
    );
    let d = h.call(delete.clone()).await;
    let r = well_formed(&d, &delete);
    assert_eq!(r["Status"], "SUCCESS", "{r}");
    assert_eq!(r["PhysicalResourceId"], "partial-create:partial-fault-id");
    let logs = h.logs();
    assert!(
        logs.lines().any(|l| l.contains("fault-injection delete")
            && l.contains("physical_id=partial-fault-id")
            && l.contains("after_failed_create=true")),
        "the handler must get the unwrapped id and the flag:\n{logs}"
    );
}

async fn failed_update_keeps_the_event_physical_id() {
    let h = fault().await;
    let update = h.events.update(
        TYPE,
        "Thing",
        "existing-id",
        props(json!({"OnUpdate": "error-with-partial-id", "PhysicalId": "new-id"})),
        props(json!({})),
    );
    let x = h.call(update.clone()).await;
    well_formed(&x, &update);
    assert_eq!(
        (x.status(), x.physical_id()),
        (Some("FAILED"), Some("existing-id"))
    );
}

async fn panic_in_each_phase_then_next_invocation_succeeds() {
    let h = fault().await;
    for (phase, key) in [
        ("Create", "OnCreate"),
        ("Update", "OnUpdate"),
        ("Delete", "OnDelete"),
    ] {
        let p = props(json!({key: "panic"}));
        let event = match phase {
            "Create" => h.events.create(TYPE, "Boom", p),
            "Update" => h.events.update(TYPE, "Boom", "boom-id", p.clone(), p),
            _ => h.events.delete(TYPE, "Boom", "boom-id", p),
        };
        let x = h.call(event.clone()).await;
        well_formed(&x, &event);
        assert_eq!(x.status(), Some("FAILED"));
        assert_eq!(
            x.reason(),
            Some(format!("the {phase} handler panicked: injected {phase} panic").as_str())
        );
        if phase != "Create" {
            assert_eq!(x.physical_id(), Some("boom-id"));
        }
        assert_runtime_ok(&x);
        // The same process serves the next invocation.
        let next = h.events.create(TYPE, "After", props(json!({})));
        let y = h.call(next.clone()).await;
        assert_eq!(
            well_formed(&y, &next)["Status"],
            "SUCCESS",
            "after a {phase} panic"
        );
    }
    let mut lambda = h.lambda;
    assert!(lambda.is_running());
}

async fn panic_in_release_build_gives_failed() {
    let h = Harness::start_profile("fault-injection", Profile::Release, &[]).await;
    let create = h.events.create(TYPE, "Boom", props(json!({"OnCreate": "panic"})));
    let x = h.call(create.clone()).await;
    well_formed(&x, &create);
    assert_eq!(
        x.reason(),
        Some("the Create handler panicked: injected Create panic")
    );
    let next = h.events.create(TYPE, "After", props(json!({})));
    assert_eq!(
        h.call(next).await.status(),
        Some("SUCCESS"),
        "the release build must unwind and keep serving"
    );
}

/// Invokes `event` with `timeout` left and checks the one answer: a well-formed FAILED, the only
/// PUT, received before the deadline.
async fn one_failed_put_in_time(h: &Harness, event: &Value, timeout: Duration) -> Exchange {
    let sent = Instant::now();
    let x = h.call_with_timeout(event.clone(), timeout).await;
    well_formed(&x, event);
    assert_eq!(x.puts.len(), 1, "exactly one PUT");
    let arrived = x.puts[0].received_at.duration_since(sent);
    assert!(
        arrived < timeout,
        "FAILED arrived {arrived:?} after the invocation, deadline {timeout:?}"
    );
    assert_eq!(x.status(), Some("FAILED"));
    x
}

async fn hang_fails_before_the_deadline_once() {
    let h = fault().await;
    let timeout = Duration::from_secs(4);
    let create = h.events.create(TYPE, "Stuck", props(json!({"OnCreate": "hang"})));
    let x = one_failed_put_in_time(&h, &create, timeout).await;
    assert!(
        x.reason()
            .is_some_and(|r| r.starts_with("timed out while running the Create handler")),
        "{:?}",
        x.reason()
    );
    assert_runtime_ok(&x);
    // The hung task was stopped; nothing else is sent later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.receiver.all_puts().len(), 1);

    let update = h.events.update(
        TYPE,
        "Stuck",
        "stuck-id",
        props(json!({"OnUpdate": "hang"})),
        props(json!({})),
    );
    let x = h.call_with_timeout(update.clone(), timeout).await;
    well_formed(&x, &update);
    assert!(
        x.reason()
            .is_some_and(|r| r.starts_with("timed out while acting on Update")),
        "progress is reported: {:?}",
        x.reason()
    );
}

async fn not_an_object_gives_no_put_and_a_log_line() {
    let h = fault().await;
    // Each of these holds a ResponseURL pointing at the receiver somewhere CloudFormation never
    // puts it, so a Lambda that dug it out would be caught PUTting there.
    let valid = h.events.create(TYPE, "Wrapped", props(json!({})));
    let mut wrong_case = valid.clone();
    let url = wrong_case.as_object_mut().unwrap().remove("ResponseURL").unwrap();
    wrong_case["ResponseUrl"] = url;
    for event in [
        json!([1, 2, 3]),
        json!([valid]),
        json!("Create"),
        json!({"RequestType": "Create", "StackId": "s"}),
        wrong_case,
    ] {
        let x = h.call(event.clone()).await;
        assert!(
            x.outcome.is_error(),
            "{event}: runtime must get an error: {:?}",
            x.outcome
        );
    }
    assert!(h.receiver.all_puts().is_empty());
    let logs = h.logs();
    assert!(
        logs.contains("cannot answer CloudFormation: the event is JSON an array rather than an object"),
        "{logs}"
    );
    assert!(logs.contains("the event has no ResponseURL"), "{logs}");
}

/// Events the runtime's own deserialization refused before the guard read them (issue 25): the
/// real binary, through the Runtime API, answers each FAILED saying why, and the next invocation
/// is served.
async fn events_serde_json_refuses_are_answered_failed() {
    let h = fault().await;
    let valid = h.events.create(TYPE, "Odd", props(json!({})));
    let url = valid["ResponseURL"].as_str().unwrap().to_string();
    let text = valid.to_string();
    let with_label = |label: &str| text.replacen("{", &format!("{{\"Odd\": {label}, "), 1);
    let deep = format!("{}1{}", "[".repeat(128), "]".repeat(128));
    let cases = [
        (with_label(r#""\ud800""#), "lone UTF-16 surrogate"),
        (with_label(&deep), "nest more than 127 levels"),
        (
            with_label(r#"1, "RequestType": "Create""#),
            "duplicate key `RequestType`",
        ),
    ];
    for (event, why) in cases {
        assert!(serde_json::from_str::<Value>(&event).is_err() || why.starts_with("duplicate"));
        let x = h
            .call_text(event.clone(), Some(&url), Deadline::In(Duration::from_secs(20)))
            .await;
        assert_eq!(x.puts.len(), 1, "{why}: {:?}\n{}", x.outcome, h.logs());
        assert!(!x.outcome.is_error(), "{why}: {:?}", x.outcome);
        assert_eq!(x.status(), Some("FAILED"), "{why}");
        assert!(
            x.reason()
                .is_some_and(|r| r.starts_with("the event is not strict JSON") && r.contains(why)),
            "{why}: {:?}",
            x.reason()
        );
        well_formed(&x, &valid);
    }
    let x = h.call(valid.clone()).await;
    assert_eq!(x.status(), Some("SUCCESS"), "{:?}", x.reason());
}

async fn missing_and_unknown_request_type_fail() {
    let h = fault().await;
    let mut missing = h.events.create(TYPE, "NoType", props(json!({})));
    missing.as_object_mut().unwrap().remove("RequestType");
    let x = h.call(missing.clone()).await;
    well_formed(&x, &missing);
    assert_eq!(x.status(), Some("FAILED"));
    assert!(
        x.reason().is_some_and(|r| r.contains("no RequestType")),
        "{:?}",
        x.reason()
    );

    let mut unknown = h.events.delete(TYPE, "Odd", "odd-id", props(json!({})));
    unknown["RequestType"] = json!("Explode");
    let x = h.call(unknown.clone()).await;
    well_formed(&x, &unknown);
    assert!(
        x.reason()
            .is_some_and(|r| r.contains("unknown RequestType \"Explode\"")),
        "{:?}",
        x.reason()
    );
    assert_eq!(x.physical_id(), Some("odd-id"));
}

async fn missing_and_mistyped_properties_name_the_property() {
    let h = fault().await;
    let cases = [
        (json!({}), "missing required property `Label`"),
        (
            json!({"Label": "x", "Count": "abc"}),
            "property `Count` is invalid",
        ),
        (
            json!({"Label": "x", "Count": "-1"}),
            "property `Count` is invalid",
        ),
        (
            json!({"Label": "x", "Enabled": "maybe"}),
            "property `Enabled` is invalid",
        ),
        (
            json!({"Label": "x", "Colour": "red"}),
            "unknown property `Colour`",
        ),
        (json!({"Label": 5}), "property `Label` is invalid"),
    ];
    for (properties, expected) in cases {
        let event = h.events.create(TYPE, "Typed", properties.clone());
        let x = h.call(event.clone()).await;
        well_formed(&x, &event);
        assert_eq!(x.status(), Some("FAILED"));
        assert!(
            x.reason().is_some_and(|r| r.contains(expected)),
            "{properties}: {:?}",
            x.reason()
        );
    }
    // A mistyped secret is named, its value never repeated.
    let event = h.events.create(
        TYPE,
        "Typed",
        json!({"Label": "x", "Secret": {"not": SECRET_VALUE}}),
    );
    let x = h.call(event).await;
    assert!(
        x.reason().is_some_and(|r| r.contains("`Secret`"))
            && x.reason().is_some_and(|r| !r.contains(SECRET_VALUE)),
        "{:?}",
        x.reason()
    );
}

async fn stringly_numbers_and_booleans_accepted() {
    let h = fault().await;
    for (count, enabled) in [
        (json!("5"), json!("true")),
        (json!(5), json!(true)),
        (json!(" 7 "), json!("False")),
    ] {
        let event = h.events.create(
            TYPE,
            "Strings",
            json!({"Label": "x", "Count": count, "Enabled": enabled}),
        );
        let x = h.call(event.clone()).await;
        let r = well_formed(&x, &event);
        assert_eq!(r["Status"], "SUCCESS", "{r}");
        let expected_count = count.as_str().map_or(count.to_string(), |s| s.trim().to_string());
        assert_eq!(r["Data"]["Count"].as_str(), Some(expected_count.as_str()));
        let expected_enabled = enabled.as_str().map_or(enabled.to_string(), |s| s.to_lowercase());
        assert_eq!(r["Data"]["Enabled"].as_str(), Some(expected_enabled.as_str()));
    }
}

async fn huge_multibyte_reason_is_truncated() {
    let h = fault().await;
    let event = h
        .events
        .create(TYPE, "Loud", props(json!({"OnCreate": "huge-error"})));
    let x = h.call(event.clone()).await;
    well_formed(&x, &event);
    let reason = x.reason().expect("a Reason");
    assert!(
        reason.starts_with("injected Create error: Ünïcödé ✓"),
        "the head is kept"
    );
    assert!(reason.ends_with("[...truncated]"));
    assert!(
        x.puts[0].body.len() > 4000,
        "the room is used: {}",
        x.puts[0].body.len()
    );
}

async fn oversized_data_becomes_failed() {
    let h = fault().await;
    let event = h
        .events
        .create(TYPE, "Big", props(json!({"OnCreate": "oversized-data"})));
    let x = h.call(event.clone()).await;
    let r = well_formed(&x, &event);
    assert_eq!(r["Status"], "FAILED");
    assert!(
        x.reason()
            .is_some_and(|r| r.contains("does not fit in CloudFormation's 4096-byte response limit")),
        "{:?}",
        x.reason()
    );
}

async fn response_url_500_three_times_then_200() {
    let h = fault().await;
    h.receiver.script([
        Behaviour::Status(500),
        Behaviour::Status(500),
        Behaviour::Status(500),
    ]);
    let event = h.events.create(TYPE, "Flaky", props(json!({})));
    let x = h.call(event.clone()).await;
    assert_eq!(
        x.puts.iter().map(|p| p.answered).collect::<Vec<_>>(),
        [500, 500, 500, 200]
    );
    assert!(
        x.puts.windows(2).all(|w| w[0].body == w[1].body),
        "every retry sends the same body"
    );
    assert_eq!(well_formed(&x, &event)["Status"], "SUCCESS");
    assert_runtime_ok(&x);
}

async fn response_url_403_is_not_retried() {
    let h = fault().await;
    h.receiver.script([Behaviour::Status(403)]);
    let event = h.events.create(TYPE, "Expired", props(json!({})));
    let x = h.call(event).await;
    assert_eq!(x.puts.len(), 1, "a 403 is final");
    let RuntimeOutcome::Error(error) = &x.outcome else {
        panic!("runtime must get an error: {:?}", x.outcome)
    };
    assert!(error.contains("HTTP 403"), "{error}");
    assert!(!error.contains(SIGNATURE_VALUE), "{error}");
}

async fn response_url_slow_still_delivers() {
    let h = fault().await;
    h.receiver.script([Behaviour::Delay(Duration::from_secs(2))]);
    let event = h.events.create(TYPE, "Patient", props(json!({})));
    let x = h.call(event.clone()).await;
    assert_eq!(x.puts.len(), 1);
    assert_eq!(well_formed(&x, &event)["Status"], "SUCCESS");
    assert!(
        x.elapsed >= Duration::from_secs(2),
        "the Lambda waited for the slow answer"
    );
    assert_runtime_ok(&x);
}

async fn response_url_dropped_connection_is_retried() {
    let h = fault().await;
    h.receiver.script([Behaviour::Drop]);
    let event = h.events.create(TYPE, "Dropped", props(json!({})));
    let x = h.call(event.clone()).await;
    assert_eq!(x.puts.iter().map(|p| p.answered).collect::<Vec<_>>(), [0, 200]);
    assert_eq!(well_formed(&x, &event)["Status"], "SUCCESS");
}

async fn response_url_refused_gives_up_before_deadline() {
    let h = fault().await;
    let port = local_invoke::services::free_port();
    let mut event = h.events.create(TYPE, "Nobody", props(json!({})));
    event["ResponseURL"] = json!(format!(
        "http://127.0.0.1:{port}/responses/x?X-Amz-Signature={SIGNATURE_VALUE}"
    ));
    let timeout = Duration::from_secs(3);
    let sent = Instant::now();
    let invocation = h.runtime_api.invoke(event, timeout).await;
    let outcome = invocation
        .outcome(timeout + Duration::from_secs(5))
        .await
        .expect("an outcome");
    let took = sent.elapsed();
    let RuntimeOutcome::Error(error) = outcome else {
        panic!("runtime must get an error: {outcome:?}")
    };
    assert!(
        took < timeout,
        "gave up after {took:?}, past the {timeout:?} deadline"
    );
    assert!(error.contains("could not deliver the response"), "{error}");
    assert!(!error.contains(SIGNATURE_VALUE), "{error}");
    let logs = h.logs();
    assert!(logs.contains("retrying"), "retries are logged: {logs}");
}

async fn delete_after_failed_create_skips_the_handler() {
    let h = fault().await;
    let create = h.events.create(
        TYPE,
        "Doomed",
        props(json!({"OnCreate": "error", "OnDelete": "panic"})),
    );
    let x = h.call(create).await;
    let marker = x.physical_id().expect("a physical id").to_string();
    assert!(marker.starts_with("create-failed:"));
    let delete = h.events.delete(
        TYPE,
        "Doomed",
        &marker,
        props(json!({"OnCreate": "error", "OnDelete": "panic"})),
    );
    let x = h.call(delete.clone()).await;
    let r = well_formed(&x, &delete);
    assert_eq!(
        r["Status"], "SUCCESS",
        "the handler (which would panic) is not called: {r}"
    );
    assert_eq!(r["PhysicalResourceId"].as_str(), Some(marker.as_str()));
}

async fn update_with_replacement_id() {
    let h = fault().await;
    let update = h.events.update(
        TYPE,
        "Moving",
        "old-id",
        props(json!({"PhysicalId": "new-id"})),
        props(json!({"PhysicalId": "old-id"})),
    );
    let x = h.call(update.clone()).await;
    let r = well_formed(&x, &update);
    assert_eq!(
        (r["Status"].as_str(), r["PhysicalResourceId"].as_str()),
        (Some("SUCCESS"), Some("new-id"))
    );
}

async fn no_signature_or_secret_in_logs_text_and_json() {
    for json_logs in [false, true] {
        let env: &[(&str, &str)] = if json_logs {
            &[
                ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
                ("AWS_LAMBDA_LOG_LEVEL", "debug"),
                ("CFN_RESPONSE_MARGIN_MS", "1500"),
            ]
        } else {
            &[("RUST_LOG", "trace"), ("CFN_RESPONSE_MARGIN_MS", "1500")]
        };
        let h = Harness::start("fault-injection", env).await;
        h.receiver.script([Behaviour::Status(500)]);
        for on_create in ["succeed", "error", "panic"] {
            let event = h
                .events
                .create(TYPE, "Quiet", props(json!({"OnCreate": on_create})));
            h.call(event).await;
        }
        let hang = h.events.create(TYPE, "Quiet", props(json!({"OnCreate": "hang"})));
        h.call_with_timeout(hang, Duration::from_secs(3)).await;
        let logs = h.logs();
        assert!(
            logs.contains("<redacted>"),
            "the secret property is logged redacted: {logs}"
        );
        assert!(logs.contains("response delivered"), "{logs}");
        assert!(
            !logs.contains(SIGNATURE_VALUE),
            "ResponseURL signature leaked into logs:\n{logs}"
        );
        assert!(
            !logs.contains("X-Amz-Credential"),
            "ResponseURL query leaked into logs:\n{logs}"
        );
        assert!(
            !logs.contains(SECRET_VALUE),
            "secret property leaked into logs:\n{logs}"
        );
        if json_logs {
            let delivered: Vec<Value> = logs
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter(|l| l["fields"]["message"] == "response delivered")
                .collect();
            assert!(!delivered.is_empty(), "JSON log lines expected:\n{logs}");
            let span = &delivered[0]["span"];
            for field in ["request_type", "logical_resource_id", "request_id", "stack_id"] {
                assert!(
                    span[field].is_string(),
                    "span field {field} missing: {}",
                    delivered[0]
                );
            }
        }
    }
}

/// A rollback Update carries the values that failed last time as OldResourceProperties: whatever
/// they hold, the Update is decided on ResourceProperties alone.
async fn invalid_old_properties_never_fail_an_update() {
    let h = fault().await;
    let good = props(json!({"Count": "3"}));
    let cases = [
        json!({"Label": "guarantee", "Count": "abc"}),
        json!({"Label": "guarantee", "Count": "-1"}),
        json!({"Label": "guarantee", "Enabled": "maybe"}),
        json!({"Label": "guarantee", "OnUpdate": "explode"}),
        json!({"Label": "guarantee", "Colour": "red"}),
        json!({"Count": "3"}),
        json!({"Label": ["not", "a", "string"]}),
        json!("not an object"),
        json!(null),
    ];
    for old in cases {
        let update = h
            .events
            .update(TYPE, "Rolled", "rolled-id", good.clone(), old.clone());
        let x = h.call(update.clone()).await;
        let r = well_formed(&x, &update);
        assert_eq!(r["Status"], "SUCCESS", "old {old}: {r}");
        assert_eq!(r["PhysicalResourceId"], "rolled-id", "old {old}");
        assert_eq!(r["Data"]["Count"], "3", "old {old}");
    }
    let mut missing = h
        .events
        .update(TYPE, "Rolled", "rolled-id", good.clone(), json!({}));
    missing.as_object_mut().unwrap().remove("OldResourceProperties");
    let x = h.call(missing.clone()).await;
    assert_eq!(well_formed(&x, &missing)["Status"], "SUCCESS");
    assert!(
        h.logs().contains("OldResourceProperties ignored"),
        "the ignored old properties are logged"
    );
    // The new properties are still checked.
    let bad_new = h
        .events
        .update(TYPE, "Rolled", "rolled-id", props(json!({"Count": "abc"})), good);
    let x = h.call(bad_new.clone()).await;
    well_formed(&x, &bad_new);
    assert_eq!(x.status(), Some("FAILED"));
    assert!(
        x.reason().is_some_and(|r| r.contains("`Count`")),
        "{:?}",
        x.reason()
    );
}

async fn watchdog_failed_create_carries_the_published_id() {
    let h = fault().await;
    let create = h.events.create(
        TYPE,
        "Slow",
        props(json!({"OnCreate": "hang", "PublishPartialId": "true", "PhysicalId": "made-so-far"})),
    );
    let x = h.call_with_timeout(create.clone(), Duration::from_secs(4)).await;
    well_formed(&x, &create);
    assert_eq!(x.status(), Some("FAILED"));
    assert!(
        x.reason().is_some_and(|r| r.starts_with("timed out while")),
        "{:?}",
        x.reason()
    );
    assert_eq!(x.physical_id(), Some("partial-create:made-so-far"));

    let panicking = h.events.create(
        TYPE,
        "Boom",
        props(json!({"OnCreate": "panic", "PublishPartialId": true, "PhysicalId": "half-made"})),
    );
    let x = h.call(panicking.clone()).await;
    well_formed(&x, &panicking);
    assert_eq!(
        (x.status(), x.physical_id()),
        (Some("FAILED"), Some("partial-create:half-made"))
    );

    // Without a published id the marker stays, and its Delete skips the handler.
    let plain = h
        .events
        .create(TYPE, "Plain", props(json!({"OnCreate": "error"})));
    let x = h.call(plain).await;
    assert!(
        x.physical_id()
            .is_some_and(|id| id.starts_with("create-failed:Plain:")),
        "{:?}",
        x.physical_id()
    );
}

async fn implausible_deadlines_get_the_default_budget() {
    let h = fault().await;
    let past = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        - 60_000;
    let far = past + 60_000 + 3 * 3600 * 1000;
    for (what, raw) in [
        ("cargo lambda watch's duration", 600_000),
        ("zero", 0),
        ("a minute ago", past),
        ("three hours away", far),
    ] {
        let create = h.events.create(TYPE, "Emulated", props(json!({})));
        let x = h.call_with_deadline(create.clone(), Deadline::Raw(raw)).await;
        let r = well_formed(&x, &create);
        assert_eq!(r["Status"], "SUCCESS", "{what}: {r}");
        assert_runtime_ok(&x);
    }
    assert!(
        h.logs().contains("deadline is implausible"),
        "the replacement is logged"
    );
}

async fn margin_longer_than_time_left_fails_before_the_handler() {
    // A 1.5 s margin with 1 s left: the handler (which would panic) never starts.
    let h = fault().await;
    let create = h.events.create(TYPE, "Late", props(json!({"OnCreate": "panic"})));
    let x = h.call_with_timeout(create.clone(), Duration::from_secs(1)).await;
    well_formed(&x, &create);
    assert_eq!(x.status(), Some("FAILED"));
    assert!(
        x.reason().is_some_and(|r| r.contains("was not started"))
            && x.reason().is_some_and(|r| r.contains("CFN_RESPONSE_MARGIN_MS")),
        "{:?}",
        x.reason()
    );
    assert!(!h.logs().contains("injected Create panic"));
}

async fn invalid_timing_setting_fails_in_time_naming_it() {
    // "1.5s" is not a whole number of milliseconds: never silently the default. The guard times
    // its answer with the default margin, answers FAILED naming the variable and the value, and
    // does not start the handler (which would hang).
    let h = Harness::start("fault-injection", &[("CFN_RESPONSE_MARGIN_MS", "1.5s")]).await;
    let timeout = Duration::from_secs(4);
    let create = h
        .events
        .create(TYPE, "Misset", props(json!({"OnCreate": "hang"})));
    let x = one_failed_put_in_time(&h, &create, timeout).await;
    assert!(
        x.reason().is_some_and(|r| r.contains("CFN_RESPONSE_MARGIN_MS")
            && r.contains("\"1.5s\"")
            && r.contains("whole number of milliseconds")
            && r.contains("was not started")),
        "{:?}",
        x.reason()
    );
    assert_runtime_ok(&x);
    // The rollback Delete of the marker id touches nothing, so it still succeeds.
    let marker = x.response()["PhysicalResourceId"].as_str().unwrap().to_string();
    let delete = h.events.delete(TYPE, "Misset", &marker, props(json!({})));
    let x = h.call(delete.clone()).await;
    assert_eq!(well_formed(&x, &delete)["Status"], "SUCCESS");
}

async fn one_put_is_attempted_even_past_the_deadline() {
    // No margin and no slack: the watchdog fires at the deadline itself, with no time left to
    // deliver; the one PUT still goes out.
    let h = Harness::start(
        "fault-injection",
        &[("CFN_RESPONSE_MARGIN_MS", "0"), ("CFN_DELIVERY_SLACK_MS", "500")],
    )
    .await;
    let create = h
        .events
        .create(TYPE, "Overdue", props(json!({"OnCreate": "hang"})));
    let x = h.call_with_timeout(create.clone(), Duration::from_secs(2)).await;
    assert_eq!(
        x.puts.len(),
        1,
        "one PUT, attempted although the deadline had passed"
    );
    well_formed(&x, &create);
    assert_eq!(x.status(), Some("FAILED"));
}

async fn s3_request_timeout_400_is_retried_other_400_is_final() {
    let h = fault().await;
    h.receiver.script([
        Behaviour::S3Error(400, "RequestTimeout"),
        Behaviour::S3Error(400, "IncompleteBody"),
    ]);
    let event = h.events.create(TYPE, "Choppy", props(json!({})));
    let x = h.call(event.clone()).await;
    assert_eq!(x.puts.len(), 3, "two transient 400s, then delivered");
    assert_eq!(well_formed(&x, &event)["Status"], "SUCCESS");
    assert_runtime_ok(&x);

    h.receiver.script([Behaviour::S3Error(400, "MalformedXML")]);
    let event = h.events.create(TYPE, "Refused", props(json!({})));
    let x = h.call(event).await;
    assert_eq!(x.puts.len(), 1, "any other 400 is final");
    let RuntimeOutcome::Error(error) = &x.outcome else {
        panic!("runtime must get an error: {:?}", x.outcome)
    };
    assert!(error.contains("MalformedXML"), "{error}");
}

async fn oversized_data_on_update_keeps_the_event_id() {
    let h = fault().await;
    let update = h.events.update(
        TYPE,
        "Big",
        "big-id",
        props(json!({"OnUpdate": "oversized-data", "PhysicalId": "replacement-id"})),
        props(json!({})),
    );
    let x = h.call(update.clone()).await;
    well_formed(&x, &update);
    assert_eq!(x.status(), Some("FAILED"));
    assert!(
        x.reason().is_some_and(|r| r.contains("4096-byte")),
        "{:?}",
        x.reason()
    );
    assert_eq!(
        x.physical_id(),
        Some("big-id"),
        "a failed Update must not look like a replacement"
    );

    // On Create the resource exists: the FAILED names it so the rollback Delete removes it.
    let create = h
        .events
        .create(TYPE, "BigNew", props(json!({"OnCreate": "oversized-data"})));
    let x = h.call(create).await;
    assert_eq!(x.physical_id(), Some("partial-create:fault-BigNew"));
}
