//! The admin's session on the cluster and the few statements this crate runs. Every identifier
//! goes through [`Identifier::quoted`] and every literal through [`quote_literal`]; the session
//! turns `standard_conforming_strings` on before the first literal.

use std::time::Duration;

use cfn_custom_resource::Secret;
use serde::{Deserialize, Serialize};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Client, NoTls};

use crate::error::{Error, PgError};
use crate::ident::{Identifier, quote_literal};
use crate::tls::Transport;

/// The database the admin connects to for cluster-wide statements (present on RDS and Aurora).
pub const ADMIN_DATABASE: &str = "postgres";

/// `client_connection_check_interval` of every session, in milliseconds.
const CONNECTION_CHECK_MS: u32 = 1000;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// The cluster's host.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `ConnectTimeoutSeconds`: bounds TCP, TLS and authentication together.
    pub timeout: Duration,
    /// TLS per `TlsMode`, or plaintext.
    pub transport: Transport,
    /// When PostgreSQL itself gives up: each session's `statement_timeout` and `lock_timeout` are
    /// the time left until then, as the session starts. A backstop below the deadline watchdog,
    /// for the server's side: the handler bounds its whole PostgreSQL phase a little earlier and
    /// closes its connections, which the server may only notice when it next looks.
    pub give_up_at: tokio::time::Instant,
}

/// A connection: the client, and the task driving it, which ends (aborted) when this is dropped,
/// so no connection outlives the handler that opened it.
pub struct Connection {
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl std::ops::Deref for Connection {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Target {
    /// Connects as `user` to `database`. The whole attempt (TCP, TLS, authentication) is bounded
    /// by the connect timeout.
    pub async fn connect(
        &self,
        user: &str,
        password: &Secret<String>,
        database: &str,
    ) -> Result<Connection, Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(user)
            .password(password.expose().as_bytes())
            .dbname(database)
            .application_name("service-database")
            .connect_timeout(self.timeout);
        let attempt = async {
            match &self.transport {
                Transport::Tls(tls) => {
                    config.ssl_mode(SslMode::Require);
                    let (client, connection) = config.connect(tls.clone()).await?;
                    Ok((client, tokio::spawn(watch(connection))))
                }
                Transport::Plain => {
                    config.ssl_mode(SslMode::Disable);
                    let (client, connection) = config.connect(NoTls).await?;
                    Ok((client, tokio::spawn(watch(connection))))
                }
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Err(_) => Err(Error::ConnectTimeout {
                host: self.host.clone(),
                port: self.port,
                seconds: self.timeout.as_secs(),
            }),
            Ok(Err(error)) => Err(Error::Connect {
                host: self.host.clone(),
                port: self.port,
                user: user.to_string(),
                source: PgError(error),
            }),
            Ok(Ok((client, task))) => {
                let connection = Connection { client, task };
                let ms = self
                    .give_up_at
                    .saturating_duration_since(tokio::time::Instant::now())
                    .max(Duration::from_millis(100))
                    .as_millis();
                // client_connection_check_interval (PostgreSQL 14+, skipped before): a statement
                // or lock wait whose client went away (the handler ran out of time) ends within a
                // second instead of at its timeout, releasing what it holds.
                // standard_conforming_strings too, before any literal is sent (one round trip).
                connection
                    .batch_execute(&format!(
                        "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
                         SET standard_conforming_strings = on; \
                         SELECT set_config(name, '{CONNECTION_CHECK_MS}', false) FROM pg_settings \
                         WHERE name = 'client_connection_check_interval'"
                    ))
                    .await
                    .map_err(|e| Error::sql("setting the session's timeouts", e))?;
                Ok(connection)
            }
        }
    }

    /// The admin's session on [`ADMIN_DATABASE`], ready for literals.
    pub async fn admin(&self, user: &str, password: &Secret<String>) -> Result<Session, Error> {
        let client = self.connect(user, password, ADMIN_DATABASE).await?;
        Ok(Session { client })
    }
}

async fn watch<F: Future<Output = Result<(), tokio_postgres::Error>>>(connection: F) {
    if let Err(error) = connection.await {
        tracing::warn!(error = %cfn_custom_resource::error_chain(&PgError(error)), "database connection ended with an error");
    }
}

/// Who made a role or database: stored as its `COMMENT`, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Marker {
    /// Always [`MANAGED_BY`]: tells our comments from anybody else's JSON.
    pub managed_by: String,
    /// The owning stack's id.
    pub stack_id: String,
    /// The resource's logical id in that stack.
    pub logical_resource_id: String,
    /// The physical id it was made for (a replacement's Delete leaves what the new id took over).
    pub physical_resource_id: String,
}

/// The `ManagedBy` of every marker.
pub const MANAGED_BY: &str = "Custom::ServiceDatabase";

impl Marker {
    /// The marker of resource `logical_resource_id` of stack `stack_id`, for `physical_resource_id`.
    pub fn new(stack_id: &str, logical_resource_id: &str, physical_resource_id: &str) -> Self {
        Self {
            managed_by: MANAGED_BY.into(),
            stack_id: stack_id.into(),
            logical_resource_id: logical_resource_id.into(),
            physical_resource_id: physical_resource_id.into(),
        }
    }

