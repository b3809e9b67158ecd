//! `make demo`: the platform's lifecycle, locally, with the real Lambda binaries (their debug
//! build: see [`LAMBDAS`]).
//!
//! Plays CloudFormation for one cluster stack and two service stacks against moto and a throwaway
//! PostgreSQL (scram-sha-256, TLS): Create, the two services deploying at the same time, a password
//! rotation, then Delete of everything in reverse order. The events' properties come from the
//! `Custom::` resources in `cfn/*.yaml` with intrinsic functions resolved to local values. Every
//! response is a row of the closing table; every promise is checked and printed; the exit status is
//! non-zero when a check fails.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use local_invoke::postgres::{Postgres, ServerLog, postgres};
use local_invoke::services::{self, Moto, moto};
use local_invoke::templates::driver_properties;
use local_invoke::{EventBuilder, Exchange, Harness, Profile, fixtures};
use serde_json::{Value, json};

mod managed;

/// The profile of the Lambda binaries the demo runs: the dev profile `make test` builds too, so a
/// newcomer's first demo waits for no optimizer (the release profile's thin LTO over one codegen
/// unit at `opt-level = "z"` is most of a fresh release build). The same code: `make build` zips,
/// and `make bench` measures, the release profile; `make test` runs its sample events against it.
pub(crate) const LAMBDAS: Profile = Profile::Debug;

const CLUSTER_STACK: &str = "platform-rds-cluster";
const SUPPORT_STACK: &str = "platform-support";
const FARGATE_STACK: &str = "platform-fargate-cluster";

/// One service stack of the demo.
struct Service {
    name: &'static str,
    database: &'static str,
    on_delete: &'static str,
}

const SERVICES: [Service; 2] = [
    Service {
        name: "orders",
        database: "orders",
        on_delete: "Retain",
    },
    Service {
        name: "payments",
        database: "payments",
        on_delete: "Drop",
    },
];

struct Row {
    stack: String,
    resource: String,
    request: String,
    status: String,
    physical_id: String,
    data_keys: String,
    ms: u128,
}

/// A password the demo handled, searched for everywhere at the end; `value` is `None` when it
/// could not be read, which fails that search instead of leaving the password out of it.
struct Secret {
    source: String,
    value: Option<String>,
}

/// Everything the demo prints goes through here, so it can be searched for secrets at the end.
#[derive(Default)]
struct Report {
    output: String,
    rows: Vec<Row>,
    passed: usize,
    failed: usize,
    secrets: Vec<Secret>,
}

impl Report {
    fn say(&mut self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
        self.output.push_str(line.as_ref());
        self.output.push('\n');
    }

    fn check(&mut self, ok: bool, what: impl AsRef<str>) {
        if ok {
            self.passed += 1;
            self.say(format!("  ✓ {}", what.as_ref()));
        } else {
            self.failed += 1;
            self.say(format!("  ✗ {}", what.as_ref()));
        }
    }

    /// Keeps the password read from `source` for the search at the end and returns it. One that
    /// could not be read is a failed check here, and fails that search; the empty string returned
    /// in its place fails what needs it.
    fn secret(&mut self, source: &str, value: Option<String>) -> String {
        if value.is_none() {
            self.check(false, format!("{source} can be read back"));
        }
        self.secrets.push(Secret {
            source: source.to_string(),
            value: value.clone(),
        });
        value.unwrap_or_default()
    }

    fn record(&mut self, stack: &str, resource: &str, event: &Value, exchange: &Exchange) {
        let response = exchange
            .puts
            .last()
            .map(|p| p.json.clone())
            .unwrap_or(Value::Null);
        let mut keys: Vec<&str> = response["Data"]
            .as_object()
            .map(|d| d.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        let status = response["Status"].as_str().unwrap_or("(no response)").to_string();
        let request = event["RequestType"].as_str().unwrap_or_default().to_string();
        let row = Row {
            stack: stack.into(),
            resource: resource.into(),
            request: request.clone(),
            status: status.clone(),
            physical_id: response["PhysicalResourceId"].as_str().unwrap_or_default().into(),
            data_keys: keys.join(","),
            ms: exchange.elapsed.as_millis(),
        };
        let reason = response["Reason"]
            .as_str()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default();
        self.say(format!(
            "  {} {} {} → {}{} ({} ms)",
            row.stack, row.resource, row.request, row.status, reason, row.ms
        ));
        self.rows.push(row);
        self.check(
            status == "SUCCESS",
            format!("{resource} {} answered SUCCESS", request),
        );
    }

    fn table(&mut self) {
        let headers = [
            "stack",
            "resource",
            "request",
            "status",
            "physical id",
            "Data keys",
            "ms",
        ];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.stack.clone(),
                    r.resource.clone(),
                    r.request.clone(),
                    r.status.clone(),
                    shorten(&r.physical_id, 64),
                    r.data_keys.clone(),
                    r.ms.to_string(),
                ]
            })
            .collect();
        let mut widths = headers.map(str::len);
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: &[String]| {
            let mut s = String::from("|");
            for (c, w) in cols.iter().zip(widths) {
                let _ = write!(s, " {c}{} |", " ".repeat(w - c.chars().count()));
            }
            s
        };
        self.say(line(&headers.map(String::from)));
        self.say(line(&widths.map(|w| "-".repeat(w))));
        for row in cells {
            self.say(line(&row));
        }
    }
}

