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
//! Claims are SSM String parameters `<root>/<listener ARN after "listener/">/<priority>` (root
//! [`CLAIM_ROOT`] or `PRIORITY_CLAIM_PATH`), value `<StackId>|<LogicalResourceId>`. Beside them,
//! under `<root>/_state/<listener id>/`, live the listener's `hint` (the highest priority claimed
//! lately) and one `reservation/r-<hash of stack and logical id>` per resource (value
//! `<p1>,...|<StackId>|<LogicalResourceId>`): the priorities that resource was answered with.
//! Claims are listed with `Recursive=false` and only numeric names count, so neither is ever
//! taken for a claim.
//!
//! A Create makes a number of calls that does not grow with the claims on the listener:
//!
//! 1. In parallel: every page of `DescribeRules` (page size 400), and one `GetParameters` of the
//!    hint and this resource's reservation.
//! 2. A reservation that fits (same `Count`, inside the range) and whose claims are still ours is
//!    answered again: a retried or duplicated Create returns the same priorities.
//! 3. Otherwise candidates run from one above the highest of (the highest rule priority in the
//!    range, the hint) (or `MinPriority`) up to `MaxPriority`, skipping rule priorities. Each is
//!    claimed with `PutParameter` (`Overwrite=false`). SSM creates a name at most once, so of any
//!    number of concurrent writers exactly one wins a given priority; the others get
//!    `ParameterAlreadyExists`, read the claim, and move on unless it names this very resource:
//!    then it is this resource's own, written by an earlier attempt that was killed after the
//!    write, or whose answer was lost and retried by the SDK, or by a duplicate delivery running
//!    at the same moment (one read more per loss; without it such a claim would leak). The first try is always the first candidate, so an
//!    uncontended Create gets the lowest free priority above the highest rule and the hint. A
//!    loss means a crowd of unknown size raced for the same number, so the next try is one of
//!    the next 64 candidates (128 after a second loss, 256 after that), picked by a hash of the
//!    stack id, logical id and loss count (see [`spread`] and [`spread_seed`]): most of the
//!    crowd lands on distinct numbers in one round. 64 Creates racing from the same start lose
//!    about 95 claims in all (measured 105; doubling windows of 2, 4, 8, ... lost about 330),
//!    at the price of gaps that the fallback path hands out once the range is full. A number is
//!    returned only after its claim was created by this request, so two resources never get the
//!    same priority. (Rules created by
//!    anything that does not claim, e.g. by hand, can still collide; a rule that exists when we
//!    read is never handed out.) Throttling is retried by the SDK's standard retry.
//! 4. **Fallback**, only when step 3 runs out of range: every page of `GetParametersByPath` on the
//!    claim path; this resource's own claims in range are reused; then the gaps from `MinPriority`
//!    upwards (no candidate tried twice); then stale claims are reclaimed (below). A range with
//!    fewer free priorities than `Count` fails, naming the listener and the range; claims made by
//!    that attempt are released again.
//! 5. The reservation is written with `Overwrite=false` and, at the same time, the hint is raised
//!    to the highest priority won (best effort; a failed hint write only makes the next Create
//!    probe longer). The hint write is skipped when the hint read was already at or above ours,
//!    and when this request lost a candidate above the one it won: that candidate's holder
//!    raises the hint past ours.
//!
//! Calls per Create, whatever the number of claims (the guard logs `aws_calls=N` with every
//! response, `DescribeRules` pages included; the handler logs the time of each phase, `read_ms`,
//! `claim_ms`, `record_ms`):
//!
//! | | round trips | `DescribeRules` | SSM |
//! | --- | --- | --- | --- |
//! | uncontended | 3: read, claim, record | one per 400 rules | 4: `GetParameters`, claim, reservation and hint |
//! | in a crowd of `n` | 3 + rounds lost (about 2 for 64) | one per 400 rules | 3 + claims lost (about 1.5 each for 64) + the hint when ours is highest |
//!
//! On a server that serves one request at a time (moto) the parallel calls add up, and the
//! `DescribeRules` pages are most of a crowd's cost: 64 Creates on a 500-rule listener read
//! 64 × 500 rules (the bench's "full reads" floor) and make about 5.6 SSM calls each.
//!
//! # Duplicates and stale claims (policy)
//!
//! - **Duplicates converge.** Lambda may deliver the same Create twice, even at once. Both may
//!   claim a priority, but only one can create the resource's reservation: the other reads it,
//!   releases the claims it made, and answers with the reservation's priorities. Both answers
//!   name the same priorities and one set of claims is left. A later Create of the same resource
//!   (a retry) finds the reservation and answers with it.
//! - **Stale claims are reclaimed, and only when needed.** A claim is stale when no rule on the
//!   listener holds its priority and either its owner stack is gone (`DescribeStacks` by the
//!   stack id in the claim answers that very stack id with `DELETE_COMPLETE`; an error, an unknown
//!   id or a missing permission counts as "not gone") or it was written longer ago than the
//!   reclaim age (default
//!   [`DEFAULT_RECLAIM_AGE`], 72 h, longer than any stack operation can take; the environment
//!   variable `PRIORITY_RECLAIM_AGE_SECONDS` overrides it). A service's claim is always followed
//!   within its stack operation by its listener rule, so an old claim without a rule belongs to a
//!   stack that is gone, failed half-way, or never used it. (Consequence: a resource that holds
//!   a priority without ever putting a rule there can lose it after the reclaim age, once the
//!   range is full; its Update then sees the claim held by someone else and replaces.) Stale claims are reclaimed only on the
//!   fallback path (the range has no free priority otherwise), lowest first, one per priority
//!   still needed. A stale claim is never deleted (SSM has no conditional delete: a delete could
//!   drop a claim someone re-made a moment before); it is overwritten (`Overwrite=true`) and the
//!   version SSM answers with is a compare-and-swap: of the requests that read the stale claim
//!   at version `v`, exactly one writes version `v + 1` and wins (after checking that version `v`
//!   still holds the stale value, since a claim deleted and created again restarts at version
//!   1). A writer of a later version lost: it reads the winner (version `v + 1`) and, if the
//!   latest value is still its own, writes the winner's value back, so the claim ends naming the
//!   winner (see [`ListenerClaims::reclaim`]). Left open: the stale holder's own Delete releases
//!   with a read-then-delete, so a Delete of that very resource racing a reclaim can still drop
//!   the reclaimed claim.
//!   `DescribeStacks` is called only there, once per owner stack, and only for claims not already
//!   stale by age (needs `cloudformation:DescribeStacks`).
//! - **Delete** releases this resource's claims and its reservation (only if the reservation names
//!   exactly the deleted priorities), and lowers the hint to just below them when the hint pointed
//!   at the highest of them, so the freed top priorities are handed out again.
//!
//! # Update
//!
//! - Same `ListenerArn`, same `Count`, and every current priority still inside the new range: the
//!   priorities are kept (same physical id). Missing claims are re-created.
//! - Anything else (another listener, another `Count`, a range that excludes a current priority,
//!   or a current claim now held by someone else): replacement. New claims are made (the current
//!   ones are never reused, since CloudFormation deletes them afterwards) and the physical id
//!   changes; CloudFormation then sends Delete for the old id, which releases the old claims. On an
//!   update rollback the old claims are reused, so the old priority comes back. A replacement
//!   allocates on the fallback path directly (it must see this resource's own claims); Updates
//!   are rare, so their cost may grow with the claims.
//!
//! # Delete
//!
//! Releases the claims named in the physical id whose value is this stack and logical id; claims
//! that are gone or held by someone else are left alone, and an id this handler did not make is
//! answered SUCCESS. Delete never touches listener rules.

