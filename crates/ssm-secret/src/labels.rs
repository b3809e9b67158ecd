//! Rotation labels: every password version is bound to the `RotationToken` it was made for.
//!
//! A version made for token `T` carries the SSM parameter label [`rotation_label`]`(T)`: a fixed
//! prefix and the first 80 bits of SHA-256 of the token, so any token (whatever its length or
//! characters) gives a valid label and the token itself is never needed again. SSM keeps a label
//! on one version at a time; moving it to a newer version that holds the same password keeps
//! "the latest version made for `T`" one lookup away.
//!
//! That makes rotation reversible and idempotent: an Update whose token has a label restores that
//! version's password (a rollback of a rotation) or finds it already current (a duplicate
//! delivery) instead of generating another one. Labels hold no secret: they are hashes of
//! tokens, which are template values.
//!
//! The first version needs no label: the `PutParameter` that creates a parameter also writes the
//! tag [`crate::CREATED_FOR_TAG`] with its token's label, and [`History::labelled`] takes version
//! 1 as the version of that label when no version carries it (the caller binds the tag to the
//! history with [`History::created_for`]). A fresh secret is then one SSM call.
//!
//! A parameter written before labels existed carries neither; callers fall back to comparing the
//! old and new tokens for it and label what they keep.
//!
//! # SSM's 100 versions
//!
//! SSM keeps the [`MAX_VERSIONS`] newest versions of a parameter: writing one more deletes the
//! oldest, and SSM refuses the write (`ParameterMaxVersionLimitExceeded`) while that oldest
//! version carries any label. So before a new version is written
//! ([`ParameterStore::put_new_version`]), the rotation labels leave the versions about to age out
//! ([`History::ageing_out`]); a label that is not ours there fails the write with a Reason naming
//! it, before anything is written. A token whose version aged out is a token no longer seen: an
//! Update back to it (a rollback after more than 99 later versions) answers SUCCESS with a new
//! password, bound to that token from then on, since the old password is gone from SSM. A
//! rotation therefore never runs out of history, whatever the count.

use aws_sdk_ssm::types::ParameterHistory;
use cfn_custom_resource::Secret;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::store::{ParameterStore, StoredParameter};

/// How many versions of a parameter SSM keeps: writing one more deletes the oldest.
pub const MAX_VERSIONS: usize = 100;

/// The prefix of every rotation label (SSM labels may not start with `aws`, `ssm` or a digit).
pub const ROTATION_LABEL_PREFIX: &str = "rotation-";

/// The label of the versions made for `token`; no token is a token of its own (the empty one).
pub fn rotation_label(token: Option<&str>) -> String {
    let digest = Sha256::digest(token.unwrap_or("").as_bytes());
    let mut label = String::from(ROTATION_LABEL_PREFIX);
    for byte in &digest[..10] {
        label.push_str(&format!("{byte:02x}"));
    }
    label
}

/// Whether `label` is one of ours.
pub fn is_rotation_label(label: &str) -> bool {
    label.starts_with(ROTATION_LABEL_PREFIX)
}

/// One version of a parameter, decrypted, with its labels.
#[derive(Clone, Debug)]
pub struct Version {
    /// SSM's version number (1 for the first).
    pub version: i64,
    /// The value it holds, decrypted (empty when read without decryption).
    pub value: Secret<String>,
    /// The labels on it (rotation labels and any others).
    pub labels: Vec<String>,
    /// The version's description (each `PutParameter` sets one; a caller may record in it what
    /// the value is for).
    pub description: Option<String>,
}

/// Which password a `RotationToken` stands for ([`History::choose`]).
#[derive(Clone, Copy, Debug)]
pub enum Choice<'h> {
    /// The token was seen before: this version's password is the one to hold.
    Restore(&'h Version),
    /// A token never seen: generate a new password.
    Rotate,
    /// A parameter written before labels whose token did not change: keep its current password.
    Keep,
}

/// A parameter's versions, oldest first.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// The versions SSM still holds (at most [`MAX_VERSIONS`]), oldest first.
    pub versions: Vec<Version>,
    /// The rotation label version 1 was made for (the parameter's [`crate::CREATED_FOR_TAG`]).
    pub created_for: Option<String>,
}

impl History {
    /// Binds version 1 to the label the parameter was created for (its
    /// [`crate::StoredParameter::created_for`]).
    pub fn created_for(mut self, label: Option<&str>) -> Self {
        self.created_for = label.map(str::to_string);
        self
    }

    /// The newest version labelled `label`; else version 1 when the parameter was created for
    /// `label` (and version 1 is still in the history: SSM keeps the latest 100).
    pub fn labelled(&self, label: &str) -> Option<&Version> {
        self.versions
            .iter()
            .rev()
            .find(|v| v.labels.iter().any(|l| l == label))
            .or_else(|| {
                self.versions
                    .first()
                    .filter(|v| v.version == 1 && self.created_for.as_deref() == Some(label))
            })
    }