/// A string in the answer CloudFormation would act on (the last PUT), by JSON pointer.
fn answered(exchange: &Exchange, pointer: &str) -> String {
    exchange
        .puts
        .last()
        .and_then(|p| p.json.pointer(pointer)?.as_str())
        .unwrap_or_default()
        .to_string()
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let head: String = text.chars().take(max / 2 - 2).collect();
        let tail: String = text
            .chars()
            .rev()
            .take(max / 2 - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head}...{tail}")
    }
}

/// The properties of a template's custom resource, resolved with local values.
fn properties(
    file: &str,
    logical_id: &str,
    stack: &str,
    parameters: &[(&str, &str)],
    locals: &BTreeMap<String, String>,
) -> Value {
    // ServiceToken names the deployed function and ServiceTimeout is CloudFormation's own: the
    // harness plays both parts here.
    driver_properties(file, logical_id, stack, parameters, &|function, argument| {
        let key = format!("{function} {argument}");
        Value::String(
            locals
                .get(&key)
                .cloned()
                .unwrap_or_else(|| panic!("the demo has no local value for {key} (cfn/{file} {logical_id})")),
        )
    })
}

async fn read_secret(ssm: &aws_sdk_ssm::Client, name: &str) -> Option<String> {
    let output = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .ok()?;
    output.parameter?.value
}

async fn parameter_exists(ssm: &aws_sdk_ssm::Client, name: &str) -> bool {
    read_secret(ssm, name).await.is_some()
}

async fn database_exists(pg: &Postgres, name: &str) -> bool {
    let admin = pg.admin("postgres").await;
    admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map(|r| r.is_some())
        .unwrap_or(false)
}

async fn role_exists(pg: &Postgres, name: &str) -> bool {
    let admin = pg.admin("postgres").await;
    admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .map(|r| r.is_some())
        .unwrap_or(false)
}

fn scram_literal(password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    format!("'{}'", verifier.replace('\'', "''"))
}

fn main() {
    // Stop the services this process started even when a step panics.
    let code = std::panic::catch_unwind(|| local_invoke::block_on(run())).unwrap_or(101);
    services::shutdown();
    std::process::exit(code);
}

/// The scenes in the order CloudFormation would play them; every check goes to `report`, and the
/// exit status is 1 when one failed.
async fn run() -> i32 {
    let mut report = Report::default();
    let started = Instant::now();
    let local = start_local_services(&mut report).await;
    let cluster = cluster_stack(&mut report, &local).await;
    let pg = &cluster.pg;
    let services = deploy_services(&mut report, &local, &cluster).await;
    let credentials = service_credentials(&mut report, &local.ssm, pg, &services).await;
    let rotation = rotate_orders(&mut report, &local.ssm, pg, &services, &credentials[0]).await;
    rotation_rolled_back(&mut report, &local.ssm, pg, &services, &credentials[0], &rotation).await;
    rename_rolled_back(&mut report, pg, &services, &credentials[0], &rotation).await;
    let managed_logs = managed::scene(&mut report, local.moto, pg, &local.env, &services.locals[0]).await;
    delete_everything(&mut report, &local.ssm, pg, &services, &credentials, &rotation).await;
    delete_cluster(&mut report, &local.ssm, &cluster).await;
    let mut logs = cluster.admin_secret.logs();
    logs.push_str(&managed_logs);
    for h in services.db_lambdas.iter().chain(&services.priority_lambdas) {
        logs.push_str(&h.logs());
    }
    no_secret_anywhere(&mut report, pg, &logs);
    summary(&mut report, started)
}

