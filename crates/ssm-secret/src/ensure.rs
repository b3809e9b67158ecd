//! Get-or-create of a secret a resource owns: create it, reuse our own (a retried request, a
//! rollback onto it) or adopt somebody else's when asked, so that afterwards the parameter is
//! ours and the version holding its password is bound to the token it was made for.

use cfn_custom_resource::{Owner, Secret};

use crate::error::StoreError;
use crate::labels::History;
use crate::store::{CreateIfAbsent, ParameterStore, StoredParameter};

/// A secret as a resource wants it in SSM.
#[derive(Clone, Copy, Debug)]
pub struct Wanted<'a> {
    /// The parameter's name.
    pub name: &'a str,
    /// The KMS key to encrypt under (id, ARN or alias).
    pub key_id: &'a str,
    /// `None` leaves an existing parameter's description as it is.
    pub description: Option<&'a str>,
    /// The resource the parameter is to belong to (its owner tags).
    pub owner: &'a Owner,
    /// The rotation label ([`crate::rotation_label`]) of the token its password is for.
    pub label: &'a str,
}

/// What [`ParameterStore::ensure_owned`] found, and made of it.
#[derive(Clone, Debug)]
pub enum Ensured {
    /// Created holding the given password, bound to the label by its created-for tag (one SSM
    /// call).
    Created(StoredParameter),
    /// Already ours: its password is kept, and its latest version labelled.
    Reused(StoredParameter),
    /// Somebody else's, taken over: its password kept, put again as a SecureString under the key
    /// (a new version), tagged as ours and labelled.
    Adopted(StoredParameter),
}

impl Ensured {
    /// The parameter as it is now, whichever way it came to be ours.
    pub fn into_stored(self) -> StoredParameter {
        match self {
            Self::Created(stored) | Self::Reused(stored) | Self::Adopted(stored) => stored,
        }
    }
}

impl ParameterStore {
    /// Makes `wanted.name` a parameter of `wanted.owner`:
    ///
    /// - absent: created holding `value` ([`ParameterStore::create_if_absent`], `Overwrite=false`);
    /// - ours: reused with the password it holds (`value` is not written), put again only when
    ///   `wanted.description` is given and differs;
    /// - anybody else's (or no one's): [`StoreError::NotOurs`], untouched, unless `adopt` (the
    ///   caller has checked that `Adopt` is asked for and allowed): then its password is kept and
    ///   put again under `wanted.key_id`, and it is tagged as ours.
    ///
    /// The version returned holds the password for `wanted.label`: a created one by its
    /// created-for tag, any other by the label, put on it here.
    pub async fn ensure_owned(
        &self,
        wanted: &Wanted<'_>,
        value: &Secret<String>,
        adopt: bool,
    ) -> Result<Ensured, StoreError> {
        self.ensure_owned_as(wanted, value, adopt, |_| wanted.description.map(str::to_string))
            .await
    }

