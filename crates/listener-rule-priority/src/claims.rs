//! Priority claims: one SSM String parameter per claimed priority, created with
//! `Overwrite=false`, so exactly one writer can create a given name.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::error::SdkError;
use aws_sdk_ssm::operation::put_parameter::{PutParameterError, PutParameterOutput};
use aws_sdk_ssm::types::ParameterType;

use crate::allocation::Priorities;
use crate::error::Error;

/// Where every listener's claims live.
pub const CLAIM_ROOT: &str = "/custom-resource/listener-rule-priority";

/// The folder under the claim root that holds hints and reservations (listener ids start with
/// `app/` or `net/`, so it never meets a listener's claim path).
pub const STATE_DIR: &str = "_state";

/// Who holds a claim: the parameter's value is the owner's `<stack id>|<logical resource id>`.
pub use cfn_custom_resource::Owner;

/// The holder a claim's value names. A value without a `|` (not written by this Lambda) still
/// holds its priority: it reads as a stack id alone, which is what the stale check looks up.
fn holder(value: &str) -> Owner {
    Owner::parse(value).unwrap_or_else(|| Owner::new(value, ""))
}

/// One claim as listed: who holds it, when it was written (epoch seconds) and the parameter
/// version that was read (what [`ListenerClaims::reclaim`] compares against).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Who the claim's value names.
    pub owner: Owner,
    /// When the parameter was last written (epoch seconds), if SSM said.
    pub written: Option<i64>,
    /// The parameter version read.
    pub version: i64,
}

/// The claims of one listener, under `<CLAIM_ROOT>/<listener id part>/`.
#[derive(Debug, Clone)]
pub struct ListenerClaims {
    path: String,
    /// `<root>/_state/<listener id>`: the hint and the reservations, kept off the claim level so
    /// nothing that lists claims mistakes them for one.
    state: String,
    listener_arn: String,
}

/// How one attempt to claim a priority ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// The claim is ours now.
    Won,
    /// Someone else holds it.
    Lost,
}

impl ListenerClaims {
    /// The claim path of a listener: its ARN's resource part after `listener/`
    /// (`app/<name>/<lb id>/<listener id>`), with anything SSM does not allow in a name replaced
    /// by `_`, under [`CLAIM_ROOT`]. The caller has validated the ARN.
    pub fn new(listener_arn: &str) -> Self {
        Self::under(CLAIM_ROOT, listener_arn)
    }

    /// Like [`ListenerClaims::new`], under another root (the support stack's `PriorityClaimPath`).
    pub fn under(root: &str, listener_arn: &str) -> Self {
        let id = listener_arn
            .split_once(":listener/")
            .map_or(listener_arn, |(_, id)| id);
        let safe: String = id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "_.-/".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let safe = safe
            .split('/')
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        let root = root.trim_end_matches('/');
        Self {
            path: format!("{root}/{safe}"),
            state: format!("{root}/{STATE_DIR}/{safe}"),
            listener_arn: listener_arn.to_string(),
        }
    }

    /// The SSM path the listener's claims live under.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The parameter that claims `priority`.
    pub fn name(&self, priority: u32) -> String {
        format!("{}/{priority}", self.path)
    }

