//! The `Custom::ServiceDatabase` lifecycle: Create, Update, Delete.

use cfn_custom_resource::settings::Switch;
use cfn_custom_resource::{
    Create, Created, Data, Delete, HandlerError, PhysicalId, RequestInfo, Secret, Update, Updated,
};
use ssm_secret::{Created as Stored, DeleteOutcome, Owner, ParameterStore, PasswordPolicy, StoredParameter};

use crate::db::{self, Marker, Session, Target};
use crate::error::Error;
use crate::properties::{OnDelete, Properties, Validated};
use crate::tls;

/// The handler: holds the SSM client, built once per process.
pub struct ServiceDatabase {
    store: ParameterStore,
    /// `KeyId` must be an enabled customer-managed key.
    keys: ssm_secret::KeyGuard,
    /// `CFN_ALLOW_ADOPT`: may `Adopt` take over a role, database or parameter not ours.
    allow_adopt: Switch,
}

impl ServiceDatabase {
    pub fn new(ssm: aws_sdk_ssm::Client, kms: aws_sdk_kms::Client, allow_adopt: Switch) -> Self {
        Self {
            store: ParameterStore::new(ssm),
            keys: ssm_secret::KeyGuard::new(kms),
            allow_adopt,
        }
    }
}

impl cfn_custom_resource::CustomResource for ServiceDatabase {
    type Properties = Properties;

    #[tracing::instrument(skip_all)]
    async fn create(&self, request: Create<Properties>) -> Result<Created, HandlerError> {
        let p = &request.properties;
        let v = p.validate()?;
        if p.adopt {
            self.allow_adopt.require("Adopt")?;
        }
        self.keys.check(&p.key_id).await?;
        let id = physical_id(&v)?;
        self.ensure(&request.info, p, &v).await?;
        Ok(Created::new(id).with_data(data(p, &v)))
    }

    #[tracing::instrument(skip_all)]
    async fn update(&self, mut request: Update<Properties>) -> Result<Updated, HandlerError> {
        if request.properties.adopt && self.allow_adopt.require("Adopt").is_err() {
            // Served as without Adopt: an Update of what this resource owns goes through, one
            // that would take over another's role, database or parameter fails as not ours.
            tracing::warn!("Adopt is set but CFN_ALLOW_ADOPT is off: served as without Adopt");
            request.properties.adopt = false;
        }
        let p = &request.properties;
        let v = p.validate()?;
        self.keys.check(&p.key_id).await?;
        if v.physical_id() != request.physical_id.as_str() {
            // Another cluster, port or database: a new resource. CloudFormation then sends a
            // Delete for the old id, which drops (with OnDelete Drop) only what still names it.
            tracing::info!(old = %request.physical_id.as_str(), new = %v.physical_id(), "replacing");
            let id = physical_id(&v)?;
            self.ensure(&request.info, p, &v).await?;
            return Ok(Updated::replace(id).with_data(data(p, &v)));
        }
        // Decided from real state: the old properties (what failed last time, on a rollback) only
        // say what may have moved, so that PostgreSQL is checked and the error can say why.
        let old = request.old_properties.as_ref();
        self.converge_password(&request.info, p, &v, old).await?;
        Ok(Updated::keep().with_data(data(p, &v)))
    }

    #[tracing::instrument(skip_all)]
    async fn delete(&self, request: Delete<Properties>) -> Result<(), HandlerError> {
        let p = &request.properties;
        if request.after_failed_create {
            tracing::info!("Delete after a failed Create: removing what it made, whatever OnDelete says");
        } else if p.on_delete == OnDelete::Retain {
            tracing::info!("OnDelete is Retain: the database, role and password parameter stay");
            return Ok(());
        }
        let v = match p.validate() {
            Ok(v) => v,
            Err(error) => {
                tracing::warn!(%error, "properties are invalid, so nothing was ever created from them");
                return Ok(());
            }
        };
        self.drop_all(
            &request.info,
            p,
            &v,
            request.physical_id.as_str(),
            request.after_failed_create,
        )
        .await?;
        Ok(())
    }
}

