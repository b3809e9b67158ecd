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
    pub name: &'a str,
    /// The KMS key to encrypt under (id, ARN or alias).
    pub key_id: &'a str,
    /// `None` leaves an existing parameter's description as it is.
    pub description: Option<&'a str>,
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
    pub fn stored(&self) -> &StoredParameter {
        match self {
            Self::Created(stored) | Self::Reused(stored) | Self::Adopted(stored) => stored,
        }
    }

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
        let described_otherwise = description.is_some_and(|d| stored.description.as_deref() != Some(d));
        if !ours || described_otherwise {
            stored.version = self
                .put_new_version(name, &stored.value, key_id, description, &History::default())
                .await?;
            stored.key_id = Some(key_id.to_string());
            if let Some(description) = description {
                stored.description = Some(description.to_string());
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
