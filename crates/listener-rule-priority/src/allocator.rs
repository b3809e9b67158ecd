//! The allocator: reads the listener's rules and state, claims candidates, falls back to the
//! claim listing and stale claims, and undoes what a failed allocation made.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use cfn_custom_resource::{HandlerError, Progress};

use crate::allocation::Priorities;
use crate::claims::{self, ListenerClaims, Owner};
use crate::error::Error;
use crate::spread::{candidates, spread, spread_seed};
use crate::{Allocation, ListenerRulePriority, Validated, rules};

/// What Create's [`ListenerRulePriority::record`] writes besides the reservation, decided by what
/// it read.
struct Written {
    /// The reservation found did not fit: overwrite it instead of creating one.
    overwrite_reservation: bool,
    /// The hint as read.
    hint: Option<u32>,
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
}

impl Round {
    /// What it holds, once that is `want` priorities (`want` is at least one).
    fn filled(&self, want: usize) -> Option<Priorities> {
        Priorities::new(self.mine.iter().copied()).filter(|p| p.len() >= want)
    }

    /// A claim this allocation made: it holds the priority, and releases it if the allocation
    /// fails.
    fn won(&mut self, priority: u32) {
        self.mine.push(priority);
        self.fresh.push(priority);
    }

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

impl ListenerRulePriority {
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

    /// Create's allocation, in a number of calls that does not grow with the claims on the
    /// listener: the rules and (in parallel) the hint and this resource's reservation; then
    /// create-if-absent claims upward from the highest of both ([`ListenerRulePriority::claim_upward`]);
    /// the claim listing only when that runs out of range
    /// ([`ListenerRulePriority::allocate_listed`]). Then the reservation decides between
    /// duplicates of this request, and the hint is moved up ([`ListenerRulePriority::record`]).
    pub(crate) async fn allocate_create(
        &self,
        v: &Validated,
        owner: &Owner,
        progress: &Progress,
    ) -> Result<Allocation, HandlerError> {
        let listener = v.listener_arn.as_str();
        let claims = ListenerClaims::under(self.claim_root()?, listener);
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

        // A request for this resource was answered before (a retry, or a duplicate that got
        // there first): the same priorities, if they still fit and are still ours.
        let mut overwrite_reservation = false;
        if let Some(reservation) = &state.reservation {
            let current = Allocation::new(listener, reservation.priorities.clone());
            if v.fits(&current.priorities) && self.reassert(&current, owner).await? {
                tracing::info!(priorities = ?current.priorities, "this resource's reservation is answered again");
                return Ok(current);
            }
            tracing::info!(reserved = ?reservation.priorities, "the reservation does not fit these properties; allocating anew");
            overwrite_reservation = true;
        }

        progress.set(format!("claiming priorities on listener {listener}"));
        let (allocation, round) = self.claim_upward(&claims, v, owner, &rules, &state).await?;
        let claimed = started.elapsed();
        let written = Written {
            overwrite_reservation,
            hint: state.hint,
        };
        let reserved = self.record(&claims, owner, &allocation, &round, written).await;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            read_ms = ms(read),
            claim_ms = ms(claimed - read),
            record_ms = ms(started.elapsed() - claimed),
            lost = round.lost,
            "create phases: rules + hint read, claims, reservation + hint written"
        );
        self.settle_duplicates(&claims, v, owner, allocation, &round, reserved)
            .await
    }