impl ServiceDatabase {
    /// Create (and replacement): converges on the password parameter, the role and the database.
    async fn ensure(&self, info: &RequestInfo, p: &Properties, v: &Validated) -> Result<(), HandlerError> {
        let progress = &info.progress;
        let owner = Owner::of(info);
        let marker = Marker::new(&info.stack_id, &info.logical_resource_id, &v.physical_id());

        progress.set("reading the admin password");
        let admin_password = self.admin_password(p).await?;

        progress.set("getting or creating the service password parameter");
        let password = self.service_password(p, v, &owner).await?;

        // The parameter exists now: a Create that fails from here on answers with this id, and
        // CloudFormation's rollback Delete removes what it made.
        info.partial_id.publish(physical_id(v)?);

        progress.set(format!("connecting to {}:{}", v.host, v.port));
        let target = target(info, p, v)?;
        let session = target.admin(&p.admin_username, &admin_password).await?;
        progress.set(format!("waiting for the lock on database {}", v.database));
        session
            .lock(vec![
                db::lock_key("database", &v.database),
                db::lock_key("role", &v.role),
            ])
            .await?;
        let outcome = self.ensure_locked(info, p, v, &session, &password, &marker).await;
        session.unlock().await;
        outcome?;

        progress.set(format!("checking schema public of database {}", v.database));
        let client = target
            .connect(&p.admin_username, &admin_password, v.database.as_str())
            .await?;
        db::check_public_schema(&client, &v.database, &v.role).await?;
        Ok(())
    }

    async fn ensure_locked(
        &self,
        info: &RequestInfo,
        p: &Properties,
        v: &Validated,
        session: &Session,
        password: &Secret<String>,
        marker: &Marker,
    ) -> Result<(), Error> {
        let progress = &info.progress;
        // Look before touching anything: what is not ours fails the request untouched.
        let role = session.role(&v.role).await?;
        let database = session.database(&v.database).await?;
        let role_is_ours = match &role {
            None => true,
            Some(row) => marker.claims(row.comment.as_deref()),
        };
        if let Some(row) = &role {
            if row.superuser {
                return Err(Error::RoleNotOurs {
                    role: v.role.to_string(),
                    found: "it is a superuser".into(),
                });
            }
            if !role_is_ours && !p.adopt {
                return Err(Error::RoleNotOurs {
                    role: v.role.to_string(),
                    found: describe_comment(row.comment.as_deref()),
                });
            }
        }
        let database_is_ours = match &database {
            None => true,
            Some(row) => match Marker::parse(row.comment.as_deref()) {
                Some(m) => m.same_resource(marker),
                // Created by us, then interrupted before the comment: owned by our own role.
                None => {
                    row.comment.is_none() && role.is_some() && role_is_ours && row.owner == v.role.as_str()
                }
            },
        };
        if let Some(row) = &database
            && !database_is_ours
            && !p.adopt
        {
            return Err(Error::DatabaseNotOurs {
                database: v.database.to_string(),
                owner: row.owner.clone(),
                found: describe_comment(row.comment.as_deref()),
            });
        }

        if role.is_none() {
            progress.set(format!("creating role {}", v.role));
            session.create_role(&v.role, password, marker).await?;
        } else {
            // Ours (a retried Create, a replacement) or adopted: its password is the parameter's.
            progress.set(format!("setting the password of role {}", v.role));
            session.set_role_password(&v.role, password, marker).await?;
        }
        progress.set(format!("granting role {} to the admin user", v.role));
        session.grant_role_to_admin(&v.role).await?;
        match &database {
            None => {
                progress.set(format!("creating database {}", v.database));
                session.create_database(&v.database, &v.role).await?;
            }
            Some(row) if row.owner != v.role.as_str() => {
                progress.set(format!(
                    "making role {} the owner of database {}",
                    v.role, v.database
                ));
                session.set_database_owner(&v.database, &v.role).await?;
            }
            Some(_) => {}
        }
        progress.set(format!("revoking PUBLIC's access to database {}", v.database));
        session.isolate_database(&v.database, marker).await?;
        Ok(())
    }