/// What every scene runs against: moto, the throwaway PostgreSQL and the fixtures the stacks
/// import.
struct Local {
    moto: &'static Moto,
    /// The cluster as it starts, before its master user has the password from SSM.
    pg: &'static Postgres,
    ssm: aws_sdk_ssm::Client,
    /// The Lambdas' environment: moto as the endpoint of every AWS service.
    env: [(&'static str, &'static str); 1],
    cluster_key: String,
    listener: String,
    /// The template values every stack resolves the same way (`Fn::GetAtt`, `Fn::ImportValue`).
    locals: BTreeMap<String, String>,
}

/// Starts moto and PostgreSQL and makes the cluster's KMS key and the ALB listener.
async fn start_local_services(report: &mut Report) -> Local {
    report.say(
        "Starting the local services: moto (SSM, KMS, ELBv2) and a throwaway PostgreSQL (scram-sha-256, TLS)",
    );
    let moto: &Moto = tokio::task::spawn_blocking(moto).await.expect("moto");
    let pg: &Postgres = tokio::task::spawn_blocking(postgres).await.expect("postgres");
    report.say(format!(
        "  moto at {}; PostgreSQL at {}:{} (admin role {}, not a superuser)",
        moto.endpoint, pg.host, pg.port, pg.admin_user
    ));
    let (cluster_key, listener) = tokio::task::spawn_blocking(|| {
        (
            fixtures::kms_key("platform-rds-cluster key"),
            fixtures::listener([1, 2, 5]),
        )
    })
    .await
    .expect("fixtures");
    report.say("  a KMS key for the cluster stack; an ALB listener with rules at priorities 1, 2, 5");
    let ssm = moto.ssm();
    let env = [("AWS_ENDPOINT_URL", moto.endpoint.as_str())];
    report.secret("the cluster's admin password", Some(pg.admin_password.clone()));

    let mut locals = BTreeMap::new();
    locals.insert("Fn::GetAtt Key.Arn".to_string(), cluster_key.clone());
    locals.insert(
        format!("Fn::ImportValue {SUPPORT_STACK}-AdminSecretParameterPath"),
        "/platform/rds".into(),
    );
    Local {
        moto,
        pg,
        ssm,
        env,
        cluster_key,
        listener,
        locals,
    }
}

/// The cluster stack once its Custom::AdminSecret was created.
struct Cluster {
    admin_secret: Harness,
    events: EventBuilder,
    props: Value,
    /// The SSM parameter holding the master password (the resource's physical id).
    parameter: String,
    /// The cluster as its master user reaches it from here on: with the password from SSM.
    pg: Postgres,
}

/// The cluster stack: Custom::AdminSecret's Create, its SecureString, and the master user given
/// that password as RDS would.
async fn cluster_stack(report: &mut Report, local: &Local) -> Cluster {
    report.say("");
    report.say(format!(
        "Stack {CLUSTER_STACK} (cfn/rds-cluster.yaml): Custom::AdminSecret"
    ));
    let admin_secret = Harness::start_profile("admin-secret", LAMBDAS, &local.env).await;
    let events = admin_secret.events.for_stack(CLUSTER_STACK);
    let props = properties(
        "rds-cluster.yaml",
        "AdminSecret",
        CLUSTER_STACK,
        &[],
        &local.locals,
    );
    let create = events.create("Custom::AdminSecret", "AdminSecret", props.clone());
    let x = admin_secret.call(create.clone()).await;
    report.record(CLUSTER_STACK, "AdminSecret", &create, &x);
    let parameter = answered(&x, "/Data/ParameterName");
    let version = answered(&x, "/Data/Version");
    let password = report.secret(&parameter, read_secret(&local.ssm, &parameter).await);
    let described = local
        .ssm
        .describe_parameters()
        .parameter_filters(
            aws_sdk_ssm::types::ParameterStringFilter::builder()
                .key("Name")
                .values(&parameter)
                .build()
                .expect("filter"),
        )
        .send()
        .await
        .ok()
        .and_then(|d| d.parameters)
        .and_then(|p| p.into_iter().next());
    report.check(
        described.as_ref().is_some_and(|p| {
            p.r#type == Some(aws_sdk_ssm::types::ParameterType::SecureString)
                && p.key_id.as_deref() == Some(local.cluster_key.as_str())
        }),
        format!("{parameter} is a SecureString under the cluster's KMS key (version {version})"),
    );
    report.check(
        password.len() == 32,
        "the master password is 32 characters (the template's AdminPasswordLength)",
    );
    let pg = master_password_from_ssm(report, local.pg, &password).await;
    Cluster {
        admin_secret,
        events,
        props,
        parameter,
        pg,
    }
}

