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

    #[error("SSM parameter {name}: {detail}")]
    Store { name: String, detail: String },

    #[error("cannot generate the service password: {0}")]
    Password(String),

    #[error(
        "the password parameter {name} exists and was not created by this resource (owner: {owner}); \
         choose another PasswordParameterName, or set Adopt to take it over"
    )]
    ParameterNotOurs { name: String, owner: String },

    #[error("{0}")]
    Tls(String),

    #[error("cannot connect to {host}:{port} as {user}: {detail}")]
    Connect {
        host: String,
        port: u16,
        user: String,
        detail: String,
    },

    #[error("cannot connect to {host}:{port}: no answer within ConnectTimeoutSeconds ({seconds} s)")]
    ConnectTimeout { host: String, port: u16, seconds: u64 },

    #[error("{doing}: {detail}")]
    Sql { doing: String, detail: String },

    #[error(
        "role {role} already exists and was not created by this resource ({found}); it was left untouched. \
         Choose another RoleName, or set Adopt to take it over"
    )]
    RoleNotOurs { role: String, found: String },

    #[error(
        "database {database} already exists and was not created by this resource (owner {owner}, {found}); \
         it was left untouched. Choose another DatabaseName, or set Adopt to take it over"
    )]
    DatabaseNotOurs {
        database: String,
        owner: String,
        found: String,
    },

    #[error("{0}")]
    Unsupported(String),
}

impl Error {
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
