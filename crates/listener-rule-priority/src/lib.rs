//! `Custom::ListenerRulePriority`: hands out ALB listener-rule priorities that never collide, even
//! when many stacks deploy against the same listener at the same moment.
//!
//! Reading the highest priority and adding one gives two concurrent deploys the same number, and
//! the second `AWS::ElasticLoadBalancingV2::ListenerRule` fails with `PriorityInUse`. This
//! resource claims each priority it hands out, atomically, before returning it.
//!
//! # Properties
//!
//! Values may be strings, as CloudFormation sends them, or JSON numbers. Unknown properties are
//! rejected.
//!
//! | property | required | default | limits |
//! | --- | --- | --- | --- |
//! | `ListenerArn` | yes | | an ELBv2 listener ARN (`arn:...:elasticloadbalancing:...:listener/...`) |
//! | `MinPriority` | | 1 | `1 <= MinPriority <= MaxPriority` |
//! | `MaxPriority` | | 50000 | `MaxPriority <= 50000` |
//! | `Count` | | 1 | `1 <= Count <= 100`, and at most the size of the range |
//!
//! `Count` is capped at [`MAX_COUNT`] (an ALB holds 100 rules by default) so the physical id
//! always fits CloudFormation's 1 KB.
//!
//! # Data
//!
//! - `Priority`: the lowest claimed priority (the only one when `Count` is 1).
//! - `Priorities`: all claimed priorities, ascending, comma-separated; only when `Count` > 1.
//!
//! # Physical id
//!
//! `<ListenerArn>/priority/<p1>,<p2>,...` with the priorities ascending, e.g.
//! `arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/alb/50dc6c495c0c9188/f2f7dc8efc522ab2/priority/6`.
//!
//! # How priorities are chosen and claimed
//!
//! 1. Every page of `DescribeRules` (page size 400) gives the priorities live rules hold; every
//!    page of `GetParametersByPath` on the listener's claim path gives the claims.
//! 2. Candidates, in order: from one above the highest priority taken (by a rule or a claim)
//!    within the range, or `MinPriority` if that is higher, up to `MaxPriority`; then the gaps from
//!    `MinPriority` upwards. Priorities held by a live rule or an existing claim are skipped.
//! 3. Each candidate is claimed with SSM `PutParameter` (`Type=String`, `Overwrite=false`) at
//!    `/custom-resource/listener-rule-priority/<listener ARN after "listener/">/<priority>`, value
//!    `<StackId>|<LogicalResourceId>`. SSM creates a name at most once, so of any number of
//!    concurrent writers exactly one wins a given priority; the others get
//!    `ParameterAlreadyExists` and move on to another candidate (uncontended: the next one in
//!    order; after losing `n` times: a random one among the next `2^n`, at most 256, so a crowd
//!    of concurrent requests spreads out instead of colliding at every step; see [`spread`]).
//!    No candidate is tried twice, so a small range is only reported full when every priority in
//!    it was seen taken. That is why two resources can
//!    never be handed the same priority: a number is returned only after its claim was created by
//!    this request. (Rules created by anything that does not claim, e.g. by hand, can still collide;
//!    a rule that exists when we read is never handed out.) Throttling is retried by the SDK's
//!    standard retry (10 attempts unless `AWS_MAX_ATTEMPTS` says otherwise).
//! 4. A range with fewer free priorities than `Count` fails, naming the listener and the range;
//!    claims made by that attempt are released again.
//!
//! Idempotency: claims this resource (same stack and logical id) already holds on the listener,
//! within the range, are reused first, so a retried Create returns the same priorities.
//!
//! # Update
//!
//! - Same `ListenerArn`, same `Count`, and every current priority still inside the new range: the
//!   priorities are kept (same physical id). Missing claims are re-created.
//! - Anything else (another listener, another `Count`, a range that excludes a current priority,
//!   or a current claim now held by someone else): replacement. New claims are made (the current
//!   ones are never reused, since CloudFormation deletes them afterwards) and the physical id
//!   changes; CloudFormation then sends Delete for the old id, which releases the old claims. On an
//!   update rollback the old claims are reused, so the old priority comes back.
//!
//! # Delete
//!
//! Releases the claims named in the physical id whose value is this stack and logical id; claims
//! that are gone or held by someone else are left alone, and an id this handler did not make is
//! answered SUCCESS. Delete never touches listener rules.

