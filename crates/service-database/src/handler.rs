//! The `Custom::ServiceDatabase` lifecycle: Create, Update, Delete.

use std::time::Duration;

use cfn_custom_resource::{
    Create, Created, Data, Delete, HandlerError, PhysicalId, RequestInfo, Secret, Update, Updated,
};
use ssm_secret::{DeleteOutcome, Owner, ParameterStore, StoreError, StoredParameter, Wanted};

use crate::admin::{AdminCredential, AdminCredentials};
use crate::db::{self, DatabaseRow, Marker, RoleRow, Session, Target};
use crate::error::{Adoption, Error};
use crate::ident::Identifier;
use crate::logins::{self, Logins};
use crate::properties::{OnDelete, Properties, Validated};
use crate::settings::Settings;
use crate::tls;

/// The handler: holds the SSM, KMS and Secrets Manager clients, built once per process, and the
/// function's settings, read once at init.
pub struct ServiceDatabase {
    store: ParameterStore,
    /// The admin credential, read on every invocation.
    admin: AdminCredentials,
    /// `KeyId` must be an enabled customer-managed key.
    keys: ssm_secret::KeyGuard,
    /// `CFN_ALLOW_ADOPT`: may `Adopt` take over a role, database or parameter not ours.
    settings: Settings,
}

impl ServiceDatabase {
    /// The handler on these clients, under `settings` ([`Settings::from_env`]).
    pub fn new(
        ssm: aws_sdk_ssm::Client,
        kms: aws_sdk_kms::Client,
        secrets: aws_sdk_secretsmanager::Client,
        settings: Settings,
    ) -> Self {
        let store = ParameterStore::new(ssm);
        Self {
            admin: AdminCredentials::new(store.clone(), secrets),
            store,
            keys: ssm_secret::KeyGuard::new(kms),
            settings,
        }
    }
}

impl cfn_custom_resource::CustomResource for ServiceDatabase {
    type Properties = Properties;

    #[tracing::instrument(skip_all)]
    async fn create(&self, request: Create<Properties>) -> Result<Created, HandlerError> {
        let v = request.properties.validate()?;
        if v.adopt {
            self.settings.adopt.require("Adopt")?;
        }
        self.keys.check(&v.key_id).await?;
        let id = physical_id(&v)?;
        let login = self.ensure(&request.info, &v, &self.adoption(&v)).await?;
        Ok(Created::new(id).with_data(data(&v, &login)))
    }

    #[tracing::instrument(skip_all)]
    async fn update(&self, request: Update<Properties>) -> Result<Updated, HandlerError> {
        let v = request.properties.validate()?;
        let adopt = self.adoption(&v);
        if let Adoption::Refused(why) = &adopt {
            // Served as without Adopt: an Update of what this resource owns goes through, one
            // that would take over another's role, database or parameter fails as not ours, its
            // Reason saying the function setting refused Adopt.
            tracing::warn!(%why, "Adopt is set but not allowed: served as without Adopt");
        }
        self.keys.check(&v.key_id).await?;
        if v.physical_id() != request.physical_id.as_str() {
            // Another cluster, port or database: a new resource. CloudFormation then sends a
            // Delete for the old id, which drops (with OnDelete Drop) only what still names it.
            tracing::info!(old = %request.physical_id.as_str(), new = %v.physical_id(), "replacing");
            let id = physical_id(&v)?;
            let login = self.ensure(&request.info, &v, &adopt).await?;
            return Ok(Updated::replace(id).with_data(data(&v, &login)));
        }
        // Decided from real state: the old properties (what failed last time, on a rollback) only
        // say what may have moved, so that PostgreSQL is checked and the error can say why.
        let moved = Moved::since(request.old_properties.as_ref(), &v);
        let login = self.converge_password(&request.info, &v, moved, &adopt).await?;
        Ok(Updated::keep().with_data(data(&v, &login)))
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
                tracing::warn!(error = %cfn_custom_resource::error_chain(&error), "properties are invalid, so nothing was ever created from them");
                return Ok(());
            }
        };
        self.drop_all(
            &request.info,
            &v,
            request.physical_id.as_str(),
            request.after_failed_create,
        )
        .await?;
        Ok(())
    }
}

/// What an in-place Update's old properties say has moved. They are advisory (on a rollback
/// they are the values that failed), parsed leniently: they only tell PostgreSQL must be checked,
/// and let an error say why.
#[derive(Debug, Clone, Copy, Default)]
struct Moved {
    /// `RoleName` (or its default) changed.
    role: bool,
    /// `PasswordParameterName` changed.
    parameter: bool,
    /// `RotationToken` changed (consulted for a parameter written before rotation labels).
    token: bool,
}

impl Moved {
    /// From the old properties (`None` when they did not parse) to the validated new ones.
    fn since(old: Option<&Properties>, new: &Validated) -> Self {
        let Some(old) = old else {
            return Self::default();
        };
        Self {
            role: old.validate().is_ok_and(|o| o.role != new.role),
            parameter: old.password_parameter_name != new.password_parameter,
            token: old.rotation_token != new.rotation_token,
        }
    }

    fn any(self) -> bool {
        self.role || self.parameter || self.token
    }
}

impl ServiceDatabase {
    /// `Adopt` as the function's `CFN_ALLOW_ADOPT` setting lets it act.
    fn adoption(&self, v: &Validated) -> Adoption {
        if !v.adopt {
            return Adoption::NotAsked;
        }
        match self.settings.adopt.refusal() {
            None => Adoption::Allowed,
            Some(why) => Adoption::Refused(why),
        }
    }