mod claims;
mod error;
mod rules;

use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use cfn_custom_resource::{
    Create, Created, CustomResource, Data, Delete, HandlerError, PhysicalId, Progress, Update, Updated,
};
use serde::Deserialize;

pub use claims::{CLAIM_ROOT, Claim, Claimed, ListenerClaims, Owner, STATE_DIR};
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
/// predictable; after the first loss one among the next [`SPREAD_WINDOW`] (64, then 128, then
/// 256), picked by `seed` (see [`spread_seed`]). A loss means a crowd, of unknown size, raced for
/// the same number; a window that starts at the crowd's likely size lets most of it land on
/// distinct numbers in the next round (64 requests: about 95 lost claims in all instead of about
/// 330 with windows of 2, 4, 8, ...), at the price of gaps the fallback path fills later.
pub fn spread(lost: usize, remaining: usize, seed: u64) -> usize {
    let window = match lost {
        0 => 1,
        n => (SPREAD_WINDOW << (n - 1).min(2)).min(remaining),
    };
    if window <= 1 {
        0
    } else {
        (seed % window as u64) as usize
    }
}

/// The window [`spread`] picks from after the first loss (it doubles twice after that).
pub const SPREAD_WINDOW: usize = 64;

/// A stable per-resource, per-round seed for [`spread`]: FNV-1a of the owner and the number of
/// losses, so different resources land on different numbers and a resource that lost again tries
/// elsewhere. (Duplicates of one resource pick the same numbers; the reservation settles them.)
pub fn spread_seed(owner: &Owner, lost: usize) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in owner.to_string().bytes().chain(lost.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits are weak for short inputs that differ at the end: fold the high half in.
    hash ^ (hash >> 29)
}

