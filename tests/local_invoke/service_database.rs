//! `Custom::ServiceDatabase`: the real `service-database` binary against moto's SSM and the
//! throwaway PostgreSQL cluster (TLS on, scram-sha-256, `log_statement = 'all'`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::ParameterType;
use libtest_mimic::Trial;
use local_invoke::postgres::{ADMIN_DATABASE, Postgres, postgres};
use local_invoke::services::moto;
use local_invoke::{Exchange, Harness};
use serde_json::{Value, json};
use service_database::ident::Identifier;

const TYPE: &str = "Custom::ServiceDatabase";
const LOGICAL_ID: &str = "ServiceDatabase";
const KEY: &str = "alias/service-database-test";

pub(crate) fn trials() -> Vec<Trial> {
    let mut all = trials![
        service_database;
        create_makes_a_login_role_owning_its_database,
        other_services_and_public_cannot_connect,
        retried_create_keeps_the_password,
        simultaneous_creates_leave_one_database,
        role_not_ours_fails_untouched_unless_adopted,
        a_superuser_role_is_refused_even_with_adopt,
        database_not_ours_fails_untouched,
        hostile_names_are_refused_or_created_exactly,
        wrong_admin_password_fails_without_secrets,
        unreachable_host_fails_within_the_connect_timeout,
        unknown_ca_is_refused,
        wrong_host_name_is_refused,
        a_rotation_keeps_the_running_credential_until_the_next,
        a_concurrent_duplicate_rotation_makes_no_third_password,
        a_resource_made_before_the_login_roles_moves_to_them,
        failed_create_is_cleaned_up_by_its_rollback_delete,
        rollback_with_invalid_old_properties_succeeds,
        replacement_rollback_deletes_the_new_only,
        rename_and_rekey_roll_back,
        rotation_rollback_restores_the_old_password_in_ssm_and_postgres,
        retain_leaves_everything,
        drop_removes_database_role_and_parameter,
        replacement_creates_the_new_and_drop_spares_the_shared,
        invalid_property_fails_naming_it,
        held_lock_fails_before_the_deadline_naming_it,
        rotations_past_ssm_history_then_back_to_the_first_token,
        an_update_changing_only_service_token_or_timeout_writes_nothing,
        admin_from_secrets_manager_through_a_rotation_window,
        admin_from_ssm_falls_back_to_the_previous_version,
        admin_credential_in_both_forms_fails_naming_both,
    ];
    all.extend(trials![
        service_database::faults;
        a_sequence_at_25_percent_injected_aws_faults,
        killed_after_each_aws_call_then_redelivered,
        killed_inside_the_postgres_phase_then_redelivered,
        a_session_ended_mid_create_is_finished_by_the_next,
    ]);
    all
}

// ---- fixture ----

struct Fixture {
    h: Harness,
    pg: &'static Postgres,
    admin_parameter: String,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Like `start`, with `extra` environment for the Lambda.
    async fn start_with(extra: &[(&'static str, &'static str)]) -> Self {
        local_invoke::fixtures::kms_alias(KEY);
        let pg = postgres();
        let admin_parameter = format!(
            "/local-invoke/service-database/{}/admin-password",
            unique("admin")
        );
        put_parameter(&admin_parameter, &pg.admin_password).await;
        let mut env = allowing_adopt();
        env.extend_from_slice(extra);
        let h = Harness::start("service-database", &env).await;
        Self {
            h,
            pg,
            admin_parameter,
        }
    }

    /// Properties for database `name` on the throwaway cluster, plus `extra`.
    fn props(&self, name: &str, extra: Value) -> Value {
        let mut properties = json!({
            "ClusterEndpoint": self.pg.host,
            "Port": self.pg.port.to_string(),
            "AdminUsername": self.pg.admin_user,
            "AdminPasswordParameterName": self.admin_parameter,
            "DatabaseName": name,
            "PasswordParameterName": parameter_name(name),
            "KeyId": KEY,
            "CaCertificate": self.pg.ca_pem,
            "ConnectTimeoutSeconds": "5",
        });
        for (key, value) in extra.as_object().unwrap() {
            properties[key] = value.clone();
        }
        properties
    }

    async fn create(&self, properties: Value) -> Exchange {
        self.h
            .call(self.h.events.create(TYPE, LOGICAL_ID, properties))
            .await
    }

    async fn update(&self, physical_id: &str, properties: Value, old: Value) -> Exchange {
        self.h
            .call(
                self.h
                    .events
                    .update(TYPE, LOGICAL_ID, physical_id, properties, old),
            )
            .await
    }

    async fn delete(&self, physical_id: &str, properties: Value) -> Exchange {
        self.h
            .call(self.h.events.delete(TYPE, LOGICAL_ID, physical_id, properties))
            .await
    }

    fn assert_failed(&self, exchange: &Exchange) {
        assert_eq!(
            exchange.status(),
            Some("FAILED"),
            "expected FAILED; logs:\n{}",
            self.h.logs()
        );
        assert!(
            exchange.reason().is_some_and(|r| !r.contains("timed out while")),
            "the watchdog answered: {:?}",
            exchange.reason()
        );
    }

    /// The server log, for `check`; `None` (and a line saying `check` is skipped) for an outside
    /// server (`DATABASE_URL`), which keeps its log to itself. Panics when the throwaway cluster's
    /// log cannot be read ([`local_invoke::postgres::Postgres::log`]).
    fn server_log(&self, check: &str) -> Option<String> {
        let log = self.pg.log();
        if log.is_none() {
            eprintln!("SKIPPED: {check}: the server log is not readable here (DATABASE_URL)");
        }
        log
    }

    /// No secret in the Lambda's output, the PUT bodies or the server log.
    fn assert_hidden(&self, exchanges: &[&Exchange], secrets: &[&str]) {
        let logs = self.h.logs();
        let server_log = self.server_log("no secret in the server log");
        for secret in secrets {
            assert!(!logs.contains(secret), "a secret reached the Lambda's logs");
            if let Some(server_log) = &server_log {
                assert!(!server_log.contains(secret), "a secret reached the server log");
            }
            for exchange in exchanges {
                for put in &exchange.puts {
                    assert!(
                        !String::from_utf8_lossy(&put.body).contains(secret),
                        "a secret reached a response"
                    );
                }
            }
        }
    }

    async fn admin(&self) -> tokio_postgres::Client {
        self.pg.admin(ADMIN_DATABASE).await
    }
}

/// A lower-case name no other test of this run (nor of an earlier run on an outside server) uses.
fn unique(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{label}_{}_{n}_{}", std::process::id(), nanos % 10_000)
}

fn parameter_name(database: &str) -> String {
    format!("/local-invoke/service-database/{database}/password")
}

fn ssm() -> Client {
    moto().ssm()
}

async fn put_parameter(name: &str, value: &str) {
    ssm()
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::SecureString)
        .key_id("alias/platform-rds-test")
        .overwrite(true)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutParameter {name}: {e:?}"));
}

/// (value, version, key id) of a parameter, `None` when it does not exist.
async fn stored(name: &str) -> Option<(String, i64, Option<String>)> {
    match ssm()
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(output) => {
            let p = output.parameter.unwrap();
            let key_id = ssm()
                .describe_parameters()
                .parameter_filters(
                    aws_sdk_ssm::types::ParameterStringFilter::builder()
                        .key("Name")
                        .option("Equals")
                        .values(name)
                        .build()
                        .unwrap(),
                )
                .send()
                .await
                .ok()
                .and_then(|d| d.parameters.unwrap_or_default().into_iter().next())
                .and_then(|m| m.key_id);
            Some((p.value.unwrap_or_default(), p.version, key_id))
        }
        Err(e) if e.as_service_error().is_some_and(|e| e.is_parameter_not_found()) => None,
        Err(e) => panic!("GetParameter {name}: {e:?}"),
    }
}

async fn service_password(database: &str) -> String {
    stored(&parameter_name(database))
        .await
        .expect("the service password parameter exists")
        .0
}

/// (rolcanlogin, rolsuper, rolcreatedb, rolcreaterole) of a role.
async fn role(pg: &Postgres, name: &str) -> Option<(bool, bool, bool, bool)> {
    let client = pg.admin(ADMIN_DATABASE).await;
    client
        .query_opt(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
}

async fn role_comment(pg: &Postgres, name: &str) -> Option<String> {
    let client = pg.admin(ADMIN_DATABASE).await;
    client
        .query_one(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0)
}

/// The owner of a database, `None` when there is no such database.
async fn database_owner(pg: &Postgres, name: &str) -> Option<String> {
    let client = pg.admin(ADMIN_DATABASE).await;
    client
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .map(|r| r.get(0))
}

async fn database_count(pg: &Postgres, name: &str) -> i64 {
    let client = pg.admin(ADMIN_DATABASE).await;
    client
        .query_one("SELECT count(*) FROM pg_database WHERE datname = $1", &[&name])
        .await
        .unwrap()
        .get(0)
}

/// Connects as the service (the login role `password` is for) and creates a table in its
/// database's `public` schema.
async fn service_creates_a_table(pg: &Postgres, database: &str, password: &str) {
    let login = login_holding(&parameter_name(database), password).await;
    service_creates_a_table_as(pg, &login, database, password).await;
}

/// The login role a password is for: the description of the parameter version holding it names
/// it ("Password of Postgres role <login> for database <id> (Custom::ServiceDatabase)"), as the
/// handler returns it in `Data.Username`.
async fn login_holding(parameter: &str, password: &str) -> String {
    let versions = local_invoke::fixtures::parameter_descriptions(parameter).await;
    let description = versions
        .iter()
        .rev()
        .find(|(value, _)| value == password)
        .map(|(_, description)| description.clone())
        .unwrap_or_else(|| panic!("no version of {parameter} holds this password"));
    description
        .strip_prefix("Password of Postgres role ")
        .and_then(|d| d.split_once(" for database "))
        .map(|(login, _)| login.to_string())
        .unwrap_or_else(|| panic!("the description of {parameter}'s version names no role: {description}"))
}

/// Whether `login` logs in to `database` with `password`; the SQLSTATE when refused.
async fn login_result(pg: &Postgres, login: &str, password: &str, database: &str) -> Result<(), String> {
    pg.connect(login, password, database)
        .await
        .map(drop)
        .map_err(|e| sqlstate(&e))
}

/// Connects as `role` to `database` and creates a table in its `public` schema.
async fn service_creates_a_table_as(pg: &Postgres, role: &str, database: &str, password: &str) {
    let client = pg
        .connect(role, password, database)
        .await
        .unwrap_or_else(|e| panic!("service {database} cannot connect over verified TLS: {e:?}"));
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS public.orders (id bigint PRIMARY KEY); INSERT INTO orders VALUES (1) ON CONFLICT DO NOTHING")
        .await
        .unwrap_or_else(|e| panic!("service {database} cannot create a table: {e:?}"));
    let n: i64 = client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.code().code().to_string())
        .unwrap_or_else(|| format!("{error:?}"))
}

