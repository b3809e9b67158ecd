//! The floor of `Custom::ServiceDatabase`'s PostgreSQL work: the same statements the handler
//! sends, driven directly with tokio-postgres (the handler's crate, TLS setup and crypto provider)
//! against the same throwaway cluster, verify-full TLS and SCRAM-SHA-256 as the admin, with each
//! statement one simple query (its bind parameters written as literals): one round trip each.
//!
//! [`service_database_create_statements`] is the one list to update when the handler's statements
//! change; [`log_check`] compares it with what the handler's sessions logged (`log_statement =
//! 'all'`) in the same run and says when they no longer match.

use std::sync::Arc;
use std::time::{Duration, Instant};

use local_invoke::postgres::Postgres;
use rustls::ClientConfig;
use service_database::db::{Marker, lock_key};
use service_database::ident::{Identifier, quote_literal};
use tokio_postgres::config::SslMode;

/// `application_name` of the floor's sessions (the handler's is `service-database`).
const APPLICATION: &str = "bench-floor";

/// One thing a Create does to PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// A new session of the admin on this database: TCP, the SSLRequest, the TLS handshake
    /// (verify-full), the startup message and SCRAM-SHA-256.
    Connect(String),
    /// One simple query: a statement, or a batch the handler sends as one query.
    Send(String),
}

/// What a Create works on: the role (the database's owner), the database, and who made them.
pub(crate) struct Names {
    pub role: Identifier,
    pub database: Identifier,
    pub marker: Marker,
}

/// What `Custom::ServiceDatabase`'s Create sends PostgreSQL, in order, for a role and database
/// that exist and are ours (`existing`), or for neither existing (a new database). It mirrors
/// `crates/service-database/src/db.rs` and `handler.rs` as they are (`Target::connect` and
/// `Target::admin`'s session setup, `under_lock`, `Session::role` and `database`, `apply`,
/// `check_public_schema` on a second session in the service's database), checked against the
/// server log of one handler run (`log_statement = 'all'`, [`log_check`]). `verifier` is the
/// SCRAM verifier literal of the role's password, `timeout_ms` the session timeouts.
///
/// When the handler's statements change, this list is the one place to change.
pub(crate) fn service_database_create_statements(
    n: &Names,
    existing: bool,
    verifier: &str,
    timeout_ms: u64,
) -> Vec<Step> {
    let (role, database) = (n.role.quoted(), n.database.quoted());
    // The login role the first password goes to (`logins::Logins`): `<role>_a`.
    let login_name = format!("{}_a", n.role);
    let login = service_database::ident::quote_identifier(&login_name);
    let role_literal = quote_literal(n.role.as_str()).expect("no NUL");
    let names_literal = quote_literal(&format!("{{{},{login_name},{}_b}}", n.role, n.role)).expect("no NUL");
    let database_literal = quote_literal(n.database.as_str()).expect("no NUL");
    let marker = quote_literal(&serde_json::to_string(&n.marker).expect("marker JSON")).expect("no NUL");
    let session_setup = format!(
        "SET statement_timeout = {timeout_ms}; SET lock_timeout = {timeout_ms}; \
         SET standard_conforming_strings = on; \
         SELECT set_config(name, '1000', false) FROM pg_settings \
         WHERE name = 'client_connection_check_interval'"
    );
    let suffixed = |suffix: &str| Identifier::new(&format!("{}{suffix}", n.role)).expect("a valid name");
    let mut keys = vec![
        lock_key("database", &n.database),
        lock_key("role", &n.role),
        lock_key("role", &suffixed("_a")),
        lock_key("role", &suffixed("_b")),
    ];
    keys.sort_unstable();
    keys.dedup();
    let calls: Vec<String> = keys.iter().map(|k| format!("pg_advisory_lock({k})")).collect();

    let mut steps = vec![
        Step::Connect("postgres".into()),
        Step::Send(session_setup.clone()),
        Step::Send(format!("SELECT {}", calls.join(", "))),
    ];
    steps.push(Step::Send(format!(
        "SELECT r.rolname::text, shobj_description(r.oid, 'pg_authid'), r.rolsuper, r.rolcanlogin, \
         ARRAY(SELECT d.datname::text FROM pg_database d WHERE d.datdba = r.oid ORDER BY 1) \
         FROM pg_roles r WHERE r.rolname = ANY({names_literal}::text[])"
    )));
    steps.push(Step::Send(format!(
        "SELECT pg_get_userbyid(d.datdba)::text, shobj_description(d.oid, 'pg_database') \
         FROM pg_database d WHERE d.datname = {database_literal}"
    )));
    if !existing {
        steps.push(Step::Send(format!(
            "CREATE ROLE {role} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION \
             NOBYPASSRLS; COMMENT ON ROLE {role} IS {marker}"
        )));
    }
    let login_statement = if existing {
        format!("ALTER ROLE {login} WITH LOGIN PASSWORD {verifier}; GRANT {role} TO {login}")
    } else {
        format!(
            "CREATE ROLE {login} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION \
             NOBYPASSRLS IN ROLE {role} PASSWORD {verifier}"
        )
    };
    steps.push(Step::Send(format!(
        "{login_statement}; ALTER ROLE {login} SET role = {role_literal}; GRANT {login} TO CURRENT_USER; \
         COMMENT ON ROLE {login} IS {marker}"
    )));
    steps.push(Step::Send(format!("GRANT {role} TO CURRENT_USER")));
    if !existing {
        steps.push(Step::Send(format!("CREATE DATABASE {database} OWNER {role}")));
    }
    steps.push(Step::Send(format!(
        "REVOKE ALL ON DATABASE {database} FROM PUBLIC; COMMENT ON DATABASE {database} IS {marker}"
    )));
    steps.push(Step::Send("SELECT pg_advisory_unlock_all()".into()));
    steps.push(Step::Connect(n.database.as_str().to_string()));
    steps.push(Step::Send(session_setup));
    steps.push(Step::Send(format!(
        "SELECT has_schema_privilege({role_literal}::name, 'public', 'CREATE') \
         AND has_schema_privilege({role_literal}::name, 'public', 'USAGE')"
    )));
    steps
}