    /// Create (and replacement): converges on the password parameter, the roles and the database.
    /// The steps: the two passwords (SSM), then under the lock on the names, [`inspect`] what the
    /// cluster holds (refusing what is not ours) and [`apply`] what is missing, then check the
    /// owner can use its database's schema `public`; the PostgreSQL part [`within_deadline`].
    /// Returns the login role that holds the password (`Data.Username`).
    async fn ensure(
        &self,
        info: &RequestInfo,
        v: &Validated,
        adopt: &Adoption,
    ) -> Result<Identifier, HandlerError> {
        let progress = &info.progress;
        let logins = v.login_roles()?;
        progress.set("reading the admin credential");
        let admin = self.admin.current(&v.admin).await?;

        progress.set("getting or creating the service password parameter");
        let (password, login) = self.service_password(v, logins, &Owner::of(info), adopt).await?;

        // The parameter exists now: a Create that fails from here on answers with this id, and
        // CloudFormation's rollback Delete removes what it made.
        info.partial_id.publish(physical_id(v)?);

        let marker = marker(info, v);
        let target = target(info, v)?;
        within_deadline(info, async {
            let (session, admin) = self.admin_session(info, &target, v, admin).await?;
            under_lock(info, &session, v, Some(logins), async {
                let names = logins.all();
                let (roles, database) =
                    tokio::try_join!(session.roles(&names), session.database(&v.database))?;
                let found = inspect(roles, database, v, logins, &login, &marker, adopt)?;
                let create = Apply {
                    login: &login,
                    password: &password,
                    marker: &marker,
                };
                apply(info, &session, v, logins, &found, create).await
            })
            .await?;

            progress.set(format!("checking schema public of database {}", v.database));
            let client = target
                .connect(&admin.username, &admin.password, v.database.as_str())
                .await?;
            db::check_public_schema(&client, &v.database, &v.role).await
        })
        .await?;
        Ok(login)
    }

    /// In-place Update: the password this `RotationToken` stands for, decided from what SSM holds,
    /// and the login role it goes to ([`plan_password`]). The version labelled with the token (a
    /// rollback of a rotation, or a duplicate delivery) is restored; a token never seen gets a new
    /// password; a parameter written before labels keeps its password unless the old properties
    /// name another token. A new or restored password goes to the login role not in use, so the
    /// one the running tasks hold keeps working ([`ServiceDatabase::rotate`]). Returns the login
    /// role that holds SSM's latest version (`Data.Username`).
    async fn converge_password(
        &self,
        info: &RequestInfo,
        v: &Validated,
        moved: Moved,
        adopt: &Adoption,
    ) -> Result<Identifier, HandlerError> {
        let logins = v.login_roles()?;
        info.progress
            .set("reading the password parameter and its versions");
        let (plan, history) = self.plan_update(info, v, logins, moved, adopt).await?;
        if !plan.changed && !moved.any() {
            // The login role already holds this password: nothing to do in PostgreSQL.
            self.store_password(info, v, &plan, &history).await?;
            return Ok(plan.login);
        }

        let marker = marker(info, v);
        info.progress.set("reading the admin credential");
        let admin = self.admin.current(&v.admin).await?;
        let target = target(info, v)?;
        let rotation = Rotation {
            info,
            v,
            logins,
            moved,
            marker: &marker,
            adopt,
        };
        let login = within_deadline(info, async {
            let (session, _) = self.admin_session(info, &target, v, admin).await?;
            under_lock(info, &session, v, Some(logins), self.rotate(&session, &rotation)).await
        })
        .await?;
        Ok(login)
    }

    /// The in-place Update's PostgreSQL part, under the lock: planned again (a duplicate delivery
    /// that ran meanwhile has labelled its version, and this one then holds that password instead
    /// of making a third), the roles checked, SSM written first (a failure after it leaves the
    /// parameter ahead of the role, which the next Update, or the rollback, sets again), then the
    /// login role's password set.
    async fn rotate(&self, session: &Session, r: &Rotation<'_>) -> Result<Identifier, Error> {
        let Rotation {
            info,
            v,
            logins,
            moved,
            marker,
            adopt,
        } = *r;
        info.progress
            .set("reading the password parameter and its versions again, under the lock");
        let (plan, history) = self.plan_update(info, v, logins, moved, adopt).await?;
        let roles = session.roles(&logins.all()).await?;
        let row = |name: &Identifier| roles.iter().find(|r| r.name == name.as_str());
        check_role_to_set(row(&logins.owner), &v.role, moved.role, marker, adopt)?;
        let login_row = row(&plan.login);
        if plan.login != logins.owner {
            may_take(login_row, &plan.login, marker, adopt)?;
        }
        self.store_password(info, v, &plan, &history).await?;
        set_password(info, session, logins, &plan, marker, login_row.is_some()).await?;
        if let Some(owner) = row(&logins.owner)
            && owner.can_login
            && !plan.keeps_login(&logins.owner)
        {
            // The owner of a resource made before the login roles, two rotations on: no
            // running task holds its credential any more.
            info.progress
                .set(format!("taking the login of role {} away", logins.owner));
            session.disable_login(&logins.owner).await?;
        }
        Ok(plan.login)
    }

    /// Reads the password parameter and its history ([`ParameterStore::history_of`]), and plans
    /// the Update from them.
    async fn plan_update(
        &self,
        info: &RequestInfo,
        v: &Validated,
        logins: &Logins,
        moved: Moved,
        adopt: &Adoption,
    ) -> Result<(PasswordPlan, ssm_secret::History), Error> {
        let name = &v.password_parameter;
        let stored = match self.password_parameter(name).await {
            Err(Error::ParameterMissing(_)) if moved.parameter => {
                return Err(Error::Unsupported(format!(
                    "PasswordParameterName cannot change in place (to {name}, which does not exist); \
                     give the database a new DatabaseName too, which replaces the resource"
                )));
            }
            other => other?,
        };
        if stored.owner.as_ref() != Some(&Owner::of(info)) && !adopt.allowed() {
            return Err(parameter_not_ours(name, stored.owner, adopt));
        }
        let history = self
            .store
            .history_of(&stored)
            .await
            .map_err(|e| store_error(name, e))?;
        let plan = plan_password(v, logins, &stored, &history, moved.token)?;
        Ok((plan, history))
    }