mod claims;
mod error;
mod rules;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use cfn_custom_resource::{
    Create, Created, CustomResource, Data, Delete, HandlerError, PhysicalId, Progress, Update, Updated,
};
use serde::Deserialize;

pub use claims::{CLAIM_ROOT, ListenerClaims, Owner};
pub use error::Error;
pub use rules::PAGE_SIZE;

/// The lowest priority ELBv2 accepts.
pub const LOWEST_PRIORITY: u32 = 1;
/// The highest priority ELBv2 accepts.
pub const HIGHEST_PRIORITY: u32 = 50_000;
/// The most priorities one resource may claim.
pub const MAX_COUNT: u32 = 100;

/// The `Custom::ListenerRulePriority` properties.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Properties {
    pub listener_arn: String,
    #[serde(default = "default_min", deserialize_with = "cfn_custom_resource::de::number")]
    pub min_priority: u32,
    #[serde(default = "default_max", deserialize_with = "cfn_custom_resource::de::number")]
    pub max_priority: u32,
    #[serde(
        default = "default_count",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub count: u32,
}

fn default_min() -> u32 {
    LOWEST_PRIORITY
}

fn default_max() -> u32 {
    HIGHEST_PRIORITY
}

fn default_count() -> u32 {
    1
}

impl Properties {
    /// Checks the values against ELBv2's limits and each other; the error names the property.
    pub fn validate(&self) -> Result<(), Error> {
        let arn = self.listener_arn.trim();
        let is_listener_arn = arn.starts_with("arn:")
            && arn.split(':').nth(2) == Some("elasticloadbalancing")
            && arn.split_once(":listener/").is_some_and(|(_, id)| !id.is_empty());
        if !is_listener_arn || arn != self.listener_arn {
            return Err(Error::property(
                "ListenerArn",
                format!(
                    "{:?} is not a listener ARN; expected arn:aws:elasticloadbalancing:<region>:<account>:listener/app/<name>/<id>/<id>",
                    self.listener_arn
                ),
            ));
        }
        let limits = format!("{LOWEST_PRIORITY}..={HIGHEST_PRIORITY}");
        if !(LOWEST_PRIORITY..=HIGHEST_PRIORITY).contains(&self.min_priority) {
            return Err(Error::property(
                "MinPriority",
                format!("{} is outside {limits}", self.min_priority),
            ));
        }
        if !(LOWEST_PRIORITY..=HIGHEST_PRIORITY).contains(&self.max_priority) {
            return Err(Error::property(
                "MaxPriority",
                format!("{} is outside {limits}", self.max_priority),
            ));
        }
        if self.min_priority > self.max_priority {
            return Err(Error::property(
                "MaxPriority",
                format!("{} is below MinPriority {}", self.max_priority, self.min_priority),
            ));
        }
        let size = self.max_priority - self.min_priority + 1;
        if self.count < 1 || self.count > MAX_COUNT {
            return Err(Error::property(
                "Count",
                format!("{} is outside 1..={MAX_COUNT}", self.count),
            ));
        }
        if self.count > size {
            return Err(Error::property(
                "Count",
                format!(
                    "{} is more than the {size} priorities in MinPriority..MaxPriority {}..={}",
                    self.count, self.min_priority, self.max_priority
                ),
            ));
        }
        Ok(())
    }

    fn contains(&self, priority: u32) -> bool {
        (self.min_priority..=self.max_priority).contains(&priority)
    }
}

/// Priorities claimed on one listener: what the physical id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub listener_arn: String,
    /// Ascending, distinct, non-empty.
    pub priorities: Vec<u32>,
}

const ID_SEPARATOR: &str = "/priority/";

impl Allocation {
    fn new(listener_arn: &str, priorities: impl IntoIterator<Item = u32>) -> Self {
        let priorities: BTreeSet<u32> = priorities.into_iter().collect();
        Self {
            listener_arn: listener_arn.to_string(),
            priorities: priorities.into_iter().collect(),
        }
    }