// ---- tests ----

async fn create_makes_a_login_role_owning_its_database() {
    let f = Fixture::start().await;
    let name = unique("create");
    let created = f.create(f.props(&name, json!({}))).await;
    f.h.assert_success(&created);
    let id = format!("{}:{}/{name}", f.pg.host, f.pg.port);
    assert_eq!(created.physical_id(), Some(id.as_str()));
    assert_eq!(created.data("DatabaseName"), Some(name.as_str()));
    let login = format!("{name}_a");
    assert_eq!(created.data("Username"), Some(login.as_str()));
    assert_eq!(
        created.data("PasswordParameterName"),
        Some(parameter_name(&name).as_str())
    );
    assert_eq!(created.data("Host"), Some(f.pg.host.as_str()));
    assert_eq!(created.data("Port"), Some(f.pg.port.to_string().as_str()));
    assert_eq!(
        created.data("JdbcUrl"),
        Some(
            format!(
                "jdbc:postgresql://{}:{}/{name}?sslmode=verify-full",
                f.pg.host, f.pg.port
            )
            .as_str()
        )
    );

    assert_eq!(
        role(f.pg, &name).await,
        Some((false, false, false, false)),
        "the owner: NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
    );
    assert_eq!(
        role(f.pg, &login).await,
        Some((true, false, false, false)),
        "the login role: LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
    );
    assert_eq!(
        role(f.pg, &format!("{name}_b")).await,
        None,
        "the second login role is made by the first rotation"
    );
    assert_eq!(database_owner(f.pg, &name).await.as_deref(), Some(name.as_str()));
    let (password, version, key_id) = stored(&parameter_name(&name)).await.expect("password parameter");
    assert_eq!(version, 1);
    assert_eq!(key_id.as_deref(), Some(KEY));
    assert_eq!(password.len(), 32);

    service_creates_a_table(f.pg, &name, &password).await;

    let log = f.pg.log().expect("server log");
    assert!(
        log.contains(&format!("CREATE ROLE \"{name}\"")) && log.contains(&format!("CREATE ROLE \"{login}\"")),
        "the CREATE ROLEs are in the server log"
    );
    assert!(
        log.contains("PASSWORD 'SCRAM-SHA-256$4096:"),
        "the role's password went as a SCRAM verifier"
    );
    f.assert_hidden(&[&created], &[&password, &f.pg.admin_password]);
}

async fn other_services_and_public_cannot_connect() {
    let f = Fixture::start().await;
    let (a, b) = (unique("iso_a"), unique("iso_b"));
    f.h.assert_success(&f.create(f.props(&a, json!({}))).await);
    f.h.assert_success(&f.create(f.props(&b, json!({}))).await);
    let (pa, pb) = (service_password(&a).await, service_password(&b).await);
    service_creates_a_table(f.pg, &a, &pa).await;

    let b_login = login_holding(&parameter_name(&b), &pb).await;
    let refused =
        f.pg.connect(&b_login, &pb, &a)
            .await
            .expect_err("service B must not connect to A's database");
    assert_eq!(sqlstate(&refused), "42501", "permission denied: {refused:?}");
    f.pg.connect(&b_login, &pb, &b)
        .await
        .expect("B connects to its own database");

    // Any other login role (PUBLIC) is refused too.
    let outsider = unique("outsider");
    let outsider_password = local_invoke::postgres::random_hex(12);
    f.admin()
        .await
        .batch_execute(&format!(
            "CREATE ROLE {outsider} LOGIN PASSWORD '{outsider_password}'"
        ))
        .await
        .unwrap();
    let refused =
        f.pg.connect(&outsider, &outsider_password, &a)
            .await
            .expect_err("PUBLIC must not connect");
    assert_eq!(sqlstate(&refused), "42501", "permission denied: {refused:?}");
    let public_can: bool = f
        .admin()
        .await
        .query_one("SELECT has_database_privilege('public', $1, 'CONNECT')", &[&a])
        .await
        .unwrap()
        .get(0);
    assert!(!public_can, "PUBLIC keeps CONNECT on {a}");
}

async fn retried_create_keeps_the_password() {
    let f = Fixture::start().await;
    let name = unique("retry");
    let first = f.create(f.props(&name, json!({}))).await;
    f.h.assert_success(&first);
    let before = stored(&parameter_name(&name)).await.unwrap();
    let second = f.create(f.props(&name, json!({}))).await;
    f.h.assert_success(&second);
    assert_eq!(
        second.physical_id(),
        Some(first.physical_id().expect("a physical id"))
    );
    let after = stored(&parameter_name(&name)).await.unwrap();
    assert_eq!(after, before, "the retried Create changed the password parameter");
    service_creates_a_table(f.pg, &name, &after.0).await;
    assert_eq!(database_count(f.pg, &name).await, 1);
    f.assert_hidden(&[&first, &second], &[&after.0]);
}

async fn simultaneous_creates_leave_one_database() {
    let f = Fixture::start().await;
    // A second Lambda process: Lambda may run two deliveries of the same request at once.
    let mut other = Harness::start("service-database", &allowing_adopt()).await;
    other.events.stack_id = f.h.events.stack_id.clone();
    let name = unique("twice");
    let e1 = f.h.events.create(TYPE, LOGICAL_ID, f.props(&name, json!({})));
    let e2 = other.events.create(TYPE, LOGICAL_ID, f.props(&name, json!({})));
    let (r1, r2) = tokio::join!(f.h.call(e1), other.call(e2));
    assert_eq!(
        r1.status(),
        Some("SUCCESS"),
        "first: {:?}\n{}",
        r1.reason(),
        f.h.logs()
    );
    assert_eq!(
        r2.status(),
        Some("SUCCESS"),
        "second: {:?}\n{}",
        r2.reason(),
        other.logs()
    );
    assert_eq!(r1.physical_id(), Some(r2.physical_id().expect("a physical id")));
    assert_eq!(database_count(f.pg, &name).await, 1);
    let (password, version, _) = stored(&parameter_name(&name)).await.unwrap();
    assert_eq!(version, 1, "one password, stored once");
    service_creates_a_table(f.pg, &name, &password).await;
}

async fn role_not_ours_fails_untouched_unless_adopted() {
    let f = Fixture::start().await;
    let name = unique("foreign_role");
    let original = local_invoke::postgres::random_hex(12);
    f.admin()
        .await
        .batch_execute(&format!("CREATE ROLE {name} LOGIN PASSWORD '{original}'"))
        .await
        .unwrap();

    let created = f.create(f.props(&name, json!({}))).await;
    f.assert_failed(&created);
    assert!(
        created
            .reason()
            .is_some_and(|r| r.contains(&format!("role {name}"))),
        "the Reason names the role: {:?}",
        created.reason()
    );
    assert!(
        created.reason().is_some_and(|r| r.contains("Adopt")),
        "{:?}",
        created.reason()
    );
    assert_eq!(role_comment(f.pg, &name).await, None, "the role was marked");
    f.pg.connect(&name, &original, ADMIN_DATABASE)
        .await
        .expect("the role keeps its own password");
    assert_eq!(database_count(f.pg, &name).await, 0, "a database was created");

    let adopted = f.create(f.props(&name, json!({"Adopt": "true"}))).await;
    f.h.assert_success(&adopted);
    assert!(
        f.pg.connect(&name, &original, ADMIN_DATABASE).await.is_err(),
        "the old password still works"
    );
    service_creates_a_table(f.pg, &name, &service_password(&name).await).await;
}

/// A superuser named as a service's role, with `Adopt` set and allowed: refused, untouched, and
/// the Reason does not suggest `Adopt`. (The cluster's own superusers, `postgres` and `rdsadmin`,
/// are already refused as reserved names; this is any other.)
async fn a_superuser_role_is_refused_even_with_adopt() {
    let f = Fixture::start().await;
    let Some((user, password)) = &f.pg.superuser else {
        eprintln!("skipped: a DATABASE_URL server gives no superuser to make one with");
        return;
    };
    let root =
        f.pg.connect(user, password, ADMIN_DATABASE)
            .await
            .expect("superuser");
    let name = unique("super_role");
    let original = local_invoke::postgres::random_hex(12);
    // Kept out of the statement log, which tests search for leaked passwords.
    root.batch_execute("SET log_statement = 'none'").await.unwrap();
    root.batch_execute(&format!(
        "CREATE ROLE {name} SUPERUSER LOGIN PASSWORD '{original}'"
    ))
    .await
    .unwrap();

    let refused = f.create(f.props(&name, json!({"Adopt": "true"}))).await;
    let comment = role_comment(f.pg, &name).await;
    let keeps_password = f.pg.connect(&name, &original, ADMIN_DATABASE).await.is_ok();
    let still_superuser: bool = root
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = $1", &[&name])
        .await
        .unwrap()
        .get(0);
    let databases = database_count(f.pg, &name).await;
    root.batch_execute(&format!("DROP ROLE {name}")).await.unwrap();

    f.assert_failed(&refused);
    let reason = refused.reason().expect("a Reason");
    assert!(
        reason.contains(&format!("role {name} already exists and is a superuser")),
        "the Reason names the role and why: {reason}"
    );
    assert!(
        reason.contains("Adopt cannot take it over") && !reason.contains("set Adopt"),
        "the Reason must not suggest Adopt, which was set and cannot help: {reason}"
    );
    assert_eq!(comment, None, "the superuser was marked");
    assert!(keeps_password, "the role keeps its own password");
    assert!(still_superuser);
    assert_eq!(databases, 0, "a database was created");
}