    /// Puts `plan` in SSM: a new version when it needs one, labelled with the `RotationToken`.
    async fn store_password(
        &self,
        info: &RequestInfo,
        v: &Validated,
        plan: &PasswordPlan,
        history: &ssm_secret::History,
    ) -> Result<(), Error> {
        let name = &v.password_parameter;
        let mut version = plan.version;
        if plan.rewrite {
            info.progress
                .set("storing the password as a new parameter version");
            version = self
                .store
                .put_new_version(name, &plan.value, &v.key_id, Some(&plan.description), history)
                .await
                .map_err(|e| store_error(name, e))?;
        }
        if plan.labelled != Some(version) {
            self.store
                .label(name, version, &v.rotation_label)
                .await
                .map_err(|e| store_error(name, e))?;
        }
        Ok(())
    }

    /// Delete with `OnDelete: Drop`: only what is ours and still belongs to this physical id.
    /// The database first ([`drop_database`]), then the roles ([`drop_roles`]), under the lock;
    /// then the password parameter, which goes with the role.
    async fn drop_all(
        &self,
        info: &RequestInfo,
        v: &Validated,
        physical_id: &str,
        after_failed_create: bool,
    ) -> Result<(), HandlerError> {
        let marker = Marker::new(&info.stack_id, &info.logical_resource_id, physical_id);
        // A RoleName too long for the login roles' suffix never had any.
        let logins = v.logins.as_ref();
        info.progress.set("reading the admin credential");
        let admin = self.admin.current(&v.admin).await?;
        let connected = within_deadline(info, async {
            self.admin_session(info, &target(info, v)?, v, admin).await
        });
        let session = match connected.await {
            Ok((session, _)) => session,
            Err(error) if after_failed_create => {
                // The Create most likely failed for the same reason, before making anything in
                // the cluster; a role it did make is ours and a new Create sets its password.
                tracing::warn!(error = %cfn_custom_resource::error_chain(&error), "cluster unreachable after a failed Create; removing the password parameter only");
                return self.delete_parameter(info, v).await;
            }
            Err(error) => return Err(error.into()),
        };
        let role_gone = within_deadline(
            info,
            under_lock(info, &session, v, logins, async {
                drop_database(info, &session, v, &marker, physical_id).await?;
                drop_roles(info, &session, v, logins, &marker).await
            }),
        )
        .await?;
        if !role_gone {
            tracing::info!(parameter = %v.password_parameter, "the role lives on; its password parameter stays");
            return Ok(());
        }
        self.delete_parameter(info, v).await
    }

    /// Deletes the password parameter if it is ours and still serves this physical id.
    async fn delete_parameter(&self, info: &RequestInfo, v: &Validated) -> Result<(), HandlerError> {
        info.progress.set("deleting the password parameter");
        let name = &v.password_parameter;
        match self.store.get(name).await.map_err(|e| store_error(name, e))? {
            None => return Ok(()),
            Some(stored) if !logins::serves(stored.description.as_deref(), &v.physical_id()) => {
                tracing::info!(parameter = %name, "the password parameter now serves another database; left in place");
                return Ok(());
            }
            Some(_) => {}
        }
        match self
            .store
            .delete_if_owned(name, &Owner::of(info))
            .await
            .map_err(|e| store_error(name, e))?
        {
            DeleteOutcome::Deleted | DeleteOutcome::AlreadyGone => {}
            DeleteOutcome::NotOurs(owner) => {
                tracing::warn!(parameter = %name, ?owner, "password parameter is not ours; left in place")
            }
        }
        Ok(())
    }

    /// The admin's session: with `first`, and when the server refuses it, with the credentials a
    /// rotation in flight may have left the cluster on ([`AdminCredentials::fallbacks`]). Returns
    /// the credential that logged in, for the request's other connections.
    async fn admin_session(
        &self,
        info: &RequestInfo,
        target: &Target,
        v: &Validated,
        first: AdminCredential,
    ) -> Result<(Session, AdminCredential), Error> {
        info.progress.set(format!("connecting to {}:{}", v.host, v.port));
        let mut refused = match target.admin(&first.username, &first.password).await {
            Ok(session) => return Ok((session, first)),
            Err(error) if error.is_rejected_login() => error,
            Err(error) => return Err(error),
        };
        tracing::warn!(credential = %first.origin, "the server refused the admin credential; trying what a rotation in flight may have left");
        let mut tried = vec![first.origin.clone()];
        for candidate in self.admin.fallbacks(&v.admin, &first).await? {
            info.progress.set(format!(
                "connecting to {}:{} with {}",
                v.host, v.port, candidate.origin
            ));
            match target.admin(&candidate.username, &candidate.password).await {
                Ok(session) => {
                    tracing::warn!(credential = %candidate.origin, "logged in with an earlier admin credential: the cluster has not applied the newest one yet");
                    return Ok((session, candidate));
                }
                Err(error) if error.is_rejected_login() => {
                    tried.push(candidate.origin.clone());
                    refused = error;
                }
                Err(error) => return Err(error),
            }
        }
        let Error::Connect { source, .. } = refused else {
            // is_rejected_login holds only for a refused Connect.
            return Err(refused);
        };
        Err(Error::AdminLoginRefused {
            host: v.host.clone(),
            port: v.port,
            tried: tried.join(", "),
            source,
        })
    }

