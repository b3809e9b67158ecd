//! SSM Parameter Store storage for secrets owned by a CloudFormation resource.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{ParameterType, ResourceTypeForTagging, Tag};
use cfn_custom_resource::{Owner, Secret};

use crate::error::StoreError;
use crate::labels::History;

/// The tag holding the owning stack's id.
pub const STACK_ID_TAG: &str = "custom-resource:stack-id";
/// The tag holding the owning resource's logical id.
pub const LOGICAL_ID_TAG: &str = "custom-resource:logical-id";
/// The tag holding the rotation label ([`crate::rotation_label`]) of the token the parameter's
/// first version was made for. Written by the same `PutParameter` that creates the parameter, it
/// binds version 1 to its token without a `LabelParameterVersion` call: a fresh secret is one SSM
/// call ([`crate::History::labelled`] reads it).
pub const CREATED_FOR_TAG: &str = "custom-resource:created-for";

/// The owner tags of a parameter: [`STACK_ID_TAG`] and [`LOGICAL_ID_TAG`].
fn owner_tags(owner: &Owner) -> Vec<Tag> {
    vec![
        tag(STACK_ID_TAG, &owner.stack_id),
        tag(LOGICAL_ID_TAG, &owner.logical_resource_id),
    ]
}

/// The owner a parameter's tags name; `None` unless both owner tags are there.
fn owner_from_tags(tags: &[Tag]) -> Option<Owner> {
    Some(Owner::new(
        tag_value(tags, STACK_ID_TAG)?,
        tag_value(tags, LOGICAL_ID_TAG)?,
    ))
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder()
        .key(key)
        .value(value)
        .build()
        .expect("key and value are set")
}

fn tag_value(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == key)
        .map(|t| t.value().to_string())
}

/// A parameter as SSM holds it, with its decrypted value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredParameter {
    /// The parameter's name, as SSM returns it.
    pub name: String,
    /// Its ARN (`Data.ParameterArn`; IAM policies and `ssm-secure` references name it).
    pub arn: String,
    /// The latest version.
    pub version: i64,
    /// The latest version's value, decrypted.
    pub value: Secret<String>,
    /// The KMS key of a SecureString (as given when it was put: id, ARN or alias).
    pub key_id: Option<String>,
    /// Who created it, from its tags; `None` when it carries no owner tags.
    pub owner: Option<Owner>,
    /// The rotation label version 1 was made for ([`CREATED_FOR_TAG`]), when the parameter was
    /// created with it.
    pub created_for: Option<String>,
    /// The latest version's description.
    pub description: Option<String>,
}

/// What [`ParameterStore::create_if_absent`] did: created the parameter, or found one there.
#[derive(Clone, Debug)]
pub enum CreateIfAbsent {
    /// The parameter was created with the given value.
    Created(StoredParameter),
    /// A parameter of that name was already there and is left untouched; check its `owner`.
    Existing(StoredParameter),
}

/// What [`ParameterStore::delete_if_owned`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// It was ours, and is deleted.
    Deleted,
    /// There was no such parameter (a Delete's retry, or a rollback's).
    AlreadyGone,
    /// Left in place: it belongs to someone else (or to no one we know).
    NotOurs(Option<Owner>),
}

/// SecureString parameters in SSM Parameter Store.
#[derive(Clone, Debug)]
pub struct ParameterStore {
    client: Client,
}

impl ParameterStore {
    /// A store on `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a SecureString under `key_id`, tagged with `owner` and with `rotation_label` (the
    /// label of the token this first version is made for, [`CREATED_FOR_TAG`]), unless a
    /// parameter of that name exists (`Overwrite=false`); an existing one is returned as
    /// [`CreateIfAbsent::Existing`] unchanged. A created one is a single SSM call.
    pub async fn create_if_absent(
        &self,
        name: &str,
        value: &Secret<String>,
        key_id: &str,
        description: Option<&str>,
        owner: &Owner,
        rotation_label: &str,
    ) -> Result<CreateIfAbsent, StoreError> {
        let mut tags = owner_tags(owner);
        tags.push(tag(CREATED_FOR_TAG, rotation_label));
        let put = self
            .secure_put(name, value, key_id, description)
            .overwrite(false)
            .set_tags(Some(tags))
            .send()
            .await;
        match put {
            Ok(output) => {
                // Everything is known: what was just written, and the ARN, which is computed
                // from the stack's account and partition and the client's region. Only when that
                // cannot be done (a stack id that is not an ARN) does one GetParameter give it.
                let region = self.client.config().region().map(|r| r.as_ref().to_string());
                let arn = match crate::arn::parameter_arn(&owner.stack_id, region.as_deref(), name) {
                    Some(arn) => arn,
                    None => self
                        .fetch(name)
                        .await?
                        .as_ref()
                        .and_then(|p| p.arn())
                        .ok_or_else(|| incomplete(name, "its ARN"))?
                        .to_string(),
                };
                let stored = StoredParameter {
                    name: name.to_string(),
                    arn,
                    version: output.version(),
                    value: value.clone(),
                    key_id: Some(key_id.to_string()),
                    owner: Some(owner.clone()),
                    description: description.map(str::to_string),
                    created_for: Some(rotation_label.to_string()),
                };
                tracing::info!(
                    parameter = name,
                    version = stored.version,
                    key_id,
                    "created SSM parameter"
                );
                Ok(CreateIfAbsent::Created(stored))
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_parameter_already_exists()) =>
            {
                let stored = self.get(name).await?.ok_or_else(|| StoreError::Vanished {
                    name: name.to_string(),
                })?;
                tracing::info!(parameter = name, version = stored.version, owner = ?stored.owner, "SSM parameter already exists");
                Ok(CreateIfAbsent::Existing(stored))
            }
            Err(error) => Err(StoreError::aws("PutParameter", name, error)),
        }
    }