async fn database_not_ours_fails_untouched() {
    let f = Fixture::start().await;
    let name = unique("foreign_db");
    f.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();

    let created = f.create(f.props(&name, json!({}))).await;
    f.assert_failed(&created);
    assert!(
        created
            .reason()
            .is_some_and(|r| r.contains(&format!("database {name}"))),
        "the Reason names the database: {:?}",
        created.reason()
    );
    assert_eq!(
        database_owner(f.pg, &name).await.as_deref(),
        Some(f.pg.admin_user.as_str()),
        "the owner changed"
    );
    assert_eq!(
        role(f.pg, &name).await,
        None,
        "a role was created before the check"
    );
    let comment: Option<String> = f
        .admin()
        .await
        .query_one(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment, None, "the database was marked");
}

async fn hostile_names_are_refused_or_created_exactly() {
    let f = Fixture::start().await;
    let admin = f.pg.admin_user.clone();
    let hostile = [
        format!("x\"; DROP ROLE {admin}; --"),
        "o'brien'); DROP DATABASE postgres; --".to_string(),
        "a;b".to_string(),
        "Ünïcödé".to_string(),
        "MixedCase".to_string(),
        "a".repeat(64),
        String::new(),
        "pg_catalog".to_string(),
        "orders--".to_string(),
    ];
    for name in &hostile {
        let exchange = f.create(f.props(name, json!({}))).await;
        f.assert_failed(&exchange);
        assert!(
            exchange.reason().is_some_and(|r| r.contains("DatabaseName")),
            "{name:?}: {:?}",
            exchange.reason()
        );
        if name.contains(['"', '\''])
            && let Some(log) = f.server_log(&format!("{name:?} never reached the server"))
        {
            assert!(!log.contains(name.as_str()), "{name:?} reached the server");
        }
    }
    let exchange = f
        .create(f.props(
            &unique("ok"),
            json!({"RoleName": "evil\"; ALTER ROLE x SUPERUSER; --"}),
        ))
        .await;
    f.assert_failed(&exchange);
    assert!(
        exchange.reason().is_some_and(|r| r.contains("RoleName")),
        "{:?}",
        exchange.reason()
    );
    assert_eq!(
        role(f.pg, &admin).await,
        Some((true, false, true, true)),
        "the admin changed"
    );
    // 62 bytes is a valid Postgres name, but leaves no room for the login roles' suffix.
    let exchange = f
        .create(f.props(&unique("ok"), json!({"RoleName": "r".repeat(62)})))
        .await;
    f.assert_failed(&exchange);
    assert!(
        exchange
            .reason()
            .is_some_and(|r| r.contains("RoleName") && r.contains("at most 61 bytes")),
        "{:?}",
        exchange.reason()
    );

    // A SQL keyword is a valid name: created exactly as named, always quoted.
    let keyword = "table";
    let props = f.props(
        keyword,
        json!({"OnDelete": "Drop", "PasswordParameterName": parameter_name(&unique("kw"))}),
    );
    let created = f.create(props.clone()).await;
    f.h.assert_success(&created);
    assert_eq!(database_owner(f.pg, keyword).await.as_deref(), Some(keyword));
    let deleted = f
        .delete(created.physical_id().expect("a physical id"), props)
        .await;
    f.h.assert_success(&deleted);
    assert_eq!(database_count(f.pg, keyword).await, 0);
}

async fn wrong_admin_password_fails_without_secrets() {
    let f = Fixture::start().await;
    let wrong = format!("Wrong-Admin-{}", local_invoke::postgres::random_hex(8));
    let parameter = format!("/local-invoke/service-database/{}/wrong-admin", unique("wrong"));
    put_parameter(&parameter, &wrong).await;
    let name = unique("wrong_admin");
    let exchange = f
        .create(f.props(&name, json!({"AdminPasswordParameterName": parameter})))
        .await;
    f.assert_failed(&exchange);
    assert!(
        exchange
            .reason()
            .is_some_and(|r| r.contains("password authentication failed")),
        "{:?}",
        exchange.reason()
    );
    // The service password parameter is made before the connection is tried.
    let (service, ..) = stored(&parameter_name(&name))
        .await
        .expect("the service password parameter exists");
    f.assert_hidden(&[&exchange], &[&wrong, &service]);
    assert_eq!(role(f.pg, &name).await, None);
}

async fn unreachable_host_fails_within_the_connect_timeout() {
    let f = Fixture::start().await;
    // Accepts TCP (the kernel's backlog) but never answers: only the timeout can end the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let name = unique("silent");
    let props = f.props(
        &name,
        json!({"ClusterEndpoint": "127.0.0.1", "Port": port.to_string(), "ConnectTimeoutSeconds": "2"}),
    );
    let exchange = f.create(props.clone()).await;
    f.assert_failed(&exchange);
    assert!(
        exchange
            .reason()
            .is_some_and(|r| r.contains("ConnectTimeoutSeconds (2 s)")),
        "{:?}",
        exchange.reason()
    );
    // The parameter was made: the failed Create carries its id, and the rollback Delete removes
    // it although the cluster is still unreachable.
    assert!(
        exchange
            .physical_id()
            .is_some_and(|id| id.starts_with("partial-create:")),
        "{:?}",
        exchange.physical_id()
    );
    let rollback = f
        .delete(exchange.physical_id().expect("a physical id"), props.clone())
        .await;
    f.h.assert_success(&rollback);
    assert_eq!(
        stored(&parameter_name(&name)).await,
        None,
        "the parameter survived"
    );
    f.assert_hidden(&[&exchange], &[&f.pg.admin_password]);

    // Nothing listening at all: refused at once.
    let closed = local_invoke::services::free_port();
    let props = f.props(
        &name,
        json!({"ClusterEndpoint": "127.0.0.1", "Port": closed.to_string(), "ConnectTimeoutSeconds": "2"}),
    );
    let exchange = f.create(props).await;
    f.assert_failed(&exchange);
    assert!(
        exchange
            .reason()
            .is_some_and(|r| r.starts_with("cannot connect to 127.0.0.1")),
        "{:?}",
        exchange.reason()
    );
    drop(silent);
}

async fn unknown_ca_is_refused() {
    let f = Fixture::start().await;
    let name = unique("unknown_ca");
    for extra in [
        json!({"CaCertificate": f.pg.other_ca_pem}),
        json!({"CaCertificate": ""}),
    ] {
        let exchange = f.create(f.props(&name, extra)).await;
        f.assert_failed(&exchange);
        assert!(
            exchange
                .reason()
                .is_some_and(|r| r.contains("invalid peer certificate: UnknownIssuer")),
            "{:?}",
            exchange.reason()
        );
    }
    assert_eq!(role(f.pg, &name).await, None);
}

async fn wrong_host_name_is_refused() {
    let f = Fixture::start().await;
    let name = unique("wrong_host");
    let props = f.props(&name, json!({"ClusterEndpoint": f.pg.address}));
    let exchange = f.create(props.clone()).await;
    f.assert_failed(&exchange);
    assert!(
        exchange
            .reason()
            .is_some_and(|r| r.contains("invalid peer certificate")),
        "{:?}",
        exchange.reason()
    );
    assert!(
        exchange
            .reason()
            .is_some_and(|r| r.contains("not valid for name")),
        "{:?}",
        exchange.reason()
    );
    assert_eq!(role(f.pg, &name).await, None);

    // `require` encrypts without checking the certificate: the same address then works.
    let mut props = props;
    props["TlsMode"] = json!("require");
    let exchange = f.create(props).await;
    f.h.assert_success(&exchange);
    assert_eq!(
        exchange.data("JdbcUrl").map(|u| u.ends_with("sslmode=require")),
        Some(true)
    );
}

/// Rotations alternate between the two login roles: after a rotation the credential the running
/// tasks hold (the Username and password from before) still logs in, an open session goes on,
/// and the new credential works; what one login creates the other can use; after the second
/// rotation the first credential fails.
async fn a_rotation_keeps_the_running_credential_until_the_next() {
    let f = Fixture::start().await;
    let name = unique("rotate");
    let props = |token: &str| f.props(&name, json!({"RotationToken": token}));
    let created = f.create(props("1")).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    let username = |e: &Exchange| e.data("Username").expect("a Username").to_string();
    let first = (username(&created), service_password(&name).await);
    // A running task: an open session, and a table made through the first login role.
    let running =
        f.pg.connect(&first.0, &first.1, &name)
            .await
            .expect("the first credential");
    running
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY); INSERT INTO items VALUES (1)")
        .await
        .unwrap();

    let rotated = f.update(&id, props("2"), props("1")).await;
    f.h.assert_success(&rotated);
    assert_eq!(rotated.physical_id(), Some(id.as_str()));
    let (second_password, version, key_id) = stored(&parameter_name(&name)).await.unwrap();
    assert_eq!(version, 2, "a new parameter version");
    assert_eq!(key_id.as_deref(), Some(KEY));
    let second = (username(&rotated), second_password);
    assert_eq!(
        second.0,
        format!("{name}_b"),
        "the rotation went to the other login role"
    );
    assert_ne!(second.1, first.1);
    assert_eq!(
        role(f.pg, &second.0).await,
        Some((true, false, false, false)),
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE"
    );
    running
        .simple_query("INSERT INTO items VALUES (2)")
        .await
        .expect("the open session survives the rotation");
    assert_eq!(
        login_result(f.pg, &first.0, &first.1, &name).await,
        Ok(()),
        "a new connection with the pre-rotation credential"
    );
    let new =
        f.pg.connect(&second.0, &second.1, &name)
            .await
            .expect("the new credential");
    new.batch_execute("INSERT INTO items VALUES (3); CREATE TABLE more (id bigint)")
        .await
        .expect("the table made through login A is usable through login B");
    let owner: String = new
        .query_one(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'items'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, name, "tables belong to the owner role");
    running
        .batch_execute("INSERT INTO more VALUES (1)")
        .await
        .expect("the table made through login B is usable through login A");

    // An Update that changes nothing that matters leaves the password alone.
    let again = f.update(&id, props("2"), props("2")).await;
    f.h.assert_success(&again);
    assert_eq!(stored(&parameter_name(&name)).await.unwrap().1, version);
    assert_eq!(again.data("Username"), Some(second.0.as_str()));

    // The second rotation: the first login role gets a new password, and its old one fails.
    let rotated_again = f.update(&id, props("3"), props("2")).await;
    f.h.assert_success(&rotated_again);
    assert_eq!(rotated_again.data("Username"), Some(first.0.as_str()));
    let third = service_password(&name).await;
    assert_eq!(
        login_result(f.pg, &first.0, &first.1, &name).await,
        Err("28P01".to_string()),
        "the first credential after the second rotation"
    );
    assert_eq!(login_result(f.pg, &second.0, &second.1, &name).await, Ok(()));
    assert_eq!(login_result(f.pg, &first.0, &third, &name).await, Ok(()));
    f.assert_hidden(
        &[&created, &rotated, &again, &rotated_again],
        &[&first.1, &second.1, &third],
    );
}

