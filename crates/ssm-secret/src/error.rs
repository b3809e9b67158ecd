//! The crate's errors. Each keeps what it came from as a typed [`std::error::Error::source`]
//! (the SDK's service error, the OS generator's error): a caller matches on variants, and the
//! whole chain is rendered once, where the error becomes a `Reason` (the protocol crate's
//! `HandlerError` renders `error: source: ...`). No message ever holds a secret value.

use aws_sdk_ssm::error::ProvideErrorMetadata;
use cfn_custom_resource::Owner;

/// Why no password could be generated under a policy. Messages never hold a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The policy asks for no character at all.
    #[error("the password length is 0; ask for at least one character")]
    ZeroLength,
    #[error("every printable ASCII character is excluded; exclude fewer characters")]
    /// The exclusions leave no character to draw from.
    EmptyAlphabet,
    #[error(
        "a password of {length} characters cannot hold one of each of the {classes} required character \
         classes; make it longer or stop requiring each class"
    )]
    /// Fewer characters than classes that must each appear.
    TooShortForClasses {
        /// The policy's length.
        length: usize,
        /// How many classes it requires.
        classes: usize,
    },
    #[error("cannot generate a password: the operating system's random number generator failed")]
    /// The OS CSPRNG failed; `source` is its error.
    Rng(#[source] rand::rngs::SysError),
}

/// Why an SSM operation failed, or what it refused. Messages name the parameter and say what to
/// fix; they never hold the parameter's value.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An SSM call failed; `source` is SSM's error (match on its variants, or its `code()`).
    #[error("{action} of SSM parameter {name} failed{hint}", hint = hint(.source.code(), .action))]
    Aws {
        /// The SSM action, e.g. `PutParameter`.
        action: &'static str,
        /// The parameter the call was about.
        name: String,
        /// SSM's error (its code and message; the raw HTTP response dropped).
        #[source]
        source: aws_sdk_ssm::Error,
    },
    /// There is no such parameter ([`crate::ParameterStore::get_existing`]).
    #[error("SSM parameter {name} does not exist")]
    NotFound {
        /// The parameter asked for.
        name: String,
    },
    /// The parameter exists and its owner tags name someone else, or no one
    /// ([`crate::ParameterStore::ensure_owned`] without adoption). Callers usually turn this into
    /// a Reason naming their own property and `Adopt`.
    #[error(
        "SSM parameter {name} already exists and was not created by this resource ({})",
        whose(.owner.as_ref())
    )]
    NotOurs {
        /// The parameter.
        name: String,
        /// Whom its owner tags name (`None`: it carries none).
        owner: Option<Owner>,
    },
    /// SSM's answer lacked a part it always carries.
    #[error(
        "SSM answered {action} for parameter {name} without {missing}; retry, and report it if it persists"
    )]
    Incomplete {
        /// The SSM action.
        action: &'static str,
        /// The parameter.
        name: String,
        /// What was missing, e.g. "its ARN".
        missing: &'static str,
    },
    /// The parameter a write found existing was gone when read back.
    #[error(
        "SSM parameter {name} already existed but was gone when read back (deleted concurrently?); retry the \
         operation"
    )]
    Vanished {
        /// The parameter.
        name: String,
    },
    /// SSM refused a rotation label (a version holds at most 10).
    #[error(
        "SSM refused label {label} on parameter {name} (a version holds at most 10 labels); remove old \
         rotation-* labels from its history with UnlabelParameterVersion and retry"
    )]
    Label {
        /// The parameter.
        name: String,
        /// The label refused.
        label: String,
    },
    /// The oldest of 100 versions carries labels that are not ours: SSM writes no new version.
    #[error(
        "SSM parameter {name} has 100 versions and its oldest, version {version}, carries labels that are \
         not this resource's ({labels}); SSM writes no new version until they are moved: move them to a newer \
         version (LabelParameterVersion) or remove them (UnlabelParameterVersion), then retry",
        labels = .labels.join(", ")
    )]
    AgeingLabel {
        /// The parameter.
        name: String,
        /// The oldest version, which the next write would delete.
        version: i64,
        /// The labels on it that are not ours.
        labels: Vec<String>,
    },
}