/// What one allocation holds and tried so far.
#[derive(Debug, Default)]
struct Round {
    /// The priorities it holds (reused and fresh).
    mine: Vec<u32>,
    /// The claims it made (released again if the allocation fails).
    fresh: Vec<u32>,
    /// Every candidate it tried to claim.
    tried: BTreeSet<u32>,
    /// Candidates that concurrent requests claimed first.
    lost: usize,
    /// The highest of them: its holder raises the hint at least that far.
    highest_lost: Option<u32>,
    /// Stale claims it reclaimed.
    reclaimed: usize,
}

impl Round {
    /// One INFO line when concurrent requests won some of the candidates.
    fn log_lost(&self) {
        if self.lost > 0 {
            tracing::info!(
                lost = self.lost,
                "candidates were claimed by concurrent requests first"
            );
        }
    }
}

/// The handler, with the clients it needs, built once per process.
pub struct ListenerRulePriority {
    ssm: aws_sdk_ssm::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    claim_root: String,
    reclaim_age: Duration,
    cloudformation: Option<aws_sdk_cloudformation::Client>,
}

/// How old a claim no listener rule holds must be before the fallback path reclaims it, unless
/// [`ListenerRulePriority::with_reclaim_age`] says otherwise.
pub const DEFAULT_RECLAIM_AGE: Duration = Duration::from_secs(72 * 3600);

/// Counts the requests a client sends (every attempt).
impl ListenerRulePriority {
    /// Claims live under [`CLAIM_ROOT`] unless [`ListenerRulePriority::with_claim_root`] says
    /// otherwise.
    pub fn new(ssm: aws_sdk_ssm::Client, elbv2: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        Self {
            ssm,
            elbv2,
            claim_root: CLAIM_ROOT.to_string(),
            reclaim_age: DEFAULT_RECLAIM_AGE,
            cloudformation: None,
        }
    }

    /// How long a claim must have existed, with no listener rule at its priority, before the
    /// fallback path may reclaim it (see the crate doc).
    pub fn with_reclaim_age(mut self, age: Duration) -> Self {
        self.reclaim_age = age;
        self
    }

    /// Lets the fallback path ask CloudFormation (`DescribeStacks`) whether a claim's owner stack
    /// is `DELETE_COMPLETE`; without it only the reclaim age makes a claim stale.
    pub fn with_cloudformation(mut self, cloudformation: aws_sdk_cloudformation::Client) -> Self {
        self.cloudformation = Some(cloudformation);
        self
    }

    /// Whether CloudFormation says the stack with this id is `DELETE_COMPLETE`. Anything else
    /// (live, unknown, no permission, an error) counts as not deleted: a claim is never
    /// reclaimed on a guess.
    async fn stack_deleted(&self, stack_id: &str) -> bool {
        let Some(cloudformation) = &self.cloudformation else {
            return false;
        };
        match cloudformation.describe_stacks().stack_name(stack_id).send().await {
            Ok(out) => out.stacks().iter().any(|stack| {
                stack.stack_id() == Some(stack_id)
                    && stack.stack_status()
                        == Some(&aws_sdk_cloudformation::types::StackStatus::DeleteComplete)
            }),
            Err(e) => {
                tracing::info!(
                    stack_id,
                    "cannot tell whether the stack is deleted; its claims stay: {}",
                    cfn_custom_resource::error_chain(&e)
                );
                false
            }
        }
    }

    /// Keeps claims under `root` (an SSM path such as `/platform/listener-priorities`), the path
    /// the function's IAM role may write.
    pub fn with_claim_root(mut self, root: impl Into<String>) -> Self {
        self.claim_root = root.into();
        self
    }