    /// Create's claims: candidates from one above the highest of the rules in range and the
    /// hint (or `MinPriority`) up to `MaxPriority`, then the claim listing when they run out.
    /// Claims made by a failed attempt are released again ([`ListenerRulePriority::undo`]).
    async fn claim_upward(
        &self,
        claims: &ListenerClaims,
        v: &Validated,
        owner: &Owner,
        rules: &BTreeSet<u32>,
        state: &claims::State,
    ) -> Result<(Allocation, Round), HandlerError> {
        let listener = v.listener_arn.as_str();
        let highest_rule = rules.range(v.range.clone()).next_back().copied();
        let hint = state.hint.filter(|h| *h <= v.max());
        let start = highest_rule.max(hint).map_or(v.min(), |h| (h + 1).max(v.min()));
        let mut free: VecDeque<u32> = (start..=v.max()).filter(|p| !rules.contains(p)).collect();
        let mut round = Round::default();
        if let Err(error) = self
            .claim_from(claims, owner, &mut free, v.count, &mut round)
            .await
        {
            return Err(self
                .undo(claims, &round.fresh, owner, listener, error.into())
                .await);
        }
        let priorities = match round.filled(v.count) {
            Some(priorities) => priorities,
            None => {
                tracing::info!(
                    start,
                    found = round.mine.len(),
                    "no room above the highest rule and the hint; reading every claim"
                );
                match self
                    .allocate_listed(claims, v, owner, &BTreeSet::new(), rules, &mut round)
                    .await
                {
                    Ok(priorities) => priorities,
                    Err(error) => return Err(self.undo(claims, &round.fresh, owner, listener, error).await),
                }
            }
        };
        round.log_lost();
        Ok((Allocation::new(listener, priorities), round))
    }

    /// Writes this resource's reservation (the first of duplicate requests wins) and, at the
    /// same time, raises the hint to the allocation's top. The hint write is skipped when the
    /// hint read was already at or above ours, or when a concurrent request holds a higher
    /// candidate we lost: it raises the hint past ours itself (a write less each on a crowded
    /// listener; the hint is best effort either way).
    async fn record(
        &self,
        claims: &ListenerClaims,
        owner: &Owner,
        allocation: &Allocation,
        round: &Round,
        written: Written,
    ) -> Result<claims::Reserved, Error> {
        let reservation = claims::Reservation {
            priorities: allocation.priorities.clone(),
            owner: owner.clone(),
        };
        let top = allocation.priorities.highest();
        let raise_hint = async {
            if written.hint.is_none_or(|h| h < top) && round.highest_lost.is_none_or(|l| l < top) {
                claims.set_hint(&self.ssm, top).await;
            }
        };
        let reserve = async {
            if written.overwrite_reservation {
                claims
                    .replace_reservation(&self.ssm, &reservation)
                    .await
                    .map(|()| claims::Reserved::Won)
            } else {
                claims.reserve(&self.ssm, &reservation).await
            }
        };
        let (reserved, ()) = tokio::join!(reserve, raise_hint);
        reserved
    }

