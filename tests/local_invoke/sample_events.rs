//! The sample events in `tests/events/` through the ecosystem's own tools: each release binary
//! serves `cargo lambda watch --only-lambda-apis`, and `cargo lambda invoke --data-file` sends it
//! the Create, Update and Delete samples in turn. Only what must point at this machine is
//! rewritten (the ResponseURL, the KMS key, the cluster, the listener, unique names); every other
//! property is the sample's own. `cargo lambda watch` sends `Lambda-Runtime-Deadline-Ms: 600000`,
//! a duration where Lambda sends epoch milliseconds, so this also proves the guard's handling of
//! an implausible deadline.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use libtest_mimic::Trial;
use local_invoke::postgres::{postgres, random_hex};
use local_invoke::services::{self, moto, venv_bin};
use local_invoke::{Lambda, Profile, Receiver, binary_path, fixtures};
use serde_json::{Value, json};

pub(crate) fn trials() -> Vec<Trial> {
    trials![
        sample_events;
        admin_secret_under_cargo_lambda_watch,
        service_database_under_cargo_lambda_watch,
        listener_rule_priority_under_cargo_lambda_watch,
    ]
}

/// `cargo lambda watch --only-lambda-apis` on a free loopback port; killed when dropped.
struct Watch {
    child: Child,
    port: u16,
}

impl Watch {
    fn start() -> Self {
        let port = services::free_port();
        let child = Command::new(venv_bin("cargo-lambda"))
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P"])
            .arg(port.to_string())
            .current_dir(services::repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cargo lambda watch");
        assert!(
            services::wait_for_port(port, Duration::from_secs(20)),
            "cargo lambda watch did not listen on {port}"
        );
        Self { child, port }
    }

    /// `cargo lambda invoke _ --data-file <file>`; panics with its output when it fails.
    fn invoke(&self, file: &Path) -> String {
        let output = Command::new(venv_bin("cargo-lambda"))
            .args(["lambda", "invoke", "_", "-A", "127.0.0.1", "-P"])
            .arg(self.port.to_string())
            .arg("--data-file")
            .arg(file)
            .current_dir(services::repo_root())
            .stdin(Stdio::null())
            .output()
            .expect("run cargo lambda invoke");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "cargo lambda invoke failed: {text}");
        text
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plays one resource's samples (create, update, delete) against its release binary and returns
/// the three responses.
async fn play(lambda: &str, env: &[(&str, &str)], overrides: Value) -> Vec<Value> {
    let receiver = Receiver::start().await;
    let watch = tokio::task::spawn_blocking(Watch::start).await.unwrap();
    let runtime_api = format!("http://127.0.0.1:{}/.rt", watch.port);
    let mut env = env.to_vec();
    env.push(("AWS_LAMBDA_FUNCTION_NAME", "_"));
    let process = Lambda::spawn(&binary_path(lambda, Profile::Release), &runtime_api, &env);

    let dir = services::scratch_dir().join(format!("sample-events-{lambda}-{}", random_hex(4)));
    std::fs::create_dir_all(&dir).unwrap();
    let watch = std::sync::Arc::new(watch);
    let mut physical_id: Option<String> = None;
    let mut responses = Vec::new();
    for kind in ["create", "update", "delete"] {
        let path = services::repo_root().join(format!("tests/events/{lambda}-{kind}.json"));
        let mut event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = format!("{lambda}-{kind}-{}", random_hex(4));
        event["ResponseURL"] = json!(receiver.response_url(&name));
        for key in ["ResourceProperties", "OldResourceProperties"] {
            if let Some(properties) = event.get_mut(key).and_then(Value::as_object_mut) {
                for (property, value) in overrides.as_object().unwrap() {
                    properties.insert(property.clone(), value.clone());
                }
            }
        }
        if let Some(id) = &physical_id {
            event["PhysicalResourceId"] = json!(id);
        }
        let file = dir.join(format!("{kind}.json"));
        std::fs::write(&file, serde_json::to_vec_pretty(&event).unwrap()).unwrap();
        let w = watch.clone();
        tokio::task::spawn_blocking(move || w.invoke(&file))
            .await
            .unwrap();
        let puts = receiver.wait_for(&name, 1, Duration::from_secs(10)).await;
        assert_eq!(
            puts.len(),
            1,
            "{lambda} {kind}: one PUT; logs:\n{}",
            process.logs()
        );
        let response = puts[0].json.clone();
        assert_eq!(
            response["Status"],
            "SUCCESS",
            "{lambda} {kind}: {response}\nlogs:\n{}",
            process.logs()
        );
        assert_eq!(response["RequestId"], event["RequestId"]);
        physical_id = response["PhysicalResourceId"].as_str().map(str::to_string);
        responses.push(response);
    }
    assert!(
        process.logs().contains("deadline is implausible"),
        "cargo lambda watch's duration deadline was replaced by the default budget"
    );
    responses
}

async fn admin_secret_under_cargo_lambda_watch() {
    let name = format!("/sample-events/{}/admin-password", random_hex(6));
    let key = fixtures::kms_key("sample events admin secret");
    let responses = play(
        "admin-secret",
        &moto().env(),
        json!({"ParameterName": name, "KeyId": key}),
    )
    .await;
    assert_eq!(responses[0]["PhysicalResourceId"], name.as_str());
    // The update sample changes the RotationToken: a new version.
    let version = |r: &Value| r["Data"]["Version"].as_str().unwrap().parse::<i64>().unwrap();
    assert!(version(&responses[1]) > version(&responses[0]), "{responses:?}");
    let gone = moto().ssm().get_parameter().name(&name).send().await;
    assert!(
        gone.is_err(),
        "the delete sample (OnDelete Delete) removed {name}"
    );
}

async fn service_database_under_cargo_lambda_watch() {
    let pg = postgres();
    let admin_parameter = format!("/sample-events/{}/admin-password", random_hex(6));
    moto()
        .ssm()
        .put_parameter()
        .name(&admin_parameter)
        .value(&pg.admin_password)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put the admin password");
    let database = format!("orders_{}", random_hex(6));
    let key = fixtures::kms_key("sample events service database");
    let responses = play(
        "service-database",
        &moto().env(),
        json!({
            "ClusterEndpoint": pg.host,
            "Port": pg.port.to_string(),
            "AdminUsername": pg.admin_user,
            "AdminPasswordParameterName": admin_parameter,
            "DatabaseName": database,
            "PasswordParameterName": format!("/sample-events/{database}/password"),
            "KeyId": key,
            "CaCertificate": pg.ca_pem,
        }),
    )
    .await;
    assert_eq!(responses[0]["Data"]["DatabaseName"], database.as_str());
    assert_eq!(
        responses[1]["PhysicalResourceId"],
        responses[0]["PhysicalResourceId"]
    );
}

async fn listener_rule_priority_under_cargo_lambda_watch() {
    let listener = fixtures::listener([1, 2]);
    let responses = play(
        "listener-rule-priority",
        &moto().env(),
        json!({"ListenerArn": listener}),
    )
    .await;
    assert_eq!(responses[0]["Data"]["Priority"], "3", "{responses:?}");
    assert_eq!(
        responses[1]["Data"]["Priority"], "3",
        "the update sample keeps the listener, so the priority stays"
    );
}