    /// Create's allocation, in a number of calls that does not grow with the claims on the
    /// listener: the rules and (in parallel) the hint and this resource's reservation; then
    /// create-if-absent claims upward from the highest of both; the claim listing only when that
    /// runs out of range ([`ListenerRulePriority::allocate_listed`]). Then the reservation decides
    /// between duplicates of this request, and the hint is moved up.
    async fn allocate_create(
        &self,
        properties: &Properties,
        owner: &Owner,
        progress: &Progress,
    ) -> Result<Allocation, HandlerError> {
        let listener = properties.listener_arn.as_str();
        let claims = ListenerClaims::under(&self.claim_root, listener);
        progress.set(format!(
            "reading the rules of listener {listener} and the hint under {}",
            claims.path()
        ));
        let started = std::time::Instant::now();
        let (rules, state) = tokio::join!(
            rules::priorities(&self.elbv2, listener),
            claims.state(&self.ssm, owner)
        );
        let (rules, state) = (rules?, state?);
        let read = started.elapsed();
        let want = properties.count as usize;

        // A request for this resource was answered before (a retry, or a duplicate that got
        // there first): the same priorities, if they still fit and are still ours.
        let mut overwrite_reservation = false;
        if let Some(reservation) = &state.reservation {
            let fits = reservation.priorities.len() == want
                && reservation.priorities.iter().all(|p| properties.contains(*p));
            let current = Allocation::new(listener, reservation.priorities.iter().copied());
            if fits && self.reassert(&current, owner).await? {
                tracing::info!(priorities = ?current.priorities, "this resource's reservation is answered again");
                return Ok(current);
            }
            tracing::info!(reserved = ?reservation.priorities, "the reservation does not fit these properties; allocating anew");
            overwrite_reservation = true;
        }

        let highest_rule = rules
            .range(properties.min_priority..=properties.max_priority)
            .next_back()
            .copied();
        let hint = state.hint.filter(|h| *h <= properties.max_priority);
        let start = highest_rule
            .max(hint)
            .map_or(properties.min_priority, |h| (h + 1).max(properties.min_priority));
        let mut free: VecDeque<u32> = (start..=properties.max_priority)
            .filter(|p| !rules.contains(p))
            .collect();
        let mut round = Round::default();
        progress.set(format!("claiming priorities on listener {listener}"));
        if let Err(error) = self.claim_from(&claims, owner, &mut free, want, &mut round).await {
            return Err(self
                .undo(&claims, &round.fresh, owner, listener, error.into())
                .await);
        }
        if round.mine.len() < want {
            tracing::info!(
                start,
                found = round.mine.len(),
                "no room above the highest rule and the hint; reading every claim"
            );
            if let Err(error) = self
                .allocate_listed(&claims, properties, owner, &BTreeSet::new(), &rules, &mut round)
                .await
            {
                return Err(self.undo(&claims, &round.fresh, owner, listener, error).await);
            }
        }
        round.log_lost();
        let allocation = Allocation::new(listener, round.mine.iter().copied());
        let claimed = started.elapsed();

        // Of duplicate requests for one resource, the first reservation wins; the others give
        // their claims back and answer with the winner's priorities.
        let reservation = claims::Reservation {
            priorities: allocation.priorities.clone(),
            owner: owner.clone(),
        };
        let top = allocation.priorities.last().copied().unwrap_or(0);
        // Skipped when the hint we read is already at or above ours, or when a concurrent
        // request holds a higher candidate we lost: it raises the hint past ours itself (a write
        // each fewer on a crowded listener; the hint is best effort either way).
        let raise_hint = async {
            if state.hint.is_none_or(|h| h < top) && round.highest_lost.is_none_or(|l| l < top) {
                claims.set_hint(&self.ssm, top).await;
            }
        };
        let reserve = async {
            if overwrite_reservation {
                claims
                    .replace_reservation(&self.ssm, &reservation)
                    .await
                    .map(|()| claims::Reserved::Won)
            } else {
                claims.reserve(&self.ssm, &reservation).await
            }
        };
        let (reserved, ()) = tokio::join!(reserve, raise_hint);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            read_ms = ms(read),
            claim_ms = ms(claimed - read),
            record_ms = ms(started.elapsed() - claimed),
            lost = round.lost,
            "create phases: rules + hint read, claims, reservation + hint written"
        );
        match reserved {
            Ok(claims::Reserved::Won) => Ok(allocation),
            Ok(claims::Reserved::Lost(Some(winner)))
                if winner.priorities.len() == want
                    && winner.priorities.iter().all(|p| properties.contains(*p)) =>
            {
                tracing::info!(
                    ours = ?allocation.priorities,
                    theirs = ?winner.priorities,
                    "a duplicate of this request reserved first; releasing ours and answering with theirs"
                );
                // Not the ones it answers with: a duplicate running at the same moment finds the
                // claims the other wrote and counts them as its own (both name this resource).
                for &priority in round.fresh.iter().filter(|p| !winner.priorities.contains(p)) {
                    if let Err(error) = claims.release(&self.ssm, priority, owner).await {
                        tracing::warn!(priority, "cannot release a duplicate claim: {error}");
                    }
                }
                Ok(Allocation::new(listener, winner.priorities))
            }
            Ok(claims::Reserved::Lost(other)) => {
                tracing::warn!(
                    ?other,
                    "the reservation is held but unusable; answering with our claims"
                );
                Ok(allocation)
            }
            Err(error) => Err(self
                .undo(&claims, &round.fresh, owner, listener, error.into())
                .await),
        }
    }

    /// Tries the `free` candidates (in order while uncontended, spread after losses, see
    /// [`spread`]) until `round` holds `want` priorities or none are left.
    async fn claim_from(
        &self,
        claims: &ListenerClaims,
        owner: &Owner,
        free: &mut VecDeque<u32>,
        want: usize,
        round: &mut Round,
    ) -> Result<(), Error> {
        while round.mine.len() < want && !free.is_empty() {
            let index = spread(round.lost, free.len(), spread_seed(owner, round.lost));
            let Some(candidate) = free.remove(index) else {
                break;
            };
            round.tried.insert(candidate);
            match claims.claim(&self.ssm, candidate, owner).await? {
                claims::Claimed::Won => {
                    tracing::info!(priority = candidate, claim = %claims.name(candidate), "claimed");
                    round.mine.push(candidate);
                    round.fresh.push(candidate);
                }
                claims::Claimed::Lost => {
                    round.lost += 1;
                    round.highest_lost = round.highest_lost.max(Some(candidate));
                    tracing::debug!(
                        priority = candidate,
                        "claimed by someone else meanwhile; trying another"
                    );
                }
            }
        }
        Ok(())
    }

    /// The path that reads every claim: this resource's own claims in range first (except those in
    /// `exclude`, the allocation being replaced), then the free priorities in [`candidates`]
    /// order (none tried twice), then stale claims reclaimed lowest first (see the crate doc).
    async fn allocate_listed(
        &self,
        claims: &ListenerClaims,
        properties: &Properties,
        owner: &Owner,
        exclude: &BTreeSet<u32>,
        rules: &BTreeSet<u32>,
        round: &mut Round,
    ) -> Result<(), HandlerError> {
        let listener = properties.listener_arn.as_str();
        let want = properties.count as usize;
        let existing = claims.read_with_age(&self.ssm).await?;
        for (p, claim) in &existing {
            if round.mine.len() >= want {
                break;
            }
            if claim.owner == *owner
                && properties.contains(*p)
                && !exclude.contains(p)
                && !round.mine.contains(p)
            {
                tracing::info!(priority = p, "reusing a claim this resource already holds");
                round.mine.push(*p);
            }
        }

        let taken: BTreeSet<u32> = rules
            .iter()
            .chain(existing.keys())
            .chain(round.tried.iter())
            .chain(round.mine.iter())
            .copied()
            .collect();
        let mut free: VecDeque<u32> =
            candidates(properties.min_priority, properties.max_priority, &taken).collect();
        self.claim_from(claims, owner, &mut free, want, round).await?;

        if round.mine.len() < want {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let age = self.reclaim_age.as_secs() as i64;
            // Claims no rule holds, held by someone else, lowest first; each is stale when it is
            // older than the reclaim age or its owner stack is DELETE_COMPLETE.
            let unused: Vec<(u32, &claims::Claim, bool)> = existing
                .iter()
                .filter(|(p, c)| properties.contains(**p) && !rules.contains(p) && c.owner != *owner)
                .map(|(p, c)| {
                    let aged = c.written.is_some_and(|w| now.saturating_sub(w) > age);
                    (*p, c, aged)
                })
                .collect();
            let mut gone: BTreeMap<&str, bool> = BTreeMap::new();
            for (priority, stale, aged) in unused {
                let holder = &stale.owner;
                if round.mine.len() >= want {
                    break;
                }
                let stack = holder.stack_id.as_str();
                let deleted = match gone.get(stack) {
                    Some(known) => *known,
                    None if aged => false,
                    None => {
                        let known = self.stack_deleted(stack).await;
                        gone.insert(stack, known);
                        known
                    }
                };
                if !(aged || deleted) {
                    continue;
                }
                round.tried.insert(priority);
                if claims.reclaim(&self.ssm, priority, stale, owner).await? == claims::Claimed::Lost {
                    round.lost += 1;
                    continue;
                }
                tracing::warn!(
                    priority,
                    %holder,
                    reason = if deleted {
                        "its stack is DELETE_COMPLETE"
                    } else {
                        "older than the reclaim age"
                    },
                    age_limit_s = age,
                    "reclaimed a stale claim no rule holds"
                );
                round.reclaimed += 1;
                round.mine.push(priority);
                round.fresh.push(priority);
            }
        }

        if round.mine.len() < want {
            let in_range =
                |set: &mut dyn Iterator<Item = &u32>| set.filter(|p| properties.contains(**p)).count();
            return Err(Error::Exhausted {
                listener: listener.to_string(),
                range: properties.min_priority..=properties.max_priority,
                needed: properties.count,
                found: round.mine.len() as u32,
                rules: in_range(&mut rules.iter()),
                claims: in_range(&mut existing.keys().filter(|p| !rules.contains(p))) + round.lost,
            }
            .into());
        }
        Ok(())
    }

    /// Update's allocation: the rules, then [`ListenerRulePriority::allocate_listed`].
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
        let rules = rules::priorities(&self.elbv2, listener).await?;
        let mut round = Round::default();
        progress.set(format!("claiming priorities on listener {listener}"));
        if let Err(error) = self
            .allocate_listed(&claims, properties, owner, exclude, &rules, &mut round)
            .await
        {
            return Err(self.undo(&claims, &round.fresh, owner, listener, error).await);
        }
        round.log_lost();
        Ok(Allocation::new(listener, round.mine))
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
                        %holder,
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
    Owner::of(info)
}

