//! `Custom::AdminSecret`: the Aurora master password, generated from the OS CSPRNG and kept as an
//! SSM `SecureString` under a customer-managed KMS key. Templates read it with
//! `{{resolve:ssm-secure:NAME:VERSION}}`, so the password never appears in a template, an output
//! or a stack event.
//!
//! # Properties
//!
//! CloudFormation sends every value as a string; numbers and booleans are accepted either way.
//! Unknown properties are rejected.
//!
//! | property | type | default | |
//! | --- | --- | --- | --- |
//! | `ParameterName` | string, required | | the SSM parameter; also the physical id |
//! | `KeyId` | string, required | | id, ARN or alias of a customer-managed KMS key; `alias/aws/ssm` is rejected (every principal in the account can decrypt with it) |
//! | `Length` | whole number | 32 | 8..=41, Aurora's limits |
//! | `ExcludeCharacters` | string | `/@"'\` and space | characters never used; `/ @ "` and space, which Aurora rejects, are always excluded |
//! | `RequireEachIncludedType` | boolean | true | lower, upper, digit and punctuation each at least once |
//! | `Description` | string | | the parameter's description |
//! | `RotationToken` | string | | any change generates a new password |
//! | `OnDelete` | `Delete` or `Retain` | `Delete` | what Delete does with the parameter |
//! | `ReturnPassword` | boolean | false | also return the password in `Data.Password`, with `NoEcho` |
//! | `Adopt` | boolean | false | take over an existing parameter this resource did not create |
//!
//! # Data
//!
//! `ParameterName`, `ParameterArn`, `Version` (the SSM version holding the current password);
//! with `ReturnPassword`, also `Password`, and the response sets `NoEcho`.
//!
//! # Lifecycle
//!
//! - **Physical id**: the parameter name.
//! - **Create** generates a password and creates the parameter (`Overwrite=false`), tagged with
//!   the stack id and logical id. A retried Create finds its own parameter and returns it
//!   unchanged. A parameter that exists and is not ours fails the Create, naming it, and is left
//!   untouched, unless `Adopt` is true: then its value is kept, put again as a SecureString under
//!   `KeyId` (a new version) and tagged as ours.
//! - **Update** never changes the password unless `RotationToken` changed or the current password
//!   does not satisfy the new `Length`/`ExcludeCharacters`/`RequireEachIncludedType`.
//!   Rotation is reversible and idempotent: every version is bound to a hash of the token it
//!   was made for (`ssm_secret::rotation_label`: a version label, or for the first version the
//!   `custom-resource:created-for` tag the creating `PutParameter` writes, so a Create is one
//!   SSM call), so an Update whose token was seen before
//!   (CloudFormation rolling a rotation back, or a duplicate delivery) puts that token's password
//!   back as the latest version, or finds it already there, instead of generating another. A
//!   token never seen generates a new password. The decision reads SSM, not
//!   `OldResourceProperties`; those are consulted only for a parameter written before labels.
//!   SSM keeps a parameter's 100 newest versions and refuses a new one while the oldest is
//!   labelled: before each new version, the rotation labels leave the version about to age out,
//!   so the 101st and every later rotation succeed. An Update back to a token whose version has
//!   aged out (more than 99 versions ago) answers SUCCESS with a new password, bound to that
//!   token from then on: the old one is no longer in SSM, and the cluster's
//!   `{{resolve:ssm-secure:NAME:VERSION}}` follows `Data.Version` to it. An Update that changes
//!   nothing (only `ServiceToken` or `ServiceTimeout`) reads SSM and writes nothing.
//!   A new `ParameterName` replaces the resource: a new parameter (carrying the current
//!   password) and a new physical id; CloudFormation then sends a Delete for the old one.
//!   Otherwise a changed password, `KeyId` or `Description` puts a new version of the same
//!   parameter (SSM has no way to change a description or key without one); changes to
//!   `OnDelete`, `ReturnPassword` or `Adopt` alone touch nothing.
//! - **Delete** removes the parameter only if its tags say it is ours and `OnDelete` is
//!   `Delete`. A parameter already gone, one that is not ours, and `OnDelete: Retain` are all
//!   SUCCESS without deleting anything.
//!
//! The password never reaches a log line, a `Reason` or an error.
//!
//! # Configuration
//!
//! [`Settings::from_env`] reads, once at init, `CFN_ALLOW_ADOPT` and `CFN_ALLOW_RETURN_PASSWORD`
//! (support stack parameters `AllowAdopt`, `AllowReturnPassword`; both off when unset or empty)
//! and logs them. `Adopt` and `ReturnPassword` are refused unless the matching switch is
//! `"true"`; any value other than `"true"`/`"false"` fails the requests that ask for that switch,
//! naming the variable and its value, and other requests are served (the policy of
//! `cfn_custom_resource::settings`).