/// The same rotation delivered twice at once, by two Lambda processes: the second waits for the
/// lock, finds the token's version and holds its password; one new version, no third password.
async fn a_concurrent_duplicate_rotation_makes_no_third_password() {
    let f = Fixture::start().await;
    let mut other = Harness::start("service-database", &allowing_adopt()).await;
    other.events.stack_id = f.h.events.stack_id.clone();
    let name = unique("dup_rotation");
    let props = |token: &str| f.props(&name, json!({"RotationToken": token}));
    let created = f.create(props("r1")).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    let e1 = f.h.events.update(TYPE, LOGICAL_ID, &id, props("r2"), props("r1"));
    let e2 = other
        .events
        .update(TYPE, LOGICAL_ID, &id, props("r2"), props("r1"));
    let (r1, r2) = tokio::join!(f.h.call(e1), other.call(e2));
    for (exchange, logs) in [(&r1, f.h.logs()), (&r2, other.logs())] {
        assert_eq!(
            exchange.status(),
            Some("SUCCESS"),
            "{:?}\n{logs}",
            exchange.reason()
        );
    }
    assert_eq!(r1.data("Username"), r2.data("Username"));
    let versions = local_invoke::fixtures::parameter_history(&parameter_name(&name)).await;
    assert_eq!(
        versions.len(),
        2,
        "one new version: {:?}",
        versions.iter().map(|v| v.0).collect::<Vec<_>>()
    );
    let latest = service_password(&name).await;
    assert_eq!(
        login_result(f.pg, r1.data("Username").unwrap(), &latest, &name).await,
        Ok(())
    );
}

/// A resource made before the login roles: its owner role logs in itself, and its parameter's
/// description names the owner. It keeps working; its first rotation moves it to the pair (the
/// owner's credential kept as the previous one), the second takes the owner's login away, and a
/// Delete with Drop removes the owner and both login roles.
async fn a_resource_made_before_the_login_roles_moves_to_them() {
    let f = Fixture::start().await;
    let name = unique("legacy");
    let props = |token: &str| f.props(&name, json!({"RotationToken": token, "OnDelete": "Drop"}));
    let created = f.create(props("r1")).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    // Made over into what the handler before the login roles left: the owner logs in with the
    // parameter's password, which its description says is the owner's; no login roles.
    let legacy_password = service_password(&name).await;
    f.admin()
        .await
        .batch_execute(&format!(
            "DROP ROLE {name}_a; ALTER ROLE {name} LOGIN PASSWORD {}",
            verifier(&legacy_password)
        ))
        .await
        .unwrap();
    ssm()
        .put_parameter()
        .name(parameter_name(&name))
        .value(&legacy_password)
        .r#type(ParameterType::SecureString)
        .key_id(KEY)
        .overwrite(true)
        .description(format!(
            "Password of Postgres role {name} for database {id} (Custom::ServiceDatabase)"
        ))
        .send()
        .await
        .unwrap();
    service_creates_a_table_as(f.pg, &name, &name, &legacy_password).await;

    // Single-role mode until a rotation: an Update that changes nothing keeps the owner logging in.
    let unchanged = f.update(&id, props("r1"), props("r1")).await;
    f.h.assert_success(&unchanged);
    assert_eq!(unchanged.data("Username"), Some(name.as_str()));

    let first = f.update(&id, props("r2"), props("r1")).await;
    f.h.assert_success(&first);
    let login_a = format!("{name}_a");
    assert_eq!(first.data("Username"), Some(login_a.as_str()));
    let second_password = service_password(&name).await;
    assert_eq!(
        login_result(f.pg, &name, &legacy_password, &name).await,
        Ok(()),
        "the owner's credential, which the running tasks hold, after the first rotation"
    );
    service_creates_a_table_as(f.pg, &login_a, &name, &second_password).await;

    let second = f.update(&id, props("r3"), props("r2")).await;
    f.h.assert_success(&second);
    let login_b = format!("{name}_b");
    assert_eq!(second.data("Username"), Some(login_b.as_str()));
    assert_eq!(
        login_result(f.pg, &name, &legacy_password, &name).await,
        // Its password is gone too (NOLOGIN PASSWORD NULL): authentication fails first.
        Err("28P01".to_string()),
        "the owner still logs in after the second rotation"
    );
    assert_eq!(role(f.pg, &name).await, Some((false, false, false, false)));
    assert_eq!(
        login_result(f.pg, &login_a, &second_password, &name).await,
        Ok(())
    );
    service_creates_a_table_as(f.pg, &login_b, &name, &service_password(&name).await).await;

    let deleted = f.delete(&id, props("r3")).await;
    f.h.assert_success(&deleted);
    for role_name in [&name, &login_a, &login_b] {
        assert_eq!(
            role(f.pg, role_name).await,
            None,
            "role {role_name} is still there"
        );
    }
    f.assert_hidden(
        &[&created, &unchanged, &first, &second, &deleted],
        &[&legacy_password, &second_password],
    );
}

/// Rotate to r2, roll back to r1 (CloudFormation's rollback Update: previous values as the
/// properties, the failed ones as the old properties), then deliver each twice: SSM's latest value
/// is r1's password again, the role logs in with it, and duplicates make no third password.
async fn rotation_rollback_restores_the_old_password_in_ssm_and_postgres() {
    let f = Fixture::start().await;
    let name = unique("rollback");
    let r1 = f.props(&name, json!({"RotationToken": "r1"}));
    let r2 = f.props(&name, json!({"RotationToken": "r2"}));
    let created = f.create(r1.clone()).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    let (p1, _, _) = stored(&parameter_name(&name)).await.unwrap();

    let rotated = f.update(&id, r2.clone(), r1.clone()).await;
    f.h.assert_success(&rotated);
    let (p2, v2, _) = stored(&parameter_name(&name)).await.unwrap();
    assert_ne!(p2, p1);
    // A duplicate delivery of the rotation makes no third password.
    let duplicate = f.update(&id, r2.clone(), r1.clone()).await;
    f.h.assert_success(&duplicate);
    let (p2b, v2b, _) = stored(&parameter_name(&name)).await.unwrap();
    assert_eq!(
        (p2b.as_str(), v2b),
        (p2.as_str(), v2),
        "the duplicate rotated again"
    );
    service_creates_a_table(f.pg, &name, &p2).await;

    let rolled_back = f.update(&id, r1.clone(), r2.clone()).await;
    f.h.assert_success(&rolled_back);
    assert_eq!(rolled_back.physical_id(), Some(id.as_str()));
    let (p3, v3, key_id) = stored(&parameter_name(&name)).await.unwrap();
    assert_eq!(p3, p1, "the rollback did not restore r1's password");
    assert_eq!(key_id.as_deref(), Some(KEY));
    service_creates_a_table(f.pg, &name, &p1).await;
    assert_eq!(
        rolled_back.data("Username"),
        created.data("Username"),
        "the rollback flips back"
    );
    // Tasks started with r2's credential survive the rollback: its login role keeps it until the
    // next rotation.
    service_creates_a_table(f.pg, &name, &p2).await;
    // The rollback delivered twice: still r1's password, no new version.
    let again = f.update(&id, r1.clone(), r2.clone()).await;
    f.h.assert_success(&again);
    assert_eq!(
        stored(&parameter_name(&name)).await.unwrap(),
        (p1.clone(), v3, key_id)
    );
    service_creates_a_table(f.pg, &name, &p1).await;
    // Rotating forward to r2 again restores r2's password (the token was seen before).
    let forward = f.update(&id, r2.clone(), r1.clone()).await;
    f.h.assert_success(&forward);
    assert_eq!(service_password(&name).await, p2);
    service_creates_a_table(f.pg, &name, &p2).await;
    f.assert_hidden(
        &[&created, &rotated, &duplicate, &rolled_back, &again, &forward],
        &[&p1, &p2],
    );
}

/// Each of DatabaseName (onto a database that is not ours), RoleName and PasswordParameterName
/// changed by an Update that fails, then CloudFormation's rollback Update (previous values as the
/// properties, the failed ones as the old): the rollback answers SUCCESS with the same id and the
/// service still logs in with its SSM password.
async fn rename_and_rekey_roll_back() {
    let f = Fixture::start().await;
    let name = unique("rename");
    let foreign = unique("rename_foreign");
    f.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {foreign}"))
        .await
        .unwrap();
    let props = f.props(&name, json!({}));
    let created = f.create(props.clone()).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    let password = service_password(&name).await;

    let changes = [
        ("DatabaseName", json!({"DatabaseName": foreign, "RoleName": name})),
        ("RoleName", json!({"RoleName": format!("{name}_r2")})),
        (
            "PasswordParameterName",
            json!({"PasswordParameterName": parameter_name(&format!("{name}_p2"))}),
        ),
    ];
    for (what, change) in changes {
        let failed_props = f.props(&name, change);
        // CloudFormation sends the Update with the current id (a DatabaseName change replaces).
        let failed = f.update(&id, failed_props.clone(), props.clone()).await;
        f.assert_failed(&failed);
        assert!(
            failed.reason().is_some_and(|r| r.contains(what))
                || failed.reason().is_some_and(|r| r.contains(&foreign)),
            "{what}: {:?}",
            failed.reason()
        );
        let rollback = f.update(&id, props.clone(), failed_props).await;
        f.h.assert_success(&rollback);
        assert_eq!(
            rollback.physical_id(),
            Some(id.as_str()),
            "{what}: the rollback moved the id"
        );
        assert_eq!(rollback.data("DatabaseName"), created.data("DatabaseName"));
        assert_eq!(
            service_password(&name).await,
            password,
            "{what}: the password moved"
        );
        service_creates_a_table(f.pg, &name, &password).await;
    }
    assert_eq!(
        database_owner(f.pg, &foreign).await.as_deref(),
        Some(f.pg.admin_user.as_str()),
        "the foreign database changed hands"
    );
    f.assert_hidden(&[&created], &[&password]);
}