    /// Whether any version is bound to a token, by a label or by the created-for tag (false for
    /// parameters written before either).
    pub fn has_rotation_labels(&self) -> bool {
        self.created_for.as_deref().is_some_and(is_rotation_label)
            || self
                .versions
                .iter()
                .any(|v| v.labels.iter().any(|l| is_rotation_label(l)))
    }

    /// Which password the token labelled `label` stands for, decided from this history alone
    /// (read with [`ParameterStore::history_of`], so version 1 is bound to the token it was
    /// created for):
    ///
    /// - the newest version bound to `label` ([`History::labelled`]): a rollback of a rotation,
    ///   or a duplicate delivery, whose password is to be held again (or still);
    /// - a new password, for a token no version is bound to while others are;
    /// - for a parameter written before labels (no version bound to any token), the current
    ///   password, unless `token_changed` (the old properties named another token: the only
    ///   evidence left for such a parameter) asks for a new one.
    pub fn choose(&self, label: &str, token_changed: bool) -> Choice<'_> {
        match self.labelled(label) {
            Some(version) => Choice::Restore(version),
            None if self.has_rotation_labels() || token_changed => Choice::Rotate,
            None => Choice::Keep,
        }
    }

    /// The versions SSM deletes when one more version is written (it keeps [`MAX_VERSIONS`]),
    /// oldest first: they must carry no label by then.
    pub fn ageing_out(&self) -> &[Version] {
        let excess = (self.versions.len() + 1).saturating_sub(MAX_VERSIONS);
        &self.versions[..excess.min(self.versions.len())]
    }
}

impl ParameterStore {
    /// Every version of `stored` with its decrypted value and labels, version 1 bound to the token
    /// the parameter was created for ([`History::created_for`] with its
    /// [`StoredParameter::created_for`]): the history to decide a rotation from
    /// ([`History::choose`]). Empty when the parameter is gone.
    pub async fn history_of(&self, stored: &StoredParameter) -> Result<History, StoreError> {
        Ok(self
            .history(&stored.name)
            .await?
            .created_for(stored.created_for.as_deref()))
    }

    /// Every version of `name` with its decrypted value and labels (`GetParameterHistory` with
    /// decryption, all pages); empty when there is no such parameter. Version 1 is not bound to
    /// the token it was created for: to decide a rotation, read [`ParameterStore::history_of`].
    pub async fn history(&self, name: &str) -> Result<History, StoreError> {
        self.read_history(name, true).await
    }

    async fn read_history(&self, name: &str, decrypt: bool) -> Result<History, StoreError> {
        let mut versions = Vec::new();
        let mut next_token = None;
        loop {
            let output = match self
                .client()
                .get_parameter_history()
                .name(name)
                .with_decryption(decrypt)
                .set_next_token(next_token)
                .send()
                .await
            {
                Ok(output) => output,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_parameter_not_found()) =>
                {
                    return Ok(History::default());
                }
                Err(error) => return Err(StoreError::aws("GetParameterHistory", name, error)),
            };
            versions.extend(output.parameters().iter().map(version));
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
        versions.sort_by_key(|v| v.version);
        Ok(History {
            versions,
            created_for: None,
        })
    }

    /// Every version of `name` with its labels, values left encrypted (`GetParameterHistory`
    /// without decryption, all pages): enough to make room for a new version. Empty when there is
    /// no such parameter.
    pub(crate) async fn labels_history(&self, name: &str) -> Result<History, StoreError> {
        self.read_history(name, false).await
    }

    /// Takes our rotation labels off the versions that writing one more version would delete
    /// ([`History::ageing_out`]), so SSM can drop them. A label that is not ours on such a version
    /// is left and fails the write, naming it: SSM would refuse it anyway.
    pub(crate) async fn make_room(&self, name: &str, history: &History) -> Result<(), StoreError> {
        for old in history.ageing_out() {
            let (ours, foreign): (Vec<&String>, Vec<&String>) =
                old.labels.iter().partition(|l| is_rotation_label(l));
            if !foreign.is_empty() {
                return Err(StoreError::AgeingLabel {
                    name: name.to_string(),
                    version: old.version,
                    labels: foreign.into_iter().cloned().collect(),
                });
            }
            if ours.is_empty() {
                continue;
            }
            self.client()
                .unlabel_parameter_version()
                .name(name)
                .parameter_version(old.version)
                .set_labels(Some(ours.iter().map(|l| l.to_string()).collect()))
                .send()
                .await
                .map_err(|error| StoreError::aws("UnlabelParameterVersion", name, error))?;
            tracing::info!(
                parameter = name,
                version = old.version,
                labels = ours.len(),
                "took rotation labels off the oldest version, which the next write deletes"
            );
        }
        Ok(())
    }

    /// Puts `label` on `version` of `name`, moving it off any other version.
    pub async fn label(&self, name: &str, version: i64, label: &str) -> Result<(), StoreError> {
        let output = self
            .client()
            .label_parameter_version()
            .name(name)
            .parameter_version(version)
            .labels(label)
            .send()
            .await
            .map_err(|error| StoreError::aws("LabelParameterVersion", name, error))?;
        if !output.invalid_labels().is_empty() {
            return Err(StoreError::Label {
                name: name.to_string(),
                label: label.to_string(),
            });
        }
        tracing::info!(
            parameter = name,
            version,
            label,
            "labelled the version with its rotation token"
        );
        Ok(())
    }
}