#![warn(missing_docs)]

use cfn_custom_resource::{
    Create, Created, CustomResource, Data, Delete, HandlerError, PhysicalId, RequestInfo, Secret, Update,
    Updated,
    settings::{self, Switch},
};
use serde::Deserialize;
use ssm_secret::{
    Choice, DeleteOutcome, History, Owner, ParameterStore, PasswordPolicy, StoreError, StoredParameter,
    Wanted,
};

/// Aurora PostgreSQL's limits on `MasterUserPassword`'s length.
pub const LENGTH_RANGE: std::ops::RangeInclusive<u32> = 8..=41;
/// The default `Length`.
pub const DEFAULT_LENGTH: u32 = 32;
/// Characters Aurora rejects in a master password: excluded whatever `ExcludeCharacters` says.
pub const AURORA_FORBIDDEN: &str = "/@\" ";

/// The `Custom::AdminSecret` properties, as CloudFormation sends them (see the crate doc's
/// table). [`Properties::validate`] turns them into the [`Validated`] values the handlers act on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Properties {
    /// `ParameterName`: the SSM parameter holding the password; also the physical id.
    pub parameter_name: String,
    /// `KeyId`: id, ARN or alias of the customer-managed KMS key that encrypts the parameter.
    pub key_id: String,
    /// `Length`: the password's length, [`LENGTH_RANGE`], default [`DEFAULT_LENGTH`].
    #[serde(
        default = "default_length",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub length: u32,
    /// `ExcludeCharacters`: characters never used (default `ssm_secret::DEFAULT_EXCLUDE`);
    /// [`AURORA_FORBIDDEN`] is excluded whatever it says.
    #[serde(default)]
    pub exclude_characters: Option<String>,
    /// `RequireEachIncludedType`: every included character class at least once (default true).
    #[serde(default = "yes", deserialize_with = "cfn_custom_resource::de::boolean")]
    pub require_each_included_type: bool,
    /// `Description`: the SSM parameter's description.
    #[serde(default)]
    pub description: Option<String>,
    /// `RotationToken`: any change generates a new password; an earlier token restores its own.
    #[serde(default)]
    pub rotation_token: Option<String>,
    /// `OnDelete`: what Delete does with the parameter.
    #[serde(default)]
    pub on_delete: OnDelete,
    /// `ReturnPassword`: also return the password in `Data.Password` (with `NoEcho`), if the
    /// function's `CFN_ALLOW_RETURN_PASSWORD` allows it.
    #[serde(default, deserialize_with = "cfn_custom_resource::de::boolean")]
    pub return_password: bool,
    /// `Adopt`: take over an existing parameter this resource did not create, if the function's
    /// `CFN_ALLOW_ADOPT` allows it.
    #[serde(default, deserialize_with = "cfn_custom_resource::de::boolean")]
    pub adopt: bool,
}

fn default_length() -> u32 {
    DEFAULT_LENGTH
}

fn yes() -> bool {
    true
}

/// What Delete does with the parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OnDelete {
    /// Delete the parameter, if its tags say it is this resource's (the default).
    #[default]
    Delete,
    /// Keep the parameter (and its password) when the resource is deleted.
    Retain,
}

/// The properties once checked: every value Create and Update act on, in the form they act on
/// it. Delete needs only `OnDelete` and must not fail on a property, so it reads the properties
/// as they came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    /// `ParameterName`, not empty.
    pub parameter_name: String,
    /// `KeyId`, not empty and not an AWS-managed key (KMS checks the rest before use).
    pub key_id: String,
    /// The policy `Length`, `ExcludeCharacters` (plus [`AURORA_FORBIDDEN`]) and
    /// `RequireEachIncludedType` make; it admits at least one password.
    pub policy: PasswordPolicy,
    /// `Description`.
    pub description: Option<String>,
    /// `RotationToken`.
    pub rotation_token: Option<String>,
    /// `ReturnPassword`.
    pub return_password: bool,
    /// `Adopt`.
    pub adopt: bool,
}