    /// In-place Update: the password this `RotationToken` stands for, decided from what SSM holds.
    /// The version labelled with the token (a rollback of a rotation, or a duplicate delivery) is
    /// restored; a token never seen gets a new password; a parameter written before labels keeps
    /// its password unless the old properties name another token. Whatever changes, SSM's latest
    /// version and the role's password in PostgreSQL end up the same.
    async fn converge_password(
        &self,
        info: &RequestInfo,
        p: &Properties,
        v: &Validated,
        old: Option<&Properties>,
    ) -> Result<(), HandlerError> {
        let progress = &info.progress;
        let name = &p.password_parameter_name;
        let old_role = old.and_then(|o| o.validate().ok()).map(|o| o.role);
        let role_moved = old_role.as_ref().is_some_and(|r| *r != v.role);
        let parameter_moved = old.is_some_and(|o| o.password_parameter_name != *name);
        let old_token = old.map(|o| o.rotation_token.clone());
        let label = ssm_secret::rotation_label(p.rotation_token.as_deref());
        progress.set("reading the password parameter and its versions");
        let stored = match self.password_parameter(name).await {
            Err(Error::Store { detail, .. }) if parameter_moved && detail == "does not exist" => {
                return Err(Error::Unsupported(format!(
                    "PasswordParameterName cannot change in place (to {name}, which does not exist); \
                     give the database a new DatabaseName too, which replaces the resource"
                ))
                .into());
            }
            other => other?,
        };
        if stored.owner.as_ref() != Some(&Owner::of(info)) && !p.adopt {
            return Err(Error::ParameterNotOurs {
                name: name.clone(),
                owner: stored
                    .owner
                    .map_or_else(|| "no owner tags".to_string(), |o| o.to_string()),
            }
            .into());
        }
        let history = self
            .store
            .history(name)
            .await
            .map_err(|e| store_error(name, &e))?
            .created_for(stored.created_for.as_deref());
        let labelled = history.labelled(&label);
        let token_changed = old_token.as_ref().is_some_and(|t| *t != p.rotation_token);
        let value = match labelled {
            Some(version) => {
                tracing::info!(parameter = %name, version = version.version, "RotationToken seen before: its password is the one to hold");
                version.value.clone()
            }
            None if history.has_rotation_labels() || token_changed => {
                tracing::info!(parameter = %name, "new RotationToken: rotating the password");
                new_password(p)?
            }
            None => stored.value.clone(),
        };
        let value_changed = value != stored.value;
        let description = description(v);
        let rewrite = value_changed
            || stored.key_id.as_deref() != Some(p.key_id.as_str())
            || stored.description.as_deref() != Some(description.as_str());
        let labelled_version = labelled.map(|l| l.version);
        let write = async {
            let mut version = stored.version;
            if rewrite {
                progress.set("storing the password as a new parameter version");
                version = self
                    .store
                    .put_new_version(name, &value, &p.key_id, Some(&description))
                    .await
                    .map_err(|e| store_error(name, &e))?;
            }
            if labelled_version != Some(version) {
                self.store
                    .label(name, version, &label)
                    .await
                    .map_err(|e| store_error(name, &e))?;
            }
            Ok::<_, Error>(())
        };
        if !value_changed && !token_changed && !role_moved && !parameter_moved {
            // The role already holds this password: nothing to do in PostgreSQL.
            return Ok(write.await?);
        }

        let marker = Marker::new(&info.stack_id, &info.logical_resource_id, &v.physical_id());
        progress.set("reading the admin password");
        let admin_password = self.admin_password(p).await?;
        progress.set(format!("connecting to {}:{}", v.host, v.port));
        let session = target(info, p, v)?
            .admin(&p.admin_username, &admin_password)
            .await?;
        session
            .lock(vec![
                db::lock_key("database", &v.database),
                db::lock_key("role", &v.role),
            ])
            .await?;
        let outcome = async {
            match session.role(&v.role).await? {
                None if role_moved => {
                    return Err(Error::Unsupported(format!(
                        "RoleName cannot change in place (to {}, which does not exist); give the \
                         database a new DatabaseName too, which replaces the resource",
                        v.role
                    )));
                }
                None => {
                    return Err(Error::Unsupported(format!(
                        "role {} does not exist; cannot set its password",
                        v.role
                    )));
                }
                Some(row) if !marker.claims(row.comment.as_deref()) => {
                    return Err(Error::RoleNotOurs {
                        role: v.role.to_string(),
                        found: describe_comment(row.comment.as_deref()),
                    });
                }
                Some(_) => {}
            }
            // SSM first: a failure after it leaves the parameter ahead of the role, which the
            // next Update (or the rollback) sets again.
            write.await?;
            progress.set(format!("setting the password of role {}", v.role));
            session.set_role_password(&v.role, &value, &marker).await
        }
        .await;
        session.unlock().await;
        Ok(outcome?)
    }

