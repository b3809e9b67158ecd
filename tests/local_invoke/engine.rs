//! The four stacks of `cfn/` evaluated by a CloudFormation engine nobody here wrote: moto's,
//! behind `tests/engine/cfn_engine.py`, which hands each `Custom::` Create and Delete to the real
//! release binaries and stands in for Aurora on the throwaway PostgreSQL.
//!
//! Our own driver (`make demo`) resolves the templates with its own reader; here the templates
//! are deployed as a user deploys them, through `CreateStack`/`DeleteStack`, and the test reads
//! back what the binaries received and what the engine built with their answers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use libtest_mimic::Trial;
use local_invoke::postgres::{Postgres, postgres};
use local_invoke::services::{self, Moto, free_port, own_child, repo_root, scratch_dir, venv_bin};
use local_invoke::templates::driver_properties;
use local_invoke::{Profile, binary_path};
use serde_json::{Value, json};

const SUPPORT: &str = "platform-support";
const FARGATE: &str = "platform-fargate-cluster";
const RDS: &str = "platform-rds-cluster";

/// The two service stacks, created at the same time: (service, database, OnDelete).
const SERVICES: [(&str, &str, &str); 2] = [
    ("engine-orders", "engine_orders", "Retain"),
    ("engine-payments", "engine_payments", "Drop"),
];

pub(crate) fn trials() -> Vec<Trial> {
    trials![
        engine;
        four_stacks_through_moto_cloudformation_create_wire_and_delete,
        the_demo_driver_resolves_what_the_engine_sends,
    ]
}

/// The four kinds of stack created once through the engine (both trials read them).
pub(crate) struct Deployment {
    pub network: Value,
    /// Each stack's outputs, by stack name.
    pub outputs: BTreeMap<String, Value>,
    /// Every export's value, and which of them some stack imports, right after the creates.
    pub exports: Value,
    /// Stacks that did not reach CREATE_COMPLETE.
    pub problems: Vec<String>,
}

/// Creates, in dependency order, support, fargate-cluster and rds-cluster, then the two
/// service stacks at the same time.
pub(crate) fn deployment() -> &'static Deployment {
    static DEPLOYMENT: OnceLock<Deployment> = OnceLock::new();
    DEPLOYMENT.get_or_init(|| {
        let engine = engine();
        let mut problems = Vec::new();
        let platform = engine.stacks(&["platform"]);
        let network = platform["network"].clone();
        let mut outputs = complete(platform["stacks"].as_array().expect("stacks"), &mut problems);
        outputs.extend(complete(&engine.create(service_spec(&network)), &mut problems));
        let exports = engine.stacks(&["exports"]);
        Deployment {
            network,
            outputs,
            exports,
            problems,
        }
    })
}

/// A running engine: its endpoint and the file it records every event and response in.
pub(crate) struct Engine {
    pub moto: Moto,
    pub record: PathBuf,
    pub logs: PathBuf,
}

/// Starts `cfn_engine.py` (once per process) against the throwaway PostgreSQL, with the
/// release binaries.
pub(crate) fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let pg = postgres();
        let dir = scratch_dir().join("engine");
        std::fs::create_dir_all(&dir).expect("engine dir");
        let ca = dir.join("pg-ca.pem");
        std::fs::write(&ca, &pg.ca_pem).expect("CA file");
        // The stand-in plays RDS's control plane: the bootstrap superuser where there is one.
        let (user, password) = pg
            .superuser
            .clone()
            .unwrap_or_else(|| (pg.admin_user.clone(), pg.admin_password.clone()));
        let bin_dir = binary_path("admin-secret", Profile::Release)
            .parent()
            .expect("release dir")
            .to_path_buf();
        let port = free_port();
        let record = dir.join("record.jsonl");
        let log = std::fs::File::create(dir.join("engine.log")).expect("engine log");
        let child = Command::new(venv_bin("python"))
            .arg(repo_root().join("tests/engine/cfn_engine.py"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("ENGINE_BIN_DIR", &bin_dir)
            .env("ENGINE_RECORD", &record)
            .env("ENGINE_LOG_DIR", &dir)
            .env("ENGINE_PG_HOST", &pg.host)
            .env("ENGINE_PG_ADDRESS", &pg.address)
            .env("ENGINE_PG_PORT", pg.port.to_string())
            .env("ENGINE_PG_USER", user)
            .env("ENGINE_PG_PASSWORD", password)
            .env("ENGINE_PG_CA_FILE", &ca)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start cfn_engine.py");
        own_child(child);
        assert!(
            services::wait_for_port(port, Duration::from_secs(60)),
            "cfn_engine.py did not listen within 60 s; see {}",
            dir.join("engine.log").display()
        );
        Engine {
            moto: Moto {
                endpoint: format!("http://127.0.0.1:{port}"),
            },
            record,
            logs: dir,
        }
    })
}