/// As RDS would: the cluster's master user gets the password the template resolves with
/// {{resolve:ssm-secure:NAME:VERSION}}. Returns the cluster as that user now reaches it.
async fn master_password_from_ssm(report: &mut Report, pg: &Postgres, admin_password: &str) -> Postgres {
    // Sent as a SCRAM verifier: the server log never sees it.
    {
        let admin = pg.admin("postgres").await;
        let set = admin
            .batch_execute(&format!(
                "ALTER ROLE CURRENT_USER PASSWORD {}",
                scram_literal(admin_password)
            ))
            .await;
        report.check(
            set.is_ok(),
            format!(
                "the cluster's master user {} now has the password from SSM, as RDS would set it",
                pg.admin_user
            ),
        );
    }
    let admin_login = pg.connect(&pg.admin_user, admin_password, "postgres").await;
    report.check(
        admin_login.is_ok(),
        "the master user logs in with the password read from SSM (verify-full TLS, SCRAM)",
    );
    drop(admin_login);
    Postgres {
        host: pg.host.clone(),
        address: pg.address.clone(),
        port: pg.port,
        admin_user: pg.admin_user.clone(),
        admin_password: admin_password.to_string(),
        ca_pem: pg.ca_pem.clone(),
        other_ca_pem: pg.other_ca_pem.clone(),
        log_file: pg.log_file.clone(),
        superuser: None,
    }
}

fn stack_of(service: &Service) -> String {
    format!("platform-service-{}", service.name)
}

/// The service template's parameters for `service`.
fn parameters_of(service: &Service) -> Vec<(&'static str, &'static str)> {
    vec![
        ("ServiceName", service.name),
        ("DatabaseName", service.database),
        ("DatabaseOnDelete", service.on_delete),
        (
            "HostName",
            if service.name == "orders" {
                "orders.example.com"
            } else {
                "payments.example.com"
            },
        ),
    ]
}

/// The two service stacks once their resources were created, one entry per [`SERVICES`] entry.
struct Services {
    /// Each stack's template values: its own KMS key and the cluster and Fargate stacks' exports.
    locals: Vec<BTreeMap<String, String>>,
    database_props: Vec<Value>,
    priority_props: Vec<Value>,
    db_lambdas: Vec<Harness>,
    priority_lambdas: Vec<Harness>,
    /// The Creates' answers.
    dbs: [Exchange; 2],
    priorities: [Exchange; 2],
}

/// Each service stack's template values: its own KMS key, and what the cluster, support and
/// Fargate stacks export.
async fn service_locals(local: &Local, cluster: &Cluster) -> Vec<BTreeMap<String, String>> {
    let pg = &cluster.pg;
    let mut service_locals = Vec::new();
    for service in &SERVICES {
        let key = tokio::task::spawn_blocking(move || fixtures::kms_key(&format!("{} key", service.name)))
            .await
            .expect("key");
        let mut l = local.locals.clone();
        l.insert("Fn::GetAtt Key.Arn".into(), key);
        l.insert(
            format!("Fn::ImportValue {SUPPORT_STACK}-ServiceParameterPath"),
            "/platform/services".into(),
        );
        l.insert(format!("Fn::ImportValue {CLUSTER_STACK}-Host"), pg.host.clone());
        l.insert(
            format!("Fn::ImportValue {CLUSTER_STACK}-Port"),
            pg.port.to_string(),
        );
        l.insert(
            format!("Fn::ImportValue {CLUSTER_STACK}-AdminUsername"),
            pg.admin_user.clone(),
        );
        l.insert(
            format!("Fn::ImportValue {CLUSTER_STACK}-AdminCredential"),
            cluster.parameter.clone(),
        );
        l.insert(
            format!("Fn::ImportValue {FARGATE_STACK}-ListenerArn"),
            local.listener.clone(),
        );
        service_locals.push(l);
    }
    service_locals
}

/// The properties of each service stack's Custom::ServiceDatabase and
/// Custom::ListenerRulePriority.
fn service_properties(
    pg: &Postgres,
    service_locals: &[BTreeMap<String, String>],
) -> (Vec<Value>, Vec<Value>) {
    let mut database_props = Vec::new();
    let mut priority_props = Vec::new();
    for (service, l) in SERVICES.iter().zip(service_locals) {
        let stack = stack_of(service);
        let mut p = properties(
            "service.yaml",
            "ServiceDatabase",
            &stack,
            &parameters_of(service),
            l,
        );
        p["CaCertificate"] = json!(pg.ca_pem);
        database_props.push(p);
        priority_props.push(properties(
            "service.yaml",
            "ListenerRulePriority",
            &stack,
            &parameters_of(service),
            l,
        ));
    }
    (database_props, priority_props)
}