    /// `<listener arn>/priority/<p1>,<p2>,...`
    pub fn physical_id(&self) -> String {
        let mut id = format!("{}{ID_SEPARATOR}", self.listener_arn);
        for (i, p) in self.priorities.iter().enumerate() {
            let _ = write!(id, "{}{p}", if i == 0 { "" } else { "," });
        }
        id
    }

    /// Reads an id made by [`Allocation::physical_id`]; anything else is `None`.
    pub fn parse(physical_id: &str) -> Option<Self> {
        let (listener_arn, list) = physical_id.rsplit_once(ID_SEPARATOR)?;
        let priorities: Vec<u32> = list.split(',').map(|p| p.parse().ok()).collect::<Option<_>>()?;
        if listener_arn.is_empty() || priorities.is_empty() {
            return None;
        }
        Some(Self::new(listener_arn, priorities))
    }

    /// `Priority`, and `Priorities` when there is more than one.
    pub fn data(&self) -> Data {
        let mut data = Data::new();
        if let Some(first) = self.priorities.first() {
            data.insert("Priority".into(), first.to_string());
        }
        if self.priorities.len() > 1 {
            let all: Vec<String> = self.priorities.iter().map(u32::to_string).collect();
            data.insert("Priorities".into(), all.join(","));
        }
        data
    }

    fn id(&self) -> Result<PhysicalId, HandlerError> {
        PhysicalId::new(self.physical_id())
            .map_err(|e| HandlerError::new(format!("{e} (listener ARN too long?)")))
    }
}

/// The order in which free priorities are tried: from one above the highest taken priority in
/// `min..=max` (or `min`) up to `max`, then the gaps from `min` upwards; taken ones skipped.
pub fn candidates(min: u32, max: u32, taken: &BTreeSet<u32>) -> impl Iterator<Item = u32> + '_ {
    let start = taken
        .range(min..=max)
        .next_back()
        .map_or(min, |highest| highest + 1);
    (start..=max)
        .chain(min..start.min(max.saturating_add(1)))
        .filter(move |p| !taken.contains(p))
}

/// Which of the `remaining` candidates (in [`candidates`] order) to try next, after `lost`
/// claims went to concurrent requests: the first one while uncontended, so results are
/// predictable; after each loss a random one among the next 2, 4, 8, ... (at most 256), so that
/// many requests racing for the same numbers spread out instead of colliding on every step.
pub fn spread(lost: usize, remaining: usize, random: u64) -> usize {
    let window = (1usize << lost.min(8)).min(remaining);
    if window <= 1 {
        0
    } else {
        (random % window as u64) as usize
    }
}

