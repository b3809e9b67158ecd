//! `Custom::AdminSecret`: the real `admin-secret` binary against moto's SSM.

use std::collections::BTreeSet;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{ParameterStringFilter, ParameterType, ResourceTypeForTagging};
use libtest_mimic::Trial;
use local_invoke::services::moto;
use local_invoke::{Exchange, Harness};
use serde_json::{Value, json};

const TYPE: &str = "Custom::AdminSecret";
const LOGICAL_ID: &str = "AdminSecret";
const KEY: &str = "alias/platform-rds-test";
const OTHER_KEY: &str = "alias/platform-rds-test-other";

pub(crate) fn trials() -> Vec<Trial> {
    let mut all = trials![
        admin_secret;
        create_stores_a_secure_string_under_the_key,
        a_fresh_secret_is_one_aws_call,
        retried_create_returns_the_same_version_and_value,
        foreign_parameter_fails_create_and_is_left_untouched,
        parameter_of_another_stack_fails_create,
        adopt_takes_over_keeping_the_value,
        description_only_update_keeps_the_value,
        rotation_token_change_generates_a_new_password,
        rotation_rolled_back_restores_the_password,
        duplicate_rotation_makes_no_third_password,
        rollback_ignores_invalid_old_properties,
        unlabelled_parameter_keeps_its_password,
        key_change_keeps_the_value_under_the_new_key,
        rename_replaces_and_delete_removes_the_old,
        retain_keeps_the_parameter,
        invalid_length_fails_naming_length,
        aws_managed_key_is_rejected,
        return_password_sets_no_echo,
        rotations_past_ssm_history_then_back_to_the_first_token,
        an_update_changing_only_service_token_or_timeout_writes_nothing,
    ];
    all.extend(trials![
        admin_secret::faults;
        a_sequence_at_25_percent_injected_aws_faults,
        exhausted_retries_name_the_call,
        killed_after_each_aws_call_then_redelivered,
    ]);
    all
}

// ---- helpers ----

/// The Lambda as configured to allow `Adopt` and `ReturnPassword` (refusals: `authz`).
async fn start() -> Harness {
    keys();
    let mut env = moto().env();
    env.extend([("CFN_ALLOW_ADOPT", "true"), ("CFN_ALLOW_RETURN_PASSWORD", "true")]);
    Harness::start("admin-secret", &env).await
}

/// The customer-managed keys the tests name, made in moto once.
fn keys() {
    local_invoke::fixtures::kms_alias(KEY);
    local_invoke::fixtures::kms_alias(OTHER_KEY);
}

fn ssm() -> Client {
    moto().ssm()
}

/// A parameter name no other test (nor an earlier run against an outside moto) uses.
fn unique_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("/local-invoke/admin-secret/{}-{nanos}/{test}", std::process::id())
}

/// `ParameterName` and `KeyId`, plus `extra`.
fn props(name: &str, extra: Value) -> Value {
    let mut properties = json!({"ParameterName": name, "KeyId": KEY});
    for (key, value) in extra.as_object().unwrap() {
        properties[key] = value.clone();
    }
    properties
}

/// What SSM holds for a parameter.
#[derive(Debug, Clone, PartialEq)]
struct Stored {
    value: String,
    version: i64,
    arn: String,
    kind: String,
    key_id: Option<String>,
    description: Option<String>,
    tags: Vec<(String, String)>,
}

async fn stored(name: &str) -> Option<Stored> {
    let client = ssm();
    let parameter = match client
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(output) => output.parameter.unwrap(),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            return None;
        }
        Err(error) => panic!("GetParameter {name}: {error:?}"),
    };
    let filter = ParameterStringFilter::builder()
        .key("Name")
        .option("Equals")
        .values(name)
        .build()
        .unwrap();
    let described = client
        .describe_parameters()
        .parameter_filters(filter)
        .send()
        .await
        .unwrap();
    let metadata = described
        .parameters()
        .first()
        .expect("DescribeParameters finds it")
        .clone();
    let tags = client
        .list_tags_for_resource()
        .resource_type(ResourceTypeForTagging::Parameter)
        .resource_id(name)
        .send()
        .await
        .unwrap()
        .tag_list()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    Some(Stored {
        value: parameter.value.unwrap(),
        version: parameter.version,
        arn: parameter.arn.unwrap(),
        kind: metadata
            .r#type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        key_id: metadata.key_id,
        description: metadata.description,
        tags,
    })
}

async fn put_foreign(name: &str, value: &str, kind: ParameterType) {
    let mut put = ssm().put_parameter().name(name).value(value).r#type(kind.clone());
    if kind == ParameterType::SecureString {
        put = put.key_id(OTHER_KEY);
    }
    put.send().await.unwrap();
}

fn owned_by(stored: &Stored, stack_id: &str) -> bool {
    stored
        .tags
        .contains(&("custom-resource:stack-id".into(), stack_id.into()))
        && stored
            .tags
            .contains(&("custom-resource:logical-id".into(), LOGICAL_ID.into()))
}

fn assert_failed(exchange: &Exchange) {
    assert_eq!(exchange.status(), Some("FAILED"), "{:#?}", exchange.response());
}

