//! `Custom::ServiceDatabase`: one Postgres database per service on a shared (Aurora) cluster,
//! owned by the service's own `NOLOGIN` role and reached through two login roles that act as it
//! and take turns at each rotation ([`logins`]), the current one's password in SSM under the
//! service's KMS key; reachable by no other service.
//!
//! # Properties
//!
//! Values may arrive as strings (CloudFormation sends `"5432"`, `"true"`).
//!
//! | property | required | default | meaning |
//! | --- | --- | --- | --- |
//! | `ClusterEndpoint` | yes | | host name of the cluster's writer |
//! | `Port` | | 5432 | |
//! | `AdminUsername` | one form | | the master user (CREATEDB, CREATEROLE; need not be a superuser) |
//! | `AdminPasswordParameterName` | one form | | SSM parameter holding its password (read with decryption) |
//! | `AdminSecretArn` | the other form | | Secrets Manager secret with JSON `username` and `password` (RDS's managed master secret) |
//! | `DatabaseName` | yes | | see *Names* |
//! | `RoleName` | | `DatabaseName` | the owner role; the login roles are `<RoleName>_a` and `<RoleName>_b`; see *Names* |
//! | `PasswordParameterName` | yes | | SSM SecureString for the service's password |
//! | `KeyId` | yes | | KMS key (id, ARN or alias) of that parameter |
//! | `PasswordLength` | | 32 | 16..=128 |
//! | `TlsMode` | | `verify-full` | `verify-full`, `require` (TLS, certificate unchecked) or `disable` |
//! | `CaCertificate` | | | extra PEM CA trusted besides the built-in AWS RDS bundle |
//! | `ConnectTimeoutSeconds` | | 10 | 1..=120; bounds TCP, TLS and authentication together |
//! | `RotationToken` | | | any change sets a new password |
//! | `OnDelete` | | `Retain` | `Retain` or `Drop` |
//! | `Adopt` | | false | take over an existing role, database or parameter not made by this resource |
//!
//! The admin credential comes in exactly one of two forms: `AdminUsername` with
//! `AdminPasswordParameterName` (an SSM SecureString, such as `Custom::AdminSecret`'s), or
//! `AdminSecretArn` alone (a cluster created with `ManageMasterUserPassword`). Neither, both or
//! half of the first fails the request with a Reason naming both forms. It is read on every
//! invocation, never cached. When the server refuses it (a rotation in flight: SSM's latest
//! version not yet applied by RDS, or RDS rotating its managed secret), the previous SSM version,
//! or the secret's `AWSCURRENT` read again and then its `AWSPREVIOUS`, is tried before the request
//! fails with a Reason naming each credential tried (version or stage, never a value); see
//! [`admin`].
//!
//! # Names
//!
//! `DatabaseName` and `RoleName`: 1..=63 bytes of lower-case ASCII letters, digits and `_`, not
//! starting with a digit, not reserved (`pg_*`, `rds_*`, `public`, `postgres`, ...; see
//! [`ident`]). SQL keywords are allowed. Names are always sent double-quoted, so a valid name is
//! created exactly as written; anything else fails the request with a `Reason` naming the
//! property, before any network call. `RoleName` (or `DatabaseName`, its default) is at most 61
//! bytes, leaving room for the login roles' `_a`/`_b`.
//!
//! # Create
//!
//! In this order, each step idempotent: read the admin password; get or create the service
//! password parameter (`Overwrite=false`, tagged with the stack and logical id); connect as the
//! admin (TLS per `TlsMode`, never a plaintext fallback); take advisory locks on the database and
//! role names; create the owner role (`NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`); create the
//! login role `<RoleName>_a` (`LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE`, a member of the owner,
//! with `SET role` to the owner as its session default, so what it creates belongs to the owner)
//! with its password sent as a client-side SCRAM-SHA-256 verifier, so the clear text never
//! reaches the server or its logs; `GRANT` the owner to the admin; `CREATE DATABASE ... OWNER`
//! the owner; `REVOKE ALL ON DATABASE ... FROM PUBLIC`; check the owner can create tables in its
//! `public` schema (on Postgres 15+ the schema belongs to `pg_database_owner`, so owning the
//! database suffices). `<RoleName>_b` is made by the first rotation. The roles and the database
//! are marked as ours with a JSON `COMMENT` naming the stack, logical and physical id. A role or
//! database that exists and is not ours fails the request untouched, unless `Adopt` (and the
//! function's `CFN_ALLOW_ADOPT` setting allows it); an adopted owner role is marked ours and
//! loses its login (the service logs in through the login roles). A retried Create reuses the
//! parameter's password.
//!
//! The PostgreSQL part of any request (connect, lock waits, statements) ends as a whole a second
//! before the deadline watchdog: a lock held elsewhere, or a slow chain of statements, fails the
//! request with a `Reason` naming the step, and its connections are closed; PostgreSQL's own
//! `statement_timeout`/`lock_timeout` and `client_connection_check_interval` end the server's
//! side.
//!
//! # Physical id and Data
//!
//! Physical id: `<ClusterEndpoint>:<Port>/<DatabaseName>`. `Data`: `DatabaseName`, `Username`
//! (the login role holding the parameter's latest version: it changes at every rotation, which is
//! what makes a task definition that uses it roll), `PasswordParameterName`, `Host`, `Port`,
//! `JdbcUrl` (`jdbc:postgresql://host:port/db?sslmode=<TlsMode>`). The password is never
//! returned. Each parameter version's description names the login role its password is for.
//!
//! # Update
//!
//! A change of `ClusterEndpoint`, `Port` or `DatabaseName` is a replacement: the new database is
//! created and gets the new physical id (the password parameter, if the same, now names it). A
//! changed `RotationToken` puts a new password in SSM (a new version) and sets it on the login
//! role *not* in use, which becomes current: the other keeps its password, so the tasks still
//! running with it keep connecting, until the next rotation gives it a new one. A changed `KeyId`
//! re-stores the password under the new key. Rotation is reversible: each version is bound to its
//! `RotationToken` (`ssm_secret`'s rotation labels), so an Update back to a token seen before
//! restores that password (on its own login role when that is not the current one: a rollback
//! flips back), and the same token delivered twice, even at once, converges on one version (the
//! plan is made again under the lock). SSM's 100-version limit
//! never stops a rotation (labels leave the versions about to age out; a token whose version has
//! aged out gets a new password, bound to it). An Update that changes nothing (only
//! `ServiceToken` or `ServiceTimeout`) reads SSM and writes nothing, in SSM or PostgreSQL. `RoleName` and
//! `PasswordParameterName` cannot change in place (FAILED, saying so). Nothing else touches data.
//!
//! # Delete
//!
//! `Retain` (the default) leaves everything. `Drop` ends the database's sessions and drops the
//! database if its comment names this resource *and* this physical id (not after a replacement
//! took it over), drops the owner role and its login roles if they are ours and the owner owns no
//! database any more, then deletes the password parameter if its tags name this resource and its
//! description this physical id.
//! Something already gone is success; something not ours is left in place (and logged). `Drop`
//! needs the admin password and the cluster; `Retain` touches neither. A Create that fails before
//! it could connect answers with a marker id, so its rollback Delete touches nothing (a password
//! parameter it made stays, and a retried Create reuses it).
//!
//! # Settings
//!
//! [`Settings::from_env`] reads the function's own configuration once, at init, and logs it:
//! `CFN_ALLOW_ADOPT` (`true`/`false`, off when unset), without which `Adopt` takes nothing over.
//! A value other than `true` or `false` is kept: every request with `Adopt` fails naming the
//! variable, the value and what is expected.
//!
//! # Errors
//!
//! [`Error`] keeps each failure's cause as its typed source (PostgreSQL's error, SSM's, Secrets
//! Manager's, the password generator's); the chain is rendered once, into the `Reason`.
//! Passwords are [`cfn_custom_resource::Secret`]s: they never reach a log line, a `Reason` or an
//! error.

#![warn(missing_docs)]

pub mod admin;
pub mod db;
pub mod error;
mod handler;
pub mod ident;
pub mod logins;
mod properties;
mod settings;
pub mod tls;

pub use error::Error;
pub use handler::ServiceDatabase;
pub use properties::{
    AdminSource, CONNECT_TIMEOUT_SECONDS, OnDelete, PASSWORD_LENGTH, Properties, TlsMode, Validated,
};
pub use settings::Settings;