/// Both service stacks deploying at the same time: four Creates, four Lambda processes at once.
async fn deploy_services(report: &mut Report, local: &Local, cluster: &Cluster) -> Services {
    report.say("");
    report.say("Stacks platform-service-orders and platform-service-payments (cfn/service.yaml), deploying at the same time:");
    report.say(
        "  each: Custom::ServiceDatabase and Custom::ListenerRulePriority, four Lambda processes at once",
    );
    report.say(
        "  (local addition to the template's properties: CaCertificate = the throwaway cluster's test CA)",
    );
    let locals = service_locals(local, cluster).await;
    let (database_props, priority_props) = service_properties(&cluster.pg, &locals);
    let mut db_lambdas = Vec::new();
    let mut priority_lambdas = Vec::new();
    for _ in &SERVICES {
        db_lambdas.push(Harness::start_profile("service-database", LAMBDAS, &local.env).await);
        priority_lambdas.push(Harness::start_profile("listener-rule-priority", LAMBDAS, &local.env).await);
    }
    let db_events: Vec<Value> = SERVICES
        .iter()
        .zip(&db_lambdas)
        .zip(&database_props)
        .map(|((s, h), p)| {
            h.events
                .for_stack(&stack_of(s))
                .create("Custom::ServiceDatabase", "ServiceDatabase", p.clone())
        })
        .collect();
    let priority_events: Vec<Value> = SERVICES
        .iter()
        .zip(&priority_lambdas)
        .zip(&priority_props)
        .map(|((s, h), p)| {
            h.events.for_stack(&stack_of(s)).create(
                "Custom::ListenerRulePriority",
                "ListenerRulePriority",
                p.clone(),
            )
        })
        .collect();
    let (db0, db1, p0, p1) = tokio::join!(
        db_lambdas[0].call(db_events[0].clone()),
        db_lambdas[1].call(db_events[1].clone()),
        priority_lambdas[0].call(priority_events[0].clone()),
        priority_lambdas[1].call(priority_events[1].clone()),
    );
    let (dbs, priorities) = ([db0, db1], [p0, p1]);
    for (i, service) in SERVICES.iter().enumerate() {
        report.record(&stack_of(service), "ServiceDatabase", &db_events[i], &dbs[i]);
        report.record(
            &stack_of(service),
            "ListenerRulePriority",
            &priority_events[i],
            &priorities[i],
        );
    }
    Services {
        locals,
        database_props,
        priority_props,
        db_lambdas,
        priority_lambdas,
        dbs,
        priorities,
    }
}

/// A service's database credential, as its Create answered it and SSM holds it.
#[derive(Clone)]
struct Credential {
    user: String,
    password: String,
    database: String,
    /// The SSM parameter holding the password.
    parameter: String,
}

/// Each service's credential works on its own database and on no other, and the two got
/// different listener-rule priorities.
async fn service_credentials(
    report: &mut Report,
    ssm: &aws_sdk_ssm::Client,
    pg: &Postgres,
    services: &Services,
) -> Vec<Credential> {
    let mut credentials = Vec::new();
    for created in &services.dbs {
        let parameter = answered(created, "/Data/PasswordParameterName");
        let password = report.secret(&parameter, read_secret(ssm, &parameter).await);
        credentials.push(Credential {
            user: answered(created, "/Data/Username"),
            password,
            database: answered(created, "/Data/DatabaseName"),
            parameter,
        });
    }
    for (i, service) in SERVICES.iter().enumerate() {
        let Credential {
            user,
            password,
            database,
            parameter,
        } = &credentials[i];
        let own = pg.connect(user, password, database).await;
        let table = match &own {
            Ok(client) => client
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {}_demo (id int PRIMARY KEY)",
                    service.name
                ))
                .await
                .is_ok(),
            Err(_) => false,
        };
        report.check(own.is_ok() && table, format!(
            "{}: role {user} connects to database {database} with the password from {parameter} (verify-full TLS) and creates a table",
            service.name
        ));
        let other = &credentials[1 - i];
        let refused = pg.connect(user, password, &other.database).await.is_err();
        report.check(
            refused,
            format!(
                "{}: role {user} cannot connect to {}'s database {}",
                service.name,
                SERVICES[1 - i].name,
                other.database
            ),
        );
    }
    let p0 = answered(&services.priorities[0], "/Data/Priority");
    let p1 = answered(&services.priorities[1], "/Data/Priority");
    report.check(!p0.is_empty() && p0 != p1 && !["1", "2", "5"].contains(&p0.as_str()) && !["1", "2", "5"].contains(&p1.as_str()),
        format!("the two services got different listener-rule priorities ({p0} and {p1}), none taken by a live rule"));
    credentials
}