impl Engine {
    /// Runs `tests/engine/stacks.py` against the endpoint; its JSON output.
    pub(crate) fn stacks(&self, args: &[&str]) -> Value {
        let script = repo_root().join("tests/engine/stacks.py");
        let code = format!(
            "import runpy, sys; sys.argv = [{:?}] + sys.argv[1:]; runpy.run_path({:?}, run_name='__main__')",
            script.display().to_string(),
            script.display().to_string()
        );
        let out = self.moto.python(&code, args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("stacks.py printed {out:?}: {e}"))
    }

    /// Creates the stacks of `spec` at the same time; each one's `{name, status, outputs}`.
    pub(crate) fn create(&self, spec: Value) -> Vec<Value> {
        let file = self
            .logs
            .join(format!("spec-{}.json", local_invoke::postgres::random_hex(4)));
        std::fs::write(&file, spec.to_string()).expect("spec file");
        let out = self.stacks(&["create", file.to_str().expect("path")]);
        out.as_array().cloned().unwrap_or_default()
    }

    /// Every event the engine delivered, with the response it got, in delivery order.
    pub(crate) fn exchanges(&self) -> Vec<(Value, Value)> {
        let text = std::fs::read_to_string(&self.record).unwrap_or_default();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("record line"))
            .collect();
        let responses: BTreeMap<String, Value> = lines
            .iter()
            .filter(|l| l.get("response").is_some())
            .map(|l| {
                (
                    l["RequestId"].as_str().unwrap_or_default().to_string(),
                    l["response"].clone(),
                )
            })
            .collect();
        lines
            .iter()
            .filter_map(|l| l.get("event"))
            .map(|e| {
                let id = e["RequestId"].as_str().unwrap_or_default();
                (e.clone(), responses.get(id).cloned().unwrap_or(Value::Null))
            })
            .collect()
    }

    /// The one exchange for (stack name, logical id, request type).
    pub(crate) fn exchange(&self, stack: &str, logical_id: &str, request_type: &str) -> (Value, Value) {
        let found: Vec<_> = self
            .exchanges()
            .into_iter()
            .filter(|(e, _)| {
                e["StackId"]
                    .as_str()
                    .is_some_and(|s| s.contains(&format!(":stack/{stack}/")))
                    && e["LogicalResourceId"] == logical_id
                    && e["RequestType"] == request_type
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "expected one {request_type} of {stack}/{logical_id}, got {found:#?}"
        );
        found.into_iter().next().unwrap()
    }

    /// Everything the Lambda processes printed.
    pub(crate) fn lambda_logs(&self) -> String {
        ["admin-secret", "service-database", "listener-rule-priority"]
            .iter()
            .map(|n| std::fs::read_to_string(self.logs.join(format!("{n}.log"))).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn template(name: &str) -> String {
    repo_root().join("cfn").join(name).display().to_string()
}

pub(crate) fn service_spec(network: &Value) -> Value {
    Value::Array(
        SERVICES
            .iter()
            .map(|(service, database, on_delete)| {
                json!({ "name": format!("service-{service}"), "template": template("service.yaml"), "parameters": {
                    "ServiceName": service, "DatabaseName": database, "DatabaseOnDelete": on_delete,
                    "HostName": format!("{service}.example.com"), "HostedZoneId": network["HostedZoneId"],
                    "ContainerImage": format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/{service}:1.0.0") } })
            })
            .collect(),
    )
}

fn complete(results: &[Value], problems: &mut Vec<String>) -> BTreeMap<String, Value> {
    let mut outputs = BTreeMap::new();
    for r in results {
        if r["status"] != "CREATE_COMPLETE" {
            problems.push(format!("{} is {} ({})", r["name"], r["status"], r["reason"]));
        }
        outputs.insert(
            r["name"].as_str().unwrap_or_default().to_string(),
            r["outputs"].clone(),
        );
    }
    outputs
}

/// Reads with boto3 what the engine built: the task definition's environment, the listener's
/// rules, SSM parameters under a path.
const READ: &str = r#"
import json, sys, boto3
cmd = sys.argv[1]
if cmd == "task-env":
    ecs = boto3.client("ecs")
    arn = ecs.list_task_definitions(familyPrefix=sys.argv[2])["taskDefinitionArns"][-1]
    c = ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"]["containerDefinitions"][0]
    print(json.dumps({e["name"]: e["value"] for e in c.get("environment", [])}))
elif cmd == "rules":
    rules = boto3.client("elbv2").describe_rules(ListenerArn=sys.argv[2])["Rules"]
    print(json.dumps([{"priority": r["Priority"], "hosts": [v for c in r["Conditions"] for v in c.get("HostHeaderConfig", {}).get("Values", [])]} for r in rules]))
elif cmd == "parameters":
    ssm = boto3.client("ssm")
    names = [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate() for p in page["Parameters"]]
    print(json.dumps(sorted(names)))
"#;

fn read(engine: &Engine, args: &[&str]) -> Value {
    serde_json::from_str(&engine.moto.python(READ, args)).expect("read script output")
}

async fn can_log_in(pg: &Postgres, user: &str, password: &str, database: &str) -> bool {
    pg.connect(user, password, database).await.is_ok()
}

async fn exists(pg: &Postgres, sql: &str, name: &str) -> bool {
    let admin = pg.admin("postgres").await;
    admin
        .query_opt(sql, &[&name])
        .await
        .map(|r| r.is_some())
        .unwrap_or(false)
}

async fn secret(engine: &Engine, name: &str) -> Option<String> {
    engine
        .moto
        .ssm()
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()?
        .parameter?
        .value
}

/// What each binary received, checked against what the template gives for these parameters and
/// these stacks' outputs; and parsed with the handler's own property type, numbers as moto sends
/// them.
fn check_properties(
    engine: &Engine,
    outputs: &BTreeMap<String, Value>,
    pg: &Postgres,
    problems: &mut Vec<String>,
) {
    let token = |f: &str| format!("arn:aws:lambda:us-east-1:123456789012:function:{f}");
    let (admin, _) = engine.exchange(RDS, "AdminSecret", "Create");
    let mut expected = vec![(
        admin["ResourceProperties"].clone(),
        json!({
            "ServiceToken": token("admin-secret"), "ServiceTimeout": 300,
            "ParameterName": format!("/platform/rds/{RDS}/admin-password"),
            "KeyId": outputs[RDS]["KeyArn"], "Length": 32,
            "Description": format!("Aurora master password of {RDS}"),
            "RotationToken": "", "OnDelete": "Delete",
        }),
    )];
    for (service, database, on_delete) in SERVICES {
        let stack = format!("service-{service}");
        let (db, _) = engine.exchange(&stack, "ServiceDatabase", "Create");
        expected.push((
            db["ResourceProperties"].clone(),
            json!({
                "ServiceToken": token("service-database"), "ServiceTimeout": 300,
                "ClusterEndpoint": pg.host, "Port": pg.port.to_string(),
                "AdminUsername": "platform_admin",
                "AdminPasswordParameterName": format!("/platform/rds/{RDS}/admin-password"),
                "DatabaseName": database,
                "PasswordParameterName": format!("/platform/services/{service}/database-password"),
                "KeyId": outputs[&stack]["KeyArn"], "OnDelete": on_delete,
                // The engine's one addition: the stand-in cluster's test CA (cfn_engine.py).
                "CaCertificate": pg.ca_pem,
            }),
        ));
        let (priority, _) = engine.exchange(&stack, "ListenerRulePriority", "Create");
        expected.push((
            priority["ResourceProperties"].clone(),
            json!({
                "ServiceToken": token("listener-rule-priority"), "ServiceTimeout": 300,
                "ListenerArn": outputs[FARGATE]["ListenerArn"],
            }),
        ));
    }
    for (got, want) in &expected {
        if got != want {
            problems.push(format!("received properties differ:\n got {got}\nwant {want}"));
        }
    }
    // The handlers' own types accept them as sent (numbers included).
    use cfn_custom_resource::parse_property_map as parse;
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("ServiceToken");
            m.remove("ServiceTimeout");
        }
        v
    };
    let results = [
        parse::<admin_secret::Properties>(strip(&expected[0].0)).map(drop),
        parse::<service_database::Properties>(strip(&expected[1].0)).map(drop),
        parse::<listener_rule_priority::Properties>(strip(&expected[2].0)).map(drop),
    ];
    for r in results {
        if let Err(e) = r {
            problems.push(format!("a handler's type rejects what the engine sent: {e}"));
        }
    }
}

async fn four_stacks_through_moto_cloudformation_create_wire_and_delete() {
    let engine = tokio::task::spawn_blocking(engine).await.expect("engine");
    let deployed = tokio::task::spawn_blocking(deployment).await.expect("deployment");
    let pg = postgres();
    let mut problems = Vec::new();
    assert!(
        deployed.problems.is_empty(),
        "stacks did not complete:\n{}",
        deployed.problems.join("\n")
    );
    let outputs = deployed.outputs.clone();

    check_properties(engine, &outputs, pg, &mut problems);
    let (admin_parameter, admin_password) = check_master_password(engine, &outputs, pg, &mut problems).await;
    let mut claims = Vec::new();
    let mut passwords = vec![admin_password];
    for i in 0..SERVICES.len() {
        let (claimed, password) = check_service(engine, &outputs, pg, i, &mut problems).await;
        claims.push(claimed);
        passwords.push(password);
    }
    if claims[0] == claims[1] {
        problems.push(format!("both services got priority {}", claims[0]));
    }
    check_exports(&deployed.exports, &mut problems);
    delete_services(engine, &outputs, pg, &claims, &mut problems).await;
    delete_platform(engine, &admin_parameter, &mut problems).await;
    check_no_password_logged(engine, &passwords, &mut problems);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The cluster's master password: the version AdminSecret answered, resolved by the engine
/// through {{resolve:ssm-secure:...}} and applied by the stand-in. Returns AdminSecret's
/// parameter and the password.
async fn check_master_password(
    engine: &Engine,
    outputs: &BTreeMap<String, Value>,
    pg: &Postgres,
    problems: &mut Vec<String>,
) -> (String, String) {
    let (_, admin) = engine.exchange(RDS, "AdminSecret", "Create");
    let admin_parameter = admin["Data"]["ParameterName"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let version = admin["Data"]["Version"].as_str().unwrap_or_default();
    let admin_password = secret(engine, &format!("{admin_parameter}:{version}"))
        .await
        .unwrap_or_default();
    if !can_log_in(pg, "platform_admin", &admin_password, "postgres").await {
        problems.push("the master user cannot log in with the password of AdminSecret's version".into());
    }
    if outputs[RDS]["AdminPasswordParameterName"] != admin_parameter.as_str() {
        problems.push(format!(
            "rds-cluster's output {}",
            outputs[RDS]["AdminPasswordParameterName"]
        ));
    }
    (admin_parameter, admin_password)
}

/// Service stack `i` ([`SERVICES`]): its task definition's environment and its listener rule
/// come from its custom resources' answers, its outputs carry the same values, and the service
/// logs in to its own database with its SSM password, and not to the other's. Returns the
/// priority it claimed and its password.
async fn check_service(
    engine: &Engine,
    outputs: &BTreeMap<String, Value>,
    pg: &Postgres,
    i: usize,
    problems: &mut Vec<String>,
) -> (String, String) {
    let (service, database, _) = SERVICES[i];
    let stack = format!("service-{service}");
    let (_, db) = engine.exchange(&stack, "ServiceDatabase", "Create");
    let (_, priority) = engine.exchange(&stack, "ListenerRulePriority", "Create");
    let data = |r: &Value, k: &str| r["Data"][k].as_str().unwrap_or_default().to_string();
    // The task definition's DB_* environment is the ServiceDatabase's Data.
    let env = read(engine, &["task-env", service]);
    let want = json!({
        "DB_HOST": data(&db, "Host"), "DB_PORT": data(&db, "Port"), "DB_NAME": data(&db, "DatabaseName"),
        "DB_USERNAME": data(&db, "Username"), "DB_PASSWORD_PARAMETER": data(&db, "PasswordParameterName"),
    });
    if env != want || data(&db, "Host") != pg.host || data(&db, "DatabaseName") != *database {
        problems.push(format!(
            "{service}: task definition environment {env}, Data {}",
            db["Data"]
        ));
    }
    // The listener rule sits at the priority the custom resource claimed, for its host.
    let rules = read(
        engine,
        &[
            "rules",
            outputs[FARGATE]["ListenerArn"].as_str().unwrap_or_default(),
        ],
    );
    let host = format!("{service}.example.com");
    let claimed = data(&priority, "Priority");
    let at: Vec<&Value> = rules
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| {
            r["hosts"]
                .as_array()
                .is_some_and(|h| h.iter().any(|v| v == host.as_str()))
        })
        .collect();
    if at.len() != 1 || at[0]["priority"] != claimed.as_str() {
        problems.push(format!("{service}: rules for {host}: {at:?}, claimed {claimed}"));
    }
    // The outputs carry the same values.
    let o = &outputs[&stack];
    if o["DatabaseName"] != database.to_string().as_str()
        || o["DatabaseUsername"] != data(&db, "Username").as_str()
        || o["PasswordParameterName"] != data(&db, "PasswordParameterName").as_str()
        || o["ListenerRulePriority"] != claimed.as_str()
    {
        problems.push(format!("{service}: outputs {o}"));
    }
    // The service logs in to its own database with its SSM password, and not to the other's.
    let password = secret(engine, &data(&db, "PasswordParameterName"))
        .await
        .unwrap_or_default();
    let user = data(&db, "Username");
    if !can_log_in(pg, &user, &password, database).await {
        problems.push(format!(
            "{service}: {user} cannot log in to {database} with its SSM password"
        ));
    }
    let other = SERVICES[1 - i].1;
    if can_log_in(pg, &user, &password, other).await {
        problems.push(format!("{service}: {user} can log in to {other}"));
    }
    (claimed, password)
}

/// Every export a stack imports exists (the engine records imports as it resolves them).
fn check_exports(exports: &Value, problems: &mut Vec<String>) {
    let names: Vec<&str> = exports["exports"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    let imported = exports["imported"].as_array().cloned().unwrap_or_default();
    if imported.len() < 10 {
        problems.push(format!("the engine recorded only {} imports", imported.len()));
    }
    for name in &imported {
        if !names.contains(&name.as_str().unwrap_or_default()) {
            problems.push(format!("import {name} has no export"));
        }
    }
}

/// Deletes, in reverse order. An import blocks its export's stack first, as in CloudFormation;
/// then the service stacks go, each as its OnDelete says, with their claims and host rules.
async fn delete_services(
    engine: &Engine,
    outputs: &BTreeMap<String, Value>,
    pg: &Postgres,
    claims: &[String],
    problems: &mut Vec<String>,
) {
    let refused = engine.stacks(&["delete", RDS]);
    if refused[0]["status"] != "REFUSED" {
        problems.push(format!("deleting {RDS} while services import it: {}", refused[0]));
    }
    let names: Vec<String> = SERVICES.iter().map(|(s, _, _)| format!("service-{s}")).collect();
    let deleted = engine.stacks(&["delete", &names[0], &names[1]]);
    for d in deleted.as_array().into_iter().flatten() {
        if d["status"] != "DELETE_COMPLETE" {
            problems.push(format!("{} is {} ({})", d["name"], d["status"], d["reason"]));
        }
    }
    let parameters = read(engine, &["parameters"]);
    let has = |name: &str| parameters.as_array().is_some_and(|p| p.iter().any(|v| v == name));
    for (service, database, on_delete) in SERVICES {
        let stack = format!("service-{service}");
        for logical_id in ["ServiceDatabase", "ListenerRulePriority"] {
            let (event, response) = engine.exchange(&stack, logical_id, "Delete");
            let (_, created) = engine.exchange(&stack, logical_id, "Create");
            if response["Status"] != "SUCCESS" || event["PhysicalResourceId"] != created["PhysicalResourceId"]
            {
                problems.push(format!("{stack}/{logical_id} Delete: {event} -> {response}"));
            }
        }
        let kept = on_delete == "Retain";
        let password = format!("/platform/services/{service}/database-password");
        let db = exists(pg, "SELECT 1 FROM pg_database WHERE datname = $1", database).await;
        let role = exists(pg, "SELECT 1 FROM pg_roles WHERE rolname = $1", database).await;
        if (has(&password), db, role) != (kept, kept, kept) {
            problems.push(format!(
                "{service} (OnDelete {on_delete}): password parameter {}, database {db}, role {role}",
                has(&password)
            ));
        }
    }
    let claims_left: Vec<&Value> = parameters
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| {
            p.as_str()
                .is_some_and(|p| p.starts_with("/custom-resource/listener-rule-priority"))
        })
        .filter(|p| {
            claims
                .iter()
                .any(|c| p.as_str().unwrap_or_default().ends_with(&format!("/{c}")))
        })
        .collect();
    if !claims_left.is_empty() {
        problems.push(format!("priority claims left after the deletes: {claims_left:?}"));
    }
    let rules = read(
        engine,
        &[
            "rules",
            outputs[FARGATE]["ListenerArn"].as_str().unwrap_or_default(),
        ],
    );
    if rules.as_array().is_none_or(|r| {
        r.iter()
            .any(|r| r["hosts"].as_array().is_some_and(|h| !h.is_empty()))
    }) {
        problems.push(format!("host rules left on the listener: {rules}"));
    }
}

/// The platform stacks' Deletes, and AdminSecret's parameter gone with them.
async fn delete_platform(engine: &Engine, admin_parameter: &str, problems: &mut Vec<String>) {
    for stack in [RDS, FARGATE, SUPPORT] {
        let d = engine.stacks(&["delete", stack]);
        if d[0]["status"] != "DELETE_COMPLETE" {
            problems.push(format!("{stack} is {} ({})", d[0]["status"], d[0]["reason"]));
        }
    }
    let (event, response) = engine.exchange(RDS, "AdminSecret", "Delete");
    if response["Status"] != "SUCCESS" || event["PhysicalResourceId"] != admin_parameter {
        problems.push(format!("AdminSecret Delete: {event} -> {response}"));
    }
    if secret(engine, admin_parameter).await.is_some() {
        problems.push(format!("{admin_parameter} is left (AdminSecretOnDelete Delete)"));
    }
}

/// No password in the Lambdas' logs, the engine's log or its record of events and responses.
fn check_no_password_logged(engine: &Engine, passwords: &[String], problems: &mut Vec<String>) {
    let logs = [
        engine.lambda_logs(),
        std::fs::read_to_string(engine.logs.join("engine.log")).unwrap_or_default(),
        std::fs::read_to_string(&engine.record).unwrap_or_default(),
    ]
    .join("\n");
    for (i, password) in passwords.iter().enumerate() {
        if password.len() < 8 || logs.contains(password.as_str()) {
            problems.push(format!("password {i} is in the logs (or was never read)"));
        }
    }
}

/// A stack's parameters, as given to CreateStack.
type Parameters = Vec<(String, String)>;

/// A property value as CloudFormation would send it: numbers and booleans as strings.
fn stringified(value: &Value) -> Value {
    match value {
        Value::Number(n) => Value::String(n.to_string()),
        Value::Bool(b) => Value::String(b.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(stringified).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), stringified(v))).collect()),
        other => other.clone(),
    }
}

/// The demo's own resolver (`make demo`, `templates::driver_properties`), given the same
/// parameters and the engine's values for what only AWS knows (attributes, imports), sends each
/// Lambda exactly what moto's engine sent it, modulo string versus number. The driver's update
/// and rollback scenes therefore start from properties an independent evaluator agrees with.
async fn the_demo_driver_resolves_what_the_engine_sends() {
    let engine = tokio::task::spawn_blocking(engine).await.expect("engine");
    let deployed = tokio::task::spawn_blocking(deployment).await.expect("deployment");
    assert!(deployed.problems.is_empty(), "{}", deployed.problems.join("\n"));
    let exports = deployed.exports["exports"].clone();
    let subnets = deployed.network["SubnetIds"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut stacks: Vec<(String, &str, Parameters)> = vec![(
        RDS.to_string(),
        "rds-cluster.yaml",
        vec![
            ("DatabaseSubnetIds".into(), subnets),
            ("DeletionProtection".into(), "false".into()),
        ],
    )];
    for spec in service_spec(&deployed.network).as_array().into_iter().flatten() {
        let parameters = spec["parameters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        stacks.push((
            spec["name"].as_str().unwrap_or_default().to_string(),
            "service.yaml",
            parameters,
        ));
    }
    let mut compared = 0;
    let mut problems = Vec::new();
    for (stack, file, parameters) in &stacks {
        let outputs = &deployed.outputs[stack];
        let lookup = |function: &str, argument: &str| -> Value {
            match (function, argument) {
                ("Fn::ImportValue", name) => exports[name].clone(),
                ("Fn::GetAtt", "Key.Arn") => outputs["KeyArn"].clone(),
                _ => Value::String(format!("<the test has no value for {function} {argument}>")),
            }
        };
        let parameters: Vec<(&str, &str)> =
            parameters.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        for (event, _) in engine.exchanges() {
            let in_stack = event["StackId"]
                .as_str()
                .is_some_and(|s| s.contains(&format!(":stack/{stack}/")));
            if !in_stack || event["RequestType"] != "Create" {
                continue;
            }
            let logical_id = event["LogicalResourceId"].as_str().unwrap_or_default();
            let driver = driver_properties(file, logical_id, stack, &parameters, &lookup);
            let mut sent = stringified(&event["ResourceProperties"]);
            if let Some(map) = sent.as_object_mut() {
                map.remove("ServiceToken");
                map.remove("ServiceTimeout");
                map.remove("CaCertificate"); // the engine's addition for the stand-in cluster
            }
            compared += 1;
            if driver != sent {
                problems.push(format!("{stack}/{logical_id}:\n driver {driver}\n engine {sent}"));
            }
        }
    }
    // AdminSecret, and ServiceDatabase and ListenerRulePriority of each service.
    if compared != 5 {
        problems.push(format!("compared {compared} Create events, expected 5"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