    /// Every claim on the listener with when it was written, over all pages. Only the listener's
    /// own level is read (`Recursive=false`) and only names ending in a number count.
    pub async fn read_with_age(&self, ssm: &Client) -> Result<BTreeMap<u32, Claim>, Error> {
        let mut claims = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let page = ssm
                .get_parameters_by_path()
                .path(&self.path)
                .recursive(false)
                .max_results(10)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| Error::ReadClaims {
                    path: self.path.clone(),
                    source: e.into(),
                })?;
            for parameter in page.parameters() {
                let priority = parameter
                    .name()
                    .and_then(|n| n.rsplit('/').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if let (Some(priority), Some(value)) = (priority, parameter.value()) {
                    let written = parameter.last_modified_date().map(|d| d.secs());
                    claims.insert(
                        priority,
                        Claim {
                            owner: holder(value),
                            written,
                            version: parameter.version(),
                        },
                    );
                }
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(claims)
    }

    /// Takes over a claim that [`ListenerClaims::read_with_age`] found stale (`stale`, read at
    /// `stale.version`) for `owner`, without ever deleting it: SSM has no conditional delete, so
    /// a delete could drop a claim someone re-made a moment before.
    ///
    /// The claim is overwritten (`Overwrite=true`) and the version SSM answers with serves as a
    /// compare-and-swap: every write to a parameter gets the next version, so of all reclaimers
    /// that read the stale value at version `v`, exactly one writes version `v + 1`. That one
    /// wins, after checking that version `v` still holds the stale value (a claim deleted and
    /// re-created meanwhile starts again at version 1). A writer of a later version lost: it
    /// reads who won (version `v + 1`, or version 1 of a re-created claim) and, if the latest
    /// value is still its own, writes the winner's value back, so the claim ends naming the
    /// winner; a loser whose write was already overwritten leaves the restoring to the writer of
    /// the latest version, which does the same.
    pub async fn reclaim(
        &self,
        ssm: &Client,
        priority: u32,
        stale: &Claim,
        owner: &Owner,
    ) -> Result<Claimed, Error> {
        let name = self.name(priority);
        let fail = |e: SdkError<PutParameterError>| Error::Claim {
            priority,
            name: name.clone(),
            source: e.into(),
        };
        let written = overwrite(ssm, &name, owner.to_string())
            .await
            .map_err(fail)?
            .version();
        if written == 1 {
            // The claim was gone and this write created it: a create-if-absent claim made after
            // it fails, and a later reclaimer sees our value where it expected the stale one.
            return Ok(Claimed::Won);
        }
        let before = self.value_at(ssm, priority, stale.version).await?;
        let same_history = before.as_ref() == Some(&stale.owner);
        if written == stale.version + 1 && same_history {
            return Ok(Claimed::Won);
        }
        let winner = match same_history {
            true => self.value_at(ssm, priority, stale.version + 1).await?,
            false => self.value_at(ssm, priority, 1).await?,
        };
        tracing::info!(
            priority,
            read_version = stale.version,
            written_version = written,
            winner = winner.as_ref().map(ToString::to_string),
            "another request took over the stale claim first"
        );
        match winner {
            Some(winner) if winner != *owner => {
                if self.owner(ssm, priority).await?.as_ref() == Some(owner) {
                    overwrite(ssm, &name, winner.to_string()).await.map_err(fail)?;
                    tracing::info!(
                        priority,
                        winner = %winner,
                        "gave the claim back to its winner"
                    );
                }
            }
            // A duplicate of this request won (same value): nothing to restore, but the claim
            // is the winner's, not this request's, to answer with and to release.
            Some(_) => {}
            None => tracing::warn!(priority, "cannot tell who took over the stale claim; left as is"),
        }
        Ok(Claimed::Lost)
    }

    /// The value of the claim on `priority` at parameter version `version`, if that version
    /// exists.
    async fn value_at(&self, ssm: &Client, priority: u32, version: i64) -> Result<Option<Owner>, Error> {
        let name = self.name(priority);
        match ssm.get_parameter().name(format!("{name}:{version}")).send().await {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(holder)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_parameter_not_found() || s.is_parameter_version_not_found()) =>
            {
                Ok(None)
            }
            Err(e) => Err(Error::Claim {
                priority,
                name,
                source: e.into(),
            }),
        }
    }

    /// Tries to create the claim on `priority` for `owner`. Only one caller can ever create a given
    /// name (`Overwrite=false`); everyone else hears `ParameterAlreadyExists`.
    pub async fn claim(&self, ssm: &Client, priority: u32, owner: &Owner) -> Result<Claimed, Error> {
        let name = self.name(priority);
        let mut description = format!(
            "Priority {priority} of listener {} is claimed by a Custom::ListenerRulePriority; the value names its stack and logical id",
            self.listener_arn
        );
        description.truncate(description.floor_char_boundary(1024));
        let put = ssm
            .put_parameter()
            .name(&name)
            .value(owner.to_string())
            .r#type(ParameterType::String)
            .overwrite(false)
            .description(description)
            .send()
            .await;
        let e = match put {
            Ok(_) => return Ok(Claimed::Won),
            Err(e) => e,
        };
        match e.as_service_error() {
            Some(service) if service.is_parameter_already_exists() => {
                // Ours when it names this resource: written by an earlier attempt of this
                // request that was killed (or whose answer was lost, and the SDK retried), or by
                // a duplicate delivery running at the same moment. Taking it for someone else's
                // would leak it: no answer of ours would ever name it.
                match self.owner(ssm, priority).await? {
                    Some(holder) if holder == *owner => {
                        tracing::info!(
                            priority,
                            "the claim already names this resource (an earlier attempt wrote it)"
                        );
                        Ok(Claimed::Won)
                    }
                    _ => Ok(Claimed::Lost),
                }
            }
            Some(service) if service.is_too_many_updates() => {
                // Someone is writing the same name right now: whoever's value is there won.
                tokio::time::sleep(Duration::from_millis(200)).await;
                match self.owner(ssm, priority).await? {
                    Some(holder) if holder == *owner => Ok(Claimed::Won),
                    _ => Ok(Claimed::Lost),
                }
            }
            _ => Err(Error::Claim {
                priority,
                name,
                source: e.into(),
            }),
        }
    }