    /// The marker a comment holds; `None` for no comment, or one that is not a marker.
    pub fn parse(comment: Option<&str>) -> Option<Self> {
        comment
            .and_then(|c| serde_json::from_str::<Self>(c).ok())
            .filter(|m| m.managed_by == MANAGED_BY)
    }

    /// Made by the same resource (stack and logical id), whatever its physical id.
    pub fn same_resource(&self, other: &Self) -> bool {
        self.stack_id == other.stack_id && self.logical_resource_id == other.logical_resource_id
    }

    /// True when `comment` is a marker made by the same resource as `self`.
    pub fn claims(&self, comment: Option<&str>) -> bool {
        Self::parse(comment).is_some_and(|m| m.same_resource(self))
    }

    fn literal(&self) -> Result<String, Error> {
        let json = serde_json::to_string(self).expect("strings serialize");
        quote_literal(&json)
            .ok_or_else(|| Error::Unsupported("the stack or logical id holds a NUL character".into()))
    }
}

/// A role as the cluster shows it.
#[derive(Debug, Clone)]
pub struct RoleRow {
    /// `rolname`.
    pub name: String,
    /// Its `COMMENT` (a [`Marker`] when it is ours).
    pub comment: Option<String>,
    /// `rolsuper`: such a role is never taken.
    pub superuser: bool,
    /// `rolcanlogin`.
    pub can_login: bool,
    /// Databases this role owns.
    pub owned_databases: Vec<String>,
}

/// A database as the cluster shows it.
#[derive(Debug, Clone)]
pub struct DatabaseRow {
    /// The owner role's name.
    pub owner: String,
    /// Its `COMMENT` (a [`Marker`] when it is ours).
    pub comment: Option<String>,
}

/// A session of the admin user.
pub struct Session {
    client: Connection,
}

impl Session {
    async fn execute(&self, doing: &str, sql: &str) -> Result<(), Error> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| Error::sql(doing, e))
    }

    /// Takes session-level advisory locks on `keys` (sorted, so two sessions never deadlock);
    /// they are released by [`Session::unlock`] or when the session ends. One round trip: the
    /// calls of one select list run in order, each waiting (up to `lock_timeout`) for its lock.
    pub async fn lock(&self, mut keys: Vec<i64>) -> Result<(), Error> {
        keys.sort_unstable();
        keys.dedup();
        let calls: Vec<String> = keys
            .iter()
            .map(|key| format!("pg_advisory_lock({key})"))
            .collect();
        self.execute(
            "taking the advisory lock",
            &format!("SELECT {}", calls.join(", ")),
        )
        .await
    }

    /// Releases every advisory lock of the session (a failure is logged: the session's end
    /// releases them anyway).
    pub async fn unlock(&self) {
        if let Err(e) = self.client.batch_execute("SELECT pg_advisory_unlock_all()").await {
            tracing::warn!(error = %cfn_custom_resource::error_chain(&PgError(e)), "releasing advisory locks; the session end releases them");
        }
    }

    /// The role `role`, if it exists.
    pub async fn role(&self, role: &Identifier) -> Result<Option<RoleRow>, Error> {
        Ok(self.roles(&[role]).await?.into_iter().next())
    }

    /// The roles of `names` that exist, in one query.
    pub async fn roles(&self, names: &[&Identifier]) -> Result<Vec<RoleRow>, Error> {
        let names: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
        let rows = self
            .client
            .query(
                "SELECT r.rolname::text, shobj_description(r.oid, 'pg_authid'), r.rolsuper, r.rolcanlogin, \
                 ARRAY(SELECT d.datname::text FROM pg_database d WHERE d.datdba = r.oid ORDER BY 1) \
                 FROM pg_roles r WHERE r.rolname = ANY($1)",
                &[&names],
            )
            .await
            .map_err(|e| Error::sql(format!("looking up role {}", names.join(", ")), e))?;
        Ok(rows
            .into_iter()
            .map(|row| RoleRow {
                name: row.get(0),
                comment: row.get(1),
                superuser: row.get(2),
                can_login: row.get(3),
                owned_databases: row.get(4),
            })
            .collect())
    }

    /// The database `database`, if it exists.
    pub async fn database(&self, database: &Identifier) -> Result<Option<DatabaseRow>, Error> {
        let row = self
            .client
            .query_opt(
                "SELECT pg_get_userbyid(d.datdba)::text, shobj_description(d.oid, 'pg_database') \
                 FROM pg_database d WHERE d.datname = $1",
                &[&database.as_str()],
            )
            .await
            .map_err(|e| Error::sql(format!("looking up database {database}"), e))?;
        Ok(row.map(|row| DatabaseRow {
            owner: row.get(0),
            comment: row.get(1),
        }))
    }

    /// Creates the role and marks it ours, in one implicit transaction (both or neither).
    pub async fn create_role(
        &self,
        role: &Identifier,
        password: &Secret<String>,
        marker: &Marker,
    ) -> Result<(), Error> {
        let sql = format!(
            "CREATE ROLE {r} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS PASSWORD {v}; \
             COMMENT ON ROLE {r} IS {m}",
            r = role.quoted(),
            v = verifier(password)?,
            m = marker.literal()?,
        );
        self.execute(&format!("creating role {role}"), &sql).await
    }

    /// Sets the role's password (as a SCRAM verifier) and marker; makes sure it can log in.
    pub async fn set_role_password(
        &self,
        role: &Identifier,
        password: &Secret<String>,
        marker: &Marker,
    ) -> Result<(), Error> {
        let sql = format!(
            "ALTER ROLE {r} WITH LOGIN PASSWORD {v}; COMMENT ON ROLE {r} IS {m}",
            r = role.quoted(),
            v = verifier(password)?,
            m = marker.literal()?,
        );
        self.execute(&format!("setting the password of role {role}"), &sql)
            .await
    }

    /// Creates the `NOLOGIN` owner role and marks it ours, in one implicit transaction.
    pub async fn create_owner(&self, owner: &Identifier, marker: &Marker) -> Result<(), Error> {
        let sql = format!(
            "CREATE ROLE {r} WITH NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS; \
             COMMENT ON ROLE {r} IS {m}",
            r = owner.quoted(),
            m = marker.literal()?,
        );
        self.execute(&format!("creating role {owner}"), &sql).await
    }

    /// Creates (or, when `exists`, updates) a login role of `owner`: `LOGIN` with `password`,
    /// a member of the owner, and a session that starts as the owner (`SET role`), so what it
    /// creates belongs to the owner and stays usable through the other login role. Marked ours;
    /// all in one implicit transaction.
    pub async fn set_login(
        &self,
        login: &Identifier,
        owner: &Identifier,
        password: &Secret<String>,
        marker: &Marker,
        exists: bool,
    ) -> Result<(), Error> {
        let (r, o, v) = (login.quoted(), owner.quoted(), verifier(password)?);
        let role = if exists {
            // Only LOGIN and the password: naming SUPERUSER or NOSUPERUSER at all needs a superuser,
            // which an RDS master is not (a superuser role was refused before this).
            format!("ALTER ROLE {r} WITH LOGIN PASSWORD {v}; GRANT {o} TO {r}")
        } else {
            format!(
                "CREATE ROLE {r} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT NOREPLICATION NOBYPASSRLS \
                 IN ROLE {o} PASSWORD {v}"
            )
        };
        let as_owner = quote_literal(owner.as_str()).expect("identifiers hold no NUL");
        // The admin a member too: ending the login role's sessions (a Delete's) needs it.
        let sql = format!(
            "{role}; ALTER ROLE {r} SET role = {as_owner}; GRANT {r} TO CURRENT_USER; COMMENT ON ROLE {r} IS {m}",
            m = marker.literal()?,
        );
        let doing = if exists {
            format!("setting the password of role {login}")
        } else {
            format!("creating role {login}")
        };
        self.execute(&doing, &sql).await
    }

    /// Marks a role ours (an adopted owner), leaving its attributes and password as they are.
    pub async fn mark_role(&self, role: &Identifier, marker: &Marker) -> Result<(), Error> {
        let sql = format!("COMMENT ON ROLE {} IS {}", role.quoted(), marker.literal()?);
        self.execute(&format!("marking role {role} as this resource's"), &sql)
            .await
    }

    /// Takes a role's `LOGIN` and password away: nothing can log in as it any more.
    pub async fn disable_login(&self, role: &Identifier) -> Result<(), Error> {
        let sql = format!("ALTER ROLE {} WITH NOLOGIN PASSWORD NULL", role.quoted());
        self.execute(&format!("taking the login of role {role} away"), &sql)
            .await
    }

    /// Makes the admin a member of `role`: an RDS master is no superuser, and must be a member to
    /// create a database owned by the role, or to drop it.
    pub async fn grant_role_to_admin(&self, role: &Identifier) -> Result<(), Error> {
        let sql = format!("GRANT {} TO CURRENT_USER", role.quoted());
        self.execute(&format!("granting role {role} to the admin user"), &sql)
            .await
    }

    /// `CREATE DATABASE` alone: it cannot run in a transaction or a multi-statement batch.
    pub async fn create_database(&self, database: &Identifier, owner: &Identifier) -> Result<(), Error> {
        let sql = format!("CREATE DATABASE {} OWNER {}", database.quoted(), owner.quoted());
        self.execute(&format!("creating database {database}"), &sql).await
    }

    /// Makes `owner` the owner of `database` (an adopted database, or one made before the owner
    /// role took over).
    pub async fn set_database_owner(&self, database: &Identifier, owner: &Identifier) -> Result<(), Error> {
        let sql = format!("ALTER DATABASE {} OWNER TO {}", database.quoted(), owner.quoted());
        self.execute(&format!("making {owner} the owner of database {database}"), &sql)
            .await
    }

    /// No `CONNECT` (nor `TEMPORARY`) for everybody: only the owner (and the admin, a member of
    /// the owner role) can connect.
    pub async fn isolate_database(&self, database: &Identifier, marker: &Marker) -> Result<(), Error> {
        let sql = format!(
            "REVOKE ALL ON DATABASE {d} FROM PUBLIC; COMMENT ON DATABASE {d} IS {m}",
            d = database.quoted(),
            m = marker.literal()?,
        );
        self.execute(&format!("revoking PUBLIC's access to database {database}"), &sql)
            .await
    }

    /// Ends every other session on `database` (the service's), so it can be dropped.
    pub async fn terminate_sessions(&self, database: &Identifier) -> Result<u64, Error> {
        self.client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&database.as_str()],
            )
            .await
            .map_err(|e| Error::sql(format!("ending the sessions on database {database}"), e))
    }

    /// Drops the database, ending its sessions (`WITH (FORCE)`); one already gone is fine.
    pub async fn drop_database(&self, database: &Identifier) -> Result<(), Error> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", database.quoted());
        self.execute(&format!("dropping database {database}"), &sql).await
    }

    /// Drops the role; one already gone is fine.
    pub async fn drop_role(&self, role: &Identifier) -> Result<(), Error> {
        self.drop_role_named(role.as_str()).await
    }

    /// Drops a role by the name the catalog gave (one of ours, read back from `pg_roles`).
    pub async fn drop_role_named(&self, role: &str) -> Result<(), Error> {
        let sql = format!("DROP ROLE IF EXISTS {}", crate::ident::quote_identifier(role));
        self.execute(&format!("dropping role {role}"), &sql).await
    }
}