fn version(p: &ParameterHistory) -> Version {
    Version {
        version: p.version(),
        value: Secret::new(p.value().unwrap_or_default().to_string()),
        labels: p.labels().to_vec(),
        description: p.description().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_valid_ssm_labels_and_distinct() {
        let a = rotation_label(Some("2026-01"));
        let b = rotation_label(Some("2026-02"));
        let none = rotation_label(None);
        assert_ne!(a, b);
        assert_ne!(a, none);
        assert_eq!(none, rotation_label(Some("")));
        for label in [&a, &b, &none] {
            assert!(label.len() <= 100);
            assert!(is_rotation_label(label));
            assert!(
                label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            );
        }
        // Stable across releases: a label written today must be found by the next build.
        assert_eq!(rotation_label(Some("r1")), rotation_label(Some("r1")));
        assert_eq!(a.len(), ROTATION_LABEL_PREFIX.len() + 20);
    }

    #[test]
    fn any_token_gives_a_label() {
        let long = "x".repeat(5000);
        for token in [
            "with spaces and /slashes/",
            "ünïcödé",
            long.as_str(),
            "aws-prefix",
        ] {
            let label = rotation_label(Some(token));
            assert!(
                label.starts_with(ROTATION_LABEL_PREFIX) && label.len() == 29,
                "{label}"
            );
        }
    }

    #[test]
    fn history_finds_the_newest_labelled_version() {
        let v = |version, labels: &[&str]| Version {
            version,
            value: Secret::new(format!("p{version}")),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            description: None,
        };
        let history = History {
            versions: vec![v(1, &["rotation-a"]), v(2, &["other"]), v(3, &["rotation-b"])],
            created_for: None,
        };
        assert_eq!(history.labelled("rotation-a").unwrap().version, 1);
        assert_eq!(history.labelled("rotation-b").unwrap().version, 3);
        assert!(history.labelled("rotation-c").is_none());
        assert!(history.has_rotation_labels());
        assert!(
            !History {
                versions: vec![v(1, &["other"])],
                created_for: None,
            }
            .has_rotation_labels()
        );
    }

    #[test]
    fn choose_restores_rotates_or_keeps() {
        let v = |version, labels: &[&str]| Version {
            version,
            value: Secret::new(format!("p{version}")),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            description: None,
        };
        let (r0, r1) = (rotation_label(Some("r0")), rotation_label(Some("r1")));
        let bound = History {
            versions: vec![v(1, &[]), v(2, &[r1.as_str()])],
            created_for: None,
        }
        .created_for(Some(&r0));
        assert!(matches!(bound.choose(&r0, true), Choice::Restore(v) if v.version == 1));
        assert!(matches!(bound.choose(&r1, false), Choice::Restore(v) if v.version == 2));
        // A token never seen rotates, whatever the old properties say.
        let r2 = rotation_label(Some("r2"));
        assert!(matches!(bound.choose(&r2, false), Choice::Rotate));
        // Before labels, only the old properties can tell.
        let unbound = History {
            versions: vec![v(1, &[])],
            created_for: None,
        };
        assert!(matches!(unbound.choose(&r2, false), Choice::Keep));
        assert!(matches!(unbound.choose(&r2, true), Choice::Rotate));
    }

    #[test]
    fn version_one_stands_for_the_token_it_was_created_for() {
        let v = |version, labels: &[&str]| Version {
            version,
            value: Secret::new(format!("p{version}")),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            description: None,
        };
        let created = rotation_label(Some("r0"));
        let rotated = rotation_label(Some("r1"));
        // Created for r0 (tag only), rotated to r1 (labelled).
        let history = History {
            versions: vec![v(1, &[]), v(2, &[rotated.as_str()])],
            created_for: None,
        }
        .created_for(Some(&created));
        assert!(history.has_rotation_labels());
        assert_eq!(history.labelled(&created).unwrap().version, 1);
        assert_eq!(history.labelled(&rotated).unwrap().version, 2);
        assert!(history.labelled(&rotation_label(Some("r2"))).is_none());
        // A label on a later version wins over the tag (r0 restored as version 3).
        let restored = History {
            versions: vec![v(1, &[]), v(2, &[rotated.as_str()]), v(3, &[created.as_str()])],
            created_for: Some(created.clone()),
        };
        assert_eq!(restored.labelled(&created).unwrap().version, 3);
        // Version 1 aged out of the history: the tag no longer says which version it meant.
        let aged = History {
            versions: vec![v(2, &[rotated.as_str()])],
            created_for: Some(created.clone()),
        };
        assert!(aged.labelled(&created).is_none());
        // No tag and no labels: a parameter from before labels.
        assert!(
            !History {
                versions: vec![v(1, &[])],
                created_for: None,
            }
            .has_rotation_labels()
        );
    }
}