    /// [`ParameterStore::ensure_owned`] for a secret whose description depends on what an
    /// existing parameter says: a created parameter carries `wanted.description`; one that
    /// exists is to carry what `describe` answers for its current description, in place of
    /// `wanted.description` (`None` leaves it as it is). For a caller that records in the
    /// description what the value is for (service-database names the login role its password
    /// belongs to, which a reused parameter keeps).
    pub async fn ensure_owned_as(
        &self,
        wanted: &Wanted<'_>,
        value: &Secret<String>,
        adopt: bool,
        describe: impl FnOnce(Option<&str>) -> Option<String>,
    ) -> Result<Ensured, StoreError> {
        let Wanted {
            name,
            key_id,
            description,
            owner,
            label,
        } = *wanted;
        let mut stored = match self
            .create_if_absent(name, value, key_id, description, owner, label)
            .await?
        {
            CreateIfAbsent::Created(stored) => return Ok(Ensured::Created(stored)),
            CreateIfAbsent::Existing(stored) => stored,
        };
        let ours = stored.owner.as_ref() == Some(owner);
        if ours {
            tracing::info!(
                parameter = name,
                version = stored.version,
                "the parameter is already ours (a retried request); reusing it"
            );
        } else if adopt {
            tracing::warn!(parameter = name, previous_owner = ?stored.owner, "adopting an existing parameter");
        } else {
            return Err(StoreError::NotOurs {
                name: name.to_string(),
                owner: stored.owner,
            });
        }
        let description = describe(stored.description.as_deref());
        let described_otherwise = description
            .as_deref()
            .is_some_and(|d| stored.description.as_deref() != Some(d));
        if !ours || described_otherwise {
            stored.version = self
                .put_new_version(
                    name,
                    &stored.value,
                    key_id,
                    description.as_deref(),
                    &History::default(),
                )
                .await?;
            stored.key_id = Some(key_id.to_string());
            if let Some(description) = description {
                stored.description = Some(description);
            }
        }
        if !ours {
            self.tag(name, owner).await?;
            stored.owner = Some(owner.clone());
        }
        self.label(name, stored.version, label).await?;
        Ok(if ours {
            Ensured::Reused(stored)
        } else {
            Ensured::Adopted(stored)
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ssm::Client;
    use aws_sdk_ssm::operation::add_tags_to_resource::AddTagsToResourceOutput;
    use aws_sdk_ssm::operation::get_parameter::GetParameterOutput;
    use aws_sdk_ssm::operation::get_parameter_history::GetParameterHistoryOutput;
    use aws_sdk_ssm::operation::label_parameter_version::LabelParameterVersionOutput;
    use aws_sdk_ssm::operation::list_tags_for_resource::ListTagsForResourceOutput;
    use aws_sdk_ssm::operation::put_parameter::{PutParameterError, PutParameterOutput};
    use aws_sdk_ssm::types::error::ParameterAlreadyExists;
    use aws_sdk_ssm::types::{Parameter, ParameterHistory, Tag};
    use aws_smithy_mocks::{Rule, mock, mock_client};

    use super::*;
    use crate::store::{LOGICAL_ID_TAG, STACK_ID_TAG};

    const NAME: &str = "/svc/password";
    const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1";

    fn owner() -> Owner {
        Owner::new(STACK, "Db")
    }

    fn tag(key: &str, value: &str) -> Tag {
        Tag::builder().key(key).value(value).build().unwrap()
    }

    /// The calls that find `NAME` already there, described `old`, tagged as `tags`.
    fn existing(old: &'static str, tags: Vec<Tag>) -> Vec<Rule> {
        vec![
            mock!(Client::put_parameter)
                .match_requests(|r| r.overwrite() == Some(false))
                .then_error(|| {
                    PutParameterError::ParameterAlreadyExists(ParameterAlreadyExists::builder().build())
                }),
            mock!(Client::get_parameter).then_output(|| {
                GetParameterOutput::builder()
                    .parameter(
                        Parameter::builder()
                            .name(NAME)
                            .value("kept")
                            .arn(format!("arn:aws:ssm:us-east-1:123456789012:parameter{NAME}"))
                            .version(1)
                            .build(),
                    )
                    .build()
            }),
            mock!(Client::get_parameter_history).then_output(move || {
                GetParameterHistoryOutput::builder()
                    .parameters(
                        ParameterHistory::builder()
                            .version(1)
                            .description(old)
                            .key_id("alias/old")
                            .build(),
                    )
                    .build()
            }),
            mock!(Client::list_tags_for_resource).then_output(move || {
                ListTagsForResourceOutput::builder()
                    .set_tag_list(Some(tags.clone()))
                    .build()
            }),
        ]
    }

    /// The owner tags of [`owner`].
    fn ours() -> Vec<Tag> {
        vec![tag(STACK_ID_TAG, STACK), tag(LOGICAL_ID_TAG, "Db")]
    }

    /// The label put on `version`.
    fn labelled(version: i64) -> Rule {
        mock!(Client::label_parameter_version)
            .match_requests(move |r| r.parameter_version() == Some(version))
            .then_output(|| LabelParameterVersionOutput::builder().build())
    }

    fn wanted<'a>(owner: &'a Owner, label: &'a str) -> Wanted<'a> {
        Wanted {
            name: NAME,
            key_id: "alias/k",
            description: Some("for a created one"),
            owner,
            label,
        }
    }

    /// [`ParameterStore::ensure_owned_as`] on a store answering with `rules`.
    async fn ensure(
        rules: &[Rule],
        adopt: bool,
        describe: impl FnOnce(Option<&str>) -> Option<String>,
    ) -> Result<Ensured, StoreError> {
        let store = ParameterStore::new(mock_client!(aws_sdk_ssm, rules));
        let (owner, label) = (owner(), crate::rotation_label(Some("r1")));
        let value = Secret::new("unused".into());
        store
            .ensure_owned_as(&wanted(&owner, &label), &value, adopt, describe)
            .await
    }

    /// The new version put, holding the kept value and described `description`.
    fn put_again(description: &'static str) -> Rule {
        mock!(Client::put_parameter)
            .match_requests(move |r| {
                r.overwrite() == Some(true)
                    && r.description() == Some(description)
                    && r.value() == Some("kept")
                    && r.key_id() == Some("alias/k")
            })
            .then_output(|| PutParameterOutput::builder().version(2).build())
    }

    #[tokio::test]
    async fn an_existing_parameter_is_described_from_what_it_says() {
        let mut rules = existing("role a", ours());
        rules.extend([put_again("still role a"), labelled(2)]);
        let mut seen = None;
        let ensured = ensure(&rules, false, |old| {
            seen = old.map(str::to_string);
            Some("still role a".into())
        })
        .await
        .unwrap();
        assert_eq!(seen.as_deref(), Some("role a"));
        let Ensured::Reused(stored) = ensured else {
            panic!("not reused: {ensured:?}")
        };
        assert_eq!(stored.version, 2);
        assert_eq!(stored.value.expose(), "kept");
        assert_eq!(stored.description.as_deref(), Some("still role a"));
        assert!(rules.iter().all(|r| r.num_calls() == 1));
    }

    #[tokio::test]
    async fn an_existing_parameter_described_already_is_only_labelled() {
        let mut rules = existing("role b", ours());
        rules.push(labelled(1));
        let ensured = ensure(&rules, false, |old| old.map(str::to_string))
            .await
            .unwrap();
        assert!(
            matches!(&ensured, Ensured::Reused(s) if s.version == 1),
            "{ensured:?}"
        );
        assert!(rules.iter().all(|r| r.num_calls() == 1));
    }

    #[tokio::test]
    async fn someone_elses_parameter_is_refused_or_adopted() {
        let theirs = || vec![tag(STACK_ID_TAG, "arn:other"), tag(LOGICAL_ID_TAG, "Db")];
        let rules = existing("theirs", theirs());
        let error = ensure(&rules, false, |_| panic!("a parameter not ours is not described"))
            .await
            .unwrap_err();
        assert!(
            matches!(&error, StoreError::NotOurs { owner: Some(o), .. } if o.stack_id == "arn:other"),
            "{error}"
        );
        // Adopted: put again under our key (described as asked), tagged ours, labelled.
        let mut rules = existing("theirs", theirs());
        rules.extend([
            put_again("ours now"),
            mock!(Client::add_tags_to_resource).then_output(|| AddTagsToResourceOutput::builder().build()),
            labelled(2),
        ]);
        let ensured = ensure(&rules, true, |_| Some("ours now".into())).await.unwrap();
        assert!(
            matches!(&ensured, Ensured::Adopted(s) if s.version == 2 && s.owner == Some(owner())),
            "{ensured:?}"
        );
        assert!(rules.iter().all(|r| r.num_calls() == 1));
    }
}