/// Checks, in the service's own database, that its role can create tables in `public` (on
/// Postgres 15+ `public` belongs to `pg_database_owner`, so owning the database is what gives it).
pub async fn check_public_schema(
    client: &Client,
    database: &Identifier,
    role: &Identifier,
) -> Result<(), Error> {
    let row = client
        .query_one(
            "SELECT has_schema_privilege($1::name, 'public', 'CREATE') AND has_schema_privilege($1::name, 'public', 'USAGE')",
            &[&role.as_str()],
        )
        .await
        .map_err(|e| Error::sql(format!("checking role {role}'s privileges on schema public of {database}"), e))?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "role {role} owns database {database} but cannot create tables in its schema public; \
             grant it CREATE, USAGE ON SCHEMA public (as the schema's owner)"
        )))
    }
}

/// The password as a SCRAM-SHA-256 verifier literal: the server (and its statement log) never
/// sees the clear text.
fn verifier(password: &Secret<String>) -> Result<String, Error> {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose().as_bytes());
    quote_literal(&verifier).ok_or(Error::VerifierNul)
}

/// A stable advisory-lock key for a name of a kind (`database`, `role`): FNV-1a, 64 bits.
pub fn lock_key(kind: &str, name: &Identifier) -> i64 {
    let bytes = MANAGED_BY
        .bytes()
        .chain([0])
        .chain(kind.bytes())
        .chain([0])
        .chain(name.as_str().bytes());
    cfn_custom_resource::fnv1a_64(bytes) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_is_scram_and_hides_the_password() {
        let password = Secret::new("correct horse battery staple".to_string());
        let v = verifier(&password).unwrap();
        assert!(v.starts_with("'SCRAM-SHA-256$4096:") && v.ends_with('\''), "{v}");
        assert!(!v.contains("horse"));
    }

    #[test]
    fn lock_keys_are_stable_and_distinct() {
        let a = Identifier::new("orders").unwrap();
        let b = Identifier::new("billing").unwrap();
        assert_eq!(lock_key("database", &a), lock_key("database", &a));
        assert_ne!(lock_key("database", &a), lock_key("database", &b));
        assert_ne!(lock_key("database", &a), lock_key("role", &a));
    }

    #[test]
    fn markers_round_trip_and_match_by_resource() {
        let m = Marker::new("arn:stack/x", "Db", "h:5432/orders");
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(Marker::parse(Some(&text)), Some(m.clone()));
        assert_eq!(Marker::parse(Some("hand-made")), None);
        assert_eq!(Marker::parse(None), None);
        assert!(m.same_resource(&Marker::new("arn:stack/x", "Db", "other:5432/new")));
        assert!(!m.same_resource(&Marker::new("arn:stack/y", "Db", "h:5432/orders")));
        assert_eq!(m.literal().unwrap().matches('\'').count(), 2);
    }
}
