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
//!   variable `PRIORITY_RECLAIM_AGE_SECONDS` overrides it, see Configuration). A service's claim is always followed
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
//!
//! # Configuration
//!
//! Read once at init by [`Settings::from_env`] and logged (the policy is
//! `cfn_custom_resource::settings`'s): `PRIORITY_CLAIM_PATH` (support stack parameter
//! `PriorityClaimPath`, default [`CLAIM_ROOT`]; every request needs it) and
//! `PRIORITY_RECLAIM_AGE_SECONDS` (default [`DEFAULT_RECLAIM_AGE`]; only a request that must
//! reclaim needs it). Unset or empty gives the default; an invalid value is never replaced by
//! the default: the requests that need it are answered FAILED naming the variable and its value.
//! Unless `AWS_MAX_ATTEMPTS` is set (the AWS SDK's variable), SDK calls are tried 10 times
//! rather than the workspace's 6: claims are many small writes that ride out SSM throttling.

#![warn(missing_docs)]

// One story a file: the properties; the allocation id codec (physical id and Data); the spread
// strategy (which candidate next); the allocator (the numbered steps above); the CustomResource
// impl (Create, Update, Delete); beneath them the claims and state in SSM, and the rules.
mod allocation;
mod allocator;
mod claims;
mod error;
mod properties;
mod resource;
mod rules;
mod spread;

use std::time::Duration;

use cfn_custom_resource::HandlerError;
use cfn_custom_resource::settings::{self, Setting};

pub use allocation::{Allocation, Priorities};
pub use claims::{CLAIM_ROOT, Claim, Claimed, ListenerClaims, Owner, STATE_DIR};
pub use error::Error;
pub use properties::{HIGHEST_PRIORITY, LOWEST_PRIORITY, MAX_COUNT, Properties, Validated};
pub use rules::PAGE_SIZE;
pub use spread::{SPREAD_WINDOW, candidates, spread, spread_seed};

/// The handler, with the clients it needs, built once per process.
pub struct ListenerRulePriority {
    ssm: aws_sdk_ssm::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    settings: Settings,
    cloudformation: Option<aws_sdk_cloudformation::Client>,
}

/// How old a claim no listener rule holds must be before the fallback path reclaims it, unless
/// `PRIORITY_RECLAIM_AGE_SECONDS` says otherwise.
pub const DEFAULT_RECLAIM_AGE: Duration = Duration::from_secs(72 * 3600);

/// The function's own configuration, read once at init (the policy is
/// `cfn_custom_resource::settings`'s: unset or empty is the default; an invalid value fails the
/// requests that need it, naming it). `AWS_MAX_ATTEMPTS` is the AWS SDK's and read by `main`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `PRIORITY_CLAIM_PATH` (support stack parameter `PriorityClaimPath`, default
    /// [`CLAIM_ROOT`]): the SSM path the claims live under, the one the function's IAM role may
    /// write. An SSM path (`/a/b`, letters, digits, `_.-`); every request needs it.
    pub claim_root: Setting<String>,
    /// `PRIORITY_RECLAIM_AGE_SECONDS` (no support-stack parameter, default
    /// [`DEFAULT_RECLAIM_AGE`]): how long a claim must have existed, with no listener rule at its
    /// priority, before the fallback path may reclaim it (see the crate doc). Only a Create or
    /// Update that has to reclaim needs it.
    pub reclaim_age: Setting<Duration>,
}

impl Default for Settings {
    /// The defaults, as with neither variable set.
    fn default() -> Self {
        Self {
            claim_root: Setting::valid(
                CLAIM_PATH_VARIABLE,
                Some("PriorityClaimPath"),
                CLAIM_ROOT.to_string(),
            ),
            reclaim_age: Setting::valid(RECLAIM_AGE_VARIABLE, None, DEFAULT_RECLAIM_AGE),
        }
    }
}