    async fn password_parameter(&self, name: &str) -> Result<StoredParameter, Error> {
        self.store
            .get(name)
            .await
            .map_err(|e| store_error(name, e))?
            .ok_or_else(|| Error::ParameterMissing(name.to_string()))
    }

    /// Gets or creates (`Overwrite=false`) the service's password parameter
    /// ([`ParameterStore::ensure_owned_as`]), and says which login role its password is for: a
    /// new parameter's is for `<RoleName>_a`; an existing one keeps the login role its
    /// description names (a retried Create, a replacement, or a parameter written before the
    /// login roles, whose description names the owner), its description then naming this
    /// physical id. A parameter of somebody else's is refused unless `Adopt`.
    async fn service_password(
        &self,
        v: &Validated,
        logins: &Logins,
        owner: &Owner,
        adopt: &Adoption,
    ) -> Result<(Secret<String>, Identifier), Error> {
        let name = v.password_parameter.as_str();
        let candidate = new_password(v)?;
        let id = v.physical_id();
        let first = logins::description(&logins.a, &id);
        let wanted = Wanted {
            name,
            key_id: &v.key_id,
            description: Some(&first),
            owner,
            label: &v.rotation_label,
        };
        let ensured = self
            .store
            .ensure_owned_as(&wanted, &candidate, adopt.allowed(), |described| {
                let login = logins.named_in(described).unwrap_or(&logins.a);
                Some(logins::description(login, &id))
            })
            .await
            .map_err(|e| match e {
                StoreError::NotOurs { owner, .. } => parameter_not_ours(name, owner, adopt),
                other => store_error(name, other),
            })?;
        let stored = ensured.into_stored();
        let login = logins
            .named_in(stored.description.as_deref())
            .unwrap_or(&logins.a)
            .clone();
        Ok((stored.value, login))
    }
}

/// What [`ServiceDatabase::rotate`] works on.
#[derive(Clone, Copy)]
struct Rotation<'a> {
    info: &'a RequestInfo,
    v: &'a Validated,
    logins: &'a Logins,
    moved: Moved,
    marker: &'a Marker,
    adopt: &'a Adoption,
}

/// Sets the password of `plan`'s login role (`exists`: the role is there already).
async fn set_password(
    info: &RequestInfo,
    session: &Session,
    logins: &Logins,
    plan: &PasswordPlan,
    marker: &Marker,
    exists: bool,
) -> Result<(), Error> {
    info.progress
        .set(format!("setting the password of role {}", plan.login));
    if plan.login == logins.owner {
        // Made before the login roles, and not rotated since: the owner logs in.
        session
            .set_role_password(&logins.owner, &plan.value, marker)
            .await
    } else {
        session
            .set_login(&plan.login, &logins.owner, &plan.value, marker, exists)
            .await
    }
}

/// Drops the database if its comment names this resource *and* this physical id (not after a
/// replacement took it over), ending its sessions first.
async fn drop_database(
    info: &RequestInfo,
    session: &Session,
    v: &Validated,
    marker: &Marker,
    physical_id: &str,
) -> Result<(), Error> {
    let Some(row) = session.database(&v.database).await? else {
        tracing::info!(database = %v.database, "database already gone");
        return Ok(());
    };
    match Marker::parse(row.comment.as_deref()) {
        Some(m) if m.same_resource(marker) && m.physical_resource_id == physical_id => {
            info.progress.set(format!("dropping database {}", v.database));
            let ended = session.terminate_sessions(&v.database).await?;
            tracing::info!(database = %v.database, sessions = ended, "ended sessions; dropping the database");
            session.drop_database(&v.database).await?;
        }
        Some(m) if m.same_resource(marker) => {
            tracing::info!(database = %v.database, now = %m.physical_resource_id, "the database now belongs to the replacement; left in place");
        }
        _ => {
            tracing::warn!(database = %v.database, owner = %row.owner, "database is not ours; left in place");
        }
    }
    Ok(())
}

/// Drops the owner role and its login roles if the owner is ours and owns no database any more;
/// a login role that is not ours is left. Returns whether the owner role is gone (the password
/// parameter holds its password, and goes with it).
async fn drop_roles(
    info: &RequestInfo,
    session: &Session,
    v: &Validated,
    logins: Option<&Logins>,
    marker: &Marker,
) -> Result<bool, Error> {
    let mut names = vec![&v.role];
    if let Some(logins) = logins {
        names.extend([&logins.a, &logins.b]);
    }
    let roles = session.roles(&names).await?;
    let owner = roles.iter().find(|r| r.name == v.role.as_str());
    match owner {
        None => tracing::info!(role = %v.role, "role already gone"),
        Some(row) if !marker.claims(row.comment.as_deref()) => {
            tracing::warn!(role = %v.role, "role is not ours; left in place");
            return Ok(false);
        }
        Some(row) if !row.owned_databases.is_empty() => {
            tracing::info!(role = %v.role, databases = ?row.owned_databases, "role still owns databases; it and its login roles are left in place");
            return Ok(false);
        }
        Some(_) => {}
    }
    // The login roles first: they go with their owner, when they are ours.
    for login in roles.iter().filter(|r| r.name != v.role.as_str()) {
        if marker.claims(login.comment.as_deref()) {
            info.progress.set(format!("dropping role {}", login.name));
            session.drop_role_named(&login.name).await?;
        } else {
            tracing::warn!(role = %login.name, "login role is not ours; left in place");
        }
    }
    if owner.is_some() {
        info.progress.set(format!("dropping role {}", v.role));
        session.drop_role(&v.role).await?;
    }
    Ok(true)
}

