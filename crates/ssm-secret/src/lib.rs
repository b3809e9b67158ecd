//! Secrets owned by a CloudFormation custom resource: password generation and SSM SecureString
//! storage. Shared by the `Custom::AdminSecret` and `Custom::ServiceDatabase` Lambdas.
//!
//! # Generation
//!
//! [`generate`] draws a password from any [`rand::CryptoRng`] (tests pass a seeded one);
//! [`generate_os`] uses the operating system's CSPRNG. Under a [`PasswordPolicy`]:
//!
//! - the alphabet is printable ASCII (space to `~`) minus [`PasswordPolicy::exclude`]; the
//!   default excludes [`DEFAULT_EXCLUDE`], `/ @ " ' \` and space, the characters RDS rejects or
//!   that break quoting;
//! - each character is drawn uniformly (rejection sampling, no modulo bias);
//! - with `require_each_class` (the default), each class present in the alphabet (lower case,
//!   upper case, digit, punctuation) appears at least once, at a random position (the password
//!   is shuffled);
//! - [`PasswordPolicy::validate`] rejects a zero length, an empty alphabet, and a length shorter
//!   than the number of required classes. Default length: 32.
//!
//! Passwords are [`Secret`]s: their `Debug` and `Display` print `<redacted>`.
//!
//! # Storage
//!
//! [`ParameterStore`] keeps a password as an SSM `SecureString` under a given KMS key, tagged
//! with its owner ([`Owner`]: the CloudFormation stack id in [`STACK_ID_TAG`], the logical id in
//! [`LOGICAL_ID_TAG`]):
//!
//! - [`ParameterStore::create_if_absent`]: `PutParameter` with `Overwrite=false` and the owner
//!   tags; an existing parameter is left untouched and returned as [`CreateIfAbsent::Existing`], so a
//!   caller can tell its own (a retried Create) from someone else's.
//! - [`ParameterStore::ensure_owned`]: the get-or-create a resource makes of its secret: creates
//!   it, reuses our own, or adopts somebody else's when asked (else [`StoreError::NotOurs`]);
//!   the version it returns is bound to the token its password is for.
//! - [`ParameterStore::get`]: value (decrypted), version, ARN, KMS key id, description and owner
//!   ([`ParameterStore::get_existing`]: [`StoreError::NotFound`] when there is none).
//! - [`ParameterStore::put_new_version`]: `Overwrite=true`; returns the new version. Before it
//!   writes, our rotation labels leave the versions SSM is about to delete, so the history never
//!   runs out (SSM keeps [`MAX_VERSIONS`]; see the `labels` module).
//! - [`ParameterStore::tag`]: sets the owner tags (SSM refuses tags with `Overwrite=true`).
//! - [`ParameterStore::delete_if_owned`]: deletes only a parameter whose tags name the owner.
//!
//! Rotation ([`rotation_label`], [`ParameterStore::history_of`], [`History::choose`],
//! [`ParameterStore::label`]): each version is labelled with a hash of the `RotationToken` it was
//! made for, so a token seen before restores its password instead of generating a new one (see
//! the `labels` module).
//!
//! # Keys
//!
//! [`KeyGuard::check`] accepts a `KeyId` only for an enabled, customer-managed, symmetric key
//! (`kms:DescribeKey`, `kms:ListAliases`); [`refuse_aws_alias`] is its part that needs no call,
//! for property validation.
//!
//! # Errors
//!
//! [`StoreError`], [`KeyError`] and [`PasswordError`] are enums to match on (a missing parameter
//! is [`StoreError::NotFound`], SSM's own error the typed `source` of [`StoreError::Aws`]); each
//! message names the parameter or key and says what to fix, and the SDK's error is kept as the
//! `source`, rendered once where the error becomes a `Reason`. No value ever reaches a log line
//! or an error.

#![warn(missing_docs)]

mod arn;
mod ensure;
mod error;
mod kms;
mod labels;
mod password;
mod store;

pub use cfn_custom_resource::{Owner, Secret};
pub use ensure::{Ensured, Wanted};
pub use error::{KeyError, PasswordError, StoreError};
pub use kms::{KeyGuard, refuse_aws_alias};
pub use labels::{
    Choice, History, MAX_VERSIONS, ROTATION_LABEL_PREFIX, Version, is_rotation_label, rotation_label,
};
pub use password::{CharClass, DEFAULT_EXCLUDE, PasswordPolicy, generate, generate_os};
pub use store::{
    CREATED_FOR_TAG, CreateIfAbsent, DeleteOutcome, LOGICAL_ID_TAG, ParameterStore, STACK_ID_TAG,
    StoredParameter,
};