/// The handler's TLS configuration for `verify-full` (`service_database::tls::transport`): the
/// RDS bundle plus the test CA, rustls with ring, its safe default versions. Built once.
pub(crate) fn tls_config(ca_pem: &str) -> Arc<ClientConfig> {
    let roots = service_database::tls::root_store(Some(ca_pem)).expect("the trust store");
    let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// A session as the handler opens it (host name, port, verify-full, the connect timeout), the
/// connection task aborted when the returned handle is dropped.
pub(crate) async fn connect(
    pg: &Postgres,
    port: u16,
    tls: &Arc<ClientConfig>,
    database: &str,
) -> (tokio_postgres::Client, Abort) {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&pg.host)
        .port(port)
        .user(&pg.admin_user)
        .password(pg.admin_password.as_bytes())
        .dbname(database)
        .application_name(APPLICATION)
        .ssl_mode(SslMode::Require)
        .connect_timeout(Duration::from_secs(10));
    let connector = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
    let (client, connection) = config
        .connect(connector)
        .await
        .unwrap_or_else(|e| panic!("floor: connecting to {database}: {e:?}"));
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, Abort(task))
}

/// Aborts a connection's task when dropped, as the handler's `Connection` does.
pub(crate) struct Abort(tokio::task::JoinHandle<()>);