/// Runs `work` holding the advisory locks on the database's and the roles' names: requests for
/// the same names (a duplicate delivery, a replacement and its rollback) take turns, so each
/// decides from what the one before it left.
async fn under_lock<T>(
    info: &RequestInfo,
    session: &Session,
    v: &Validated,
    logins: Option<&Logins>,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    info.progress
        .set(format!("waiting for the lock on database {}", v.database));
    let mut keys = vec![
        db::lock_key("database", &v.database),
        db::lock_key("role", &v.role),
    ];
    if let Some(logins) = logins {
        keys.extend([&logins.a, &logins.b].map(|login| db::lock_key("role", login)));
    }
    session.lock(keys).await?;
    let outcome = work.await;
    session.unlock().await;
    outcome
}

/// The roles and database a Create found, once [`inspect`] has let it change them.
#[derive(Debug)]
struct Found {
    owner: Option<RoleRow>,
    /// The login role the password goes to (`None` when absent, or when it is the owner).
    login: Option<RoleRow>,
    database: Option<DatabaseRow>,
}

/// Decides, before anything is touched, whether this resource may change what the cluster holds
/// under its names: absent, marked as ours, or (with `Adopt` allowed) anybody's but a superuser.
/// What is not ours fails the request naming it, and what `Adopt` could do about it.
fn inspect(
    roles: Vec<RoleRow>,
    database: Option<DatabaseRow>,
    v: &Validated,
    logins: &Logins,
    login: &Identifier,
    marker: &Marker,
    adopt: &Adoption,
) -> Result<Found, Error> {
    let mut owner = None;
    let mut login_row = None;
    for row in roles {
        let name = if row.name == logins.owner.as_str() {
            &logins.owner
        } else if row.name == login.as_str() {
            login
        } else {
            continue;
        };
        may_take(Some(&row), name, marker, adopt)?;
        if *name == logins.owner {
            owner = Some(row);
        } else {
            login_row = Some(row);
        }
    }
    let owner_is_ours = owner
        .as_ref()
        .is_some_and(|row| marker.claims(row.comment.as_deref()));
    let database_is_ours = match &database {
        None => true,
        Some(row) => match Marker::parse(row.comment.as_deref()) {
            Some(m) => m.same_resource(marker),
            // Created by us, then interrupted before the comment: owned by our own role.
            None => row.comment.is_none() && owner_is_ours && row.owner == v.role.as_str(),
        },
    };
    if let Some(row) = &database
        && !database_is_ours
        && !adopt.allowed()
    {
        return Err(Error::DatabaseNotOurs {
            database: v.database.to_string(),
            owner: row.owner.clone(),
            found: describe_comment(row.comment.as_deref()),
            adopt: adopt.clone(),
        });
    }
    Ok(Found {
        owner,
        login: login_row,
        database,
    })
}

/// What a Create sets on the cluster: the login role that logs in, with the parameter's
/// password, marked as this resource's.
#[derive(Clone, Copy)]
struct Apply<'a> {
    login: &'a Identifier,
    password: &'a Secret<String>,
    marker: &'a Marker,
}

/// Makes the cluster match: the owner role (`NOLOGIN`), granted to the admin; the login role
/// with the parameter's password, acting as the owner ([`apply_roles`]); the database owned by
/// the owner; PUBLIC shut out. Each step is idempotent, so a retried Create (or a replacement
/// onto names it already holds) only sets what differs.
async fn apply(
    info: &RequestInfo,
    session: &Session,
    v: &Validated,
    logins: &Logins,
    found: &Found,
    create: Apply<'_>,
) -> Result<(), Error> {
    let progress = &info.progress;
    let owner = &logins.owner;
    apply_roles(info, session, logins, found, create).await?;
    progress.set(format!("granting role {owner} to the admin user"));
    session.grant_role_to_admin(owner).await?;
    match &found.database {
        None => {
            progress.set(format!("creating database {}", v.database));
            session.create_database(&v.database, owner).await?;
        }
        Some(row) if row.owner != owner.as_str() => {
            progress.set(format!(
                "making role {owner} the owner of database {}",
                v.database
            ));
            session.set_database_owner(&v.database, owner).await?;
        }
        Some(_) => {}
    }
    progress.set(format!("revoking PUBLIC's access to database {}", v.database));
    session.isolate_database(&v.database, create.marker).await
}

/// The owner role and the login role of a Create. A parameter written before the login roles
/// names the owner as the one that logs in: it keeps doing so. Otherwise the owner is made (or an
/// adopted one marked ours, its login taken away) and the login role set.
async fn apply_roles(
    info: &RequestInfo,
    session: &Session,
    logins: &Logins,
    found: &Found,
    create: Apply<'_>,
) -> Result<(), Error> {
    let progress = &info.progress;
    let Apply {
        login,
        password,
        marker,
    } = create;
    let owner = &logins.owner;
    if *login == *owner {
        if found.owner.is_none() {
            progress.set(format!("creating role {owner}"));
            return session.create_role(owner, password, marker).await;
        }
        progress.set(format!("setting the password of role {owner}"));
        return session.set_role_password(owner, password, marker).await;
    }
    match &found.owner {
        None => {
            progress.set(format!("creating role {owner}"));
            session.create_owner(owner, marker).await?;
        }
        Some(row) if !marker.claims(row.comment.as_deref()) => {
            // Adopted: marked ours, and nobody logs in as it with a password this resource
            // does not hold; the service logs in through the login roles.
            progress.set(format!("marking role {owner} as this resource's"));
            session.mark_role(owner, marker).await?;
            if row.can_login {
                progress.set(format!("taking the login of role {owner} away"));
                session.disable_login(owner).await?;
            }
        }
        Some(_) => {}
    }
    progress.set(format!("setting the password of role {login}"));
    session
        .set_login(login, owner, password, marker, found.login.is_some())
        .await
}