impl Properties {
    /// Checks what serde cannot (ranges, the key, the policy) and returns the values the
    /// handlers act on. Every message names the property to fix.
    pub fn validate(&self) -> Result<Validated, HandlerError> {
        if self.parameter_name.trim().is_empty() {
            return Err(HandlerError::new(
                "property `ParameterName` is empty; give the SSM parameter's name",
            ));
        }
        let key = self.key_id.trim();
        if key.is_empty() {
            return Err(HandlerError::new(
                "property `KeyId` is empty; give the id, ARN or alias of a customer-managed KMS key",
            ));
        }
        ssm_secret::refuse_aws_alias(key)?;
        let length = usize::try_from(self.length)
            .ok()
            .filter(|_| LENGTH_RANGE.contains(&self.length))
            .ok_or_else(|| {
                HandlerError::new(format!(
                    "property `Length` is {}; Aurora accepts master passwords of {} to {} characters",
                    self.length,
                    LENGTH_RANGE.start(),
                    LENGTH_RANGE.end()
                ))
            })?;
        let mut exclude = self
            .exclude_characters
            .clone()
            .unwrap_or_else(|| ssm_secret::DEFAULT_EXCLUDE.to_string());
        exclude.push_str(AURORA_FORBIDDEN);
        let policy = PasswordPolicy {
            length,
            exclude,
            require_each_class: self.require_each_included_type,
        };
        policy.validate().map_err(|e| {
            HandlerError::new(format!(
                "properties `Length`, `ExcludeCharacters` and `RequireEachIncludedType` allow no password: {e}"
            ))
        })?;
        Ok(Validated {
            parameter_name: self.parameter_name.clone(),
            key_id: self.key_id.clone(),
            policy,
            description: self.description.clone(),
            rotation_token: self.rotation_token.clone(),
            return_password: self.return_password,
            adopt: self.adopt,
        })
    }
}

/// The `Custom::AdminSecret` handler.
pub struct AdminSecret {
    store: ParameterStore,
    keys: ssm_secret::KeyGuard,
    settings: Settings,
}

/// What the function's own configuration allows, read once at init (see
/// `cfn_custom_resource::settings` for the policy).
#[derive(Debug, Clone)]
pub struct Settings {
    /// `CFN_ALLOW_ADOPT` (support stack parameter `AllowAdopt`, default off): may `Adopt` take
    /// over a parameter this resource did not create.
    pub adopt: Switch,
    /// `CFN_ALLOW_RETURN_PASSWORD` (support stack parameter `AllowReturnPassword`, default off):
    /// may `ReturnPassword` put the password in `Data`.
    pub return_password: Switch,
}

impl Settings {
    /// Reads `CFN_ALLOW_ADOPT` and `CFN_ALLOW_RETURN_PASSWORD` (both off when unset or empty; an
    /// invalid value fails the requests that ask for the switch) and logs them.
    pub fn from_env() -> Self {
        let settings = Self {
            adopt: settings::allow_adopt(),
            return_password: settings::allow_return_password(),
        };
        tracing::info!(
            CFN_ALLOW_ADOPT = %settings.adopt,
            CFN_ALLOW_RETURN_PASSWORD = %settings.return_password,
            "admin-secret settings"
        );
        settings::log_problems([settings.adopt.problem(), settings.return_password.problem()]);
        settings
    }

    fn check_return_password(&self, v: &Validated) -> Result<(), HandlerError> {
        if v.return_password {
            self.return_password.require("ReturnPassword")?;
        }
        Ok(())
    }
}

impl AdminSecret {
    /// The handler, with its SSM and KMS clients (built once per process) and the function's
    /// [`Settings`].
    pub fn new(client: aws_sdk_ssm::Client, kms: aws_sdk_kms::Client, settings: Settings) -> Self {
        Self {
            store: ParameterStore::new(client),
            keys: ssm_secret::KeyGuard::new(kms),
            settings,
        }
    }