impl Drop for Abort {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One Create's PostgreSQL work at the floor: the verifier computed, then `steps` in order, each
/// session kept open until the end (as the handler keeps its admin session). Returns the time.
pub(crate) async fn run(pg: &Postgres, port: u16, tls: &Arc<ClientConfig>, steps: &[Step]) -> Duration {
    let started = Instant::now();
    let mut sessions = Vec::new();
    for step in steps {
        match step {
            Step::Connect(database) => sessions.push(connect(pg, port, tls, database).await),
            Step::Send(sql) => {
                let (client, _) = sessions.last().expect("a session before the first statement");
                client
                    .simple_query(sql)
                    .await
                    .unwrap_or_else(|e| panic!("floor: {sql}: {e:?}"));
            }
        }
    }
    let elapsed = started.elapsed();
    drop(sessions);
    elapsed
}

/// The role's password as the handler sends it: a SCRAM-SHA-256 verifier literal (4096 PBKDF2
/// iterations, a fresh salt each time).
pub(crate) fn verifier(password: &str) -> String {
    quote_literal(&postgres_protocol::password::scram_sha_256(password.as_bytes())).expect("no NUL")
}

/// Where a connect's time goes, measured apart: TCP connect + the SSLRequest's answer, the TLS
/// handshake (verify-full, the handler's configuration), and SCRAM's PBKDF2 (4096 iterations on
/// the client, as `postgres-protocol` computes them); medians of `runs`.
pub(crate) struct ConnectParts {
    pub connect: f64,
    pub tcp_and_ssl_request: f64,
    pub tls_handshake: f64,
    pub pbkdf2: f64,
    pub round_trip: f64,
}

pub(crate) async fn connect_parts(pg: &Postgres, tls: &Arc<ClientConfig>, runs: usize) -> ConnectParts {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut connects, mut tcps, mut handshakes, mut pbkdf2s, mut trips) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let server_name = rustls::pki_types::ServerName::try_from(pg.host.clone()).expect("server name");
    for _ in 0..runs {
        let started = Instant::now();
        let mut tcp = tokio::net::TcpStream::connect((pg.host.as_str(), pg.port))
            .await
            .expect("TCP connect");
        tcp.set_nodelay(true).expect("nodelay");
        // SSLRequest: length 8, code 80877103; the server answers 'S'.
        tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47])
            .await
            .expect("SSLRequest");
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).await.expect("SSLRequest answer");
        assert_eq!(answer[0], b'S', "the server accepts TLS");
        tcps.push(started.elapsed());
        let started = Instant::now();
        let tls_stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(server_name.clone(), tcp)
            .await
            .expect("TLS handshake");
        handshakes.push(started.elapsed());
        drop(tls_stream);

        let started = Instant::now();
        let _ = postgres_protocol::password::scram_sha_256(pg.admin_password.as_bytes());
        pbkdf2s.push(started.elapsed());

        let started = Instant::now();
        let (client, abort) = connect(pg, pg.port, tls, "postgres").await;
        connects.push(started.elapsed());
        let started = Instant::now();
        client.simple_query("SELECT 1").await.expect("SELECT 1");
        trips.push(started.elapsed());
        drop((client, abort));
    }
    ConnectParts {
        connect: super::percentile(&connects, 50.0),
        tcp_and_ssl_request: super::percentile(&tcps, 50.0),
        tls_handshake: super::percentile(&handshakes, 50.0),
        pbkdf2: super::percentile(&pbkdf2s, 50.0),
        round_trip: super::percentile(&trips, 50.0),
    }
}

/// The statements the sessions named `application` logged since `offset` of the server log, one
/// per simple query or extended-protocol execute, session by session in the order the sessions began:
/// (sessions, statements).
pub(crate) fn logged(log: &str, offset: usize, application: &str) -> (usize, Vec<String>) {
    let log = log.get(offset..).unwrap_or_default();
    let pid = |line: &str| -> Option<String> {
        let (_, rest) = line.split_once(" [")?;
        Some(rest.split(']').next()?.to_string())
    };
    let mut sessions: Vec<String> = Vec::new();
    let mut statements: Vec<(String, String)> = Vec::new();
    for line in log.lines() {
        let Some(p) = pid(line) else { continue };
        if line.contains("connection authorized:")
            && line.contains(&format!("application_name={application}"))
        {
            sessions.push(p);
        } else if sessions.contains(&p) {
            // A simple query logs `statement: ...`; an extended-protocol one `execute s0: ...`
            // (or `execute <unnamed>: ...`) when it runs, not when it is prepared.
            let statement = line.split_once("LOG:  statement: ").map(|(_, s)| s).or_else(|| {
                let (_, rest) = line.split_once("LOG:  execute ")?;
                rest.split_once(": ").map(|(_, s)| s)
            });
            if let Some(s) = statement {
                statements.push((p, s.to_string()));
            }
        }
    }
    let ordered = sessions
        .iter()
        .flat_map(|s| {
            statements
                .iter()
                .filter(move |(p, _)| p == s)
                .map(|(_, st)| st.clone())
        })
        .collect();
    (sessions.len(), ordered)
}

/// `statement` with any SCRAM verifier literal replaced by `'<verifier>'`, for the report.
pub(crate) fn redacted(statement: &str) -> String {
    let mut out = String::new();
    let mut rest = statement;
    while let Some(at) = rest.find("'SCRAM-SHA-256$") {
        out.push_str(&rest[..at]);
        out.push_str("'<verifier>'");
        let after = &rest[at + 1..];
        rest = after.find('\'').map_or("", |end| &after[end + 1..]);
    }
    out.push_str(rest);
    out
}