const CLAIM_PATH_VARIABLE: &str = "PRIORITY_CLAIM_PATH";
const RECLAIM_AGE_VARIABLE: &str = "PRIORITY_RECLAIM_AGE_SECONDS";

impl Settings {
    /// Reads `PRIORITY_CLAIM_PATH` and `PRIORITY_RECLAIM_AGE_SECONDS` and logs the effective
    /// values.
    pub fn from_env() -> Self {
        let settings = Self {
            claim_root: Setting::read(
                CLAIM_PATH_VARIABLE,
                Some("PriorityClaimPath"),
                CLAIM_ROOT.to_string(),
                "an SSM path such as /custom-resource/listener-rule-priority (/-separated names of letters, digits, _ . -)",
                parse_claim_root,
            ),
            reclaim_age: settings::seconds(RECLAIM_AGE_VARIABLE, None, DEFAULT_RECLAIM_AGE),
        };
        tracing::info!(
            PRIORITY_CLAIM_PATH = %settings.claim_root,
            PRIORITY_RECLAIM_AGE_SECONDS = %settings.reclaim_age,
            "listener-rule-priority settings"
        );
        settings::log_problems([settings.claim_root.problem(), settings.reclaim_age.problem()]);
        settings
    }
}

/// The support stack's `PriorityClaimPath` pattern, `^(/[a-zA-Z0-9_.-]+)+$`, with a trailing `/`
/// allowed (the claim paths are built without it).
fn parse_claim_root(value: &str) -> Option<String> {
    let path = value.trim_end_matches('/');
    let names = path.strip_prefix('/')?;
    names
        .split('/')
        .all(|name| {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        })
        .then(|| value.to_string())
}

impl ListenerRulePriority {
    /// The handler with the default [`Settings`]; [`ListenerRulePriority::with_settings`] gives
    /// the function's own.
    pub fn new(ssm: aws_sdk_ssm::Client, elbv2: aws_sdk_elasticloadbalancingv2::Client) -> Self {
        Self {
            ssm,
            elbv2,
            settings: Settings::default(),
            cloudformation: None,
        }
    }

    /// Uses `settings` (the claim path and the reclaim age).
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }

    /// Lets the fallback path ask CloudFormation (`DescribeStacks`) whether a claim's owner stack
    /// is `DELETE_COMPLETE`; without it only the reclaim age makes a claim stale.
    pub fn with_cloudformation(mut self, cloudformation: aws_sdk_cloudformation::Client) -> Self {
        self.cloudformation = Some(cloudformation);
        self
    }

    /// The claim root every request needs, or the Reason naming an invalid `PRIORITY_CLAIM_PATH`.
    fn claim_root(&self) -> Result<&str, HandlerError> {
        self.settings.claim_root.get().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_roots_follow_the_support_stack_pattern() {
        for good in [
            "/custom-resource/listener-rule-priority",
            "/platform/test-claims",
            "/a/",
            "/a.b_c-d",
        ] {
            assert_eq!(parse_claim_root(good).as_deref(), Some(good), "{good}");
        }
        for bad in ["platform/claims", "/", "//a", "/a//b", "/a b", "/a:b"] {
            assert_eq!(parse_claim_root(bad), None, "{bad}");
        }
    }

    #[test]
    fn an_invalid_claim_path_is_named_not_defaulted() {
        let root = Setting::from_value(
            CLAIM_PATH_VARIABLE,
            Some("PriorityClaimPath"),
            CLAIM_ROOT.to_string(),
            "an SSM path",
            Some("claims"),
            parse_claim_root,
        );
        let reason = root.get().unwrap_err().message().to_string();
        assert!(
            reason.contains("PRIORITY_CLAIM_PATH")
                && reason.contains("\"claims\"")
                && reason.contains("PriorityClaimPath"),
            "{reason}"
        );
        assert_eq!(
            Settings::default().claim_root.value(),
            Ok(&CLAIM_ROOT.to_string())
        );
    }
}