    /// Only the decrypted value and its version (one GetParameter): for reading a secret someone
    /// else owns, such as the cluster's admin password. `None` when there is no such parameter.
    pub async fn value_and_version(&self, name: &str) -> Result<Option<(Secret<String>, i64)>, StoreError> {
        let Some(parameter) = self.fetch(name).await? else {
            return Ok(None);
        };
        let value = parameter.value().ok_or_else(|| incomplete(name, "its value"))?;
        Ok(Some((Secret::new(value.to_string()), parameter.version())))
    }

    /// `GetParameter` with decryption; `None` when there is no such parameter.
    async fn fetch(&self, name: &str) -> Result<Option<aws_sdk_ssm::types::Parameter>, StoreError> {
        match self
            .client
            .get_parameter()
            .name(name)
            .with_decryption(true)
            .send()
            .await
        {
            Ok(output) => output
                .parameter
                .map(Some)
                .ok_or_else(|| incomplete(name, "the parameter")),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                Ok(None)
            }
            Err(error) => Err(StoreError::aws("GetParameter", name, error)),
        }
    }

    /// The parameter with its decrypted value, KMS key, description and owner; `None` when there
    /// is no such parameter.
    pub async fn get(&self, name: &str) -> Result<Option<StoredParameter>, StoreError> {
        let Some(parameter) = self.fetch(name).await? else {
            return Ok(None);
        };
        let value = Secret::new(
            parameter
                .value()
                .ok_or_else(|| incomplete(name, "its value"))?
                .to_string(),
        );
        let arn = parameter
            .arn()
            .ok_or_else(|| incomplete(name, "its ARN"))?
            .to_string();
        let stored_name = parameter.name().unwrap_or(name).to_string();
        let version = parameter.version();

        let (key_id, description) = match self.describe(name).await? {
            Some(metadata) => metadata,
            None => return Ok(None),
        };
        let Some(tags) = self.tags(name).await? else {
            return Ok(None);
        };
        Ok(Some(StoredParameter {
            name: stored_name,
            arn,
            version,
            value,
            key_id,
            owner: owner_from_tags(&tags),
            description,
            created_for: tag_value(&tags, CREATED_FOR_TAG),
        }))
    }

    /// [`ParameterStore::get`] of a parameter that must exist: [`StoreError::NotFound`] when it
    /// does not.
    pub async fn get_existing(&self, name: &str) -> Result<StoredParameter, StoreError> {
        self.get(name).await?.ok_or_else(|| StoreError::NotFound {
            name: name.to_string(),
        })
    }

    /// The key id and description of the parameter's latest version, from
    /// `GetParameterHistory`, which IAM can scope to the parameter's ARN (`DescribeParameters`
    /// cannot be scoped and would need `"*"`). `None` when it is not found.
    async fn describe(&self, name: &str) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
        let mut next_token = None;
        let mut latest = None;
        loop {
            let output = match self
                .client
                .get_parameter_history()
                .name(name)
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
                    return Ok(None);
                }
                Err(error) => return Err(StoreError::aws("GetParameterHistory", name, error)),
            };
            if let Some(last) = output.parameters().iter().max_by_key(|p| p.version())
                && latest
                    .as_ref()
                    .is_none_or(|(version, _, _)| last.version() > *version)
            {
                latest = Some((
                    last.version(),
                    last.key_id().map(str::to_string),
                    last.description().map(str::to_string),
                ));
            }
            match output.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => return Ok(latest.map(|(_, key_id, description)| (key_id, description))),
            }
        }
    }

    /// A SecureString `PutParameter` of `value` under `key_id`, the part both writes share.
    fn secure_put(
        &self,
        name: &str,
        value: &Secret<String>,
        key_id: &str,
        description: Option<&str>,
    ) -> aws_sdk_ssm::operation::put_parameter::builders::PutParameterFluentBuilder {
        self.client
            .put_parameter()
            .name(name)
            .value(value.expose())
            .r#type(ParameterType::SecureString)
            .key_id(key_id)
            .set_description(description.map(str::to_string))
    }

    /// Puts `value` as a new version (`Overwrite=true`) of a SecureString under `key_id`; returns
    /// the new version. Tags are kept (SSM does not take tags with `Overwrite=true`; see
    /// [`ParameterStore::tag`]).
    ///
    /// `history` is the parameter's history as the caller read it (empty when it read none):
    /// first the rotation labels leave the versions the write will delete (see the `labels`
    /// module), so the 101st and every later version can be written. A history that was stale (a
    /// concurrent write) shows as `ParameterMaxVersionLimitExceeded`: the labels are then read
    /// again, moved off, and the write retried once.
    pub async fn put_new_version(
        &self,
        name: &str,
        value: &Secret<String>,
        key_id: &str,
        description: Option<&str>,
        history: &History,
    ) -> Result<i64, StoreError> {
        self.make_room(name, history).await?;
        let put = || {
            self.secure_put(name, value, key_id, description)
                .overwrite(true)
                .send()
        };
        let output = match put().await {
            Ok(output) => output,
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_parameter_max_version_limit_exceeded()) =>
            {
                tracing::info!(
                    parameter = name,
                    "SSM holds 100 versions and the oldest is labelled; moving our labels off and writing again"
                );
                let fresh = self.labels_history(name).await?;
                self.make_room(name, &fresh).await?;
                put()
                    .await
                    .map_err(|error| StoreError::aws("PutParameter", name, error))?
            }
            Err(error) => return Err(StoreError::aws("PutParameter", name, error)),
        };
        tracing::info!(
            parameter = name,
            version = output.version(),
            key_id,
            "put a new version of SSM parameter"
        );
        Ok(output.version())
    }

    /// Tags the parameter as belonging to `owner` (replacing any owner tags it had).
    pub async fn tag(&self, name: &str, owner: &Owner) -> Result<(), StoreError> {
        self.client
            .add_tags_to_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .set_tags(Some(owner_tags(owner)))
            .send()
            .await
            .map_err(|error| StoreError::aws("AddTagsToResource", name, error))?;
        Ok(())
    }

    /// The owner the parameter's tags name (`Some(None)`: no owner tags); `None` when the
    /// parameter does not exist.
    async fn owner(&self, name: &str) -> Result<Option<Option<Owner>>, StoreError> {
        Ok(self.tags(name).await?.map(|tags| owner_from_tags(&tags)))
    }

    /// The parameter's tags; `None` when the parameter does not exist.
    async fn tags(&self, name: &str) -> Result<Option<Vec<Tag>>, StoreError> {
        match self
            .client
            .list_tags_for_resource()
            .resource_type(ResourceTypeForTagging::Parameter)
            .resource_id(name)
            .send()
            .await
        {
            Ok(output) => Ok(Some(output.tag_list().to_vec())),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_resource_id()) =>
            {
                Ok(None)
            }
            Err(error) => Err(StoreError::aws("ListTagsForResource", name, error)),
        }
    }

    /// Deletes the parameter if its tags name `owner`; one that is already gone is
    /// [`DeleteOutcome::AlreadyGone`], one owned by anybody else is left alone.
    pub async fn delete_if_owned(&self, name: &str, owner: &Owner) -> Result<DeleteOutcome, StoreError> {
        let Some(tags) = self.owner(name).await? else {
            return Ok(DeleteOutcome::AlreadyGone);
        };
        if tags.as_ref() != Some(owner) {
            tracing::warn!(parameter = name, found_owner = ?tags, "SSM parameter is not ours; left in place");
            return Ok(DeleteOutcome::NotOurs(tags));
        }
        match self.client.delete_parameter().name(name).send().await {
            Ok(_) => {
                tracing::info!(parameter = name, "deleted SSM parameter");
                Ok(DeleteOutcome::Deleted)
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_parameter_not_found()) =>
            {
                Ok(DeleteOutcome::AlreadyGone)
            }
            Err(error) => Err(StoreError::aws("DeleteParameter", name, error)),
        }
    }
}

/// A `GetParameter` answer without the part named by `missing`.
fn incomplete(name: &str, missing: &'static str) -> StoreError {
    StoreError::Incomplete {
        action: "GetParameter",
        name: name.to_string(),
        missing,
    }
}
