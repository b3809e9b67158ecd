//! Why a request failed, in words a platform engineer can act on. Each variant says what went
//! wrong at its own step and keeps what it came from as a typed [`std::error::Error::source`]
//! (PostgreSQL's error, SSM's, Secrets Manager's, the password generator's, rustls'): code here
//! matches on variants, and the whole chain is rendered once, where the error becomes the
//! `Reason` (`cfn_custom_resource::HandlerError`, which renders `error: source: ...`).
//!
//! No variant ever holds a password: a connection error carries the server's message, which
//! names the user only, and no connection string is ever built.

use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use ssm_secret::{KeyError, PasswordError, StoreError};

/// Errors of the `Custom::ServiceDatabase` handler; each message (with its sources) becomes the
/// `Reason`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A property fails validation; `reason` says what is wrong with it.
    #[error("property `{name}` {reason}")]
    Property {
        /// The property, as templates spell it.
        name: &'static str,
        /// What is wrong with its value (never a secret: no secret is a property).
        reason: String,
    },

    /// `KeyId` names an AWS-managed key (checked without a call), or fails the KMS check.
    #[error(transparent)]
    Key(#[from] KeyError),

    /// `AdminPasswordParameterName` names no parameter.
    #[error(
        "the admin password parameter {0} does not exist; create it (Custom::AdminSecret) or fix AdminPasswordParameterName"
    )]
    AdminPasswordMissing(String),

    /// An SSM call failed; the boundary renders its chain (the call, SSM's message, a hint).
    #[error("SSM parameter {name}")]
    Store {
        /// The parameter the call was about.
        name: String,
        /// Boxed: SSM's error is large, and every `Result` here carries this enum.
        #[source]
        source: Box<StoreError>,
    },

    /// The service's password parameter is gone (an in-place Update found nothing to update).
    #[error("SSM parameter {0}: does not exist")]
    ParameterMissing(String),

    /// No password could be drawn under the policy (or the OS generator failed).
    #[error("cannot generate the service password")]
    Password(#[source] PasswordError),

    /// The SCRAM verifier of a password cannot be sent as a literal (it never holds a NUL; this
    /// is the check that says so).
    #[error("cannot generate the service password: the verifier holds a NUL character")]
    VerifierNul,

    /// The password parameter belongs to another resource (or to none), and `Adopt` does not
    /// take it over.
    #[error(
        "the password parameter {name} exists and was not created by this resource (owner: {owner}); \
         choose another PasswordParameterName{adopt}"
    )]
    ParameterNotOurs {
        /// `PasswordParameterName`.
        name: String,
        /// Whose it is, from its tags (or "no owner tags").
        owner: String,
        /// What `Adopt` can do about it.
        adopt: Adoption,
    },

    /// rustls refused the client configuration (its protocol versions or crypto provider).
    #[error("cannot configure TLS")]
    Tls(#[source] rustls::Error),

    /// A PEM text (`CaCertificate`, or the built-in bundle) does not parse.
    #[error("property `{name}` is not valid PEM")]
    Pem {
        /// Where the PEM came from.
        name: &'static str,
        /// The parser's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },

    /// A connection attempt failed: refused, a TLS failure, or the server's error.
    #[error("cannot connect to {host}:{port} as {user}")]
    Connect {
        /// The cluster's host.
        host: String,
        /// Its port.
        port: u16,
        /// The user that tried to log in.
        user: String,
        /// What failed: PostgreSQL's (or the TLS layer's) error.
        #[source]
        source: PgError,
    },

    /// The server refused the admin credential and every fallback a rotation in flight may have
    /// left ([`crate::admin::AdminCredentials::fallbacks`]).
    #[error(
        "cannot log in to {host}:{port} as the admin: the server refused every admin credential tried \
         ({tried}); check that the admin credential holds the cluster's master password"
    )]
    AdminLoginRefused {
        /// The cluster's host.
        host: String,
        /// Its port.
        port: u16,
        /// Where each credential tried came from (version or stage, never a value).
        tried: String,
        /// The server's refusal of the last one.
        #[source]
        source: PgError,
    },

    /// `AdminSecretArn` names no secret (or one without an `AWSCURRENT` version).
    #[error(
        "the admin secret {0} does not exist (or has no AWSCURRENT version); fix AdminSecretArn (the \
         cluster's MasterUserSecret.SecretArn)"
    )]
    AdminSecretMissing(String),

    /// The admin secret has no version at `stage` (a fallback that is no candidate).
    #[error("the admin secret {secret} has no {stage} version")]
    AdminSecretStageMissing {
        /// `AdminSecretArn`.
        secret: String,
        /// The staging label asked for.
        stage: String,
    },

    /// `GetSecretValue` failed; `source` is Secrets Manager's error.
    #[error(
        "GetSecretValue of admin secret {secret} (stage {stage}) failed{hint}",
        hint = secrets_hint(.source.code())
    )]
    SecretsManager {
        /// `AdminSecretArn`.
        secret: String,
        /// The staging label asked for.
        stage: String,
        /// Secrets Manager's error (its code and message; the raw HTTP response dropped).
        /// Boxed: it is large, and every `Result` here carries this enum.
        #[source]
        source: Box<aws_sdk_secretsmanager::Error>,
    },

    /// The admin secret's text is not the JSON RDS writes.
    #[error(
        "the admin secret {secret} (stage {stage}) cannot be used: {why}; it must hold JSON with string \
         fields \"username\" and \"password\", as RDS's managed master secret does"
    )]
    AdminSecretShape {
        /// `AdminSecretArn`.
        secret: String,
        /// The staging label read.
        stage: String,
        /// What is wrong with its shape (never quoting it).
        why: &'static str,
    },

    /// No answer within `ConnectTimeoutSeconds`.
    #[error("cannot connect to {host}:{port}: no answer within ConnectTimeoutSeconds ({seconds} s)")]
    ConnectTimeout {
        /// The cluster's host.
        host: String,
        /// Its port.
        port: u16,
        /// `ConnectTimeoutSeconds`.
        seconds: u64,
    },

    /// A statement failed; `doing` names the step.
    #[error("{doing}")]
    Sql {
        /// The step, as the request's progress names it.
        doing: String,
        /// PostgreSQL's error.
        #[source]
        source: PgError,
    },

    /// A role of this resource's names exists and is not ours, and `Adopt` does not take it over.
    #[error(
        "role {role} already exists and was not created by this resource ({found}); it was left untouched. \
         Choose another RoleName{adopt}"
    )]
    RoleNotOurs {
        /// The role.
        role: String,
        /// What its comment says about who made it.
        found: String,
        /// What `Adopt` can do about it.
        adopt: Adoption,
    },

    /// A role of this resource's names is a superuser: never taken, whatever `Adopt` says.
    #[error(
        "role {role} already exists and is a superuser; it was left untouched, and Adopt cannot take \
         it over (a service's role never is a superuser). Choose another RoleName"
    )]
    RoleIsSuperuser {
        /// The role.
        role: String,
    },

    /// `DatabaseName` exists and is not ours, and `Adopt` does not take it over.
    #[error(
        "database {database} already exists and was not created by this resource (owner {owner}, {found}); \
         it was left untouched. Choose another DatabaseName{adopt}"
    )]
    DatabaseNotOurs {
        /// The database.
        database: String,
        /// Its owner role.
        owner: String,
        /// What its comment says about who made it.
        found: String,
        /// What `Adopt` can do about it.
        adopt: Adoption,
    },

    /// The PostgreSQL phase ran out of time before the deadline watchdog.
    #[error(
        "{doing}: not finished before the Lambda deadline, so it was stopped and its database \
         connections closed (PostgreSQL rolls back the statement under way). Another session may \
         hold a lock it needs; the request can be retried once it is free"
    )]
    Deadline {
        /// The step under way.
        doing: String,
    },

    /// A change the resource cannot make (in place), or a state it cannot work from; the message
    /// says what to do instead.
    #[error("{0}")]
    Unsupported(String),
}