    /// Delete with `OnDelete: Drop`: only what is ours and still belongs to this physical id.
    async fn drop_all(
        &self,
        info: &RequestInfo,
        p: &Properties,
        v: &Validated,
        physical_id: &str,
        after_failed_create: bool,
    ) -> Result<(), HandlerError> {
        let progress = &info.progress;
        let marker = Marker::new(&info.stack_id, &info.logical_resource_id, physical_id);
        progress.set("reading the admin password");
        let admin_password = self.admin_password(p).await?;
        progress.set(format!("connecting to {}:{}", v.host, v.port));
        let connected = async {
            target(info, p, v)?
                .admin(&p.admin_username, &admin_password)
                .await
        };
        let session = match connected.await {
            Ok(session) => session,
            Err(error) if after_failed_create => {
                // The Create most likely failed for the same reason, before making anything in
                // the cluster; a role it did make is ours and a new Create sets its password.
                tracing::warn!(%error, "cluster unreachable after a failed Create; removing the password parameter only");
                return self.delete_parameter(info, p, v).await;
            }
            Err(error) => return Err(error.into()),
        };
        progress.set(format!("waiting for the lock on database {}", v.database));
        session
            .lock(vec![
                db::lock_key("database", &v.database),
                db::lock_key("role", &v.role),
            ])
            .await?;
        let outcome = async {
            match session.database(&v.database).await? {
                None => tracing::info!(database = %v.database, "database already gone"),
                Some(row) => match Marker::parse(row.comment.as_deref()) {
                    Some(m) if m.same_resource(&marker) && m.physical_resource_id == physical_id => {
                        progress.set(format!("dropping database {}", v.database));
                        let ended = session.terminate_sessions(&v.database).await?;
                        tracing::info!(database = %v.database, sessions = ended, "ended sessions; dropping the database");
                        session.drop_database(&v.database).await?;
                    }
                    Some(m) if m.same_resource(&marker) => {
                        tracing::info!(database = %v.database, now = %m.physical_resource_id, "the database now belongs to the replacement; left in place");
                    }
                    _ => {
                        tracing::warn!(database = %v.database, owner = %row.owner, "database is not ours; left in place");
                    }
                },
            }
            let mut role_gone = true;
            match session.role(&v.role).await? {
                None => tracing::info!(role = %v.role, "role already gone"),
                Some(row) if !marker.claims(row.comment.as_deref()) => {
                    role_gone = false;
                    tracing::warn!(role = %v.role, "role is not ours; left in place");
                }
                Some(row) if !row.owned_databases.is_empty() => {
                    role_gone = false;
                    tracing::info!(role = %v.role, databases = ?row.owned_databases, "role still owns databases; left in place");
                }
                Some(_) => {
                    progress.set(format!("dropping role {}", v.role));
                    session.drop_role(&v.role).await?;
                }
            }
            // The parameter holds the role's password: it goes with the role.
            Ok::<_, Error>(role_gone)
        }
        .await;
        session.unlock().await;
        if !outcome? {
            tracing::info!(parameter = %p.password_parameter_name, "the role lives on; its password parameter stays");
            return Ok(());
        }
        self.delete_parameter(info, p, v).await
    }

    /// Deletes the password parameter if it is ours and still serves this physical id.
    async fn delete_parameter(
        &self,
        info: &RequestInfo,
        p: &Properties,
        v: &Validated,
    ) -> Result<(), HandlerError> {
        info.progress.set("deleting the password parameter");
        let name = &p.password_parameter_name;
        match self.store.get(name).await.map_err(|e| store_error(name, &e))? {
            None => return Ok(()),
            Some(stored) if stored.description.as_deref() != Some(description(v).as_str()) => {
                tracing::info!(parameter = %name, "the password parameter now serves another database; left in place");
                return Ok(());
            }
            Some(_) => {}
        }
        match self
            .store
            .delete_if_owned(name, &Owner::of(info))
            .await
            .map_err(|e| store_error(name, &e))?
        {
            DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone => {}
            DeleteOutcome::NotOurs(owner) => {
                tracing::warn!(parameter = %name, ?owner, "password parameter is not ours; left in place")
            }
        }
        Ok(())
    }

    async fn admin_password(&self, p: &Properties) -> Result<Secret<String>, Error> {
        let name = &p.admin_password_parameter_name;
        match self.store.value(name).await.map_err(|e| store_error(name, &e))? {
            Some(value) => Ok(value),
            None => Err(Error::AdminPasswordMissing(name.clone())),
        }
    }

    async fn password_parameter(&self, name: &str) -> Result<StoredParameter, Error> {
        self.store
            .get(name)
            .await
            .map_err(|e| store_error(name, &e))?
            .ok_or_else(|| Error::Store {
                name: name.to_string(),
                detail: "does not exist".into(),
            })
    }