/// The Data keys of a response.
fn data_keys(exchange: &Exchange) -> BTreeSet<String> {
    exchange.response()["Data"]
        .as_object()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

/// No password reaches a log line or a Reason.
fn assert_hidden(harness: &Harness, exchanges: &[&Exchange], passwords: &[&str]) {
    let logs = harness.logs();
    // The logs searched run to the end of every response this Lambda delivered (the guard's
    // "response delivered" line for its request): what it logged while serving them is all there.
    let delivered: Vec<_> = harness
        .receiver
        .all_puts()
        .into_iter()
        .chain(exchanges.iter().flat_map(|x| x.puts.iter().cloned()))
        .filter(|put| (200..300).contains(&put.answered))
        .collect();
    assert!(!delivered.is_empty(), "no response delivered: no logs to search");
    for put in &delivered {
        let request_id = put.json["RequestId"]
            .as_str()
            .expect("a response names its RequestId");
        assert!(
            logs.lines()
                .any(|line| line.contains("response delivered") && line.contains(request_id)),
            "no \"response delivered\" line for request {request_id} in the logs searched:\n{logs}"
        );
    }
    for password in passwords {
        assert!(password.len() >= 8);
        assert!(
            !logs.contains(password),
            "a password appears in the logs (shown here as <PASSWORD>):\n{}",
            logs.replace(password, "<PASSWORD>")
        );
        for exchange in exchanges {
            for put in &exchange.puts {
                let reason = put.json["Reason"].as_str().unwrap_or_default();
                assert!(
                    !reason.contains(password),
                    "a password appears in a Reason (shown here as <PASSWORD>): {}",
                    reason.replace(password, "<PASSWORD>")
                );
            }
        }
    }
}

fn has_each_class(value: &str) -> bool {
    value.bytes().any(|b| b.is_ascii_lowercase())
        && value.bytes().any(|b| b.is_ascii_uppercase())
        && value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().any(|b| b.is_ascii_punctuation())
}

// ---- tests ----

async fn create_stores_a_secure_string_under_the_key() {
    let h = start().await;
    let name = unique_name("create");
    let exclude = "abcdefXYZ0123~";
    let properties = props(
        &name,
        json!({"Length": "20", "ExcludeCharacters": exclude, "RequireEachIncludedType": "true", "Description": "the admin password"}),
    );
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, properties)).await;
    h.assert_success(&created);
    assert_eq!(created.physical_id(), Some(name.as_str()));

    let s = stored(&name).await.expect("the parameter exists");
    assert_eq!(s.kind, "SecureString");
    assert_eq!(s.key_id.as_deref(), Some(KEY));
    assert_eq!(s.description.as_deref(), Some("the admin password"));
    assert_eq!(s.version, 1);
    assert!(owned_by(&s, &h.events.stack_id), "owner tags: {:?}", s.tags);
    assert_eq!(s.value.len(), 20, "length");
    assert!(
        s.value.bytes().all(|b| (0x21..=0x7e).contains(&b)),
        "printable ASCII without space"
    );
    for forbidden in exclude.chars().chain("/@\" ".chars()) {
        assert!(!s.value.contains(forbidden), "{forbidden:?} is excluded");
    }
    assert!(has_each_class(&s.value), "each class is present");

    assert_eq!(
        data_keys(&created),
        BTreeSet::from([
            "ParameterArn".to_string(),
            "ParameterName".to_string(),
            "Version".to_string()
        ])
    );
    assert_eq!(created.data("ParameterName"), Some(name.as_str()));
    assert_eq!(created.data("ParameterArn"), Some(s.arn.as_str()));
    assert_eq!(created.data("Version"), Some("1"));
    assert_ne!(created.response()["NoEcho"], json!(true));
    assert_hidden(&h, &[&created], &[&s.value]);
}

/// A warm Create of a new secret is one `PutParameter`: the ARN is computed, and the version is
/// bound to its `RotationToken` by the tag written with it, not by a `LabelParameterVersion`.
/// (The first Create of a process also checks the key: `DescribeKey` and `ListAliases`.)
async fn a_fresh_secret_is_one_aws_call() {
    let h = start().await;
    let first = unique_name("one-call-a");
    let warm = h
        .call(
            h.events
                .create(TYPE, "First", props(&first, json!({"RotationToken": "r0"}))),
        )
        .await;
    h.assert_success(&warm);
    let name = unique_name("one-call-b");
    let created = h
        .call(
            h.events
                .create(TYPE, LOGICAL_ID, props(&name, json!({"RotationToken": "r0"}))),
        )
        .await;
    h.assert_success(&created);
    let calls = local_invoke::last_aws_calls(&h.logs());
    assert_eq!(calls, 1, "AWS calls for a warm Create:\n{}", h.logs());
    // The same line says where the time went: the PutParameter's wait, within the handler's time,
    // and the response PUT.
    let logs = h.logs();
    let last = |key| *local_invoke::delivered_field(&logs, key).last().expect(key);
    let (aws_us, handler_us, put_us) = (last("aws_us"), last("handler_us"), last("put_us"));
    assert!(
        0 < aws_us && aws_us <= handler_us && 0 < put_us,
        "aws_us={aws_us} handler_us={handler_us} put_us={put_us}:\n{logs}"
    );
    assert_eq!(created.data("Version"), Some("1"));
    let versions = history(&name).await;
    assert_eq!(versions.len(), 1);
    assert!(versions[0].2.is_empty(), "no label call: {:?}", versions[0].2);
    let s = stored(&name).await.unwrap();
    assert!(
        s.tags
            .iter()
            .any(|(k, v)| k == "custom-resource:created-for" && *v == ssm_secret::rotation_label(Some("r0"))),
        "the created-for tag binds version 1 to r0: {:?}",
        s.tags
    );
}