/// The orders database after its password rotation.
struct Rotation {
    /// The resource's physical id, which the rotation keeps.
    orders_id: String,
    /// The properties with the new RotationToken: what the stack holds now.
    rotated: Value,
    /// The other login role, which the rotation switched to, and its new password.
    user: String,
    new_password: String,
}

/// An Update that rotates the orders password while a running task keeps reconnecting with the
/// credential it started with.
async fn rotate_orders(
    report: &mut Report,
    ssm: &aws_sdk_ssm::Client,
    pg: &Postgres,
    services: &Services,
    orders: &Credential,
) -> Rotation {
    report.say("");
    report.say("Update of platform-service-orders: RotationToken changed on Custom::ServiceDatabase");
    let orders_id = answered(&services.dbs[0], "/PhysicalResourceId");
    let mut rotated = services.database_props[0].clone();
    rotated["RotationToken"] = json!("2026-11-rotation");
    let update = services.db_lambdas[0]
        .events
        .for_stack(&stack_of(&SERVICES[0]))
        .update(
            "Custom::ServiceDatabase",
            "ServiceDatabase",
            &orders_id,
            rotated.clone(),
            services.database_props[0].clone(),
        );
    let Credential {
        user: old_user,
        password: old_password,
        database,
        parameter,
    } = orders;
    // A running orders task: it keeps opening connections with the credential it started with,
    // all through the rotation.
    let ((attempts, failures), x) = reconnecting_while(
        pg,
        (old_user, old_password, database),
        services.db_lambdas[0].call(update.clone()),
    )
    .await;
    report.record(&stack_of(&SERVICES[0]), "ServiceDatabase", &update, &x);
    let user = answered(&x, "/Data/Username");
    let new_password = report.secret(parameter, read_secret(ssm, parameter).await);
    report.check(
        !new_password.is_empty() && new_password != *old_password && user != *old_user,
        format!("{parameter} holds a new password, for the other login role {user} (Data.Username; the task definition changes, so ECS replaces the tasks)"),
    );
    report.check(
        attempts >= 3 && failures == 0,
        format!("a running task's client reconnected {attempts} times through the rotation as {old_user}, {failures} failed"),
    );
    report.check(
        pg.connect(&user, &new_password, database).await.is_ok(),
        format!("the new tasks' credential ({user} and the parameter's new version) connects"),
    );
    Rotation {
        orders_id,
        rotated,
        user,
        new_password,
    }
}

/// The next rotation, then another resource of the stack fails and CloudFormation rolls the
/// Update back: the password from before it is restored.
async fn rotation_rolled_back(
    report: &mut Report,
    ssm: &aws_sdk_ssm::Client,
    pg: &Postgres,
    services: &Services,
    orders: &Credential,
    rotation: &Rotation,
) {
    let Rotation {
        orders_id,
        rotated,
        user,
        new_password,
    } = rotation;
    let Credential {
        user: old_user,
        password: old_password,
        database,
        parameter,
    } = orders;
    let stack = stack_of(&SERVICES[0]);
    let db_events = services.db_lambdas[0].events.for_stack(&stack);
    report.say("");
    report.say(format!(
        "Update of {stack}: RotationToken changed again, and another resource of the stack fails"
    ));
    let mut rotated_again = rotated.clone();
    rotated_again["RotationToken"] = json!("2026-12-rotation");
    let update = db_events.update(
        "Custom::ServiceDatabase",
        "ServiceDatabase",
        orders_id,
        rotated_again.clone(),
        rotated.clone(),
    );
    let x = services.db_lambdas[0].call(update.clone()).await;
    report.record(&stack, "ServiceDatabase", &update, &x);
    let discarded = report.secret(parameter, read_secret(ssm, parameter).await);
    report.check(
        answered(&x, "/Data/Username") == *old_user
            && pg.connect(old_user, old_password, database).await.is_err(),
        format!("the next rotation gave {old_user} a new password: the first credential no longer works"),
    );
    report.say(format!(
        "  {stack} ListenerRulePriority Update → FAILED (another resource, simulated)"
    ));
    report.say(format!("  {stack} UPDATE_ROLLBACK_IN_PROGRESS"));
    let rollback = db_events.update(
        "Custom::ServiceDatabase",
        "ServiceDatabase",
        orders_id,
        rotated.clone(),
        rotated_again.clone(),
    );
    let x = services.db_lambdas[0].call(rollback.clone()).await;
    report.record(&stack, "ServiceDatabase", &rollback, &x);
    report.check(
        answered(&x, "/PhysicalResourceId") == *orders_id,
        "the rollback kept the physical id",
    );
    let restored = read_secret(ssm, parameter).await;
    report.check(
        restored.as_ref() == Some(new_password)
            && discarded != *new_password
            && answered(&x, "/Data/Username") == *user,
        format!("{parameter} holds the password from before the failed update again, for {user}"),
    );
    report.check(
        pg.connect(user, new_password, database).await.is_ok(),
        "orders connects with that credential again",
    );
    report.check(
        pg.connect(old_user, &discarded, database).await.is_ok(),
        format!("tasks the failed update started (as {old_user}) keep connecting until the next rotation"),
    );
    report.say(format!("  {stack} UPDATE_ROLLBACK_COMPLETE"));
}