/// A Create that fails after making its password parameter answers with a partial id; the
/// rollback Delete (OnDelete Retain notwithstanding) removes the parameter, and a new Create of
/// the same resource then succeeds without Adopt.
async fn failed_create_is_cleaned_up_by_its_rollback_delete() {
    let f = Fixture::start().await;
    let name = unique("partial");
    f.admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let props = f.props(&name, json!({"OnDelete": "Retain"}));
    let failed = f.create(props.clone()).await;
    f.assert_failed(&failed);
    assert!(
        failed
            .physical_id()
            .is_some_and(|id| id.starts_with("partial-create:")),
        "the failed Create hides what it made: {:?}",
        failed.physical_id()
    );
    assert!(stored(&parameter_name(&name)).await.is_some());
    let rollback = f
        .delete(failed.physical_id().expect("a physical id"), props.clone())
        .await;
    f.h.assert_success(&rollback);
    assert_eq!(
        stored(&parameter_name(&name)).await,
        None,
        "the parameter survived its rollback"
    );
    assert_eq!(role(f.pg, &name).await, None);
    assert_eq!(
        database_owner(f.pg, &name).await.as_deref(),
        Some(f.pg.admin_user.as_str()),
        "the database that was not ours changed"
    );

    f.admin()
        .await
        .batch_execute(&format!("DROP DATABASE {name}"))
        .await
        .unwrap();
    let again = f.create(props).await;
    f.h.assert_success(&again);
    service_creates_a_table(f.pg, &name, &service_password(&name).await).await;
}

/// A rollback Update whose OldResourceProperties (what failed last time) hold a value of the
/// wrong type in every property, or unknown properties: SUCCESS, same id, same Data, the same
/// password in SSM and PostgreSQL.
async fn rollback_with_invalid_old_properties_succeeds() {
    let f = Fixture::start().await;
    let name = unique("bad_old");
    let props = f.props(&name, json!({"RotationToken": "r1"}));
    let created = f.create(props.clone()).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    let (password, version, _) = stored(&parameter_name(&name)).await.unwrap();
    let invalid = [
        ("ClusterEndpoint", json!(["not", "a", "host"])),
        ("Port", json!("not-a-port")),
        ("AdminUsername", json!({"x": 1})),
        ("AdminPasswordParameterName", json!(17)),
        ("DatabaseName", json!("has space; DROP")),
        ("RoleName", json!(["x"])),
        ("PasswordParameterName", json!(false)),
        ("KeyId", json!(3.5)),
        ("PasswordLength", json!("long")),
        ("TlsMode", json!("sometimes")),
        ("CaCertificate", json!(42)),
        ("ConnectTimeoutSeconds", json!("-1")),
        ("RotationToken", json!({"t": 1})),
        ("OnDelete", json!("Shred")),
        ("Adopt", json!("maybe")),
        ("NoSuchProperty", json!("x")),
    ];
    for (property, value) in invalid {
        let mut old = props.clone();
        old[property] = value;
        let rollback = f.update(&id, props.clone(), old).await;
        f.h.assert_success(&rollback);
        assert_eq!(rollback.physical_id(), Some(id.as_str()), "{property}");
        assert_eq!(rollback.data("JdbcUrl"), created.data("JdbcUrl"), "{property}");
        assert_eq!(
            stored(&parameter_name(&name)).await.unwrap().0,
            password,
            "{property}: the password moved"
        );
    }
    assert_eq!(
        stored(&parameter_name(&name)).await.unwrap().1,
        version,
        "no new version"
    );
    service_creates_a_table(f.pg, &name, &password).await;
}

/// A replacement (new DatabaseName and RoleName) that succeeds, then CloudFormation's rollback of
/// it: a Delete of the new id with the new properties. The new database, role and parameter go;
/// the old resource still serves with its password.
async fn replacement_rollback_deletes_the_new_only() {
    let f = Fixture::start().await;
    let name = unique("repl_old");
    let new_name = unique("repl_new");
    let props = f.props(&name, json!({"OnDelete": "Drop"}));
    let created = f.create(props.clone()).await;
    f.h.assert_success(&created);
    let password = service_password(&name).await;
    let new_props = f.props(&new_name, json!({"OnDelete": "Drop"}));
    let replaced = f
        .update(
            created.physical_id().expect("a physical id"),
            new_props.clone(),
            props,
        )
        .await;
    f.h.assert_success(&replaced);
    assert_ne!(
        replaced.physical_id().expect("a physical id"),
        created.physical_id().expect("a physical id")
    );
    assert_eq!(database_count(f.pg, &new_name).await, 1);

    let rollback = f
        .delete(replaced.physical_id().expect("a physical id"), new_props)
        .await;
    f.h.assert_success(&rollback);
    assert_eq!(
        database_count(f.pg, &new_name).await,
        0,
        "the new database survived"
    );
    assert_eq!(role(f.pg, &new_name).await, None, "the new role survived");
    assert_eq!(stored(&parameter_name(&new_name)).await, None);
    assert_eq!(service_password(&name).await, password);
    service_creates_a_table(f.pg, &name, &password).await;
}

async fn retain_leaves_everything() {
    let f = Fixture::start().await;
    let name = unique("retain");
    let props = f.props(&name, json!({}));
    let created = f.create(props.clone()).await;
    f.h.assert_success(&created);
    let deleted = f
        .delete(created.physical_id().expect("a physical id"), props)
        .await;
    f.h.assert_success(&deleted);
    assert!(role(f.pg, &name).await.is_some());
    assert_eq!(database_owner(f.pg, &name).await.as_deref(), Some(name.as_str()));
    let password = service_password(&name).await;
    service_creates_a_table(f.pg, &name, &password).await;
}

async fn drop_removes_database_role_and_parameter() {
    let f = Fixture::start().await;
    let name = unique("drop");
    let props = f.props(&name, json!({"OnDelete": "Drop"}));
    let created = f.create(props.clone()).await;
    f.h.assert_success(&created);
    let password = service_password(&name).await;
    // A live session of the service: Drop must end it.
    let login = login_holding(&parameter_name(&name), &password).await;
    let session = f.pg.connect(&login, &password, &name).await.unwrap();

    let deleted = f
        .delete(created.physical_id().expect("a physical id"), props.clone())
        .await;
    f.h.assert_success(&deleted);
    assert_eq!(
        database_count(f.pg, &name).await,
        0,
        "the database is still there"
    );
    for role_name in [name.clone(), format!("{name}_a"), format!("{name}_b")] {
        assert_eq!(
            role(f.pg, &role_name).await,
            None,
            "role {role_name} is still there"
        );
    }
    assert!(
        stored(&parameter_name(&name)).await.is_none(),
        "the parameter is still there"
    );
    assert!(
        session.simple_query("SELECT 1").await.is_err(),
        "the service's session survived"
    );

    let again = f
        .delete(created.physical_id().expect("a physical id"), props)
        .await;
    f.h.assert_success(&again);
}

async fn replacement_creates_the_new_and_drop_spares_the_shared() {
    let f = Fixture::start().await;
    let (old, new) = (unique("repl_old"), unique("repl_new"));
    let role_name = unique("repl_role");
    let parameter = parameter_name(&role_name);
    let extra = |db: &str| json!({"RoleName": role_name, "PasswordParameterName": parameter, "OnDelete": "Drop", "DatabaseName": db});
    let old_props = f.props(&old, extra(&old));
    let created = f.create(old_props.clone()).await;
    f.h.assert_success(&created);
    let password = stored(&parameter).await.unwrap().0;

    let new_props = f.props(&new, extra(&new));
    let updated = f
        .update(
            created.physical_id().expect("a physical id"),
            new_props,
            old_props.clone(),
        )
        .await;
    f.h.assert_success(&updated);
    assert_eq!(
        updated.physical_id(),
        Some(format!("{}:{}/{new}", f.pg.host, f.pg.port).as_str())
    );
    assert_eq!(
        database_owner(f.pg, &new).await.as_deref(),
        Some(role_name.as_str())
    );

    // CloudFormation then deletes the old resource: its database goes, the shared role and
    // password stay with the new one.
    let deleted = f
        .delete(created.physical_id().expect("a physical id"), old_props)
        .await;
    f.h.assert_success(&deleted);
    assert_eq!(database_count(f.pg, &old).await, 0);
    assert!(
        role(f.pg, &role_name).await.is_some(),
        "the shared role was dropped"
    );
    let (still, _, _) = stored(&parameter)
        .await
        .expect("the shared parameter was deleted");
    assert_eq!(still, password);
    service_creates_a_table_as(f.pg, &login_holding(&parameter, &still).await, &new, &still).await;
}

async fn invalid_property_fails_naming_it() {
    let f = Fixture::start().await;
    let name = unique("invalid");
    for (extra, property) in [
        (json!({"TlsMode": "prefer"}), "TlsMode"),
        (json!({"Port": "http"}), "Port"),
        (json!({"PasswordLength": "8"}), "PasswordLength"),
        (json!({"Colour": "red"}), "Colour"),
    ] {
        let exchange = f.create(f.props(&name, extra)).await;
        f.assert_failed(&exchange);
        assert!(
            exchange.reason().is_some_and(|r| r.contains(property)),
            "{property}: {:?}",
            exchange.reason()
        );
    }
    assert!(stored(&parameter_name(&name)).await.is_none());
}

