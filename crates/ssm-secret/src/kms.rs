//! The KMS key a secret is stored under must be a customer-managed symmetric key that is enabled:
//! an AWS-managed key (`alias/aws/ssm`, ...) can be used to decrypt by every principal in the
//! account that may use SSM, and a disabled key or one pending deletion would leave a secret
//! that cannot be read.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::types::{KeyManagerType, KeySpec, KeyState, KeyUsageType};

use crate::error::KeyError;

/// How long a warm Lambda trusts a check that passed. Only passes are remembered, and a key
/// disabled or scheduled for deletion within this window still cannot encrypt: SSM's write fails
/// with KMS's own error instead of our Reason. Keeps a warm Create at one SSM call.
const PASSED_FOR: Duration = Duration::from_secs(300);

/// Checks `KeyId` values with `kms:DescribeKey` and `kms:ListAliases` (filtered to the key).
#[derive(Debug, Clone)]
pub struct KeyGuard {
    client: Client,
    passed: Arc<Mutex<HashMap<String, Instant>>>,
}

/// True for `alias/aws/...` given as an alias name or an alias ARN.
fn names_aws_alias(key_id: &str) -> bool {
    key_id.starts_with("alias/aws/") || (key_id.starts_with("arn:") && key_id.contains(":alias/aws/"))
}

/// The check that needs no KMS call: `key_id` (surrounding white space ignored) must not name an
/// AWS-managed alias (`alias/aws/ssm`, ...) as an alias name or an alias ARN. For property
/// validation before any call; [`KeyGuard::check`] makes it too.
pub fn refuse_aws_alias(key_id: &str) -> Result<(), KeyError> {
    if names_aws_alias(key_id.trim()) {
        return Err(KeyError::AwsAlias {
            key_id: key_id.to_owned(),
        });
    }
    Ok(())
}

impl KeyGuard {
    /// A guard asking KMS through `client`; it remembers passed checks for a few minutes.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            passed: Arc::default(),
        }
    }

    /// Ok when `key_id` (key id, key ARN, alias name or alias ARN) names an enabled,
    /// customer-managed, symmetric encrypt/decrypt key; otherwise why not, naming the key.
    pub async fn check(&self, key_id: &str) -> Result<(), KeyError> {
        let fresh = |at: &Instant| at.elapsed() < PASSED_FOR;
        if self
            .passed
            .lock()
            .expect("key cache")
            .get(key_id)
            .is_some_and(fresh)
        {
            return Ok(());
        }
        self.verify(key_id).await?;
        let mut passed = self.passed.lock().expect("key cache");
        passed.retain(|_, at| fresh(at));
        passed.insert(key_id.to_owned(), Instant::now());
        Ok(())
    }

    async fn verify(&self, key_id: &str) -> Result<(), KeyError> {
        refuse_aws_alias(key_id)?;
        let given = || key_id.to_owned();
        let described = self
            .client
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|e| {
                let e = e.into_service_error();
                if e.is_not_found_exception() {
                    KeyError::NotFound { key_id: given() }
                } else {
                    KeyError::Kms {
                        key_id: given(),
                        action: "DescribeKey",
                        source: Box::new(e.into()),
                    }
                }
            })?;
        let Some(meta) = described.key_metadata() else {
            return Err(KeyError::NoMetadata { key_id: given() });
        };
        let key = || meta.key_id().to_owned();
        if meta.key_manager() == Some(&KeyManagerType::Aws) {
            return Err(KeyError::AwsManaged {
                key_id: given(),
                key: key(),
            });
        }
        match meta.key_state() {
            Some(KeyState::Enabled) => {}
            Some(state) => {
                return Err(KeyError::NotEnabled {
                    key_id: given(),
                    key: key(),
                    state: state.as_str().to_owned(),
                });
            }
            None => {
                return Err(KeyError::NoState {
                    key_id: given(),
                    key: key(),
                });
            }
        }
        if meta.key_spec().is_some_and(|s| *s != KeySpec::SymmetricDefault)
            || meta
                .key_usage()
                .is_some_and(|u| *u != KeyUsageType::EncryptDecrypt)
        {
            return Err(KeyError::NotSymmetric {
                key_id: given(),
                key: key(),
                spec: meta.key_spec().map_or("unknown", |s| s.as_str()).to_owned(),
                usage: meta.key_usage().map_or("unknown", |u| u.as_str()).to_owned(),
            });
        }
        // Some KMS implementations (moto) report KeyManager CUSTOMER for the keys behind the
        // account's alias/aws/* aliases: look at the aliases that point at this key too.
        let mut aliases = self
            .client
            .list_aliases()
            .key_id(meta.key_id())
            .into_paginator()
            .items()
            .send();
        while let Some(alias) = aliases.next().await {
            let alias = alias.map_err(|e| KeyError::Kms {
                key_id: given(),
                action: "ListAliases",
                source: Box::new(e.into_service_error().into()),
            })?;
            if alias.alias_name().is_some_and(names_aws_alias) && alias.target_key_id() == Some(meta.key_id())
            {
                return Err(KeyError::BehindAwsAlias {
                    key_id: given(),
                    key: key(),
                    alias: alias.alias_name().unwrap_or_default().to_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kms::operation::describe_key::DescribeKeyOutput;
    use aws_sdk_kms::types::KeyMetadata;
    use aws_smithy_mocks::{mock, mock_client};

    fn metadata(manager: KeyManagerType, state: KeyState) -> KeyMetadata {
        KeyMetadata::builder()
            .key_id("1234abcd-12ab-34cd-56ef-1234567890ab")
            .key_manager(manager)
            .key_state(state)
            .key_spec(KeySpec::SymmetricDefault)
            .key_usage(KeyUsageType::EncryptDecrypt)
            .build()
            .unwrap()
    }

    fn guard(meta: KeyMetadata) -> KeyGuard {
        let describe = mock!(Client::describe_key)
            .then_output(move || DescribeKeyOutput::builder().key_metadata(meta.clone()).build());
        let aliases = mock!(Client::list_aliases)
            .then_output(|| aws_sdk_kms::operation::list_aliases::ListAliasesOutput::builder().build());
        KeyGuard::new(mock_client!(aws_sdk_kms, [&describe, &aliases]))
    }

    #[tokio::test]
    async fn aws_managed_key_is_refused_naming_it() {
        let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let err = guard(metadata(KeyManagerType::Aws, KeyState::Enabled))
            .check(key)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
        assert!(err.to_string().contains("AWS-managed"), "{err}");
    }

    #[tokio::test]
    async fn disabled_key_is_refused_and_enabled_customer_key_passes() {
        let err = guard(metadata(KeyManagerType::Customer, KeyState::PendingDeletion))
            .check("alias/k")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("PendingDeletion"), "{err}");
        guard(metadata(KeyManagerType::Customer, KeyState::Enabled))
            .check("alias/k")
            .await
            .unwrap();
    }

    #[test]
    fn aws_aliases_in_any_form() {
        assert!(names_aws_alias("alias/aws/ssm"));
        assert!(names_aws_alias(
            "arn:aws:kms:us-east-1:123456789012:alias/aws/ssm"
        ));
        assert!(!names_aws_alias("alias/awsome"));
        assert!(!names_aws_alias("arn:aws:kms:us-east-1:123456789012:alias/mine"));
    }
}