    /// The owner of the claim on `priority`, if there is one.
    pub async fn owner(&self, ssm: &Client, priority: u32) -> Result<Option<Owner>, Error> {
        let name = self.name(priority);
        match ssm.get_parameter().name(&name).send().await {
            Ok(out) => Ok(out.parameter().and_then(|p| p.value()).map(holder)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
            Err(e) => Err(Error::Claim {
                priority,
                name,
                source: e.into(),
            }),
        }
    }

    /// Releases the claim on `priority` if `owner` holds it; a claim that is gone, or that someone
    /// else holds, is left alone. Returns whether a claim was deleted.
    pub async fn release(&self, ssm: &Client, priority: u32, owner: &Owner) -> Result<bool, Error> {
        let name = self.name(priority);
        match self.owner(ssm, priority).await {
            Ok(None) => return Ok(false),
            Ok(Some(holder)) if holder != *owner => {
                tracing::warn!(priority, claim = %name, %holder, "the claim belongs to another resource; left alone");
                return Ok(false);
            }
            Ok(Some(_)) => {}
            Err(Error::Claim { source, .. }) => {
                return Err(Error::Release {
                    priority,
                    name,
                    source,
                });
            }
            Err(other) => return Err(other),
        }
        match ssm.delete_parameter().name(&name).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(false),
            Err(e) => Err(Error::Release {
                priority,
                name,
                source: e.into(),
            }),
        }
    }
}

/// What the state parameters of a listener say for one request (read together, one call).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The highest priority claimed lately on the listener, as the last writers left it.
    pub hint: Option<u32>,
    /// The priorities a resource (stack and logical id) was answered with, if it was.
    pub reservation: Option<Reservation>,
}

/// A resource's reservation: `<p1>,<p2>,...|<owner>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The priorities the resource was answered with.
    pub priorities: Priorities,
    /// The resource.
    pub owner: Owner,
}

impl Reservation {
    fn value(&self) -> String {
        format!("{}|{}", self.priorities, self.owner)
    }

    fn parse(value: &str) -> Option<Self> {
        let (list, owner) = value.split_once('|')?;
        Some(Self {
            priorities: Priorities::parse(list)?,
            owner: Owner::parse(owner)?,
        })
    }
}

/// How writing a reservation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// Ours is the one.
    Won,
    /// Another request for the same resource wrote first; this is what it holds.
    Lost(Option<Reservation>),
}

/// A short, stable, SSM-safe key for a stack and logical id: FNV-1a, 64 bits, of the owner.
fn key(owner: &Owner) -> String {
    let hash = cfn_custom_resource::fnv1a_64(owner.to_string().bytes());
    format!("r-{hash:016x}")
}

impl ListenerClaims {
    /// The listener's hint parameter.
    pub fn hint_name(&self) -> String {
        format!("{}/hint", self.state)
    }

    /// The reservation parameter of a resource.
    pub fn reservation_name(&self, owner: &Owner) -> String {
        format!("{}/reservation/{}", self.state, key(owner))
    }

    fn state_error(name: String, e: impl std::error::Error + Send + Sync + 'static) -> Error {
        Error::State {
            name,
            source: Box::new(e),
        }
    }

    /// The hint and `owner`'s reservation, in one `GetParameters`.
    pub async fn state(&self, ssm: &Client, owner: &Owner) -> Result<State, Error> {
        let (hint, reservation) = (self.hint_name(), self.reservation_name(owner));
        let out = ssm
            .get_parameters()
            .names(&hint)
            .names(&reservation)
            .send()
            .await
            .map_err(|e| Self::state_error(format!("{hint} / {reservation}"), e))?;
        let mut state = State::default();
        for parameter in out.parameters() {
            let (Some(name), Some(value)) = (parameter.name(), parameter.value()) else {
                continue;
            };
            if name == hint {
                state.hint = value.trim().parse().ok();
            } else if name == reservation {
                state.reservation = Reservation::parse(value).filter(|r| r.owner == *owner);
            }
        }
        Ok(state)
    }

    /// Sets the hint; best effort (a failure is logged: the next request just probes longer).
    pub async fn set_hint(&self, ssm: &Client, hint: u32) {
        let name = self.hint_name();
        match overwrite(ssm, &name, hint.to_string()).await {
            Ok(_) => tracing::debug!(hint, "hint set"),
            Err(e) => tracing::warn!(
                hint,
                parameter = %name,
                "cannot set the hint: {}",
                cfn_custom_resource::error_chain(&e)
            ),
        }
    }