/// The password an in-place Update holds, the login role it goes to, and what SSM needs to hold
/// it.
struct PasswordPlan {
    value: Secret<String>,
    /// Not the parameter's latest value: a login role's password changes too.
    changed: bool,
    /// The login role that holds `value` once the Update is done (`Data.Username`).
    login: Identifier,
    /// The login role the running tasks may still hold, which keeps its login: the one whose
    /// password was the latest before this one.
    previous: Option<Identifier>,
    /// A new parameter version is needed (another value, login role, key or description).
    rewrite: bool,
    /// The parameter's latest version, labelled unless `rewrite` makes a newer one.
    version: i64,
    /// The version the `RotationToken`'s label is on, if any.
    labelled: Option<i64>,
    description: String,
}

impl PasswordPlan {
    /// Whether `role` holds a credential a running task may hold, once the Update is done.
    fn keeps_login(&self, role: &Identifier) -> bool {
        self.login == *role || self.previous.as_ref() == Some(role)
    }
}

/// The password this `RotationToken` stands for ([`ssm_secret::History::choose`]): the version
/// labelled with it (a rollback, or a duplicate delivery); a new one for a token never seen (or a
/// changed token on a parameter written before labels); else the parameter's. And the login role
/// for it: the current one (the latest version's) when the password stays; otherwise the one not
/// in use, so that the running tasks' credential keeps working: the restored version's own login
/// role when that is not the current one (a rollback flips back), else the other of the pair.
fn plan_password(
    v: &Validated,
    logins: &Logins,
    stored: &StoredParameter,
    history: &ssm_secret::History,
    token_changed: bool,
) -> Result<PasswordPlan, Error> {
    let name = &v.password_parameter;
    let (value, restored) = match history.choose(&v.rotation_label, token_changed) {
        ssm_secret::Choice::Restore(version) => {
            tracing::info!(parameter = %name, version = version.version, "RotationToken seen before: its password is the one to hold");
            (version.value.clone(), Some(version))
        }
        ssm_secret::Choice::Rotate => {
            tracing::info!(parameter = %name, "new RotationToken: rotating the password");
            (new_password(v)?, None)
        }
        ssm_secret::Choice::Keep => (stored.value.clone(), None),
    };
    let changed = value != stored.value;
    let (login, previous) = choose_login(logins, stored, history, restored, changed);
    let description = logins::description(&login, &v.physical_id());
    let rewrite = changed
        || stored.key_id.as_deref() != Some(v.key_id.as_str())
        || stored.description.as_deref() != Some(description.as_str());
    Ok(PasswordPlan {
        value,
        changed,
        login,
        previous,
        rewrite,
        version: stored.version,
        labelled: restored.map(|l| l.version),
        description,
    })
}

/// The login role of [`plan_password`]'s password, and the one the running tasks may still
/// hold: a `changed` password goes to the login role not in use (the `restored` version's own,
/// when that is not the current one: a rollback flips back); an unchanged one stays on the
/// current login role, the previous being the latest other one the history names.
fn choose_login(
    logins: &Logins,
    stored: &StoredParameter,
    history: &ssm_secret::History,
    restored: Option<&ssm_secret::Version>,
    changed: bool,
) -> (Identifier, Option<Identifier>) {
    // Written before the login roles (or by hand): the owner is the one that logs in.
    let current = logins
        .named_in(stored.description.as_deref())
        .unwrap_or(&logins.owner)
        .clone();
    if changed {
        let own = restored
            .and_then(|version| logins.named_in(version.description.as_deref()))
            .filter(|login| **login != current);
        let login = own.unwrap_or_else(|| logins.other(&current)).clone();
        return (login, Some(current));
    }
    let previous = history
        .versions
        .iter()
        .rev()
        .filter_map(|version| logins.named_in(version.description.as_deref()))
        .find(|login| **login != current)
        .cloned();
    (current, previous)
}