    /// Creates the parameter `v.parameter_name` holding `value` (a fresh password when
    /// `None`), or finds our own, or adopts a foreign one when asked
    /// ([`ParameterStore::ensure_owned`]); the version it returns is bound to the `RotationToken`
    /// it holds the password for.
    async fn ensure(
        &self,
        info: &RequestInfo,
        v: &Validated,
        value: Option<Secret<String>>,
    ) -> Result<StoredParameter, HandlerError> {
        let name = v.parameter_name.as_str();
        let owner = Owner::of(info);
        let label = ssm_secret::rotation_label(v.rotation_token.as_deref());
        let value = match value {
            Some(value) => value,
            None => ssm_secret::generate_os(&v.policy)?,
        };
        info.progress.set(format!("creating SSM parameter {name}"));
        let wanted = Wanted {
            name,
            key_id: &v.key_id,
            description: v.description.as_deref(),
            owner: &owner,
            label: &label,
        };
        let adopt = v.adopt && self.settings.adopt.refusal().is_none();
        match self.store.ensure_owned(&wanted, &value, adopt).await {
            Ok(ensured) => Ok(ensured.into_stored()),
            Err(not_ours @ StoreError::NotOurs { .. }) => {
                if v.adopt {
                    // Asked for, but the function's setting refuses it: say so.
                    self.settings.adopt.require("Adopt")?;
                }
                Err(HandlerError::new(format!(
                    "{not_ours}; choose another ParameterName, delete the parameter, or set Adopt to \"true\" to \
                     take it over"
                )))
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Carries out an in-place [`UpdatePlan::InPlace`]: a new version when the plan puts one,
    /// the owner tags, the token's label.
    async fn update_in_place(
        &self,
        info: &RequestInfo,
        v: &Validated,
        name: &str,
        history: &History,
        step: InPlace,
    ) -> Result<StoredParameter, HandlerError> {
        let InPlace {
            mut stored,
            keep,
            put,
            tag,
            label,
        } = step;
        if let Some(put) = put {
            let value = match keep {
                Some(value) => value,
                None => ssm_secret::generate_os(&v.policy)?,
            };
            info.progress
                .set(format!("putting a new version of SSM parameter {name}"));
            stored.version = self
                .store
                .put_new_version(name, &value, &v.key_id, put.description.as_deref(), history)
                .await?;
            stored.value = value;
        } else {
            tracing::info!(
                parameter = name,
                version = stored.version,
                "nothing to change in SSM"
            );
        }
        if tag {
            self.store.tag(name, &Owner::of(info)).await?;
        }
        if let Some(label) = label {
            self.store.label(name, stored.version, &label).await?;
        }
        Ok(stored)
    }
}

/// What an Update does, decided before anything is written from what SSM holds: the parameter
/// ([`ParameterStore::get`]) and, when it is ours, its history ([`ParameterStore::history_of`]).
#[derive(Debug, PartialEq)]
enum UpdatePlan {
    /// `ParameterName` changed: the new parameter, holding `keep` (the password this token stands
    /// for, when it may stay) or else a new password; a new physical id.
    Replace { keep: Option<Secret<String>> },
    /// The parameter is gone: created again with a new password, same physical id.
    Recreate,
    /// The same parameter, changed in place.
    InPlace(Box<InPlace>),
}

/// The in-place part of an Update.
#[derive(Debug, PartialEq)]
struct InPlace {
    /// The parameter as it is now.
    stored: StoredParameter,
    /// The password to hold if an existing one will do; `None` generates one (and `put` is set).
    keep: Option<Secret<String>>,
    /// A new version is put, for a changed password, key or description.
    put: Option<Put>,
    /// The owner tags are set (adoption).
    tag: bool,
    /// The label to put on the version holding the password, unless it is there already.
    label: Option<String>,
}

/// A new version of the parameter.
#[derive(Debug, PartialEq)]
struct Put {
    /// `None` leaves SSM's description; `Some("")` clears one the properties no longer give.
    description: Option<String>,
}

/// The Update's plan. `current` is the parameter under the current physical id, `history` its
/// history when it is ours or is to be adopted (else empty), `token_changed` whether the old
/// properties named another `RotationToken` (only consulted for a parameter written before
/// labels). The steps: which existing password may stay ([`password_to_keep`]), then replace,
/// recreate, or change in place ([`plan_in_place`]).
fn plan_update(
    v: &Validated,
    owner: &Owner,
    current_name: &str,
    current: Option<StoredParameter>,
    history: &History,
    token_changed: bool,
) -> Result<UpdatePlan, HandlerError> {
    let label = ssm_secret::rotation_label(v.rotation_token.as_deref());
    let keep = password_to_keep(
        v,
        owner,
        current_name,
        current.as_ref(),
        history,
        &label,
        token_changed,
    );

    if v.parameter_name != current_name {
        tracing::info!(from = current_name, to = %v.parameter_name, "ParameterName changed: replacing the parameter");
        return Ok(UpdatePlan::Replace { keep });
    }
    let Some(stored) = current else {
        tracing::warn!(
            parameter = current_name,
            "the parameter is gone; creating it again with a new password"
        );
        return Ok(UpdatePlan::Recreate);
    };
    let adopting = stored.owner.as_ref() != Some(owner);
    if adopting && !v.adopt {
        return Err(HandlerError::new(format!(
            "SSM parameter {current_name} is no longer tagged as belonging to this resource; restore its tags \
             ({} and {}) or set Adopt to \"true\"",
            ssm_secret::STACK_ID_TAG,
            ssm_secret::LOGICAL_ID_TAG
        )));
    }
    Ok(UpdatePlan::InPlace(Box::new(plan_in_place(
        v,
        current_name,
        stored,
        keep,
        history,
        label,
        adopting,
    ))))
}

/// The password to hold, if an existing one will do. The one this token stands for is decided
/// from what SSM holds: the version labelled with the token (a rollback of a rotation, or a
/// duplicate delivery), a new one for a token never seen, or, for a parameter written before
/// labels, the current one unless the token changed. It must be ours (or adopted) and still
/// satisfy the policy.
fn password_to_keep(
    v: &Validated,
    owner: &Owner,
    current_name: &str,
    current: Option<&StoredParameter>,
    history: &History,
    label: &str,
    token_changed: bool,
) -> Option<Secret<String>> {
    let ours = current.is_some_and(|c| c.owner.as_ref() == Some(owner) || v.adopt);
    let wanted = match history.choose(label, token_changed) {
        Choice::Restore(version) => {
            tracing::info!(
                parameter = current_name,
                version = version.version,
                "RotationToken seen before: its password is the one to hold"
            );
            Some(version.value.clone())
        }
        Choice::Rotate => {
            tracing::info!(
                parameter = current_name,
                "new RotationToken: rotating the password"
            );
            None
        }
        Choice::Keep => current.map(|c| c.value.clone()),
    };
    wanted.filter(|_| ours).filter(|value| {
        let fits = v.policy.accepts(value.expose());
        if !fits {
            tracing::info!(
                parameter = current_name,
                "the password does not satisfy the new policy; generating a new one"
            );
        }
        fits
    })
}

/// The in-place change of `stored`: a new version for a changed password, key or description;
/// the owner tags when `adopting`; the token's `label` unless the version holding the password
/// carries it already.
fn plan_in_place(
    v: &Validated,
    current_name: &str,
    stored: StoredParameter,
    keep: Option<Secret<String>>,
    history: &History,
    label: String,
    adopting: bool,
) -> InPlace {
    let key_changed = stored.key_id.as_deref() != Some(v.key_id.as_str());
    let description_changed =
        stored.description.as_deref().unwrap_or("") != v.description.as_deref().unwrap_or("");
    let value_changed = keep.as_ref().is_none_or(|value| *value != stored.value);
    let put = (value_changed || key_changed || description_changed).then(|| {
        tracing::info!(
            parameter = current_name,
            value_changed,
            key_changed,
            description_changed,
            "putting a new version"
        );
        Put {
            description: match v.description.as_deref() {
                Some(description) => Some(description.to_string()),
                None if description_changed => Some(String::new()),
                None => None,
            },
        }
    });
    // The version holding the password is the new one, or the current one: label it unless the
    // token's label is on it already.
    let labelled_already = put.is_none()
        && history
            .labelled(&label)
            .is_some_and(|labelled| labelled.version == stored.version);
    InPlace {
        stored,
        keep,
        put,
        tag: adopting,
        label: (!labelled_already).then_some(label),
    }
}

fn physical_id(name: &str) -> Result<PhysicalId, HandlerError> {
    PhysicalId::new(name)
        .map_err(|e| HandlerError::new(format!("property `ParameterName` cannot be the physical id: {e}")))
}

fn data(stored: &StoredParameter, return_password: bool) -> Data {
    let mut data = Data::from([
        ("ParameterName".to_string(), stored.name.clone()),
        ("ParameterArn".to_string(), stored.arn.clone()),
        ("Version".to_string(), stored.version.to_string()),
    ]);
    if return_password {
        data.insert("Password".to_string(), stored.value.expose().clone());
    }
    data
}

impl CustomResource for AdminSecret {
    type Properties = Properties;

    #[tracing::instrument(skip_all, fields(parameter = %request.properties.parameter_name))]
    async fn create(&self, request: Create<Properties>) -> Result<Created, HandlerError> {
        let Create { info, properties } = request;
        let v = properties.validate()?;
        self.settings.check_return_password(&v)?;
        if v.adopt {
            self.settings.adopt.require("Adopt")?;
        }
        self.keys.check(&v.key_id).await?;
        let stored = self.ensure(&info, &v, None).await?;
        Ok(Created::new(physical_id(&stored.name)?)
            .with_data(data(&stored, v.return_password))
            .no_echo(v.return_password))
    }

    #[tracing::instrument(skip_all, fields(parameter = %request.physical_id))]
    async fn update(&self, request: Update<Properties>) -> Result<Updated, HandlerError> {
        let Update {
            info,
            physical_id: current_id,
            properties,
            old_properties,
        } = request;
        let v = properties.validate()?;
        self.settings.check_return_password(&v)?;
        self.keys.check(&v.key_id).await?;
        let current_name = current_id.as_str();
        let owner = Owner::of(&info);

        info.progress.set(format!("reading SSM parameter {current_name}"));
        let current = self.store.get(current_name).await?;
        // Adopt matters only where it would take over a parameter that is not ours; an Update of
        // our own parameter that happens to carry it is served whatever the setting.
        if v.adopt && current.as_ref().is_some_and(|c| c.owner.as_ref() != Some(&owner)) {
            self.settings.adopt.require("Adopt")?;
        }
        let history = match &current {
            Some(c) if c.owner.as_ref() == Some(&owner) || v.adopt => self.store.history_of(c).await?,
            _ => History::default(),
        };
        // Old properties that do not parse count as no rotation.
        let token_changed = old_properties
            .as_ref()
            .is_some_and(|old| old.rotation_token != v.rotation_token);

        let plan = plan_update(&v, &owner, current_name, current, &history, token_changed)?;
        let (stored, updated) = match plan {
            UpdatePlan::Replace { keep } => {
                let stored = self.ensure(&info, &v, keep).await?;
                let id = physical_id(&stored.name)?;
                (stored, Updated::replace(id))
            }
            UpdatePlan::Recreate => {
                let stored = self.ensure(&info, &v, None).await?;
                (stored, Updated::keep())
            }
            UpdatePlan::InPlace(step) => {
                let stored = self
                    .update_in_place(&info, &v, current_name, &history, *step)
                    .await?;
                (stored, Updated::keep())
            }
        };
        Ok(updated
            .with_data(data(&stored, v.return_password))
            .no_echo(v.return_password))
    }

    #[tracing::instrument(skip_all, fields(parameter = %request.physical_id))]
    async fn delete(&self, request: Delete<Properties>) -> Result<(), HandlerError> {
        let Delete {
            info,
            physical_id,
            properties,
            ..
        } = request;
        let name = physical_id.as_str();
        if properties.on_delete == OnDelete::Retain {
            tracing::info!(parameter = name, "OnDelete is Retain: keeping the parameter");
            return Ok(());
        }
        info.progress.set(format!("deleting SSM parameter {name}"));
        match self.store.delete_if_owned(name, &Owner::of(&info)).await? {
            DeleteOutcome::Deleted => tracing::info!(parameter = name, "deleted"),
            DeleteOutcome::AlreadyGone => tracing::info!(parameter = name, "already gone"),
            DeleteOutcome::NotOurs(owner) => {
                tracing::warn!(
                    parameter = name,
                    ?owner,
                    "not created by this resource: left in place"
                )
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> Result<Properties, serde_json::Error> {
        serde_json::from_value(json)
    }

    #[test]
    fn defaults_and_strings() {
        let p = parse(serde_json::json!({"ParameterName": "/p", "KeyId": "alias/k"})).unwrap();
        assert_eq!(
            (p.length, p.require_each_included_type, p.return_password, p.adopt),
            (32, true, false, false)
        );
        assert_eq!(p.on_delete, OnDelete::Delete);
        let policy = p.validate().unwrap().policy;
        assert_eq!(
            policy,
            PasswordPolicy {
                exclude: format!("{}{AURORA_FORBIDDEN}", ssm_secret::DEFAULT_EXCLUDE),
                ..Default::default()
            }
        );

        let p = parse(serde_json::json!({
            "ParameterName": "/p", "KeyId": "k", "Length": "41", "RequireEachIncludedType": "false",
            "ReturnPassword": "true", "Adopt": "TRUE", "OnDelete": "Retain", "ExcludeCharacters": "xyz"
        }))
        .unwrap();
        let policy = p.validate().unwrap().policy;
        assert_eq!((policy.length, policy.require_each_class), (41, false));
        assert!(
            policy.exclude.contains('x') && policy.exclude.contains('/') && !policy.exclude.contains('\'')
        );
        assert_eq!(p.on_delete, OnDelete::Retain);
    }

    #[test]
    fn length_and_key_are_checked() {
        for length in ["7", "42", "0"] {
            let p =
                parse(serde_json::json!({"ParameterName": "/p", "KeyId": "k", "Length": length})).unwrap();
            assert!(
                p.validate().unwrap_err().message().contains("`Length`"),
                "{length}"
            );
        }
        for key in [
            "alias/aws/ssm",
            "arn:aws:kms:us-east-1:123456789012:alias/aws/ssm",
            " ",
        ] {
            let p = parse(serde_json::json!({"ParameterName": "/p", "KeyId": key})).unwrap();
            assert!(p.validate().unwrap_err().message().contains("`KeyId`"), "{key}");
        }
        assert!(parse(serde_json::json!({"ParameterName": "/p", "KeyId": "k", "Colour": "red"})).is_err());
        assert!(parse(serde_json::json!({"ParameterName": "/p", "KeyId": "k", "OnDelete": "Drop"})).is_err());
    }

    mod plan {
        use super::*;
        use ssm_secret::{Version, rotation_label};

        const NAME: &str = "/p";

        fn owner() -> Owner {
            Owner::new(
                "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
                "Secret",
            )
        }

        fn properties(token: Option<&str>) -> Properties {
            let mut p = parse(serde_json::json!({"ParameterName": NAME, "KeyId": "alias/k"})).unwrap();
            p.rotation_token = token.map(str::to_string);
            p
        }

        /// Our parameter at `version`, holding `value`, created for token `r0`.
        fn stored(version: i64, value: &str) -> StoredParameter {
            StoredParameter {
                name: NAME.into(),
                arn: format!("arn:aws:ssm:us-east-1:123456789012:parameter{NAME}"),
                version,
                value: Secret::new(value.into()),
                key_id: Some("alias/k".into()),
                owner: Some(owner()),
                created_for: Some(rotation_label(Some("r0"))),
                description: None,
            }
        }

        /// Versions `(version, value, tokens labelled)`, bound to `r0` by the created-for tag.
        fn history(versions: &[(i64, &str, &[&str])]) -> History {
            History {
                versions: versions
                    .iter()
                    .map(|(version, value, tokens)| Version {
                        version: *version,
                        value: Secret::new(value.to_string()),
                        labels: tokens.iter().map(|t| rotation_label(Some(t))).collect(),
                        description: None,
                    })
                    .collect(),
                created_for: None,
            }
            .created_for(Some(&rotation_label(Some("r0"))))
        }

        fn plan(
            p: &Properties,
            current: Option<StoredParameter>,
            history: &History,
            token_changed: bool,
        ) -> Result<UpdatePlan, HandlerError> {
            plan_update(
                &p.validate().unwrap(),
                &owner(),
                NAME,
                current,
                history,
                token_changed,
            )
        }

        fn in_place(plan: UpdatePlan) -> InPlace {
            match plan {
                UpdatePlan::InPlace(step) => *step,
                other => panic!("not in place: {other:?}"),
            }
        }

        const FIRST: &str = "Aa1!aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        const SECOND: &str = "Bb2!bbbbbbbbbbbbbbbbbbbbbbbbbbbb";

        #[test]
        fn same_token_writes_nothing() {
            let step = in_place(
                plan(
                    &properties(Some("r0")),
                    Some(stored(1, FIRST)),
                    &history(&[(1, FIRST, &[])]),
                    false,
                )
                .unwrap(),
            );
            assert_eq!(step.keep, Some(Secret::new(FIRST.into())));
            assert_eq!((step.put, step.tag, step.label), (None, false, None));
        }

        #[test]
        fn new_token_rotates_and_labels_the_new_version() {
            let step = in_place(
                plan(
                    &properties(Some("r1")),
                    Some(stored(1, FIRST)),
                    &history(&[(1, FIRST, &[])]),
                    true,
                )
                .unwrap(),
            );
            assert_eq!(step.keep, None, "a new password");
            assert_eq!(step.put, Some(Put { description: None }));
            assert_eq!(step.label, Some(rotation_label(Some("r1"))));
        }

        #[test]
        fn token_seen_before_restores_its_password() {
            // r0 (version 1) rotated to r1 (version 2); the rollback asks for r0 again.
            let step = in_place(
                plan(
                    &properties(Some("r0")),
                    Some(stored(2, SECOND)),
                    &history(&[(1, FIRST, &[]), (2, SECOND, &["r1"])]),
                    true,
                )
                .unwrap(),
            );
            assert_eq!(step.keep, Some(Secret::new(FIRST.into())));
            assert!(step.put.is_some(), "put back as the latest version");
            assert_eq!(step.label, Some(rotation_label(Some("r0"))));
        }

        #[test]
        fn duplicate_rotation_makes_no_new_password() {
            let step = in_place(
                plan(
                    &properties(Some("r1")),
                    Some(stored(2, SECOND)),
                    &history(&[(1, FIRST, &[]), (2, SECOND, &["r1"])]),
                    true,
                )
                .unwrap(),
            );
            assert_eq!(step.keep, Some(Secret::new(SECOND.into())));
            assert_eq!((step.put, step.label), (None, None));
        }

        #[test]
        fn unlabelled_parameter_keeps_its_password_unless_the_token_changed() {
            let mut old = stored(3, FIRST);
            old.created_for = None;
            let unlabelled = History {
                versions: vec![Version {
                    version: 3,
                    value: Secret::new(FIRST.into()),
                    labels: vec![],
                    description: None,
                }],
                created_for: None,
            };
            let kept =
                in_place(plan(&properties(Some("r5")), Some(old.clone()), &unlabelled, false).unwrap());
            assert_eq!(kept.keep, Some(Secret::new(FIRST.into())));
            assert_eq!(kept.put, None);
            assert_eq!(kept.label, Some(rotation_label(Some("r5"))), "bound from now on");
            let rotated = in_place(plan(&properties(Some("r5")), Some(old), &unlabelled, true).unwrap());
            assert_eq!(rotated.keep, None);
        }

        #[test]
        fn description_or_key_change_puts_the_same_password_again() {
            let mut p = properties(Some("r0"));
            p.description = Some("new".into());
            let step =
                in_place(plan(&p, Some(stored(1, FIRST)), &history(&[(1, FIRST, &[])]), false).unwrap());
            assert_eq!(step.keep, Some(Secret::new(FIRST.into())));
            assert_eq!(
                step.put,
                Some(Put {
                    description: Some("new".into())
                })
            );
            // A description dropped from the properties is cleared.
            let mut described = stored(1, FIRST);
            described.description = Some("old".into());
            let step = in_place(
                plan(
                    &properties(Some("r0")),
                    Some(described),
                    &history(&[(1, FIRST, &[])]),
                    false,
                )
                .unwrap(),
            );
            assert_eq!(
                step.put,
                Some(Put {
                    description: Some(String::new())
                })
            );
            let mut p = properties(Some("r0"));
            p.key_id = "alias/other".into();
            let step =
                in_place(plan(&p, Some(stored(1, FIRST)), &history(&[(1, FIRST, &[])]), false).unwrap());
            assert_eq!(step.keep, Some(Secret::new(FIRST.into())));
            assert!(step.put.is_some());
        }

        #[test]
        fn a_password_outside_the_new_policy_is_replaced() {
            let mut p = properties(Some("r0"));
            p.length = 41;
            let step =
                in_place(plan(&p, Some(stored(1, FIRST)), &history(&[(1, FIRST, &[])]), false).unwrap());
            assert_eq!(step.keep, None);
            assert!(step.put.is_some());
        }

        #[test]
        fn rename_replaces_carrying_the_password() {
            let mut p = properties(Some("r0"));
            p.parameter_name = "/q".into();
            assert_eq!(
                plan(&p, Some(stored(1, FIRST)), &history(&[(1, FIRST, &[])]), false).unwrap(),
                UpdatePlan::Replace {
                    keep: Some(Secret::new(FIRST.into()))
                }
            );
            // Somebody else's parameter gives nothing to carry.
            let mut theirs = stored(1, FIRST);
            theirs.owner = Some(Owner::new("arn:other", "Other"));
            assert_eq!(
                plan(&p, Some(theirs), &History::default(), false).unwrap(),
                UpdatePlan::Replace { keep: None }
            );
        }

        #[test]
        fn a_gone_parameter_is_created_again() {
            assert_eq!(
                plan(&properties(Some("r1")), None, &History::default(), true).unwrap(),
                UpdatePlan::Recreate
            );
        }

        #[test]
        fn a_parameter_no_longer_ours_fails_unless_adopted() {
            let mut theirs = stored(1, FIRST);
            theirs.owner = None;
            let error = plan(
                &properties(Some("r0")),
                Some(theirs.clone()),
                &History::default(),
                false,
            )
            .unwrap_err();
            assert!(error.message().contains("no longer tagged"), "{error}");
            let mut p = properties(Some("r0"));
            p.adopt = true;
            let step = in_place(plan(&p, Some(theirs), &history(&[(1, FIRST, &[])]), false).unwrap());
            assert!(step.tag, "adoption tags it as ours");
            assert_eq!(step.keep, Some(Secret::new(FIRST.into())));
        }
    }

    /// The sample events in tests/events parse with these properties.
    #[test]
    fn sample_events_parse() {
        // cargo runs unit tests in the crate's directory (a shared target dir may hold this test
        // compiled in another clone, so not CARGO_MANIFEST_DIR).
        let dir = std::path::Path::new("../../tests/events");
        for kind in ["create", "update", "delete"] {
            let path = dir.join(format!("admin-secret-{kind}.json"));
            let event: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            for key in ["ResourceProperties", "OldResourceProperties"] {
                if let Some(properties) = event.get(key) {
                    let mut properties = properties.clone();
                    properties.as_object_mut().unwrap().remove("ServiceToken");
                    let parsed: Properties = serde_json::from_value(properties)
                        .unwrap_or_else(|e| panic!("{}: {key}: {e}", path.display()));
                    parsed.validate().unwrap();
                }
            }
        }
    }
}