    /// Records which priorities `reservation.owner` was answered with, if no request for the same
    /// resource did first (`Overwrite=false`).
    pub async fn reserve(&self, ssm: &Client, reservation: &Reservation) -> Result<Reserved, Error> {
        let name = self.reservation_name(&reservation.owner);
        let put = ssm
            .put_parameter()
            .name(&name)
            .value(reservation.value())
            .r#type(ParameterType::String)
            .overwrite(false)
            .send()
            .await;
        let e = match put {
            Ok(_) => return Ok(Reserved::Won),
            Err(e) => e,
        };
        let (exists, busy) = e.as_service_error().map_or((false, false), |s| {
            (s.is_parameter_already_exists(), s.is_too_many_updates())
        });
        if !(exists || busy) {
            return Err(Self::state_error(name, e));
        }
        if busy {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        match self.reservation(ssm, &reservation.owner).await? {
            Some(held) if held == *reservation => Ok(Reserved::Won),
            other => Ok(Reserved::Lost(other)),
        }
    }

    /// `owner`'s reservation, if there is one.
    pub async fn reservation(&self, ssm: &Client, owner: &Owner) -> Result<Option<Reservation>, Error> {
        let name = self.reservation_name(owner);
        match ssm.get_parameter().name(&name).send().await {
            Ok(out) => Ok(out
                .parameter()
                .and_then(|p| p.value())
                .and_then(Reservation::parse)
                .filter(|r| r.owner == *owner)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(None),
            Err(e) => Err(Self::state_error(name, e)),
        }
    }

    /// Overwrites `owner`'s reservation (a Create that could not use the one it found).
    pub async fn replace_reservation(&self, ssm: &Client, reservation: &Reservation) -> Result<(), Error> {
        let name = self.reservation_name(&reservation.owner);
        overwrite(ssm, &name, reservation.value())
            .await
            .map(drop)
            .map_err(|e| Self::state_error(name, e))
    }

    /// Deletes `owner`'s reservation if it names exactly `priorities` (so the Delete of an old id
    /// after a replacement does not drop the new one's). A reservation that is gone is fine.
    pub async fn unreserve(&self, ssm: &Client, owner: &Owner, priorities: &Priorities) -> Result<(), Error> {
        let Some(held) = self.reservation(ssm, owner).await? else {
            return Ok(());
        };
        if held.priorities != *priorities {
            return Ok(());
        }
        let name = self.reservation_name(owner);
        match ssm.delete_parameter().name(&name).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_parameter_not_found()) => Ok(()),
            Err(e) => Err(Self::state_error(name, e)),
        }
    }
}

/// Writes `value` as the String parameter `name`, whatever it held (`Overwrite=true`): the
/// hint, a replaced reservation, a reclaimed claim and a claim given back to its winner.
async fn overwrite(
    ssm: &Client,
    name: &str,
    value: String,
) -> Result<PutParameterOutput, SdkError<PutParameterError>> {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(ParameterType::String)
        .overwrite(true)
        .send()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_follow_the_listener() {
        let claims = ListenerClaims::new(
            "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/my-alb/50dc6c495c0c9188/f2f7dc8efc522ab2",
        );
        assert_eq!(
            claims.name(6),
            "/custom-resource/listener-rule-priority/app/my-alb/50dc6c495c0c9188/f2f7dc8efc522ab2/6"
        );
        let odd = ListenerClaims::new("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a b//c:d/e");
        assert_eq!(
            odd.path(),
            "/custom-resource/listener-rule-priority/app/a_b/c_d/e"
        );
    }

    #[test]
    fn state_lives_beside_the_claims_and_reservations_round_trip() {
        let claims = ListenerClaims::new("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/a/b/c");
        assert_eq!(
            claims.hint_name(),
            "/custom-resource/listener-rule-priority/_state/app/a/b/c/hint"
        );
        let owner = Owner::new("arn:aws:cloudformation:us-east-1:1:stack/s/1", "Priority");
        let name = claims.reservation_name(&owner);
        assert!(
            name.starts_with("/custom-resource/listener-rule-priority/_state/app/a/b/c/reservation/r-"),
            "{name}"
        );
        assert_ne!(
            name,
            claims.reservation_name(&Owner::new(
                "arn:aws:cloudformation:us-east-1:1:stack/s/1",
                "Other"
            ))
        );
        assert!(
            !name.starts_with(&format!("{}/", claims.path())),
            "not on the claim level"
        );
        let reservation = Reservation {
            priorities: Priorities::new([6, 7]).unwrap(),
            owner: owner.clone(),
        };
        assert_eq!(Reservation::parse(&reservation.value()), Some(reservation));
        assert_eq!(Reservation::parse("x|y"), None);
    }

    #[test]
    fn owners_name_stack_and_logical_id() {
        assert_eq!(
            Owner::new("arn:stack/s/1", "Priority").to_string(),
            "arn:stack/s/1|Priority"
        );
        assert_ne!(Owner::new("s", "A"), Owner::new("s", "B"));
        // A claim value not of that form still names a holder, by its whole value.
        assert_eq!(holder("hand-made").stack_id, "hand-made");
        assert_eq!(
            holder("arn:stack/s/1|Priority"),
            Owner::new("arn:stack/s/1", "Priority")
        );
    }
}