    /// Gets or creates (`Overwrite=false`) the service's password parameter. A parameter of
    /// somebody else's is refused unless `Adopt`.
    async fn service_password(
        &self,
        p: &Properties,
        v: &Validated,
        owner: &Owner,
    ) -> Result<Secret<String>, Error> {
        let name = &p.password_parameter_name;
        let description = description(v);
        let candidate = new_password(p)?;
        let label = ssm_secret::rotation_label(p.rotation_token.as_deref());
        let stored = self
            .store
            .create_if_absent(name, &candidate, &p.key_id, Some(&description), owner, &label)
            .await
            .map_err(|e| store_error(name, &e))?;
        let existing = match stored {
            // Bound to its token from the start by its created-for tag, so a later rollback
            // can find it.
            Stored::Created(stored) => return Ok(stored.value),
            Stored::Existing(existing) => existing,
        };
        if existing.owner.as_ref() != Some(owner) {
            if !p.adopt {
                return Err(Error::ParameterNotOurs {
                    name: name.clone(),
                    owner: existing
                        .owner
                        .map_or_else(|| "no owner tags".to_string(), |o| o.to_string()),
                });
            }
            self.store
                .tag(name, owner)
                .await
                .map_err(|e| store_error(name, &e))?;
        }
        let mut version = existing.version;
        if existing.description.as_deref() != Some(description.as_str()) {
            // A replacement (or adoption): the parameter now serves this physical id.
            version = self
                .store
                .put_new_version(name, &existing.value, &p.key_id, Some(&description))
                .await
                .map_err(|e| store_error(name, &e))?;
        }
        // The password kept is the one this token now stands for.
        self.store
            .label(name, version, &label)
            .await
            .map_err(|e| store_error(name, &e))?;
        Ok(existing.value)
    }
}

fn new_password(p: &Properties) -> Result<Secret<String>, Error> {
    let policy = PasswordPolicy {
        length: p.password_length,
        ..PasswordPolicy::default()
    };
    ssm_secret::generate_os(&policy).map_err(|e| Error::Password(e.to_string()))
}

fn store_error(name: &str, error: &ssm_secret::StoreError) -> Error {
    Error::Store {
        name: name.to_string(),
        detail: cfn_custom_resource::error_chain(error),
    }
}

/// What the cluster is and how to reach it. PostgreSQL statements and lock waits end a second
/// before the deadline watchdog would stop the handler, so a lock wait fails with a clear error.
fn target(info: &RequestInfo, p: &Properties, v: &Validated) -> Result<Target, Error> {
    let statement_timeout = info
        .time_left()
        .saturating_sub(std::time::Duration::from_secs(1))
        .max(std::time::Duration::from_millis(100));
    Ok(Target {
        host: v.host.clone(),
        port: v.port,
        timeout: v.connect_timeout,
        transport: tls::transport(p.tls_mode, p.ca_certificate.as_deref())?,
        statement_timeout,
    })
}

fn physical_id(v: &Validated) -> Result<PhysicalId, Error> {
    PhysicalId::new(v.physical_id()).map_err(|e| Error::Property {
        name: "ClusterEndpoint",
        reason: e.to_string(),
    })
}

/// The password parameter's description; it names the physical id it serves, so the Delete of a
/// replaced resource can tell the parameter has moved on.
fn description(v: &Validated) -> String {
    format!(
        "Password of Postgres role {} for database {} (Custom::ServiceDatabase)",
        v.role,
        v.physical_id()
    )
}

fn describe_comment(comment: Option<&str>) -> String {
    match Marker::parse(comment) {
        Some(m) => format!(
            "it belongs to resource {} of stack {}",
            m.logical_resource_id, m.stack_id
        ),
        None if comment.is_some() => "its comment does not name this resource".into(),
        None => "it has no ownership comment".into(),
    }
}

/// `Data`: what a service needs to connect (the password itself stays in SSM).
fn data(p: &Properties, v: &Validated) -> Data {
    let mut data = Data::new();
    data.insert("DatabaseName".into(), v.database.to_string());
    data.insert("Username".into(), v.role.to_string());
    data.insert("PasswordParameterName".into(), p.password_parameter_name.clone());
    data.insert("Host".into(), v.host.clone());
    data.insert("Port".into(), v.port.to_string());
    data.insert(
        "JdbcUrl".into(),
        format!(
            "jdbc:postgresql://{}:{}/{}?sslmode={}",
            v.host,
            v.port,
            v.database,
            p.tls_mode.as_str()
        ),
    );
    data
}