/// An in-place RoleName change, which fails, and its rollback: orders keeps its credential.
async fn rename_rolled_back(
    report: &mut Report,
    pg: &Postgres,
    services: &Services,
    orders: &Credential,
    rotation: &Rotation,
) {
    let Rotation {
        orders_id,
        rotated,
        user,
        new_password,
    } = rotation;
    let database = &orders.database;
    let stack = stack_of(&SERVICES[0]);
    let db_events = services.db_lambdas[0].events.for_stack(&stack);
    report.say("");
    report.say(format!(
        "Update of {stack}: RoleName changed in place, which fails"
    ));
    let mut renamed = rotated.clone();
    renamed["RoleName"] = json!(format!("{database}_renamed"));
    let update = db_events.update(
        "Custom::ServiceDatabase",
        "ServiceDatabase",
        orders_id,
        renamed.clone(),
        rotated.clone(),
    );
    let x = services.db_lambdas[0].call(update.clone()).await;
    let reason = answered(&x, "/Reason");
    report.say(format!(
        "  {stack} ServiceDatabase Update → {} — {reason}",
        answered(&x, "/Status")
    ));
    report.check(answered(&x, "/Status") == "FAILED", "the rename answered FAILED");
    report.say(format!("  {stack} UPDATE_ROLLBACK_IN_PROGRESS"));
    let rollback = db_events.update(
        "Custom::ServiceDatabase",
        "ServiceDatabase",
        orders_id,
        rotated.clone(),
        renamed,
    );
    let x = services.db_lambdas[0].call(rollback.clone()).await;
    report.record(&stack, "ServiceDatabase", &rollback, &x);
    report.check(
        pg.connect(user, new_password, database).await.is_ok(),
        "orders still connects with its SSM password",
    );
    report.say(format!("  {stack} UPDATE_ROLLBACK_COMPLETE"));
}

/// Delete of the service stacks in reverse order, each as its DatabaseOnDelete says.
async fn delete_everything(
    report: &mut Report,
    ssm: &aws_sdk_ssm::Client,
    pg: &Postgres,
    services: &Services,
    credentials: &[Credential],
    rotation: &Rotation,
) {
    report.say("");
    report.say("Delete, in reverse order: the service stacks, then the cluster stack");
    for (i, service) in SERVICES.iter().enumerate().rev() {
        let stack = stack_of(service);
        let priority_lambda = &services.priority_lambdas[i];
        let events = priority_lambda.events.for_stack(&stack);
        let id = answered(&services.priorities[i], "/PhysicalResourceId");
        let delete = events.delete(
            "Custom::ListenerRulePriority",
            "ListenerRulePriority",
            &id,
            services.priority_props[i].clone(),
        );
        let x = priority_lambda.call(delete.clone()).await;
        report.record(&stack, "ListenerRulePriority", &delete, &x);

        // The rotation kept the physical id, so the Create's answer still names it.
        let id = answered(&services.dbs[i], "/PhysicalResourceId");
        let props = if i == 0 {
            rotation.rotated.clone()
        } else {
            services.database_props[i].clone()
        };
        let delete = services.db_lambdas[i].events.for_stack(&stack).delete(
            "Custom::ServiceDatabase",
            "ServiceDatabase",
            &id,
            props,
        );
        let x = services.db_lambdas[i].call(delete.clone()).await;
        report.record(&stack, "ServiceDatabase", &delete, &x);
        check_deleted(report, ssm, pg, service, &credentials[i]).await;
    }
}