/// A statement's leading keywords ("SELECT pg_advisory_lock", "ALTER ROLE", "GRANT"): what the
/// handler's bind parameters and the floor's literals, names and verifiers leave alike.
fn shape(statement: &str) -> String {
    statement
        .split_whitespace()
        .take(2)
        .map(|token| token.split('(').next().unwrap_or_default())
        .take_while(|token| !token.is_empty() && token.chars().all(|c| c.is_ascii_alphabetic() || c == '_'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compares the handler's logged sessions and statements (`log_statement = 'all'`) with `steps`:
/// `None` when they match, else what differs.
pub(crate) fn log_check(handler_sessions: usize, handler: &[String], steps: &[Step]) -> Option<String> {
    let connects = steps.iter().filter(|s| matches!(s, Step::Connect(_))).count();
    let floor: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Send(sql) => Some(shape(sql)),
            Step::Connect(_) => None,
        })
        .collect();
    let handler: Vec<String> = handler.iter().map(|s| shape(s)).collect();
    if handler_sessions == connects && unordered_reads(&handler) == unordered_reads(&floor) {
        return None;
    }
    Some(format!(
        "the handler's sessions sent {handler_sessions} connect(s) and [{}], the floor {connects} and [{}]",
        handler.join(", "),
        floor.join(", ")
    ))
}

/// `shapes` with each run of adjacent catalog reads sorted: the handler sends such reads at once
/// (`try_join!`), so the server may run them in either order.
fn unordered_reads(shapes: &[String]) -> Vec<String> {
    let read = |s: &String| s.starts_with("SELECT") && !s.starts_with("SELECT pg_advisory");
    let mut out: Vec<String> = Vec::with_capacity(shapes.len());
    let mut run_start = 0;
    for s in shapes {
        if !read(s) {
            out[run_start..].sort_unstable();
            out.push(s.clone());
            run_start = out.len();
        } else {
            out.push(s.clone());
        }
    }
    out[run_start..].sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_reads_match_in_either_order_and_nothing_else_does() {
        let steps: Vec<Step> = [
            "SELECT pg_advisory_lock(1)",
            "SELECT r.rolname FROM pg_roles r",
            "SELECT pg_get_userbyid(d)",
            "ALTER ROLE x",
        ]
        .iter()
        .map(|s| Step::Send((*s).to_string()))
        .collect();
        let logged = |order: &[&str]| order.iter().map(|s| (*s).to_string()).collect::<Vec<_>>();
        let swapped = logged(&[
            "SELECT pg_advisory_lock(2)",
            "SELECT pg_get_userbyid(e)",
            "SELECT r.rolname FROM pg_roles r",
            "ALTER ROLE y",
        ]);
        assert_eq!(log_check(0, &swapped, &steps), None);
        let moved = logged(&[
            "SELECT pg_get_userbyid(e)",
            "SELECT pg_advisory_lock(2)",
            "SELECT r.rolname FROM pg_roles r",
            "ALTER ROLE y",
        ]);
        assert!(
            log_check(0, &moved, &steps).is_some(),
            "a read moved across the lock"
        );
        let missing = logged(&[
            "SELECT pg_advisory_lock(2)",
            "SELECT r.rolname FROM pg_roles r",
            "ALTER ROLE y",
        ]);
        assert!(log_check(0, &missing, &steps).is_some(), "a read missing");
    }

    #[test]
    fn shapes_keep_the_keywords() {
        assert_eq!(shape("SELECT pg_advisory_lock($1)"), "SELECT pg_advisory_lock");
        assert_eq!(shape("SELECT pg_advisory_lock(-42)"), "SELECT pg_advisory_lock");
        assert_eq!(shape("GRANT \"orders\" TO CURRENT_USER"), "GRANT");
        assert_eq!(shape("ALTER ROLE \"orders\" WITH LOGIN"), "ALTER ROLE");
    }

    #[test]
    fn verifiers_are_redacted() {
        assert_eq!(
            redacted(
                "ALTER ROLE r WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:abc$def:ghi'; COMMENT ON ROLE r IS '{}'"
            ),
            "ALTER ROLE r WITH LOGIN PASSWORD '<verifier>'; COMMENT ON ROLE r IS '{}'"
        );
    }
}