async fn retried_create_returns_the_same_version_and_value() {
    let h = start().await;
    let name = unique_name("retry");
    let first = h
        .call(h.events.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
        .await;
    h.assert_success(&first);
    let before = stored(&name).await.unwrap();
    // CloudFormation (or Lambda's retry) sends the Create again for the same stack and logical id.
    let second = h
        .call(h.events.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
        .await;
    h.assert_success(&second);
    assert_eq!(second.physical_id(), Some(name.as_str()));
    assert_eq!(second.data("Version"), first.data("Version"));
    assert_eq!(second.data("Version"), Some("1"));
    let after = stored(&name).await.unwrap();
    assert_eq!(after, before, "the retried Create changed the parameter");
    assert_hidden(&h, &[&first, &second], &[&after.value]);
}

async fn foreign_parameter_fails_create_and_is_left_untouched() {
    let h = start().await;
    let name = unique_name("foreign");
    let foreign_value = "Foreign-Value-Kept-42";
    put_foreign(&name, foreign_value, ParameterType::SecureString).await;
    let before = stored(&name).await.unwrap();

    let created = h
        .call(h.events.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
        .await;
    assert_failed(&created);
    assert!(
        created.reason().is_some_and(|r| r.contains(&name)),
        "the Reason names the parameter: {:?}",
        created.reason()
    );
    assert!(
        created.reason().is_some_and(|r| r.contains("Adopt")),
        "the Reason says how to take it over: {:?}",
        created.reason()
    );
    // Not answered with the parameter's name, so the rollback Delete cannot remove it.
    assert_ne!(created.physical_id(), Some(name.as_str()));
    assert_eq!(
        stored(&name).await.unwrap(),
        before,
        "the foreign parameter was changed"
    );

    // Even a Delete naming it (OnDelete Delete) leaves it: it is not ours.
    let deleted = h
        .call(h.events.delete(TYPE, LOGICAL_ID, &name, props(&name, json!({}))))
        .await;
    h.assert_success(&deleted);
    assert_eq!(
        stored(&name).await.unwrap(),
        before,
        "Delete removed a parameter that is not ours"
    );
    assert_hidden(&h, &[&created, &deleted], &[foreign_value]);
}

async fn parameter_of_another_stack_fails_create() {
    let h = start().await;
    let name = unique_name("other-stack");
    let other = h.events.for_stack("other-stack");
    let theirs = h
        .call(other.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
        .await;
    h.assert_success(&theirs);
    let before = stored(&name).await.unwrap();
    assert!(owned_by(&before, &other.stack_id));

    let ours = h
        .call(h.events.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
        .await;
    assert_failed(&ours);
    assert!(
        ours.reason().is_some_and(|r| r.contains(&name))
            && ours.reason().is_some_and(|r| r.contains(&other.stack_id)),
        "{:?}",
        ours.reason()
    );
    assert_eq!(stored(&name).await.unwrap(), before);
    assert_hidden(&h, &[&theirs, &ours], &[&before.value]);
}

async fn adopt_takes_over_keeping_the_value() {
    let h = start().await;
    let name = unique_name("adopt");
    let value = "Adopted-Password-99";
    put_foreign(&name, value, ParameterType::String).await;

    let created = h
        .call(
            h.events
                .create(TYPE, LOGICAL_ID, props(&name, json!({"Adopt": "true"}))),
        )
        .await;
    h.assert_success(&created);
    let s = stored(&name).await.unwrap();
    assert_eq!(s.value, value, "adoption keeps the value");
    assert_eq!(s.kind, "SecureString");
    assert_eq!(s.key_id.as_deref(), Some(KEY));
    assert_eq!(s.version, 2);
    assert_eq!(created.data("Version"), Some("2"));
    assert!(owned_by(&s, &h.events.stack_id), "{:?}", s.tags);

    // Now ours: Delete removes it.
    let deleted = h
        .call(
            h.events
                .delete(TYPE, LOGICAL_ID, &name, props(&name, json!({"Adopt": "true"}))),
        )
        .await;
    h.assert_success(&deleted);
    assert_eq!(stored(&name).await, None);
    assert_hidden(&h, &[&created, &deleted], &[value]);
}

async fn description_only_update_keeps_the_value() {
    let h = start().await;
    let name = unique_name("description");
    let old = props(&name, json!({"Description": "first", "RotationToken": "1"}));
    let new = props(&name, json!({"Description": "second", "RotationToken": "1"}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, old.clone())).await;
    h.assert_success(&created);
    let before = stored(&name).await.unwrap();

    let updated = h.call(h.events.update(TYPE, LOGICAL_ID, &name, new, old)).await;
    h.assert_success(&updated);
    assert_eq!(updated.physical_id(), Some(name.as_str()));
    let after = stored(&name).await.unwrap();
    assert_eq!(
        after.value, before.value,
        "a description-only Update changed the password"
    );
    assert_eq!(after.description.as_deref(), Some("second"));
    assert_eq!(after.key_id.as_deref(), Some(KEY));
    assert_eq!(updated.data("Version"), Some(after.version.to_string().as_str()));
    assert_hidden(&h, &[&created, &updated], &[&before.value]);
}

async fn rotation_token_change_generates_a_new_password() {
    let h = start().await;
    let name = unique_name("rotate");
    let old = props(&name, json!({"Length": 12, "RotationToken": "2026-01"}));
    let new = props(&name, json!({"Length": 12, "RotationToken": "2026-02"}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, old.clone())).await;
    h.assert_success(&created);
    let before = stored(&name).await.unwrap();

    let updated = h.call(h.events.update(TYPE, LOGICAL_ID, &name, new, old)).await;
    h.assert_success(&updated);
    assert_eq!(updated.physical_id(), Some(name.as_str()));
    let after = stored(&name).await.unwrap();
    assert_ne!(after.value, before.value, "rotation kept the password");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(updated.data("Version"), Some(after.version.to_string().as_str()));
    assert_eq!(after.value.len(), 12);
    assert!(has_each_class(&after.value));
    assert_eq!(after.key_id.as_deref(), Some(KEY));
    assert!(
        owned_by(&after, &h.events.stack_id),
        "tags survive the overwrite: {:?}",
        after.tags
    );
    assert_hidden(&h, &[&created, &updated], &[&before.value, &after.value]);
}

/// The versions of a parameter as (version, value, labels), oldest first.
async fn history(name: &str) -> Vec<(i64, String, Vec<String>)> {
    let output = ssm()
        .get_parameter_history()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .unwrap();
    let mut versions: Vec<_> = output
        .parameters()
        .iter()
        .map(|p| {
            (
                p.version(),
                p.value().unwrap_or_default().to_string(),
                p.labels().to_vec(),
            )
        })
        .collect();
    versions.sort();
    versions
}

/// Rotate r1 → r2, then CloudFormation rolls the Update back (ResourceProperties r1,
/// OldResourceProperties r2): the latest version holds r1's password again, Data points at it, and
/// the rollback delivered twice changes nothing more.
async fn rotation_rolled_back_restores_the_password() {
    let h = start().await;
    let name = unique_name("rollback-rotation");
    let r1 = props(&name, json!({"RotationToken": "r1"}));
    let r2 = props(&name, json!({"RotationToken": "r2"}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, r1.clone())).await;
    h.assert_success(&created);
    let p1 = stored(&name).await.unwrap();

    let rotated = h
        .call(h.events.update(TYPE, LOGICAL_ID, &name, r2.clone(), r1.clone()))
        .await;
    h.assert_success(&rotated);
    let p2 = stored(&name).await.unwrap();
    assert_ne!(p2.value, p1.value, "rotation kept the password");

    let rollback = h.events.update(TYPE, LOGICAL_ID, &name, r1.clone(), r2.clone());
    let rolled_back = h.call(rollback.clone()).await;
    h.assert_success(&rolled_back);
    assert_eq!(rolled_back.physical_id(), Some(name.as_str()));
    let back = stored(&name).await.unwrap();
    assert_eq!(back.value, p1.value, "the rollback did not restore r1's password");
    assert_eq!(
        back.version,
        p2.version + 1,
        "the restored password is a new latest version"
    );
    assert_eq!(
        rolled_back.data("Version"),
        Some(back.version.to_string().as_str()),
        "Data.Version must name the version holding the restored password, for resolve:ssm-secure"
    );
    assert_eq!(back.key_id.as_deref(), Some(KEY));
    assert!(owned_by(&back, &h.events.stack_id));

    // The same rollback delivered again: nothing new.
    let again = h.call(events_retry(&rollback)).await;
    h.assert_success(&again);
    let after = stored(&name).await.unwrap();
    assert_eq!((after.version, &after.value), (back.version, &back.value));
    assert_eq!(again.data("Version"), rolled_back.data("Version"));

    // And rotating forward to r2 again brings r2's password back, not a third one.
    let forward = h.call(h.events.update(TYPE, LOGICAL_ID, &name, r2, r1)).await;
    h.assert_success(&forward);
    assert_eq!(stored(&name).await.unwrap().value, p2.value);
    let values: BTreeSet<String> = history(&name).await.into_iter().map(|(_, v, _)| v).collect();
    assert_eq!(values.len(), 2, "two tokens, two passwords");
    assert_hidden(
        &h,
        &[&created, &rotated, &rolled_back, &again, &forward],
        &[&p1.value, &p2.value],
    );
}

fn events_retry(event: &Value) -> Value {
    local_invoke::events::EventBuilder::retry(event)
}

/// A rotation delivered twice (Lambda's at-least-once async invoke) makes one new password.
async fn duplicate_rotation_makes_no_third_password() {
    let h = start().await;
    let name = unique_name("duplicate-rotation");
    let r1 = props(&name, json!({"RotationToken": "r1"}));
    let r2 = props(&name, json!({"RotationToken": "r2"}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, r1.clone())).await;
    h.assert_success(&created);
    let rotate = h.events.update(TYPE, LOGICAL_ID, &name, r2, r1);
    let first = h.call(rotate.clone()).await;
    h.assert_success(&first);
    let once = stored(&name).await.unwrap();
    let second = h.call(events_retry(&rotate)).await;
    h.assert_success(&second);
    let twice = stored(&name).await.unwrap();
    assert_eq!(
        (twice.version, &twice.value),
        (once.version, &once.value),
        "a duplicate rotated again"
    );
    assert_eq!(history(&name).await.len(), 2);
    assert_eq!(second.data("Version"), first.data("Version"));
    assert_hidden(&h, &[&created, &first, &second], &[&once.value]);
}

/// A rollback Update whose OldResourceProperties are what failed (wrong types, unknown
/// properties) answers SUCCESS with the same id and data, and changes nothing.
async fn rollback_ignores_invalid_old_properties() {
    let h = start().await;
    let name = unique_name("invalid-old");
    let good = props(&name, json!({"RotationToken": "r1", "Description": "d"}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, good.clone())).await;
    h.assert_success(&created);
    let before = stored(&name).await.unwrap();
    for bad in [
        json!({"Length": "many"}),
        json!({"Length": 3}),
        json!({"RequireEachIncludedType": "perhaps"}),
        json!({"OnDelete": "Shred"}),
        json!({"ReturnPassword": {"nested": true}}),
        json!({"KeyId": 42, "ParameterName": ["a"]}),
        json!({"NoSuchProperty": "x", "RotationToken": "r9"}),
    ] {
        let mut old = good.clone();
        for (key, value) in bad.as_object().unwrap() {
            old[key] = value.clone();
        }
        let rollback = h
            .call(
                h.events
                    .update(TYPE, LOGICAL_ID, &name, good.clone(), old.clone()),
            )
            .await;
        assert_eq!(
            rollback.status(),
            Some("SUCCESS"),
            "old properties {old} failed a rollback: {:?}",
            rollback.reason()
        );
        assert_eq!(rollback.physical_id(), Some(name.as_str()));
        assert_eq!(
            rollback.response()["Data"],
            created.response()["Data"],
            "old properties {old}"
        );
        let now = stored(&name).await.unwrap();
        assert_eq!(
            (now.version, &now.value),
            (before.version, &before.value),
            "old properties {old}"
        );
    }
    assert_hidden(&h, &[&created], &[&before.value]);
}

/// A parameter written before rotation labels: an Update that keeps the token keeps the password
/// (and labels it); a new token then rotates.
async fn unlabelled_parameter_keeps_its_password() {
    let h = start().await;
    let name = unique_name("unlabelled");
    let legacy = "Legacy-password-0123456789abcdef";
    let tags = [
        ("custom-resource:stack-id", h.events.stack_id.as_str()),
        ("custom-resource:logical-id", LOGICAL_ID),
    ]
    .into_iter()
    .map(|(k, v)| {
        aws_sdk_ssm::types::Tag::builder()
            .key(k)
            .value(v)
            .build()
            .unwrap()
    })
    .collect::<Vec<_>>();
    ssm()
        .put_parameter()
        .name(&name)
        .value(legacy)
        .r#type(ParameterType::SecureString)
        .key_id(KEY)
        .set_tags(Some(tags))
        .send()
        .await
        .unwrap();
    let old = props(&name, json!({"RotationToken": "r1"}));
    let new = props(
        &name,
        json!({"RotationToken": "r1", "Description": "now labelled"}),
    );
    let updated = h
        .call(h.events.update(TYPE, LOGICAL_ID, &name, new.clone(), old))
        .await;
    h.assert_success(&updated);
    assert_eq!(
        stored(&name).await.unwrap().value,
        legacy,
        "an unlabelled password was rotated"
    );
    let labelled = history(&name).await;
    assert!(
        labelled
            .last()
            .unwrap()
            .2
            .iter()
            .any(|l| l.starts_with("rotation-")),
        "the kept version is labelled: {labelled:?}"
    );
    let rotated = h
        .call(h.events.update(
            TYPE,
            LOGICAL_ID,
            &name,
            props(
                &name,
                json!({"RotationToken": "r2", "Description": "now labelled"}),
            ),
            new,
        ))
        .await;
    h.assert_success(&rotated);
    let after = stored(&name).await.unwrap();
    assert_ne!(after.value, legacy, "a new token did not rotate");
    assert_hidden(&h, &[&updated, &rotated], &[legacy, &after.value]);
}

async fn key_change_keeps_the_value_under_the_new_key() {
    let h = start().await;
    let name = unique_name("rekey");
    let old = props(&name, json!({}));
    let mut new = old.clone();
    new["KeyId"] = json!(OTHER_KEY);
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, old.clone())).await;
    h.assert_success(&created);
    let before = stored(&name).await.unwrap();

    let updated = h.call(h.events.update(TYPE, LOGICAL_ID, &name, new, old)).await;
    h.assert_success(&updated);
    let after = stored(&name).await.unwrap();
    assert_eq!(after.value, before.value, "a key change changed the password");
    assert_eq!(after.key_id.as_deref(), Some(OTHER_KEY));
    assert_eq!(after.kind, "SecureString");
    assert_eq!(after.version, before.version + 1);
    assert_eq!(updated.data("Version"), Some(after.version.to_string().as_str()));
    assert_hidden(&h, &[&created, &updated], &[&before.value]);
}

async fn rename_replaces_and_delete_removes_the_old() {
    let h = start().await;
    let old_name = unique_name("rename-old");
    let new_name = unique_name("rename-new");
    let old = props(&old_name, json!({}));
    let new = props(&new_name, json!({}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, old.clone())).await;
    h.assert_success(&created);
    let original = stored(&old_name).await.unwrap();

    let updated = h
        .call(
            h.events
                .update(TYPE, LOGICAL_ID, &old_name, new.clone(), old.clone()),
        )
        .await;
    h.assert_success(&updated);
    assert_eq!(
        updated.physical_id(),
        Some(new_name.as_str()),
        "a new ParameterName is a new physical id"
    );
    assert_eq!(updated.data("ParameterName"), Some(new_name.as_str()));
    let renamed = stored(&new_name).await.expect("the new parameter exists");
    assert_eq!(renamed.kind, "SecureString");
    assert_eq!(renamed.key_id.as_deref(), Some(KEY));
    assert!(owned_by(&renamed, &h.events.stack_id));
    assert_eq!(
        renamed.value, original.value,
        "the password moves with the rename"
    );
    assert!(
        stored(&old_name).await.is_some(),
        "the old one stays until CloudFormation deletes it"
    );

    // CloudFormation's cleanup: Delete for the old physical id.
    let cleanup = h.call(h.events.delete(TYPE, LOGICAL_ID, &old_name, old)).await;
    h.assert_success(&cleanup);
    assert_eq!(stored(&old_name).await, None, "the old parameter was not removed");
    assert_eq!(
        stored(&new_name).await,
        Some(renamed.clone()),
        "the new parameter was touched"
    );

    // Stack deletion, twice (the second finds it gone).
    let deleted = h
        .call(h.events.delete(TYPE, LOGICAL_ID, &new_name, new.clone()))
        .await;
    h.assert_success(&deleted);
    assert_eq!(stored(&new_name).await, None);
    let again = h.call(h.events.delete(TYPE, LOGICAL_ID, &new_name, new)).await;
    h.assert_success(&again);
    assert_hidden(
        &h,
        &[&created, &updated, &cleanup, &deleted, &again],
        &[&original.value],
    );
}

async fn retain_keeps_the_parameter() {
    let h = start().await;
    let name = unique_name("retain");
    let properties = props(&name, json!({"OnDelete": "Retain"}));
    let created = h
        .call(h.events.create(TYPE, LOGICAL_ID, properties.clone()))
        .await;
    h.assert_success(&created);
    let before = stored(&name).await.unwrap();
    let deleted = h.call(h.events.delete(TYPE, LOGICAL_ID, &name, properties)).await;
    h.assert_success(&deleted);
    assert_eq!(
        stored(&name).await,
        Some(before.clone()),
        "Retain must keep the parameter as it was"
    );
    assert_hidden(&h, &[&created, &deleted], &[&before.value]);
}

async fn invalid_length_fails_naming_length() {
    let h = start().await;
    for length in ["7", "42", "abc"] {
        let name = unique_name(&format!("length-{length}"));
        let created = h
            .call(
                h.events
                    .create(TYPE, LOGICAL_ID, props(&name, json!({"Length": length}))),
            )
            .await;
        assert_failed(&created);
        assert!(
            created.reason().is_some_and(|r| r.contains("`Length`")),
            "Length {length}: {:?}",
            created.reason()
        );
        assert_eq!(stored(&name).await, None, "Length {length} created a parameter");
    }
}

async fn aws_managed_key_is_rejected() {
    let h = start().await;
    let name = unique_name("aws-managed-key");
    let created = h
        .call(h.events.create(
            TYPE,
            LOGICAL_ID,
            json!({"ParameterName": name, "KeyId": "alias/aws/ssm"}),
        ))
        .await;
    assert_failed(&created);
    assert!(
        created.reason().is_some_and(|r| r.contains("`KeyId`"))
            && created.reason().is_some_and(|r| r.contains("alias/aws/ssm"))
            && created.reason().is_some_and(|r| r.contains("customer-managed")),
        "{:?}",
        created.reason()
    );
    assert_eq!(stored(&name).await, None);
}

async fn return_password_sets_no_echo() {
    let h = start().await;
    let name = unique_name("return-password");
    let created = h
        .call(
            h.events
                .create(TYPE, LOGICAL_ID, props(&name, json!({"ReturnPassword": "true"}))),
        )
        .await;
    h.assert_success(&created);
    let s = stored(&name).await.unwrap();
    assert_eq!(created.response()["NoEcho"], json!(true));
    assert_eq!(created.data("Password"), Some(s.value.as_str()));
    assert_eq!(s.value.len(), 32);
    assert_hidden(&h, &[&created], &[&s.value]);
}

// ---- authorization (registered by `authz`) ----

/// The owner's parameter, then a second stack's Lambda with the settings off (unset) asks for
/// it with Adopt and/or ReturnPassword: FAILED naming the setting, the parameter unchanged, no
/// password in the response.
pub(crate) async fn second_stack_adopt_and_return_password_refused() {
    let owner = start().await;
    let name = unique_name("authz");
    let created = owner
        .call(owner.events.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
        .await;
    owner.assert_success(&created);
    let before = stored(&name).await.unwrap();

    let other = Harness::start("admin-secret", &moto().env()).await;
    assert_ne!(other.events.stack_id, owner.events.stack_id);
    for (extra, variable) in [
        (json!({"Adopt": "true"}), "CFN_ALLOW_ADOPT"),
        (json!({"ReturnPassword": "true"}), "CFN_ALLOW_RETURN_PASSWORD"),
        (json!({"Adopt": "true", "ReturnPassword": "true"}), "CFN_ALLOW_"),
    ] {
        let refused = other
            .call(other.events.create(TYPE, LOGICAL_ID, props(&name, extra.clone())))
            .await;
        assert_failed(&refused);
        assert!(
            refused.reason().is_some_and(|r| r.contains(variable)),
            "{extra}: {:?}",
            refused.reason()
        );
        let body = refused.response().to_string();
        assert!(!body.contains(&before.value), "the password is in the response");
        assert_eq!(
            stored(&name).await.unwrap(),
            before,
            "{extra}: the owner's parameter changed"
        );
        // An Update that would take it over (the physical id is the owner's parameter).
        let update = other
            .call(other.events.update(
                TYPE,
                LOGICAL_ID,
                &name,
                props(&name, extra.clone()),
                props(&name, json!({})),
            ))
            .await;
        assert_failed(&update);
        assert!(
            update.reason().is_some_and(|r| r.contains(variable)),
            "{extra}: {:?}",
            update.reason()
        );
        assert!(!update.response().to_string().contains(&before.value));
        assert_eq!(
            stored(&name).await.unwrap(),
            before,
            "{extra}: the owner's parameter changed"
        );
    }
    assert_hidden(&other, &[], &[&before.value]);

    // A bad setting value: every request is still answered; the gated one names the value.
    let mut env = moto().env();
    env.push(("CFN_ALLOW_ADOPT", "yes"));
    let odd = Harness::start("admin-secret", &env).await;
    let refused = odd
        .call(
            odd.events
                .create(TYPE, LOGICAL_ID, props(&name, json!({"Adopt": "true"}))),
        )
        .await;
    assert_failed(&refused);
    assert!(
        refused.reason().is_some_and(|r| r.contains("CFN_ALLOW_ADOPT"))
            && refused.reason().is_some_and(|r| r.contains("\"yes\"")),
        "{:?}",
        refused.reason()
    );
    let fine = unique_name("authz-plain");
    let plain = odd
        .call(odd.events.create(TYPE, LOGICAL_ID, props(&fine, json!({}))))
        .await;
    odd.assert_success(&plain);
    assert_eq!(stored(&name).await.unwrap(), before);
}

/// With the settings off, an Update of a
/// parameter this stack owns that carries Adopt goes through even where Adopt is off.
pub(crate) async fn own_update_with_adopt_is_served_when_off() {
    keys();
    let h = Harness::start("admin-secret", &moto().env()).await;
    let name = unique_name("authz-own");
    let created = h
        .call(h.events.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
        .await;
    h.assert_success(&created);
    let updated = h
        .call(h.events.update(
            TYPE,
            LOGICAL_ID,
            &name,
            props(&name, json!({"Adopt": "true", "Description": "d"})),
            props(&name, json!({})),
        ))
        .await;
    h.assert_success(&updated);
}

// ---- logs (registered by `leaks`) ----

/// Create (with ReturnPassword), rotate and Delete at TRACE, text and JSON: no password and no
/// ResponseURL signature in the Lambda's output.
pub(crate) async fn trace_logs_hold_no_secret() {
    for json_logs in [false, true] {
        let mut env = moto().env();
        env.extend([
            ("CFN_ALLOW_RETURN_PASSWORD", "true"),
            ("AWS_LAMBDA_LOG_LEVEL", "TRACE"),
        ]);
        if json_logs {
            env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON"));
        }
        keys();
        let h = Harness::start("admin-secret", &env).await;
        let name = unique_name("leaks");
        let old = props(&name, json!({"ReturnPassword": "true", "RotationToken": "1"}));
        let new = props(&name, json!({"ReturnPassword": "true", "RotationToken": "2"}));
        let created = h.call(h.events.create(TYPE, LOGICAL_ID, old.clone())).await;
        h.assert_success(&created);
        let first = stored(&name).await.unwrap().value;
        let updated = h
            .call(h.events.update(TYPE, LOGICAL_ID, &name, new.clone(), old))
            .await;
        h.assert_success(&updated);
        let second = stored(&name).await.unwrap().value;
        assert_ne!(first, second, "the rotation made a new password");
        let deleted = h.call(h.events.delete(TYPE, LOGICAL_ID, &name, new)).await;
        h.assert_success(&deleted);
        crate::leaks::assert_clean(&h.logs(), &[&first, &second]);
    }
}

/// `KeyId` naming moto's AWS-managed SSM key in every form, a disabled key or a key pending
/// deletion: FAILED naming the key, no parameter written.
pub(crate) async fn unusable_keys_refused() {
    let h = start().await;
    let aws_arn = local_invoke::fixtures::kms_aws_managed_key("alias/aws/ssm");
    let aws_id = aws_arn.rsplit('/').next().unwrap().to_string();
    let disabled = local_invoke::fixtures::kms_key_in_state("disabled");
    let pending = local_invoke::fixtures::kms_key_in_state("pending-deletion");
    for (key, why) in [
        ("alias/aws/ssm".to_string(), "AWS-managed"),
        (
            "arn:aws:kms:us-east-1:123456789012:alias/aws/ssm".to_string(),
            "AWS-managed",
        ),
        (aws_id, "AWS-managed"),
        (aws_arn, "AWS-managed"),
        (disabled, "Disabled"),
        (pending, "PendingDeletion"),
    ] {
        let name = unique_name("badkey");
        let mut properties = props(&name, json!({}));
        properties["KeyId"] = json!(key);
        let created = h.call(h.events.create(TYPE, LOGICAL_ID, properties)).await;
        assert_failed(&created);
        assert!(
            created.reason().is_some_and(|r| r.contains(&key)),
            "{key}: {:?}",
            created.reason()
        );
        assert!(
            created.reason().is_some_and(|r| r.contains(why)),
            "{key}: {:?}",
            created.reason()
        );
        assert_eq!(stored(&name).await, None, "{key}: a parameter was written");
    }
}

/// The value of `version` of a parameter, as `{{resolve:ssm-secure:NAME:VERSION}}` reads it.
async fn value_at(name: &str, version: &str) -> String {
    ssm()
        .get_parameter()
        .name(format!("{name}:{version}"))
        .with_decryption(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("version {version} of {name} cannot be read back: {e:?}"))
        .parameter
        .unwrap()
        .value
        .unwrap()
}

/// SSM keeps 100 versions and refuses a 101st while the oldest is labelled (moto too). 150
/// rotations (r1..r150) all succeed; CloudFormation rolling the last back restores r149's
/// password; an Update back to r1, whose version SSM has deleted, answers SUCCESS with a new
/// password bound to r1 (a duplicate of it makes no other). After every step `Data.Version`
/// reads back the latest value, which the cluster's pinned dynamic reference then holds.
async fn rotations_past_ssm_history_then_back_to_the_first_token() {
    const ROTATIONS: usize = 150;
    let h = start().await;
    let name = unique_name("history-limit");
    let token = |n: usize| props(&name, json!({"RotationToken": format!("r{n}")}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, token(0))).await;
    h.assert_success(&created);
    let mut passwords = vec![stored(&name).await.unwrap().value];
    let mut exchanges = vec![created];
    let agree = |exchange: &Exchange, latest: &Stored| {
        assert_eq!(
            exchange.data("Version"),
            Some(latest.version.to_string().as_str()),
            "Data.Version is not the latest version"
        );
    };
    for n in 1..=ROTATIONS {
        let rotated = h
            .call(h.events.update(TYPE, LOGICAL_ID, &name, token(n), token(n - 1)))
            .await;
        assert_eq!(
            rotated.status(),
            Some("SUCCESS"),
            "rotation {n}: {:?}",
            rotated.reason()
        );
        let latest = stored(&name).await.unwrap();
        agree(&rotated, &latest);
        assert_eq!(
            value_at(&name, rotated.data("Version").unwrap()).await,
            latest.value
        );
        assert!(
            !passwords.contains(&latest.value),
            "rotation {n} reused a password"
        );
        passwords.push(latest.value);
        exchanges.push(rotated);
    }
    let versions = local_invoke::fixtures::parameter_history(&name).await;
    assert_eq!(versions.len(), 100, "SSM keeps the 100 newest versions");
    assert_eq!(versions.last().unwrap().0, ROTATIONS as i64 + 1);
    assert!(versions.iter().all(|(_, _, labels)| labels.len() <= 10));

    // CloudFormation rolls rotation 150 back: r149's password is the latest again.
    let rolled_back = h
        .call(
            h.events
                .update(TYPE, LOGICAL_ID, &name, token(ROTATIONS - 1), token(ROTATIONS)),
        )
        .await;
    h.assert_success(&rolled_back);
    let latest = stored(&name).await.unwrap();
    assert_eq!(
        latest.value,
        passwords[ROTATIONS - 1],
        "the rollback did not restore r149"
    );
    agree(&rolled_back, &latest);
    assert_eq!(
        value_at(&name, rolled_back.data("Version").unwrap()).await,
        latest.value
    );

    // Back to the token of rotation 1, whose version aged out of SSM long ago.
    let first_token = h
        .events
        .update(TYPE, LOGICAL_ID, &name, token(1), token(ROTATIONS - 1));
    let back = h.call(first_token.clone()).await;
    h.assert_success(&back);
    let restored = stored(&name).await.unwrap();
    agree(&back, &restored);
    assert!(
        !passwords.contains(&restored.value),
        "r1's password was gone from SSM, so the token gets a new one"
    );
    assert!(
        local_invoke::fixtures::parameter_history(&name)
            .await
            .last()
            .unwrap()
            .2
            .contains(&ssm_secret::rotation_label(Some("r1"))),
        "the new password is bound to r1"
    );
    let again = h.call(events_retry(&first_token)).await;
    h.assert_success(&again);
    assert_eq!(
        again.data("Version"),
        back.data("Version"),
        "a duplicate made another password"
    );
    assert_eq!(stored(&name).await.unwrap().value, restored.value);
    assert!(restored.key_id.as_deref() == Some(KEY) && owned_by(&restored, &h.events.stack_id));

    exchanges.extend([rolled_back, back, again]);
    passwords.push(restored.value);
    let refs: Vec<&Exchange> = exchanges.iter().collect();
    let secrets: Vec<&str> = passwords.iter().map(String::as_str).collect();
    assert_hidden(&h, &refs, &secrets);
}

/// An Update whose only change is CloudFormation's own (`ServiceToken`, `ServiceTimeout`) writes
/// no version, moves no label and changes no tag: on a fresh parameter (version 1, bound by its
/// created-for tag) and on a rotated one (a label on the latest version).
async fn an_update_changing_only_service_token_or_timeout_writes_nothing() {
    let h = start().await;
    let name = unique_name("no-op-update");
    let r1 = props(&name, json!({"RotationToken": "r1", "Description": "admin"}));
    let r2 = props(&name, json!({"RotationToken": "r2", "Description": "admin"}));
    let created = h.call(h.events.create(TYPE, LOGICAL_ID, r1.clone())).await;
    h.assert_success(&created);
    let mut exchanges = vec![created];
    for (current, previous) in [(r1.clone(), r1.clone()), (r2.clone(), r1.clone())] {
        if current != previous {
            let rotated = h
                .call(
                    h.events
                        .update(TYPE, LOGICAL_ID, &name, current.clone(), previous),
                )
                .await;
            h.assert_success(&rotated);
            exchanges.push(rotated);
        }
        let before = (
            local_invoke::fixtures::parameter_history(&name).await,
            stored(&name).await.unwrap(),
        );
        let mut event = h
            .events
            .update(TYPE, LOGICAL_ID, &name, current.clone(), current.clone());
        event["ResourceProperties"]["ServiceToken"] =
            json!("arn:aws:lambda:us-east-1:123456789012:function:admin-secret-v2");
        event["ResourceProperties"]["ServiceTimeout"] = json!("600");
        let unchanged = h.call(event).await;
        h.assert_success(&unchanged);
        let after = (
            local_invoke::fixtures::parameter_history(&name).await,
            stored(&name).await.unwrap(),
        );
        assert_eq!(after, before, "an Update that changes nothing wrote to SSM");
        assert_eq!(
            unchanged.data("Version"),
            Some(before.1.version.to_string().as_str())
        );
        exchanges.push(unchanged);
    }
    let value = stored(&name).await.unwrap().value;
    let refs: Vec<&Exchange> = exchanges.iter().collect();
    assert_hidden(&h, &refs, &[&value]);
}

// ---- faults: throttling, 5xx, dropped connections, a process killed mid-request ----

/// The Lambda behind a fault proxy in front of moto, with `rate` of its AWS requests faulted on
/// the schedule `seed` gives.
async fn start_faulty(seed: u64, rate: f64) -> (Harness, local_invoke::faults::FaultProxy) {
    keys();
    let proxy = local_invoke::faults::FaultProxy::start(&moto().endpoint, seed, rate).await;
    let h = Harness::start("admin-secret", &proxy.env()).await;
    (h, proxy)
}

/// Create, a duplicate Create, a rotation, its rollback and Delete, with a quarter of the AWS
/// requests throttled, answered 500/503, dropped before or after moto acted, or delayed: every
/// request is answered once, with SUCCESS (the SDK's retries absorb the faults), and the state
/// is what the sequence asks for.
async fn a_sequence_at_25_percent_injected_aws_faults() {
    for seed in [11, 12, 13] {
        let (h, proxy) = start_faulty(seed, 0.25).await;
        let name = unique_name(&format!("faults-{seed}"));
        let r1 = props(&name, json!({"RotationToken": "r1"}));
        let r2 = props(&name, json!({"RotationToken": "r2"}));
        let create = h.events.create(TYPE, LOGICAL_ID, r1.clone());
        let created = h.call(create.clone()).await;
        h.assert_answered_once(&created, "Create");
        let p1 = stored(&name).await.unwrap();
        let duplicate = h.call(events_retry(&create)).await;
        h.assert_answered_once(&duplicate, "duplicate Create");
        assert_eq!(stored(&name).await.unwrap().value, p1.value);
        let rotated = h
            .call(h.events.update(TYPE, LOGICAL_ID, &name, r2.clone(), r1.clone()))
            .await;
        h.assert_answered_once(&rotated, "rotation");
        let p2 = stored(&name).await.unwrap();
        assert_ne!(p2.value, p1.value);
        let rolled_back = h
            .call(h.events.update(TYPE, LOGICAL_ID, &name, r1.clone(), r2))
            .await;
        h.assert_answered_once(&rolled_back, "rollback");
        let back = stored(&name).await.unwrap();
        assert_eq!(back.value, p1.value, "the rollback did not restore r1's password");
        assert_eq!(
            rolled_back.data("Version"),
            Some(back.version.to_string().as_str())
        );
        let deleted = h.call(h.events.delete(TYPE, LOGICAL_ID, &name, r1)).await;
        h.assert_answered_once(&deleted, "Delete");
        assert!(stored(&name).await.is_none(), "the parameter survived its Delete");
        let seen = proxy.seen();
        let faulted = seen.iter().filter(|s| s.fault.is_some()).count();
        eprintln!(
            "seed {seed}: {faulted} of {} AWS requests faulted: {:?}",
            seen.len(),
            seen.iter().filter_map(|s| s.fault).collect::<Vec<_>>()
        );
        assert!(faulted > 0, "seed {seed}: the proxy injected nothing");
        assert_hidden(
            &h,
            &[&created, &duplicate, &rotated, &rolled_back, &deleted],
            &[&p1.value, &p2.value],
        );
    }
}

/// When every attempt is throttled, or every attempt meets a 503, the FAILED Reason names the
/// call and what happened to it.
async fn exhausted_retries_name_the_call() {
    use local_invoke::faults::Fault;
    for (fault, says) in [
        (Fault::Throttle, "throttled"),
        (Fault::Status(503), "unavailable"),
    ] {
        let (h, proxy) = start_faulty(1, 0.0).await;
        let name = unique_name("exhausted");
        // The key check (DescribeKey, ListAliases) passes and is remembered; then every attempt
        // of the next Create's one call, PutParameter, meets the fault.
        let created = h
            .call(h.events.create(TYPE, LOGICAL_ID, props(&name, json!({}))))
            .await;
        h.assert_answered_once(&created, "a clean Create");
        let name2 = unique_name("exhausted-create");
        proxy.script(std::iter::repeat_n(
            fault,
            cfn_custom_resource::DEFAULT_MAX_ATTEMPTS as usize,
        ));
        let failed = h
            .call(h.events.create(TYPE, LOGICAL_ID, props(&name2, json!({}))))
            .await;
        assert_eq!(failed.puts.len(), 1);
        assert_eq!(failed.status(), Some("FAILED"), "{:?}", failed.response());
        let reason = failed.reason().expect("a Reason");
        assert!(
            reason.contains("PutParameter of SSM parameter")
                && reason.contains(says)
                && reason.contains("on every attempt"),
            "{reason}"
        );
        assert!(stored(&name2).await.is_none());
    }
}

/// For Create, a rotation Update and Delete: the process is killed (SIGKILL) once moto has acted
/// on its `k`th AWS request and before the answer reaches it, for every `k` the request makes;
/// then a new process gets the same event (same RequestId and ResponseURL), as Lambda retries.
/// Each re-delivery answers SUCCESS, the only response to that event, with one parameter whose
/// latest version is `Data.Version` (and none after Delete).
async fn killed_after_each_aws_call_then_redelivered() {
    let mut points = 0;
    for phase in ["Create", "Update", "Delete"] {
        let mut k = 1;
        loop {
            let (mut h, proxy) = start_faulty(k as u64, 0.0).await;
            let env = proxy.env();
            let name = unique_name(&format!("crash-{phase}-{k}"));
            let r1 = props(&name, json!({"RotationToken": "r1"}));
            let r2 = props(&name, json!({"RotationToken": "r2"}));
            let p1 = if phase == "Create" {
                None
            } else {
                let created = h.call(h.events.create(TYPE, LOGICAL_ID, r1.clone())).await;
                h.assert_answered_once(&created, "setup Create");
                // A new process, as after a crash: the key check is not remembered.
                h.restart(&env).await;
                Some(stored(&name).await.unwrap())
            };
            let event = match phase {
                "Create" => h.events.create(TYPE, LOGICAL_ID, r1.clone()),
                "Update" => h.events.update(TYPE, LOGICAL_ID, &name, r2.clone(), r1.clone()),
                _ => h.events.delete(TYPE, LOGICAL_ID, &name, r1.clone()),
            };
            proxy.kill_at(k, h.lambda.pid());
            if let Some(finished) = h.call_unless_killed(event.clone()).await {
                // Fewer than k AWS requests: every crash point of this phase was tried.
                h.assert_answered_once(&finished, phase);
                assert!(k > 1, "{phase} made no AWS request");
                break;
            }
            h.restart(&env).await;
            let again = h.call(events_retry(&event)).await;
            h.assert_answered_once(
                &again,
                &format!("{phase} re-delivered after a kill at AWS request {k}"),
            );
            assert_eq!(
                h.all_puts_for(&event).len(),
                1,
                "{phase} {k}: one response in all"
            );
            let now = stored(&name).await;
            match phase {
                "Delete" => assert!(now.is_none(), "{phase} {k}: the parameter survived"),
                _ => {
                    let now = now.unwrap_or_else(|| panic!("{phase} {k}: no parameter"));
                    assert_eq!(again.data("Version"), Some(now.version.to_string().as_str()));
                    assert!(owned_by(&now, &h.events.stack_id), "{phase} {k}: not tagged ours");
                    assert_eq!(now.key_id.as_deref(), Some(KEY));
                    if let Some(p1) = &p1 {
                        assert_ne!(
                            now.value, p1.value,
                            "{phase} {k}: the rotation kept r1's password"
                        );
                        let latest = local_invoke::fixtures::parameter_history(&name)
                            .await
                            .pop()
                            .unwrap();
                        assert!(
                            latest.2.contains(&ssm_secret::rotation_label(Some("r2"))),
                            "{phase} {k}: the latest version is not bound to r2"
                        );
                    }
                }
            }
            points += 1;
            k += 1;
        }
    }
    eprintln!("admin-secret: {points} crash points, each re-delivered to SUCCESS");
    assert!(points >= 6, "only {points} crash points");
}