/// Whether a request may take over a role, database or parameter another resource made: `Adopt`
/// and the function's `CFN_ALLOW_ADOPT` setting together. A not-ours error ends with what to do
/// about it, so an author whose `Adopt` was refused learns it was the function setting, not the
/// property, that stopped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// `Adopt` is not set.
    NotAsked,
    /// `Adopt` is set and the function allows it.
    Allowed,
    /// `Adopt` is set but the function does not allow it: why (the switch's refusal).
    Refused(String),
}

impl Adoption {
    /// May this request take over what is not ours?
    pub fn allowed(&self) -> bool {
        matches!(self, Self::Allowed)
    }
}

/// The end of a not-ours `Reason`: what `Adopt` can (or, here, cannot) do about it.
impl std::fmt::Display for Adoption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotAsked | Self::Allowed => f.write_str(", or set Adopt to take it over"),
            Self::Refused(why) => write!(f, ". Adopt is set but this function does not allow it: {why}"),
        }
    }
}

fn secrets_hint(code: Option<&str>) -> &'static str {
    match code {
        Some("AccessDeniedException") => {
            "; allow the function's role secretsmanager:GetSecretValue on this secret and kms:Decrypt on its key"
        }
        Some("DecryptionFailure") => "; allow the function's role kms:Decrypt on the secret's KMS key",
        Some("ThrottlingException" | "InternalServiceError") => "; retry",
        _ => "",
    }
}

impl Error {
    /// Whether the server refused the credential (SQLSTATE class 28: 28P01 invalid_password,
    /// 28000 invalid_authorization_specification), so another one may do.
    pub fn is_rejected_login(&self) -> bool {
        match self {
            Self::Connect { source, .. } => source
                .get_ref()
                .code()
                .is_some_and(|code| code.code().starts_with("28")),
            _ => false,
        }
    }

    /// A SQL step failed; `doing` names it.
    pub fn sql(doing: impl Into<String>, error: tokio_postgres::Error) -> Self {
        Self::Sql {
            doing: doing.into(),
            source: PgError(error),
        }
    }
}

/// A tokio-postgres error, kept whole, that reads the way an operator wants it in a `Reason`:
/// a server error as `SEVERITY: message (SQLSTATE code)` (its DETAIL and HINT lines left out);
/// any other (I/O, TLS, a closed connection) as tokio-postgres says it, with its own sources
/// after it.
#[derive(Debug)]
pub struct PgError(pub tokio_postgres::Error);

impl PgError {
    /// The tokio-postgres error (its `code()`, `as_db_error()`).
    pub fn get_ref(&self) -> &tokio_postgres::Error {
        &self.0
    }
}

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(
                f,
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            ),
            None => std::fmt::Display::fmt(&self.0, f),
        }
    }
}

impl std::error::Error for PgError {
    /// None for a server error (its text is this error's own); else tokio-postgres' cause.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self.0.as_db_error() {
            Some(_) => None,
            None => self.0.source(),
        }
    }
}
