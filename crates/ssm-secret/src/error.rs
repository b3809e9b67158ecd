use aws_sdk_ssm::error::{DisplayErrorContext, ProvideErrorMetadata};

/// Why no password could be generated under a policy. Messages never hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password length is 0; ask for at least one character")]
    ZeroLength,
    #[error("every printable ASCII character is excluded; exclude fewer characters")]
    EmptyAlphabet,
    #[error(
        "a password of {length} characters cannot hold one of each of the {classes} required character \
         classes; make it longer or stop requiring each class"
    )]
    TooShortForClasses { length: usize, classes: usize },
    #[error("the operating system's random number generator failed: {0}")]
    Rng(String),
}

/// Why an SSM call failed. Messages name the parameter, carry SSM's error code and message, and
/// say what to fix; they never hold the parameter's value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{action} of SSM parameter {name} failed: {detail}{hint}", hint = hint(.code.as_deref(), .action))]
    Aws {
        /// The SSM action, e.g. `PutParameter`.
        action: &'static str,
        name: String,
        /// SSM's error code, e.g. `AccessDeniedException`.
        code: Option<String>,
        /// The SDK error with its sources (code and message).
        detail: String,
    },
    #[error(
        "SSM answered {action} for parameter {name} without {missing}; retry, and report it if it persists"
    )]
    Incomplete {
        action: &'static str,
        name: String,
        missing: &'static str,
    },
    #[error(
        "SSM parameter {name} already existed but was gone when read back (deleted concurrently?); retry the \
         operation"
    )]
    Vanished { name: String },
    #[error(
        "SSM refused label {label} on parameter {name} (a version holds at most 10 labels); remove old \
         rotation-* labels from its history with UnlabelParameterVersion and retry"
    )]
    Label { name: String, label: String },
    #[error(
        "SSM parameter {name} has 100 versions and its oldest, version {version}, carries labels that are \
         not this resource's ({labels}); SSM writes no new version until they are moved: move them to a newer \
         version (LabelParameterVersion) or remove them (UnlabelParameterVersion), then retry",
        labels = .labels.join(", ")
    )]
    AgeingLabel {
        name: String,
        version: i64,
        labels: Vec<String>,
    },
}

impl StoreError {
    pub(crate) fn aws<E>(action: &'static str, name: &str, error: &E) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Self::Aws {
            action,
            name: name.to_string(),
            code: error.code().map(str::to_string),
            detail: DisplayErrorContext(error).to_string(),
        }
    }

    /// SSM's error code, when the failure came from SSM.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Aws { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

fn hint(code: Option<&str>, action: &str) -> String {
    match code {
        Some("AccessDeniedException") => format!(
            "; allow the function's role ssm:{action} on this parameter (and kms:Encrypt/kms:Decrypt on its key)"
        ),
        Some("InvalidKeyId") => {
            "; KeyId must name an enabled customer-managed KMS key (id, ARN or alias) the function's role may use"
                .to_string()
        }
        Some("ParameterLimitExceeded") => "; delete unused parameters or ask for a higher quota".to_string(),
        Some("ParameterMaxVersionLimitExceeded") => {
            "; the parameter has 100 versions, the oldest of which is labelled; remove the label".to_string()
        }
        Some("TooManyUpdates") => "; too many concurrent changes to the parameter, retry".to_string(),
        Some("ThrottlingException" | "Throttling") => {
            "; SSM throttled the call on every attempt (AWS_MAX_ATTEMPTS); retry the stack operation".to_string()
        }
        Some("ServiceUnavailable" | "InternalFailure" | "InternalServerError") => {
            "; SSM was unavailable on every attempt (AWS_MAX_ATTEMPTS); retry the stack operation".to_string()
        }
        Some("HierarchyLevelLimitExceededException" | "ValidationException" | "ParameterPatternMismatchException") => {
            "; check the parameter name (letters, digits, .-_/, at most 15 levels, not starting with aws or ssm) and the description (at most 1024 characters)"
                .to_string()
        }
        _ => String::new(),
    }
}