impl CustomResource for ListenerRulePriority {
    type Properties = Properties;

    #[tracing::instrument(skip_all, fields(listener_arn = %request.properties.listener_arn))]
    async fn create(&self, request: Create<Properties>) -> Result<Created, HandlerError> {
        let properties = &request.properties;
        properties.validate()?;
        let owner = owner_of(&request.info);
        let allocation = self
            .allocate_create(properties, &owner, &request.info.progress)
            .await?;
        tracing::info!(
            priorities = ?allocation.priorities,
            "allocated"
        );
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
        let mut any = false;
        for &priority in &allocation.priorities {
            let released = claims.release(&self.ssm, priority, &owner).await?;
            tracing::info!(priority, released, "release");
            any |= released;
        }
        claims
            .unreserve(&self.ssm, &owner, &allocation.priorities)
            .await?;
        // Lower the hint when it points at what was just freed, so the top is handed out again.
        if any {
            let top = allocation.priorities.last().copied().unwrap_or(0);
            let lowest = allocation.priorities.first().copied().unwrap_or(1);
            match claims.state(&self.ssm, &owner).await {
                Ok(state) if state.hint == Some(top) => {
                    claims.set_hint(&self.ssm, lowest - 1).await;
                    tracing::info!(hint = lowest - 1, "lowered the hint");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!("cannot read the hint: {error}"),
            }
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
        for seed in [0, 1, 7, u64::MAX] {
            assert_eq!(
                spread(0, 50_000, seed),
                0,
                "uncontended: always the first candidate"
            );
            assert!(spread(1, 50_000, seed) < 64);
            assert!(spread(2, 50_000, seed) < 128);
            assert!(spread(30, 50_000, seed) < 256);
            assert!(spread(30, 3, seed) < 3, "never past the candidates left");
            assert_eq!(spread(5, 1, seed), 0);
        }
    }

    #[test]
    fn a_crowd_spreads_over_the_window() {
        // 64 resources that all lost the first candidate: their next picks should look like 64
        // uniform draws from 64 (about 40 distinct), and a second loss moves each elsewhere.
        let owners: Vec<Owner> = (0..64)
            .map(|i| {
                Owner::new(
                    format!("arn:aws:cloudformation:us-east-1:1:stack/s-{i}/id"),
                    "Rule",
                )
            })
            .collect();
        let picks: BTreeSet<usize> = owners
            .iter()
            .map(|o| spread(1, 50_000, spread_seed(o, 1)))
            .collect();
        assert!(picks.len() >= 32, "{} distinct of 64", picks.len());
        let moved = owners
            .iter()
            .filter(|o| spread(1, 50_000, spread_seed(o, 1)) != spread(2, 50_000, spread_seed(o, 2)))
            .count();
        assert!(moved >= 60, "{moved}");
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