/// What a service's Delete left: everything with OnDelete Retain, nothing with Drop.
async fn check_deleted(
    report: &mut Report,
    ssm: &aws_sdk_ssm::Client,
    pg: &Postgres,
    service: &Service,
    credential: &Credential,
) {
    let Credential {
        user,
        database,
        parameter,
        ..
    } = credential;
    let (db, param) = (
        database_exists(pg, database).await,
        parameter_exists(ssm, parameter).await,
    );
    let mut roles = Vec::new();
    for role in [database.clone(), format!("{database}_a"), format!("{database}_b")] {
        roles.push(role_exists(pg, &role).await);
    }
    if service.on_delete == "Retain" {
        report.check(
            db && roles[0] && role_exists(pg, user).await && param,
            format!("OnDelete Retain: database {database}, owner role {database}, login role {user} and {parameter} are still there"),
        );
    } else {
        report.check(
            !db && !roles.contains(&true) && !param,
            format!("OnDelete Drop: database {database}, role {database} and its login roles {database}_a and {database}_b, and {parameter} are gone"),
        );
    }
}

/// Delete of the cluster stack's Custom::AdminSecret, last.
async fn delete_cluster(report: &mut Report, ssm: &aws_sdk_ssm::Client, cluster: &Cluster) {
    let delete = cluster.events.delete(
        "Custom::AdminSecret",
        "AdminSecret",
        &cluster.parameter,
        cluster.props.clone(),
    );
    let x = cluster.admin_secret.call(delete.clone()).await;
    report.record(CLUSTER_STACK, "AdminSecret", &delete, &x);
    report.check(
        !parameter_exists(ssm, &cluster.parameter).await,
        format!(
            "OnDelete Delete (the template's default): {} is gone",
            cluster.parameter
        ),
    );
}

/// Every password the demo handled is searched for in its own output, in the Lambdas' `logs`
/// and in the PostgreSQL server log; no ResponseURL signature may be in the logs either.
fn no_secret_anywhere(report: &mut Report, pg: &Postgres, logs: &str) {
    report.say("");
    // A password that could not be read cannot be searched for: it fails both searches.
    let secrets = std::mem::take(&mut report.secrets);
    let unread: Vec<&str> = secrets
        .iter()
        .filter(|s| s.value.is_none())
        .map(|s| s.source.as_str())
        .collect();
    let unread = if unread.is_empty() {
        String::new()
    } else {
        format!(" (not searched for, unread: {})", unread.join(", "))
    };
    let leaked = secrets
        .iter()
        .filter_map(|s| s.value.as_deref())
        .any(|s| report.output.contains(s) || logs.contains(s));
    report.check(
        unread.is_empty() && !leaked,
        format!(
            "none of the {} passwords appears in this output or in the Lambdas' logs{unread}",
            secrets.len()
        ),
    );
    match pg.log_file.as_ref().map(ServerLog::read) {
        None => report.say(
            "  - skipped: whether a password reached the PostgreSQL server log: a DATABASE_URL server's log is not readable here",
        ),
        Some(Err(why)) => report.check(false, format!("the PostgreSQL server log can be searched: {why}")),
        Some(Ok(server_log)) => {
            let in_server_log = secrets
                .iter()
                .skip(1)
                .filter_map(|s| s.value.as_deref())
                .any(|s| server_log.contains(s));
            report.check(unread.is_empty() && !in_server_log, format!("none appears in the PostgreSQL server log (log_statement = 'all'): passwords travel as SCRAM verifiers{unread}"));
        }
    }
    report.check(
        !logs.contains(local_invoke::SIGNATURE),
        "no ResponseURL signature appears in the Lambdas' logs",
    );
}

/// The closing table and the count of checks; the exit status.
fn summary(report: &mut Report, started: Instant) -> i32 {
    report.say("");
    report.say("Every CloudFormation response:");
    report.table();
    report.say("");
    report.say(format!(
        "{} checks passed, {} failed, in {:.1} s",
        report.passed,
        report.failed,
        started.elapsed().as_secs_f64()
    ));
    if report.failed == 0 { 0 } else { 1 }
}

/// Runs `work` while a running task's database client opens a connection with the credential it
/// started with, runs a query and closes it, again and again; returns (attempts, failures) and
/// what `work` returned. The client makes one more attempt once `work` is done.
async fn reconnecting_while<T>(
    pg: &Postgres,
    (user, password, database): (&str, &str, &str),
    work: impl Future<Output = T>,
) -> ((u32, u32), T) {
    let done = std::sync::atomic::AtomicBool::new(false);
    let client = async {
        let (mut attempts, mut failures) = (0, 0);
        loop {
            let last = done.load(std::sync::atomic::Ordering::Acquire);
            attempts += 1;
            let ok = match pg.connect(user, password, database).await {
                Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
                Err(_) => false,
            };
            failures += u32::from(!ok);
            if last {
                return (attempts, failures);
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let work = async {
        let out = work.await;
        done.store(true, std::sync::atomic::Ordering::Release);
        out
    };
    tokio::join!(client, work)
}