/// Another session holds the advisory lock on the database's name all along (a concurrent request,
/// or a person): the Create fails on its own (not the watchdog) before the deadline, its Reason
/// naming the lock and the deadline; the holder keeps its lock and nothing was made; no session of
/// the Lambda is left waiting on the lock; once it is free, the retried Create goes through.
async fn held_lock_fails_before_the_deadline_naming_it() {
    let f = Fixture::start().await;
    let name = unique("locked");
    let key = service_database::db::lock_key("database", &Identifier::new(&name).unwrap());
    let holder = f.admin().await;
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&key])
        .await
        .unwrap();

    let timeout = Duration::from_secs(8);
    let props = f.props(&name, json!({}));
    let sent = Instant::now();
    let exchange =
        f.h.call_with_timeout(f.h.events.create(TYPE, LOGICAL_ID, props.clone()), timeout)
            .await;
    f.assert_failed(&exchange);
    let arrived = exchange.puts[0].received_at.duration_since(sent);
    assert!(
        arrived < timeout,
        "FAILED arrived {arrived:?} after the invocation, deadline {timeout:?}"
    );
    let reason = exchange.reason().expect("a Reason");
    assert!(
        reason.contains(&format!("waiting for the lock on database {name}"))
            && reason.contains("Lambda deadline"),
        "{reason}"
    );

    let held: i64 = holder
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 1, "the holder lost its lock");
    assert_eq!(role(f.pg, &name).await, None, "a role was made");
    assert_eq!(database_count(f.pg, &name).await, 0, "a database was made");
    // The Lambda closed its connection: the server ends its lock wait (the connection check, or
    // the lock timeout as a backstop) instead of queueing behind the holder for good.
    let waiting = || async {
        holder
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND ((classid::int8 << 32) | objid::int8) = $1",
                &[&key],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let until = Instant::now() + Duration::from_secs(20);
    while waiting().await > 0 {
        assert!(
            Instant::now() < until,
            "a session of the Lambda still waits on the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    holder
        .execute("SELECT pg_advisory_unlock_all()", &[])
        .await
        .unwrap();
    let retried = f.create(props).await;
    f.h.assert_success(&retried);
    assert_eq!(database_count(f.pg, &name).await, 1);
}

/// moto's environment, with `CFN_ALLOW_ADOPT=true` (refusals: `authz`).
fn allowing_adopt() -> Vec<(&'static str, &'static str)> {
    let mut env = moto().env();
    env.push(("CFN_ALLOW_ADOPT", "true"));
    env
}

// ---- authorization (registered by `authz`) ----

/// The owner's database, then a second stack's Lambda with CFN_ALLOW_ADOPT unset asks to adopt
/// it: FAILED naming the setting; the owner's password parameter and role password unchanged.
pub(crate) async fn second_stack_adopt_refused() {
    let f = Fixture::start().await;
    let name = unique("authz");
    let created = f.create(f.props(&name, json!({}))).await;
    f.h.assert_success(&created);
    let before = stored(&parameter_name(&name)).await.unwrap();

    let other = Harness::start("service-database", &moto().env()).await;
    assert_ne!(other.events.stack_id, f.h.events.stack_id);
    let refused = other
        .call(
            other
                .events
                .create(TYPE, LOGICAL_ID, f.props(&name, json!({"Adopt": "true"}))),
        )
        .await;
    assert_eq!(refused.status(), Some("FAILED"), "{}", other.logs());
    assert!(
        refused.reason().is_some_and(|r| r.contains("CFN_ALLOW_ADOPT")),
        "{:?}",
        refused.reason()
    );
    assert!(!refused.response().to_string().contains(&before.0));
    let update = other
        .call(other.events.update(
            TYPE,
            LOGICAL_ID,
            created.physical_id().expect("a physical id"),
            f.props(&name, json!({"Adopt": "true", "RotationToken": "x"})),
            f.props(&name, json!({})),
        ))
        .await;
    assert_eq!(update.status(), Some("FAILED"), "{}", other.logs());
    // The Reason says it was the function's setting that refused Adopt, not a missing property.
    assert!(
        update
            .reason()
            .is_some_and(|r| r.contains("not created by this resource"))
            && update.reason().is_some_and(|r| r.contains("CFN_ALLOW_ADOPT")),
        "{:?}",
        update.reason()
    );
    assert!(!update.response().to_string().contains(&before.0));
    let after = stored(&parameter_name(&name)).await.unwrap();
    assert_eq!(after, before, "the owner's parameter changed");
    service_creates_a_table(f.pg, &name, &before.0).await;
}

// ---- logs (registered by `leaks`) ----

/// Create, rotate and Delete at TRACE, text and JSON: no password (the service's, before and
/// after rotation, nor the admin's) and no ResponseURL signature in the Lambda's output.
pub(crate) async fn trace_logs_hold_no_secret() {
    for json_logs in [false, true] {
        let mut env = vec![("AWS_LAMBDA_LOG_LEVEL", "TRACE")];
        if json_logs {
            env.push(("AWS_LAMBDA_LOG_FORMAT", "JSON"));
        }
        let f = Fixture::start_with(&env).await;
        let name = unique("leaks");
        let props = f.props(&name, json!({"OnDelete": "Drop", "RotationToken": "1"}));
        let created = f.create(props.clone()).await;
        f.h.assert_success(&created);
        let first = service_password(&name).await;
        let rotated = f.props(&name, json!({"OnDelete": "Drop", "RotationToken": "2"}));
        let updated = f
            .update(
                created.physical_id().expect("a physical id"),
                rotated.clone(),
                props,
            )
            .await;
        f.h.assert_success(&updated);
        let second = service_password(&name).await;
        assert_ne!(first, second, "the rotation made a new password");
        let deleted = f
            .delete(created.physical_id().expect("a physical id"), rotated)
            .await;
        f.h.assert_success(&deleted);
        let logs = f.h.logs();
        crate::leaks::assert_clean(&logs, &[&first, &second, &f.pg.admin_password]);
    }
}

/// An AWS-managed key given by ARN: FAILED naming it, nothing created.
pub(crate) async fn aws_managed_key_arn_refused() {
    let f = Fixture::start().await;
    let name = unique("awskey");
    let arn = local_invoke::fixtures::kms_aws_managed_key("alias/aws/ssm");
    let created = f.create(f.props(&name, json!({"KeyId": arn}))).await;
    f.assert_failed(&created);
    assert!(
        created.reason().is_some_and(|r| r.contains(&arn)),
        "{:?}",
        created.reason()
    );
    assert!(
        created.reason().is_some_and(|r| r.contains("AWS-managed")),
        "{:?}",
        created.reason()
    );
    assert_eq!(stored(&parameter_name(&name)).await, None);
    assert_eq!(database_count(f.pg, &name).await, 0);
}

// ---- accounts after years: SSM's 100 versions, RDS-managed admin secrets, no-op Updates ----

/// The role logs in to its database with `password` (and can use it).
async fn logs_in(f: &Fixture, name: &str, password: &str, step: &str) {
    let login = login_holding(&parameter_name(name), password).await;
    if let Err(e) = f.pg.connect(&login, password, name).await {
        panic!("{step}: the service cannot log in with SSM's latest password: {e:?}");
    }
}

/// 150 rotations (r1..r150) of a service password, past SSM's 100 versions: each one SUCCESS,
/// SSM's latest value the role's password; CloudFormation rolling the last back restores r149's;
/// an Update back to r1, whose version aged out, answers SUCCESS with a new password bound to r1.
async fn rotations_past_ssm_history_then_back_to_the_first_token() {
    const ROTATIONS: usize = 150;
    let f = Fixture::start().await;
    let name = unique("history_limit");
    let token = |n: usize| {
        f.props(
            &name,
            json!({"RotationToken": format!("r{n}"), "OnDelete": "Drop"}),
        )
    };
    let created = f.create(token(0)).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    let mut passwords = vec![service_password(&name).await];
    let mut exchanges = vec![created];
    for n in 1..=ROTATIONS {
        let rotated = f.update(&id, token(n), token(n - 1)).await;
        assert_eq!(
            rotated.status(),
            Some("SUCCESS"),
            "rotation {n}: {:?}",
            rotated.reason()
        );
        let latest = service_password(&name).await;
        assert!(!passwords.contains(&latest), "rotation {n} reused a password");
        // Logging in costs a SCRAM exchange: check every 25th, and around SSM's limit.
        if n % 25 == 0 || (99..=102).contains(&n) {
            logs_in(&f, &name, &latest, &format!("rotation {n}")).await;
        }
        passwords.push(latest);
        exchanges.push(rotated);
    }
    let versions = local_invoke::fixtures::parameter_history(&parameter_name(&name)).await;
    assert_eq!(versions.len(), 100, "SSM keeps the 100 newest versions");
    assert_eq!(versions.last().unwrap().0, ROTATIONS as i64 + 1);

    let rolled_back = f.update(&id, token(ROTATIONS - 1), token(ROTATIONS)).await;
    f.h.assert_success(&rolled_back);
    assert_eq!(service_password(&name).await, passwords[ROTATIONS - 1]);
    logs_in(&f, &name, &passwords[ROTATIONS - 1], "rollback of rotation 150").await;

    let back = f.update(&id, token(1), token(ROTATIONS - 1)).await;
    f.h.assert_success(&back);
    let restored = service_password(&name).await;
    assert!(
        !passwords.contains(&restored),
        "r1's password was gone, so r1 gets a new one"
    );
    logs_in(&f, &name, &restored, "back to r1").await;
    // The new password went to the login role not in use (r150's, whose password is gone); the
    // one in use (r149's) keeps working until the next rotation.
    logs_in(
        &f,
        &name,
        &passwords[ROTATIONS - 1],
        "r149's after the Update back to r1",
    )
    .await;
    let r150_login = login_holding(&parameter_name(&name), &passwords[ROTATIONS]).await;
    assert_eq!(
        login_result(f.pg, &r150_login, &passwords[ROTATIONS], &name).await,
        Err("28P01".to_string()),
        "r150's password still works after the Update back to r1"
    );

    let deleted = f.delete(&id, token(1)).await;
    f.h.assert_success(&deleted);
    assert_eq!(database_count(f.pg, &name).await, 0);
    exchanges.extend([rolled_back, back, deleted]);
    passwords.push(restored);
    let refs: Vec<&Exchange> = exchanges.iter().collect();
    let secrets: Vec<&str> = passwords.iter().map(String::as_str).collect();
    f.assert_hidden(&refs, &secrets);
}

/// An Update whose only change is CloudFormation's own (`ServiceToken`, `ServiceTimeout`) writes
/// no SSM version or label, and sends PostgreSQL nothing (no statement names the role in the
/// server log), both on a fresh resource and on a rotated one.
async fn an_update_changing_only_service_token_or_timeout_writes_nothing() {
    let f = Fixture::start().await;
    let name = unique("no_op");
    let r1 = f.props(&name, json!({"RotationToken": "r1"}));
    let r2 = f.props(&name, json!({"RotationToken": "r2"}));
    let created = f.create(r1.clone()).await;
    f.h.assert_success(&created);
    let id = created.physical_id().expect("a physical id").to_string();
    let mut exchanges = vec![created];
    for (current, previous) in [(r1.clone(), r1.clone()), (r2.clone(), r1.clone())] {
        if current != previous {
            let rotated = f.update(&id, current.clone(), previous).await;
            f.h.assert_success(&rotated);
            exchanges.push(rotated);
        }
        let before = local_invoke::fixtures::parameter_history(&parameter_name(&name)).await;
        let log_before = f.pg.log().map(|log| log.len());
        let mut event =
            f.h.events
                .update(TYPE, LOGICAL_ID, &id, current.clone(), current.clone());
        event["ResourceProperties"]["ServiceToken"] =
            json!("arn:aws:lambda:us-east-1:123456789012:function:service-database-v2");
        event["ResourceProperties"]["ServiceTimeout"] = json!("600");
        let unchanged = f.h.call(event).await;
        f.h.assert_success(&unchanged);
        assert_eq!(unchanged.physical_id(), Some(id.as_str()));
        assert_eq!(
            local_invoke::fixtures::parameter_history(&parameter_name(&name)).await,
            before,
            "an Update that changes nothing wrote to SSM"
        );
        match (f.pg.log(), log_before) {
            (Some(log), Some(start)) => {
                let since = &log[start.min(log.len())..];
                assert!(
                    !since.contains(&name),
                    "an Update that changes nothing sent PostgreSQL a statement naming the role:\n{since}"
                );
            }
            _ => eprintln!(
                "the server log is not readable here (DATABASE_URL): the no-statement check is skipped"
            ),
        }
        logs_in(&f, &name, &service_password(&name).await, "no-op update").await;
        exchanges.push(unchanged);
    }
    let refs: Vec<&Exchange> = exchanges.iter().collect();
    f.assert_hidden(&refs, &[&service_password(&name).await]);
}

/// A SCRAM-SHA-256 verifier as a SQL literal: what the server log may see instead of a password.
fn verifier(password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    format!("'{}'", verifier.replace('\'', "''"))
}

/// A login role like an RDS master (LOGIN CREATEDB CREATEROLE, no superuser) whose password a
/// test may change, as RDS does when it rotates: the shared admin is left alone.
async fn rotatable_admin(pg: &Postgres, password: &str) -> String {
    let user = unique("admin");
    let admin = pg.admin(ADMIN_DATABASE).await;
    admin
        .batch_execute(&format!(
            "CREATE ROLE \"{user}\" LOGIN CREATEDB CREATEROLE PASSWORD {}",
            verifier(password)
        ))
        .await
        .unwrap_or_else(|e| panic!("create the rotatable admin: {}", sqlstate(&e)));
    user
}

/// Sets a role's password as RDS would on rotation (the shared admin has CREATEROLE).
async fn set_password(pg: &Postgres, user: &str, password: &str) {
    pg.admin(ADMIN_DATABASE)
        .await
        .batch_execute(&format!("ALTER ROLE \"{user}\" PASSWORD {}", verifier(password)))
        .await
        .unwrap_or_else(|e| panic!("set the admin's password: {}", sqlstate(&e)));
}

/// Properties in the Secrets Manager form: `AdminSecretArn` instead of the SSM pair.
fn secret_props(f: &Fixture, name: &str, arn: &str) -> Value {
    let mut p = f.props(name, json!({"AdminSecretArn": arn, "OnDelete": "Drop"}));
    let map = p.as_object_mut().unwrap();
    map.remove("AdminUsername");
    map.remove("AdminPasswordParameterName");
    p
}

/// `AdminSecretArn` (RDS's managed master secret): a service database is made with AWSCURRENT;
/// during a rotation (AWSCURRENT moved, the cluster still on the old password, now AWSPREVIOUS)
/// a second one is made too; once the cluster has the new password a third; and when neither
/// stage logs in, FAILED names both stages tried, never a value.
async fn admin_from_secrets_manager_through_a_rotation_window() {
    let f = Fixture::start().await;
    let old = format!("Old-Admin-{}", local_invoke::postgres::random_hex(12));
    let new = format!("New-Admin-{}", local_invoke::postgres::random_hex(12));
    let user = rotatable_admin(f.pg, &old).await;
    let secret_id = format!("rds!cluster-{}", unique("sm"));
    let arn = local_invoke::fixtures::managed_master_secret("create", &secret_id, &user, &old);
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");

    let first = unique("sm_first");
    let created = f.create(secret_props(&f, &first, &arn)).await;
    f.h.assert_success(&created);
    logs_in(&f, &first, &service_password(&first).await, "first service").await;

    // RDS rotates: the secret moves first, the cluster follows.
    local_invoke::fixtures::managed_master_secret("rotate", &secret_id, &user, &new);
    let second = unique("sm_second");
    let during = f.create(secret_props(&f, &second, &arn)).await;
    f.h.assert_success(&during);
    logs_in(
        &f,
        &second,
        &service_password(&second).await,
        "service made during the rotation",
    )
    .await;
    assert!(
        f.h.logs().contains("logged in with an earlier admin credential"),
        "the rotation window was not exercised"
    );

    set_password(f.pg, &user, &new).await;
    let third = unique("sm_third");
    let after = f.create(secret_props(&f, &third, &arn)).await;
    f.h.assert_success(&after);
    logs_in(
        &f,
        &third,
        &service_password(&third).await,
        "service made after the rotation",
    )
    .await;

    // Neither stage is the cluster's password: FAILED, naming what was tried.
    let unknown = format!("Unknown-Admin-{}", local_invoke::postgres::random_hex(12));
    set_password(f.pg, &user, &unknown).await;
    let fourth = unique("sm_fourth");
    let refused = f.create(secret_props(&f, &fourth, &arn)).await;
    f.assert_failed(&refused);
    let reason = refused.reason().expect("a Reason");
    assert!(
        reason.contains(&format!("stage AWSCURRENT of secret {arn}"))
            && reason.contains(&format!("stage AWSPREVIOUS of secret {arn}"))
            && reason.contains("password authentication failed"),
        "{reason}"
    );
    assert_eq!(database_count(f.pg, &fourth).await, 0);

    // The Deletes (OnDelete Drop) log in with the secret too.
    set_password(f.pg, &user, &new).await;
    let mut exchanges = vec![created, during, after, refused];
    for (name, id) in [(&first, 0), (&second, 1), (&third, 2)] {
        let deleted = f
            .delete(
                exchanges[id].physical_id().expect("a physical id"),
                secret_props(&f, name, &arn),
            )
            .await;
        f.h.assert_success(&deleted);
        assert_eq!(database_count(f.pg, name).await, 0);
        exchanges.push(deleted);
    }
    let refs: Vec<&Exchange> = exchanges.iter().collect();
    f.assert_hidden(&refs, &[&old, &new, &unknown]);
}

/// The SSM form while the cluster stack's own rotation is in flight: SSM's latest admin version
/// is newer than the cluster's password, so the login is retried with the previous version; two
/// versions ahead, FAILED names both versions tried.
async fn admin_from_ssm_falls_back_to_the_previous_version() {
    let f = Fixture::start().await;
    let applied = format!("Applied-Admin-{}", local_invoke::postgres::random_hex(12));
    let pending = format!("Pending-Admin-{}", local_invoke::postgres::random_hex(12));
    let later = format!("Later-Admin-{}", local_invoke::postgres::random_hex(12));
    let user = rotatable_admin(f.pg, &applied).await;
    let parameter = format!("/local-invoke/service-database/{}/admin", unique("rotating"));
    put_parameter(&parameter, &applied).await;
    put_parameter(&parameter, &pending).await;
    let admin = json!({"AdminUsername": user, "AdminPasswordParameterName": parameter, "OnDelete": "Drop"});

    let name = unique("ssm_previous");
    let created = f.create(f.props(&name, admin.clone())).await;
    f.h.assert_success(&created);
    logs_in(
        &f,
        &name,
        &service_password(&name).await,
        "made with the previous admin version",
    )
    .await;

    put_parameter(&parameter, &later).await;
    let refused_name = unique("ssm_refused");
    let refused = f.create(f.props(&refused_name, admin.clone())).await;
    f.assert_failed(&refused);
    let reason = refused.reason().expect("a Reason");
    assert!(
        reason.contains(&format!("version 3 of SSM parameter {parameter}"))
            && reason.contains(&format!("version 2 (the previous) of SSM parameter {parameter}")),
        "{reason}"
    );
    // RDS applies the newest version at last; the Delete (OnDelete Drop) logs in with it.
    set_password(f.pg, &user, &later).await;
    let deleted = f
        .delete(
            created.physical_id().expect("a physical id"),
            f.props(&name, admin),
        )
        .await;
    f.h.assert_success(&deleted);
    assert_eq!(database_count(f.pg, &name).await, 0);
    f.assert_hidden(&[&created, &refused, &deleted], &[&applied, &pending, &later]);
}

/// Both admin forms at once, or half of the SSM form: FAILED before any call, naming both forms.
async fn admin_credential_in_both_forms_fails_naming_both() {
    let f = Fixture::start().await;
    let name = unique("both_forms");
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-x-AbCdEf";
    let both = f.props(&name, json!({"AdminSecretArn": arn}));
    let mut half = f.props(&name, json!({}));
    half.as_object_mut().unwrap().remove("AdminUsername");
    for props in [both, half] {
        let exchange = f.create(props).await;
        f.assert_failed(&exchange);
        let reason = exchange.reason().expect("a Reason");
        assert!(
            reason.contains("AdminSecretArn alone")
                && reason.contains("AdminUsername with AdminPasswordParameterName"),
            "{reason}"
        );
        assert_eq!(stored(&parameter_name(&name)).await, None, "a parameter was made");
    }
}

// ---- faults: throttling, 5xx, dropped connections, a killed process, a failover ----

/// A fixture whose Lambda reaches moto through a fault proxy.
async fn faulty(seed: u64, rate: f64) -> (Fixture, local_invoke::faults::FaultProxy) {
    let proxy = local_invoke::faults::FaultProxy::start(&moto().endpoint, seed, rate).await;
    let endpoint: &'static str = Box::leak(proxy.endpoint.clone().into_boxed_str());
    let f = Fixture::start_with(&[("AWS_ENDPOINT_URL", endpoint)]).await;
    (f, proxy)
}

/// The environment the fixture's Lambda was started with, for a restart.
fn faulty_env(proxy: &local_invoke::faults::FaultProxy) -> Vec<(&str, &str)> {
    let mut env = allowing_adopt();
    env.push(("AWS_ENDPOINT_URL", proxy.endpoint.as_str()));
    env
}

/// The database, its role and its password parameter, each exactly once, the password logging
/// in; or (`gone`) none of them.
async fn converged(f: &Fixture, name: &str, gone: bool, what: &str) {
    let (db, role_row, parameter) = (
        database_count(f.pg, name).await,
        role(f.pg, name).await,
        stored(&parameter_name(name)).await,
    );
    if gone {
        let mut logins = Vec::new();
        for suffix in ["_a", "_b"] {
            logins.push(role(f.pg, &format!("{name}{suffix}")).await.is_some());
        }
        assert_eq!(
            (db, role_row.is_some(), logins, parameter.is_some()),
            (0, false, vec![false, false], false),
            "{what}: left behind"
        );
        return;
    }
    assert_eq!(db, 1, "{what}: databases");
    assert_eq!(role_row, Some((false, false, false, false)), "{what}: owner role");
    let (password, _, _) = parameter.unwrap_or_else(|| panic!("{what}: no password parameter"));
    let login = login_holding(&parameter_name(name), &password).await;
    assert_eq!(
        role(f.pg, &login).await,
        Some((true, false, false, false)),
        "{what}: login role {login}"
    );
    service_creates_a_table(f.pg, name, &password).await;
}

/// Create, a duplicate Create, a rotation, its rollback and Delete (OnDelete Drop) with a quarter
/// of the AWS requests faulted: each answered once with SUCCESS; the role's password is SSM's
/// after each step, and nothing is left after Delete.
async fn a_sequence_at_25_percent_injected_aws_faults() {
    for seed in [31, 32, 33] {
        let (f, proxy) = faulty(seed, 0.25).await;
        let name = unique("faults");
        let r1 = f.props(&name, json!({"RotationToken": "r1", "OnDelete": "Drop"}));
        let r2 = f.props(&name, json!({"RotationToken": "r2", "OnDelete": "Drop"}));
        let create = f.h.events.create(TYPE, LOGICAL_ID, r1.clone());
        let created = f.h.call(create.clone()).await;
        f.h.assert_answered_once(&created, "Create");
        let id = created.physical_id().expect("a physical id").to_string();
        let p1 = service_password(&name).await;
        let duplicate = f.h.call(create.clone()).await;
        f.h.assert_answered_once(&duplicate, "duplicate Create");
        assert_eq!(service_password(&name).await, p1);
        let rotated = f.update(&id, r2.clone(), r1.clone()).await;
        f.h.assert_answered_once(&rotated, "rotation");
        let p2 = service_password(&name).await;
        assert_ne!(p2, p1);
        converged(&f, &name, false, "after the rotation").await;
        let rolled_back = f.update(&id, r1.clone(), r2).await;
        f.h.assert_answered_once(&rolled_back, "rollback");
        assert_eq!(service_password(&name).await, p1);
        converged(&f, &name, false, "after the rollback").await;
        let deleted = f.delete(&id, r1).await;
        f.h.assert_answered_once(&deleted, "Delete");
        converged(&f, &name, true, "after Delete").await;
        let faulted = proxy.seen().iter().filter(|s| s.fault.is_some()).count();
        eprintln!("seed {seed}: {faulted} of {} AWS requests faulted", proxy.count());
        assert!(faulted > 0, "seed {seed}: the proxy injected nothing");
        f.assert_hidden(
            &[&created, &duplicate, &rotated, &rolled_back, &deleted],
            &[&p1, &p2],
        );
    }
}

/// Create, a rotation Update and Delete (OnDelete Drop), each killed once moto has acted on its
/// k-th AWS request (for every k), then re-delivered to a new process: one SUCCESS in all, one
/// database, one role, one parameter whose password logs in; nothing after Delete.
async fn killed_after_each_aws_call_then_redelivered() {
    let mut points = 0;
    for phase in ["Create", "Update", "Delete"] {
        let mut k = 1;
        loop {
            let (mut f, proxy) = faulty(k as u64, 0.0).await;
            let env = faulty_env(&proxy);
            let name = unique(&format!("crash_{}_{k}", phase.to_lowercase()));
            let r1 = f.props(&name, json!({"RotationToken": "r1", "OnDelete": "Drop"}));
            let r2 = f.props(&name, json!({"RotationToken": "r2", "OnDelete": "Drop"}));
            let id = if phase == "Create" {
                None
            } else {
                let created = f.create(r1.clone()).await;
                f.h.assert_answered_once(&created, "setup Create");
                f.h.restart(&env).await;
                Some(created.physical_id().expect("a physical id").to_string())
            };
            let event = match (phase, &id) {
                ("Create", _) => f.h.events.create(TYPE, LOGICAL_ID, r1.clone()),
                ("Update", Some(id)) => f.h.events.update(TYPE, LOGICAL_ID, id, r2.clone(), r1.clone()),
                (_, Some(id)) => f.h.events.delete(TYPE, LOGICAL_ID, id, r1.clone()),
                _ => unreachable!(),
            };
            proxy.kill_at(k, f.h.lambda.pid());
            if let Some(finished) = f.h.call_unless_killed(event.clone()).await {
                f.h.assert_answered_once(&finished, phase);
                assert!(k > 1, "{phase} made no AWS request");
                break;
            }
            f.h.restart(&env).await;
            let again = f.h.call(event.clone()).await;
            let what = format!("{phase} re-delivered after a kill at AWS request {k}");
            f.h.assert_answered_once(&again, &what);
            assert_eq!(f.h.all_puts_for(&event).len(), 1, "{what}: one response in all");
            converged(&f, &name, phase == "Delete", &what).await;
            points += 1;
            k += 1;
        }
    }
    eprintln!("service-database: {points} AWS crash points, each re-delivered to SUCCESS");
    assert!(points >= 6, "only {points} crash points");
}

/// Fixture properties pointing at `port` (a proxy in front of the throwaway cluster).
fn through(f: &Fixture, name: &str, port: u16, extra: Value) -> Value {
    let mut p = f.props(name, extra);
    p["Port"] = json!(port.to_string());
    p
}

/// A Create killed at each point of its PostgreSQL phase (after the k-th thing the client sends:
/// the TLS and SCRAM flights, each statement), then re-delivered: SUCCESS, one database and role,
/// and the SSM password logs in. The physical id names the proxy's port; the checks read the
/// cluster itself.
async fn killed_inside_the_postgres_phase_then_redelivered() {
    use local_invoke::faults::{PgFault, PgProxy};
    let upstream: std::net::SocketAddr = format!("{}:{}", postgres().address, postgres().port)
        .parse()
        .unwrap();
    // How many chunks a clean Create sends.
    let (f, proxy) = faulty(0, 0.0).await;
    let pg = PgProxy::start(upstream).await;
    let clean = unique("phase_clean");
    let created = f
        .create(through(&f, &clean, pg.port, json!({"OnDelete": "Drop"})))
        .await;
    f.h.assert_answered_once(&created, "clean Create");
    let total = pg.chunks();
    assert!(total >= 6, "a Create sent only {total} chunks to PostgreSQL");
    drop((f, proxy));
    let mut points = 0;
    for k in 1..=total {
        let (mut f, proxy) = faulty(k as u64, 0.0).await;
        let env = faulty_env(&proxy);
        let name = unique(&format!("phase_crash_{k}"));
        let event = f.h.events.create(
            TYPE,
            LOGICAL_ID,
            through(&f, &name, pg.port, json!({"OnDelete": "Drop"})),
        );
        pg.at(k, PgFault::Kill(f.h.lambda.pid()));
        let what = format!("Create killed at PostgreSQL chunk {k} of {total}");
        if let Some(finished) = f.h.call_unless_killed(event.clone()).await {
            // The kill landed after the response (the last chunks close the sessions).
            f.h.assert_answered_once(&finished, &what);
        } else {
            f.h.restart(&env).await;
            let again = f.h.call(event.clone()).await;
            f.h.assert_answered_once(&again, &format!("{what}, re-delivered"));
            points += 1;
        }
        assert_eq!(f.h.all_puts_for(&event).len(), 1, "{what}: one response in all");
        converged(&f, &name, false, &what).await;
    }
    eprintln!(
        "service-database: {points} of {total} PostgreSQL crash points killed the process, each re-delivered to SUCCESS"
    );
    assert!(points >= total / 2, "only {points} kills of {total}");
}

/// The Create's PostgreSQL session severed at each point (a failover, pg_terminate_backend): the
/// Create answers FAILED (naming the step) or SUCCESS, exactly once, and the same Create delivered
/// again finishes the database: never a half-made one the next Create cannot complete.
async fn a_session_ended_mid_create_is_finished_by_the_next() {
    use local_invoke::faults::{PgFault, PgProxy};
    let upstream: std::net::SocketAddr = format!("{}:{}", postgres().address, postgres().port)
        .parse()
        .unwrap();
    let f = Fixture::start().await;
    let pg = PgProxy::start(upstream).await;
    let clean = unique("sever_clean");
    let created = f.create(through(&f, &clean, pg.port, json!({}))).await;
    f.h.assert_answered_once(&created, "clean Create");
    let total = pg.chunks();
    let mut failed = 0;
    for k in 1..=total {
        let name = unique(&format!("sever_{k}"));
        let event =
            f.h.events
                .create(TYPE, LOGICAL_ID, through(&f, &name, pg.port, json!({})));
        pg.at(k, PgFault::Sever);
        let first = f.h.call(event.clone()).await;
        assert_eq!(first.puts.len(), 1, "severed at chunk {k}: one response");
        if first.status() == Some("FAILED") {
            failed += 1;
            assert!(
                first.reason().is_some_and(|r| !r.contains("timed out while")),
                "{:?}",
                first.reason()
            );
            let again = f.h.call(event.clone()).await;
            f.h.assert_answered_once(
                &again,
                &format!("severed at chunk {k} of {total}, delivered again"),
            );
        }
        converged(&f, &name, false, &format!("severed at chunk {k} of {total}")).await;
    }
    eprintln!(
        "service-database: {failed} of {total} severed sessions answered FAILED, each finished by the next delivery"
    );
    assert!(failed > 0, "no severed session failed the Create");
}