/// An in-place Update sets passwords of its own roles only, and never makes the owner: an owner
/// role that is missing or not ours fails the request, saying what to do.
fn check_role_to_set(
    role: Option<&RoleRow>,
    name: &Identifier,
    role_moved: bool,
    marker: &Marker,
    adopt: &Adoption,
) -> Result<(), Error> {
    match role {
        None if role_moved => Err(Error::Unsupported(format!(
            "RoleName cannot change in place (to {name}, which does not exist); give the \
             database a new DatabaseName too, which replaces the resource"
        ))),
        None => Err(Error::Unsupported(format!(
            "role {name} does not exist; cannot set its password"
        ))),
        Some(row) if !marker.claims(row.comment.as_deref()) => Err(Error::RoleNotOurs {
            role: name.to_string(),
            found: describe_comment(row.comment.as_deref()),
            adopt: adopt.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// Whether this resource may change role `name` (a Create's owner or login role, an Update's
/// login role): absent (made now), ours, or with `Adopt` allowed anybody's; never a superuser.
fn may_take(
    role: Option<&RoleRow>,
    name: &Identifier,
    marker: &Marker,
    adopt: &Adoption,
) -> Result<(), Error> {
    match role {
        None => Ok(()),
        Some(row) if row.superuser => Err(Error::RoleIsSuperuser {
            role: name.to_string(),
        }),
        Some(row) if !marker.claims(row.comment.as_deref()) && !adopt.allowed() => Err(Error::RoleNotOurs {
            role: name.to_string(),
            found: describe_comment(row.comment.as_deref()),
            adopt: adopt.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// A new service password under `PasswordLength`, from the OS CSPRNG.
fn new_password(v: &Validated) -> Result<Secret<String>, Error> {
    ssm_secret::generate_os(&v.password_policy).map_err(Error::Password)
}

fn store_error(name: &str, error: StoreError) -> Error {
    Error::Store {
        name: name.to_string(),
        source: Box::new(error),
    }
}

/// The password parameter `name` is not ours (its tags name `owner`, or no one).
fn parameter_not_ours(name: &str, owner: Option<Owner>, adopt: &Adoption) -> Error {
    Error::ParameterNotOurs {
        name: name.to_string(),
        owner: owner.map_or_else(|| "no owner tags".to_string(), |o| o.describe()),
        adopt: adopt.clone(),
    }
}

/// How long before the deadline watchdog a request's PostgreSQL phase must be over: time to close
/// its connections and answer FAILED saying which step ran out of time.
const PHASE_MARGIN: Duration = Duration::from_secs(1);

/// How long before the watchdog PostgreSQL's own timeouts end a statement or lock wait: after the
/// phase's bound (which names the step), as a backstop for the server's side.
const SERVER_MARGIN: Duration = Duration::from_millis(500);

/// Bounds a PostgreSQL phase (connect, lock waits, statements) as a whole: each statement's own
/// timeout cannot stop a chain of them adding up past the deadline watchdog. When time is up,
/// `work` is dropped, which closes its connections (their tasks are aborted; the server ends
/// what they ran, see [`db::Target::give_up_at`]), and the error names the step it was in.
async fn within_deadline<T>(
    info: &RequestInfo,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let until = info
        .watchdog_at
        .checked_sub(PHASE_MARGIN)
        .unwrap_or(info.watchdog_at);
    match tokio::time::timeout_at(until, work).await {
        Ok(outcome) => outcome,
        Err(_) => {
            let doing = info.progress.get();
            tracing::warn!(step = %doing, "out of time in PostgreSQL; its connections are closed");
            Err(Error::Deadline { doing })
        }
    }
}

/// What the cluster is and how to reach it.
fn target(info: &RequestInfo, v: &Validated) -> Result<Target, Error> {
    Ok(Target {
        host: v.host.clone(),
        port: v.port,
        timeout: v.connect_timeout,
        transport: tls::transport(v.tls_mode, v.ca_certificate.as_deref())?,
        give_up_at: info
            .watchdog_at
            .checked_sub(SERVER_MARGIN)
            .unwrap_or(info.watchdog_at),
    })
}

/// The marker this request puts on (and looks for in) the roles' and the database's comments.
fn marker(info: &RequestInfo, v: &Validated) -> Marker {
    Marker::new(&info.stack_id, &info.logical_resource_id, &v.physical_id())
}

fn physical_id(v: &Validated) -> Result<PhysicalId, Error> {
    PhysicalId::new(v.physical_id()).map_err(|e| Error::Property {
        name: "ClusterEndpoint",
        reason: e.to_string(),
    })
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
fn data(v: &Validated, login: &Identifier) -> Data {
    let mut data = Data::new();
    data.insert("DatabaseName".into(), v.database.to_string());
    data.insert("Username".into(), login.to_string());
    data.insert("PasswordParameterName".into(), v.password_parameter.clone());
    data.insert("Host".into(), v.host.clone());
    data.insert("Port".into(), v.port.to_string());
    data.insert(
        "JdbcUrl".into(),
        format!(
            "jdbc:postgresql://{}:{}/{}?sslmode={}",
            v.host,
            v.port,
            v.database,
            v.tls_mode.as_str()
        ),
    );
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Role `orders` of database `orders` on `db.example.com:5432`, rotated to `token`.
    fn validated_for(token: &str) -> Validated {
        let p: Properties = serde_json::from_value(serde_json::json!({
            "ClusterEndpoint": "db.example.com", "AdminUsername": "postgres",
            "AdminPasswordParameterName": "/admin", "DatabaseName": "orders",
            "PasswordParameterName": "/orders", "KeyId": "alias/orders", "RotationToken": token,
        }))
        .unwrap();
        p.validate().unwrap()
    }

    fn validated() -> Validated {
        validated_for("r0")
    }

    fn ours() -> Marker {
        Marker::new("arn:stack/a", "Db", "db.example.com:5432/orders")
    }

    fn comment(marker: &Marker) -> Option<String> {
        Some(serde_json::to_string(marker).unwrap())
    }

    fn role(name: &str, comment: Option<String>) -> RoleRow {
        RoleRow {
            name: name.into(),
            comment,
            superuser: false,
            can_login: true,
            owned_databases: vec![],
        }
    }

    fn database(owner: &str, comment: Option<String>) -> Option<DatabaseRow> {
        Some(DatabaseRow {
            owner: owner.into(),
            comment,
        })
    }

    /// [`inspect`] for role `orders` logging in as `orders_a`.
    fn check(roles: Vec<RoleRow>, database: Option<DatabaseRow>, adopt: &Adoption) -> Result<Found, Error> {
        let v = validated();
        let logins = Logins::of(&v.role).unwrap();
        inspect(roles, database, &v, &logins, &logins.a, &ours(), adopt)
    }

    #[test]
    fn absent_or_ours_may_be_changed() {
        let m = ours();
        assert!(check(vec![], None, &Adoption::NotAsked).is_ok());
        let found = check(
            vec![
                role("orders", comment(&m)),
                role("orders_a", comment(&m)),
                role("orders_b", None),
            ],
            database("orders", comment(&m)),
            &Adoption::NotAsked,
        )
        .unwrap();
        assert!(found.owner.is_some() && found.login.is_some() && found.database.is_some());
        // Made by us, interrupted before its comment: owned by our role, no comment.
        assert!(
            check(
                vec![role("orders", comment(&m))],
                database("orders", None),
                &Adoption::NotAsked
            )
            .is_ok()
        );
    }

    #[test]
    fn another_resources_role_or_database_is_refused_naming_adopt() {
        let theirs = Marker::new("arn:stack/b", "Db", "db.example.com:5432/orders");
        let refused = Adoption::Refused("the function's CFN_ALLOW_ADOPT setting is off".into());
        let error = check(vec![role("orders", comment(&theirs))], None, &refused).unwrap_err();
        assert!(matches!(error, Error::RoleNotOurs { .. }), "{error}");
        assert!(error.to_string().contains("CFN_ALLOW_ADOPT"), "{error}");
        // The login role's name taken by another resource's role.
        let error = check(
            vec![role("orders_a", comment(&theirs))],
            None,
            &Adoption::NotAsked,
        )
        .unwrap_err();
        assert!(
            matches!(&error, Error::RoleNotOurs { role, .. } if role == "orders_a"),
            "{error}"
        );
        let error = check(vec![], database("someone", None), &Adoption::NotAsked).unwrap_err();
        assert!(matches!(error, Error::DatabaseNotOurs { .. }), "{error}");
        assert!(
            error.to_string().ends_with("or set Adopt to take it over"),
            "{error}"
        );
        assert!(
            check(
                vec![role("orders", comment(&theirs))],
                database("someone", None),
                &Adoption::Allowed
            )
            .is_ok()
        );
    }

    #[test]
    fn a_superuser_is_never_taken() {
        let m = ours();
        for name in ["orders", "orders_a"] {
            let superuser = RoleRow {
                superuser: true,
                ..role(name, comment(&m))
            };
            let error = check(vec![superuser], None, &Adoption::Allowed).unwrap_err();
            let reason = error.to_string();
            assert!(
                reason.contains(&format!("role {name} ")) && reason.contains("is a superuser"),
                "{reason}"
            );
            assert!(reason.contains("Adopt cannot take it over"), "{reason}");
            assert!(!reason.contains("set Adopt"), "Adopt would not help: {reason}");
        }
    }

    /// Plans an Update to `token` on a parameter whose versions are `(login, token)`, oldest first.
    fn plan(versions: &[(&str, &str)], token: &str) -> PasswordPlan {
        let v = validated_for(token);
        let logins = Logins::of(&v.role).unwrap();
        let named = |login: &str| Identifier::new(login).unwrap();
        let history = ssm_secret::History {
            versions: versions
                .iter()
                .zip(1..)
                .map(|((login, token), version)| ssm_secret::Version {
                    version,
                    value: Secret::new(format!("p{version}")),
                    labels: vec![ssm_secret::rotation_label(Some(token))],
                    description: Some(logins::description(&named(login), &v.physical_id())),
                })
                .collect(),
            created_for: None,
        };
        let latest = history.versions.last().unwrap();
        let stored = StoredParameter {
            name: "/orders".into(),
            arn: "arn:aws:ssm:eu-west-1:1:parameter/orders".into(),
            version: latest.version,
            value: latest.value.clone(),
            key_id: Some("alias/orders".into()),
            owner: None,
            created_for: None,
            description: latest.description.clone(),
        };
        plan_password(&v, &logins, &stored, &history, true).unwrap()
    }

    fn logins_of(plan: &PasswordPlan) -> (&str, Option<&str>) {
        (
            plan.login.as_str(),
            plan.previous.as_ref().map(Identifier::as_str),
        )
    }

    #[test]
    fn a_rotation_goes_to_the_login_role_not_in_use() {
        let p = plan(&[("orders_a", "r1")], "r2");
        assert!(p.changed && p.rewrite);
        assert_eq!(logins_of(&p), ("orders_b", Some("orders_a")));
        assert!(
            p.description.contains("role orders_b for database"),
            "{}",
            p.description
        );
        let p = plan(&[("orders_a", "r1"), ("orders_b", "r2")], "r3");
        assert_eq!(logins_of(&p), ("orders_a", Some("orders_b")));
    }

    #[test]
    fn a_rollback_flips_back_and_a_duplicate_stays() {
        // Rollback of r2: r1's password, on r1's login role, which still holds it.
        let p = plan(&[("orders_a", "r1"), ("orders_b", "r2")], "r1");
        assert!(p.changed);
        assert_eq!(p.value.expose(), "p1");
        assert_eq!(logins_of(&p), ("orders_a", Some("orders_b")));
        // A duplicate of r2, done: nothing changes, and orders_a stays the previous one.
        let p = plan(&[("orders_a", "r1"), ("orders_b", "r2")], "r2");
        assert!(!p.changed && !p.rewrite);
        assert_eq!(logins_of(&p), ("orders_b", Some("orders_a")));
        // Back to r1 from r3 (orders_a again): orders_a holds r3's, which the tasks hold, so r1's
        // password goes to orders_b.
        let p = plan(
            &[("orders_a", "r1"), ("orders_b", "r2"), ("orders_a", "r3")],
            "r1",
        );
        assert_eq!(p.value.expose(), "p1");
        assert_eq!(logins_of(&p), ("orders_b", Some("orders_a")));
    }

    #[test]
    fn a_resource_made_before_the_login_roles_moves_to_the_pair() {
        // The owner logs in; its first rotation goes to orders_a, the owner stays the previous.
        let p = plan(&[("orders", "r1")], "r2");
        assert_eq!(logins_of(&p), ("orders_a", Some("orders")));
        assert!(p.keeps_login(&Identifier::new("orders").unwrap()));
        // Its rollback gives the owner its password back.
        let p = plan(&[("orders", "r1"), ("orders_a", "r2")], "r1");
        assert_eq!(logins_of(&p), ("orders", Some("orders_a")));
        // A duplicate of the first rotation keeps the owner's login.
        let p = plan(&[("orders", "r1"), ("orders_a", "r2")], "r2");
        assert!(!p.changed);
        assert!(p.keeps_login(&Identifier::new("orders").unwrap()));
        // The second rotation: no task holds the owner's credential any more.
        let p = plan(&[("orders", "r1"), ("orders_a", "r2")], "r3");
        assert_eq!(logins_of(&p), ("orders_b", Some("orders_a")));
        assert!(!p.keeps_login(&Identifier::new("orders").unwrap()));
    }
}
