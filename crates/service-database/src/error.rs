//! Why a request failed, in words a platform engineer can act on. No variant ever holds a
//! password: connection errors carry the server's message, which names the user only.

/// Errors of the `Custom::ServiceDatabase` handler; each message becomes the `Reason`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("property `{name}` {reason}")]
    Property { name: &'static str, reason: String },

    #[error(
        "the admin password parameter {0} does not exist; create it (Custom::AdminSecret) or fix AdminPasswordParameterName"
    )]
    AdminPasswordMissing(String),

    /// An SSM call failed; the boundary renders its chain (the call, SSM's message, a hint).
    #[error("SSM parameter {name}")]
    Store {
        name: String,
        /// Boxed: SSM's error is large, and every `Result` here carries this enum.
        #[source]
        source: Box<ssm_secret::StoreError>,
    },

    #[error("SSM parameter {0}: does not exist")]
    ParameterMissing(String),

    #[error("cannot generate the service password: {0}")]
    Password(String),

    #[error(
        "the password parameter {name} exists and was not created by this resource (owner: {owner}); \
         choose another PasswordParameterName{adopt}"
    )]
    ParameterNotOurs {
        name: String,
        owner: String,
        adopt: Adoption,
    },

    #[error("{0}")]
    Tls(String),

    #[error("cannot connect to {host}:{port} as {user}: {detail}")]
    Connect {
        host: String,
        port: u16,
        user: String,
        detail: String,
        /// The server refused the credential (SQLSTATE class 28): another one may do.
        rejected: bool,
    },

    #[error(
        "cannot log in to {host}:{port} as the admin: the server refused every admin credential tried \
         ({tried}): {detail}. Check that the admin credential holds the cluster's master password"
    )]
    AdminLoginRefused {
        host: String,
        port: u16,
        tried: String,
        detail: String,
    },

    #[error(
        "the admin secret {0} does not exist (or has no AWSCURRENT version); fix AdminSecretArn (the \
         cluster's MasterUserSecret.SecretArn)"
    )]
    AdminSecretMissing(String),

    #[error("the admin secret {secret} has no {stage} version")]
    AdminSecretStageMissing { secret: String, stage: String },

    #[error("GetSecretValue of admin secret {secret} (stage {stage}) failed: {detail}{hint}", hint = secrets_hint(.code.as_deref()))]
    SecretsManager {
        secret: String,
        stage: String,
        code: Option<String>,
        detail: String,
    },

    #[error(
        "the admin secret {secret} (stage {stage}) cannot be used: {why}; it must hold JSON with string \
         fields \"username\" and \"password\", as RDS's managed master secret does"
    )]
    AdminSecretShape {
        secret: String,
        stage: String,
        why: &'static str,
    },

    #[error("cannot connect to {host}:{port}: no answer within ConnectTimeoutSeconds ({seconds} s)")]
    ConnectTimeout { host: String, port: u16, seconds: u64 },

    #[error("{doing}: {detail}")]
    Sql { doing: String, detail: String },

    #[error(
        "role {role} already exists and was not created by this resource ({found}); it was left untouched. \
         Choose another RoleName{adopt}"
    )]
    RoleNotOurs {
        role: String,
        found: String,
        adopt: Adoption,
    },

    #[error(
        "role {role} already exists and is a superuser; it was left untouched, and Adopt cannot take \
         it over (a service's role never is a superuser). Choose another RoleName"
    )]
    RoleIsSuperuser { role: String },

    #[error(
        "database {database} already exists and was not created by this resource (owner {owner}, {found}); \
         it was left untouched. Choose another DatabaseName{adopt}"
    )]
    DatabaseNotOurs {
        database: String,
        owner: String,
        found: String,
        adopt: Adoption,
    },

    #[error(
        "{doing}: not finished before the Lambda deadline, so it was stopped and its database \
         connections closed (PostgreSQL rolls back the statement under way). Another session may \
         hold a lock it needs; the request can be retried once it is free"
    )]
    Deadline { doing: String },

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
    /// Whether the server refused the credential (so another one may do).
    pub fn is_rejected_login(&self) -> bool {
        matches!(self, Self::Connect { rejected: true, .. })
    }

    /// A SQL step failed; `error` is a tokio-postgres error (its chain holds the server's message).
    pub fn sql(doing: impl Into<String>, error: &tokio_postgres::Error) -> Self {
        Self::Sql {
            doing: doing.into(),
            detail: postgres_detail(error),
        }
    }
}

/// The server's message (with SQLSTATE) when there is one, else the client's error chain.
pub fn postgres_detail(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => cfn_custom_resource::error_chain(error),
    }
}