    /// The answer once the reservation is written: ours; or, when a duplicate of this request
    /// reserved first, the duplicate's priorities (ours are given back). A failed write releases
    /// our claims.
    async fn settle_duplicates(
        &self,
        claims: &ListenerClaims,
        v: &Validated,
        owner: &Owner,
        allocation: Allocation,
        round: &Round,
        reserved: Result<claims::Reserved, Error>,
    ) -> Result<Allocation, HandlerError> {
        let listener = v.listener_arn.as_str();
        match reserved {
            Ok(claims::Reserved::Won) => Ok(allocation),
            Ok(claims::Reserved::Lost(Some(winner))) if v.fits(&winner.priorities) => {
                tracing::info!(
                    ours = ?allocation.priorities,
                    theirs = ?winner.priorities,
                    "a duplicate of this request reserved first; releasing ours and answering with theirs"
                );
                // Not the ones it answers with: a duplicate running at the same moment finds the
                // claims the other wrote and counts them as its own (both name this resource).
                for &priority in round.fresh.iter().filter(|p| !winner.priorities.contains(**p)) {
                    if let Err(error) = claims.release(&self.ssm, priority, owner).await {
                        tracing::warn!(
                            priority,
                            "cannot release a duplicate claim: {}",
                            cfn_custom_resource::error_chain(&error)
                        );
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
                .undo(claims, &round.fresh, owner, listener, error.into())
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
                    round.won(candidate);
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
    /// order (none tried twice), then stale claims reclaimed lowest first
    /// ([`ListenerRulePriority::reclaim_stale`]). The priorities `round` holds then, or
    /// [`Error::Exhausted`] when they are too few.
    async fn allocate_listed(
        &self,
        claims: &ListenerClaims,
        v: &Validated,
        owner: &Owner,
        exclude: &BTreeSet<u32>,
        rules: &BTreeSet<u32>,
        round: &mut Round,
    ) -> Result<Priorities, HandlerError> {
        let existing = claims.read_with_age(&self.ssm).await?;
        for (p, claim) in &existing {
            if round.mine.len() >= v.count {
                break;
            }
            if claim.owner == *owner && v.contains(*p) && !exclude.contains(p) && !round.mine.contains(p) {
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
        let mut free: VecDeque<u32> = candidates(v.min(), v.max(), &taken).collect();
        self.claim_from(claims, owner, &mut free, v.count, round).await?;

        if round.mine.len() < v.count {
            self.reclaim_stale(claims, v, owner, &existing, rules, round)
                .await?;
        }

        if let Some(priorities) = round.filled(v.count) {
            return Ok(priorities);
        }
        let in_range = |set: &mut dyn Iterator<Item = &u32>| set.filter(|p| v.contains(**p)).count();
        Err(Error::Exhausted {
            listener: v.listener_arn.clone(),
            range: v.range.clone(),
            needed: v.count,
            found: round.mine.len(),
            rules: in_range(&mut rules.iter()),
            claims: in_range(&mut existing.keys().filter(|p| !rules.contains(p))) + round.lost,
        }
        .into())
    }

    /// Reclaims stale claims until `round` holds `Count` priorities: claims no rule holds, held
    /// by someone else, lowest first; each is stale when it is older than the reclaim age
    /// (`PRIORITY_RECLAIM_AGE_SECONDS`, which this step needs) or its owner stack is
    /// `DELETE_COMPLETE`.
    async fn reclaim_stale(
        &self,
        claims: &ListenerClaims,
        v: &Validated,
        owner: &Owner,
        existing: &BTreeMap<u32, claims::Claim>,
        rules: &BTreeSet<u32>,
        round: &mut Round,
    ) -> Result<(), HandlerError> {
        let age = i64::try_from(self.settings.reclaim_age.get()?.as_secs()).unwrap_or(i64::MAX);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let unused: Vec<(u32, &claims::Claim, bool)> = existing
            .iter()
            .filter(|(p, c)| v.contains(**p) && !rules.contains(p) && c.owner != *owner)
            .map(|(p, c)| {
                let aged = c.written.is_some_and(|w| now.saturating_sub(w) > age);
                (*p, c, aged)
            })
            .collect();
        let mut gone: BTreeMap<&str, bool> = BTreeMap::new();
        for (priority, stale, aged) in unused {
            let holder = &stale.owner;
            if round.mine.len() >= v.count {
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
            round.won(priority);
        }
        Ok(())
    }

    /// Update's allocation: the rules, then [`ListenerRulePriority::allocate_listed`].
    pub(crate) async fn allocate(
        &self,
        v: &Validated,
        owner: &Owner,
        exclude: &BTreeSet<u32>,
        progress: &Progress,
    ) -> Result<Allocation, HandlerError> {
        let listener = v.listener_arn.as_str();
        let claims = ListenerClaims::under(self.claim_root()?, listener);
        progress.set(format!(
            "reading the rules of listener {listener} and the claims under {}",
            claims.path()
        ));
        let rules = rules::priorities(&self.elbv2, listener).await?;
        let mut round = Round::default();
        progress.set(format!("claiming priorities on listener {listener}"));
        match self
            .allocate_listed(&claims, v, owner, exclude, &rules, &mut round)
            .await
        {
            Ok(priorities) => {
                round.log_lost();
                Ok(Allocation::new(listener, priorities))
            }
            Err(error) => Err(self.undo(&claims, &round.fresh, owner, listener, error).await),
        }
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
                    "cannot release a claim after a failed allocation: {}",
                    cfn_custom_resource::error_chain(&release)
                );
                kept.push(priority);
            }
        }
        match Priorities::new(kept).map(|kept| Allocation::new(listener, kept).id()) {
            Some(Ok(id)) => error.with_physical_id(id),
            None | Some(Err(_)) => error,
        }
    }

    /// Makes sure every claim of `current` exists and is ours; `false` when one is held by
    /// someone else.
    pub(crate) async fn reassert(&self, current: &Allocation, owner: &Owner) -> Result<bool, HandlerError> {
        let claims = ListenerClaims::under(self.claim_root()?, &current.listener_arn);
        for priority in current.priorities.iter() {
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