impl StoreError {
    /// A failed SSM call: the SDK error becomes SSM's typed error (its code and message kept;
    /// the raw HTTP response, headers and body, dropped).
    pub(crate) fn aws(action: &'static str, name: &str, error: impl Into<aws_sdk_ssm::Error>) -> Self {
        Self::Aws {
            action,
            name: name.to_string(),
            source: error.into(),
        }
    }
}

/// Who a parameter that is not ours belongs to, for a Reason.
fn whose(owner: Option<&Owner>) -> String {
    match owner {
        Some(other) => format!("it belongs to {}", other.describe()),
        None => "it carries no owner tags".to_string(),
    }
}

/// Why a `KeyId` cannot hold a secret ([`crate::KeyGuard::check`], [`crate::refuse_aws_alias`]).
/// Every message names the property and the key as it was given.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// `KeyId` names an `alias/aws/...` alias (as a name or an ARN): refused without a call.
    #[error(
        "property `KeyId` {key_id:?} cannot be used: it is an AWS-managed key (alias/aws/...), which every \
         principal in the account may use; give a customer-managed key"
    )]
    AwsAlias {
        /// `KeyId` as given.
        key_id: String,
    },
    /// KMS knows no such key.
    #[error("property `KeyId` {key_id:?} cannot be used: KMS has no such key")]
    NotFound {
        /// `KeyId` as given.
        key_id: String,
    },
    /// A KMS call failed; `source` is KMS's error.
    #[error("property `KeyId` {key_id:?} cannot be used: KMS {action} failed")]
    Kms {
        /// `KeyId` as given.
        key_id: String,
        /// The KMS action, e.g. `DescribeKey`.
        action: &'static str,
        /// KMS's error.
        #[source]
        source: Box<aws_sdk_kms::Error>,
    },
    /// `DescribeKey` answered without the key's metadata.
    #[error("property `KeyId` {key_id:?} cannot be used: KMS DescribeKey returned no key metadata")]
    NoMetadata {
        /// `KeyId` as given.
        key_id: String,
    },
    /// The key is AWS-managed (`KeyManager: AWS`).
    #[error(
        "property `KeyId` {key_id:?} cannot be used: key {key} is AWS-managed (KeyManager AWS), which every \
         principal in the account may use; give a customer-managed key"
    )]
    AwsManaged {
        /// `KeyId` as given.
        key_id: String,
        /// The key id KMS resolved it to.
        key: String,
    },
    /// The key is disabled, pending deletion or otherwise not usable.
    #[error("property `KeyId` {key_id:?} cannot be used: key {key} is in state {state}, not Enabled")]
    NotEnabled {
        /// `KeyId` as given.
        key_id: String,
        /// The key id KMS resolved it to.
        key: String,
        /// Its `KeyState`.
        state: String,
    },
    /// `DescribeKey` answered without the key's state.
    #[error("property `KeyId` {key_id:?} cannot be used: key {key} reports no state")]
    NoState {
        /// `KeyId` as given.
        key_id: String,
        /// The key id KMS resolved it to.
        key: String,
    },
    /// The key is not a symmetric encrypt/decrypt key, which SSM needs.
    #[error(
        "property `KeyId` {key_id:?} cannot be used: key {key} is not a symmetric encrypt/decrypt key \
         (KeySpec {spec}, KeyUsage {usage})"
    )]
    NotSymmetric {
        /// `KeyId` as given.
        key_id: String,
        /// The key id KMS resolved it to.
        key: String,
        /// Its `KeySpec`.
        spec: String,
        /// Its `KeyUsage`.
        usage: String,
    },
    /// The key is the one behind an `alias/aws/...` alias (given by id or ARN).
    #[error(
        "property `KeyId` {key_id:?} cannot be used: key {key} is the AWS-managed key behind {alias}; give a \
         customer-managed key"
    )]
    BehindAwsAlias {
        /// `KeyId` as given.
        key_id: String,
        /// The key id KMS resolved it to.
        key: String,
        /// The AWS alias that names it.
        alias: String,
    },
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