/// A random number for [`spread`]; std's randomly keyed hasher is plenty for spreading out.
fn random() -> u64 {
    use std::hash::BuildHasher as _;
    std::collections::hash_map::RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The handler, with the clients it needs, built once per process.
pub struct ListenerRulePriority {
    ssm: aws_sdk_ssm::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    claim_root: String,
}

impl ListenerRulePriority {
    /// Claims live under [`CLAIM_ROOT`] unless [`ListenerRulePriority::with_claim_root`] says
    /// otherwise.
    pub fn new(ssm: aws_sdk_ssm::Client, elbv2: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        Self {
            ssm,
            elbv2,
            claim_root: CLAIM_ROOT.to_string(),
        }
    }

    /// Keeps claims under `root` (an SSM path such as `/platform/listener-priorities`), the path
    /// the function's IAM role may write.
    pub fn with_claim_root(mut self, root: impl Into<String>) -> Self {
        self.claim_root = root.into();
        self
    }

    /// Claims `Count` priorities for `owner`: its own claims in range first (a retried request),
    /// except those in `exclude` (the allocation being replaced), then fresh ones.
    async fn allocate(
        &self,
        properties: &Properties,
        owner: &Owner,
        exclude: &BTreeSet<u32>,
        progress: &Progress,
    ) -> Result<Allocation, HandlerError> {
        let listener = properties.listener_arn.as_str();
        let claims = ListenerClaims::under(&self.claim_root, listener);
        progress.set(format!(
            "reading the rules of listener {listener} and the claims under {}",
            claims.path()
        ));
        let (rules, existing) =
            tokio::join!(rules::priorities(&self.elbv2, listener), claims.read(&self.ssm));
        let (rules, existing): (BTreeSet<u32>, BTreeMap<u32, Owner>) = (rules?, existing?);

        let want = properties.count as usize;
        let mut mine: Vec<u32> = existing
            .iter()
            .filter(|(p, o)| *o == owner && properties.contains(**p) && !exclude.contains(p))
            .map(|(p, _)| *p)
            .take(want)
            .collect();
        if !mine.is_empty() {
            tracing::info!(?mine, "reusing claims this resource already holds");
        }

        let taken: BTreeSet<u32> = rules.iter().chain(existing.keys()).copied().collect();
        let mut fresh: Vec<u32> = Vec::new();
        let mut lost = 0usize;
        progress.set(format!("claiming priorities on listener {listener}"));
        let mut free: Vec<u32> =
            candidates(properties.min_priority, properties.max_priority, &taken).collect();
        while mine.len() < want && !free.is_empty() {
            let candidate = free.remove(spread(lost, free.len(), random()));
            match claims.claim(&self.ssm, candidate, owner).await {
                Ok(claims::Claimed::Won) => {
                    tracing::info!(priority = candidate, claim = %claims.name(candidate), "claimed");
                    mine.push(candidate);
                    fresh.push(candidate);
                }
                Ok(claims::Claimed::Lost) => {
                    lost += 1;
                    tracing::debug!(
                        priority = candidate,
                        "claimed by someone else meanwhile; trying the next"
                    );
                }
                Err(error) => {
                    return Err(self.undo(&claims, &fresh, owner, listener, error.into()).await);
                }
            }
        }
        if lost > 0 {
            tracing::info!(lost, "candidates were claimed by concurrent requests first");
        }
        if mine.len() < want {
            let in_range =
                |set: &mut dyn Iterator<Item = &u32>| set.filter(|p| properties.contains(**p)).count();
            let error = Error::Exhausted {
                listener: listener.to_string(),
                range: properties.min_priority..=properties.max_priority,
                needed: properties.count,
                found: mine.len() as u32,
                rules: in_range(&mut rules.iter()),
                claims: in_range(&mut existing.keys().filter(|p| !rules.contains(p))) + lost,
            };
            return Err(self.undo(&claims, &fresh, owner, listener, error.into()).await);
        }
        Ok(Allocation::new(listener, mine))
    }

    /// Releases the claims a failed allocation made; if that fails too, the error carries their
    /// physical id, so the Delete CloudFormation sends after the failed Create releases them.
    async fn undo(
        &self,
        claims: &ListenerClaims,
        fresh: &[u32],
        owner: &Owner,
        listener: &str,
        error: HandlerError,
    ) -> HandlerError {
        let mut kept = Vec::new();
        for &priority in fresh {
            if let Err(release) = claims.release(&self.ssm, priority, owner).await {
                tracing::warn!(
                    priority,
                    "cannot release a claim after a failed allocation: {release}"
                );
                kept.push(priority);
            }
        }
        match kept.is_empty() {
            true => error,
            false => match Allocation::new(listener, kept).id() {
                Ok(id) => error.with_physical_id(id),
                Err(_) => error,
            },
        }
    }

    /// Makes sure every claim of `current` exists and is ours; `false` when one is held by
    /// someone else.
    async fn reassert(&self, current: &Allocation, owner: &Owner) -> Result<bool, HandlerError> {
        let claims = ListenerClaims::under(&self.claim_root, &current.listener_arn);
        for &priority in &current.priorities {
            match claims.owner(&self.ssm, priority).await? {
                Some(holder) if holder == *owner => {}
                Some(holder) => {
                    tracing::warn!(
                        priority,
                        holder = holder.as_str(),
                        "our claim is held by another resource"
                    );
                    return Ok(false);
                }
                None => match claims.claim(&self.ssm, priority, owner).await? {
                    claims::Claimed::Won => tracing::warn!(priority, "the claim was missing; re-created it"),
                    claims::Claimed::Lost => return Ok(false),
                },
            }
        }
        Ok(true)
    }
}

fn owner_of(info: &cfn_custom_resource::RequestInfo) -> Owner {
    Owner::new(&info.stack_id, &info.logical_resource_id)
}

impl CustomResource for ListenerRulePriority {
    type Properties = Properties;

    #[tracing::instrument(skip_all, fields(listener_arn = %request.properties.listener_arn))]
    async fn create(&self, request: Create<Properties>) -> Result<Created, HandlerError> {
        let properties = &request.properties;
        properties.validate()?;
        let owner = owner_of(&request.info);
        let allocation = self
            .allocate(properties, &owner, &BTreeSet::new(), &request.info.progress)
            .await?;
        tracing::info!(priorities = ?allocation.priorities, "allocated");
        Ok(Created::new(allocation.id()?).with_data(allocation.data()))
    }

    #[tracing::instrument(skip_all, fields(listener_arn = %request.properties.listener_arn))]
    async fn update(&self, request: Update<Properties>) -> Result<Updated, HandlerError> {
        let properties = &request.properties;
        properties.validate()?;
        let owner = owner_of(&request.info);
        let current = Allocation::parse(request.physical_id.as_str());
        if let Some(current) = &current {
            let keepable = current.listener_arn == properties.listener_arn
                && current.priorities.len() == properties.count as usize
                && current.priorities.iter().all(|p| properties.contains(*p));
            if keepable {
                request.info.progress.set("checking the current claims");
                if self.reassert(current, &owner).await? {
                    tracing::info!(priorities = ?current.priorities, "kept");
                    return Ok(Updated::keep().with_data(current.data()));
                }
            }
        }
        let exclude: BTreeSet<u32> = current
            .filter(|c| c.listener_arn == properties.listener_arn)
            .map(|c| c.priorities.into_iter().collect())
            .unwrap_or_default();
        let allocation = self
            .allocate(properties, &owner, &exclude, &request.info.progress)
            .await?;
        tracing::info!(priorities = ?allocation.priorities, "replaced");
        Ok(Updated::replace(allocation.id()?).with_data(allocation.data()))
    }

    #[tracing::instrument(skip_all, fields(physical_id = %request.physical_id))]
    async fn delete(&self, request: Delete<Properties>) -> Result<(), HandlerError> {
        let Some(allocation) = Allocation::parse(request.physical_id.as_str()) else {
            tracing::info!("not a physical id this handler makes; nothing to release");
            return Ok(());
        };
        let owner = owner_of(&request.info);
        let claims = ListenerClaims::under(&self.claim_root, &allocation.listener_arn);
        request
            .info
            .progress
            .set(format!("releasing claims under {}", claims.path()));
        for &priority in &allocation.priorities {
            let released = claims.release(&self.ssm, priority, &owner).await?;
            tracing::info!(priority, released, "release");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ARN: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/alb/50dc6c495c0c9188/f2f7dc8efc522ab2";

    fn parse(value: serde_json::Value) -> Result<Properties, String> {
        serde_json::from_value::<Properties>(value).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_strings() {
        let p = parse(json!({"ListenerArn": ARN})).unwrap();
        assert_eq!((p.min_priority, p.max_priority, p.count), (1, 50_000, 1));
        p.validate().unwrap();
        let p =
            parse(json!({"ListenerArn": ARN, "MinPriority": "10", "MaxPriority": 20, "Count": "3"})).unwrap();
        assert_eq!((p.min_priority, p.max_priority, p.count), (10, 20, 3));
        p.validate().unwrap();
        assert!(
            parse(json!({"ListenerArn": ARN, "Priority": "1"}))
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            parse(json!({"MinPriority": "1"}))
                .unwrap_err()
                .contains("ListenerArn")
        );
    }

    #[test]
    fn validation_names_the_property() {
        let check = |v: serde_json::Value| parse(v).unwrap().validate().unwrap_err().to_string();
        assert!(check(json!({"ListenerArn": "arn:aws:s3:::bucket"})).starts_with("property `ListenerArn`"));
        assert!(check(json!({"ListenerArn": ARN, "MinPriority": "0"})).starts_with("property `MinPriority`"));
        assert!(
            check(json!({"ListenerArn": ARN, "MaxPriority": "50001"})).starts_with("property `MaxPriority`")
        );
        let e = check(json!({"ListenerArn": ARN, "MinPriority": "9", "MaxPriority": "8"}));
        assert!(
            e.starts_with("property `MaxPriority`") && e.contains("MinPriority 9"),
            "{e}"
        );
        assert!(check(json!({"ListenerArn": ARN, "Count": "0"})).starts_with("property `Count`"));
        assert!(check(json!({"ListenerArn": ARN, "Count": "101"})).starts_with("property `Count`"));
        let e = check(json!({"ListenerArn": ARN, "MinPriority": "1", "MaxPriority": "2", "Count": "3"}));
        assert!(e.starts_with("property `Count`") && e.contains("1..=2"), "{e}");
    }

    #[test]
    fn candidate_order() {
        let set = |v: &[u32]| v.iter().copied().collect::<BTreeSet<u32>>();
        let first = |min, max, taken: &[u32]| candidates(min, max, &set(taken)).take(4).collect::<Vec<_>>();
        assert_eq!(first(1, 50_000, &[]), [1, 2, 3, 4]);
        assert_eq!(first(1, 50_000, &[1, 2, 5]), [6, 7, 8, 9]);
        assert_eq!(first(1, 50_000, &[1, 2, 5, 50_000]), [3, 4, 6, 7]);
        assert_eq!(first(100, 200, &[1, 2, 5]), [100, 101, 102, 103]);
        assert_eq!(first(10, 12, &[10, 11, 12]), Vec::<u32>::new());
        assert_eq!(first(10, 12, &[11, 60_000]), [12, 10]);
        assert_eq!(candidates(1, 50_000, &set(&[])).count(), 50_000);
    }

    #[test]
    fn sample_events_parse_and_validate() {
        let events = [
            include_str!("../../../tests/events/listener-rule-priority-create.json"),
            include_str!("../../../tests/events/listener-rule-priority-update.json"),
            include_str!("../../../tests/events/listener-rule-priority-delete.json"),
        ];
        for text in events {
            let event: serde_json::Value = serde_json::from_str(text).unwrap();
            for key in ["ResourceProperties", "OldResourceProperties"] {
                let Some(mut properties) = event.get(key).cloned() else {
                    continue;
                };
                let map = properties.as_object_mut().unwrap();
                map.remove("ServiceToken");
                map.remove("ServiceTimeout");
                parse(properties).unwrap().validate().unwrap();
            }
            if let Some(id) = event["PhysicalResourceId"].as_str() {
                assert_eq!(Allocation::parse(id).unwrap().physical_id(), id);
            }
        }
    }

    #[test]
    fn spreading_starts_only_after_a_loss() {
        for random in [0, 1, 7, u64::MAX] {
            assert_eq!(
                spread(0, 50_000, random),
                0,
                "uncontended: always the first candidate"
            );
            assert!(spread(1, 50_000, random) < 2);
            assert!(spread(3, 50_000, random) < 8);
            assert!(spread(30, 50_000, random) < 256);
            assert!(spread(30, 3, random) < 3, "never past the candidates left");
            assert_eq!(spread(5, 1, random), 0);
        }
    }

    #[test]
    fn physical_ids_round_trip_and_fit() {
        let a = Allocation::new(ARN, [8, 6, 7]);
        assert_eq!(a.physical_id(), format!("{ARN}/priority/6,7,8"));
        assert_eq!(Allocation::parse(&a.physical_id()), Some(a.clone()));
        assert_eq!(a.data()["Priority"], "6");
        assert_eq!(a.data()["Priorities"], "6,7,8");
        assert!(!Allocation::new(ARN, [6]).data().contains_key("Priorities"));
        assert_eq!(Allocation::parse("create-failed:X:r"), None);
        assert_eq!(Allocation::parse(&format!("{ARN}/priority/6,x")), None);
        let widest = Allocation::new(ARN, HIGHEST_PRIORITY - MAX_COUNT + 1..=HIGHEST_PRIORITY);
        assert!(widest.id().is_ok(), "{}", widest.physical_id().len());
    }
}
