//! The `CustomResource` implementation: what Create, Update and Delete do with an allocation.

use std::collections::BTreeSet;

use cfn_custom_resource::{Create, Created, CustomResource, Delete, HandlerError, Update, Updated};

use crate::claims::{ListenerClaims, Owner};
use crate::{Allocation, ListenerRulePriority, Properties};

impl CustomResource for ListenerRulePriority {
    type Properties = Properties;

    #[tracing::instrument(skip_all, fields(listener_arn = %request.properties.listener_arn))]
    async fn create(&self, request: Create<Properties>) -> Result<Created, HandlerError> {
        let v = request.properties.validate()?;
        let owner = Owner::of(&request.info);
        let allocation = self.allocate_create(&v, &owner, &request.info.progress).await?;
        tracing::info!(
            priorities = ?allocation.priorities,
            "allocated"
        );
        Ok(Created::new(allocation.id()?).with_data(allocation.data()))
    }

    #[tracing::instrument(skip_all, fields(listener_arn = %request.properties.listener_arn))]
    async fn update(&self, request: Update<Properties>) -> Result<Updated, HandlerError> {
        let v = request.properties.validate()?;
        let owner = Owner::of(&request.info);
        let current = Allocation::parse(request.physical_id.as_str());
        if let Some(current) = &current {
            let keepable = current.listener_arn == v.listener_arn && v.fits(&current.priorities);
            if keepable {
                request.info.progress.set("checking the current claims");
                if self.reassert(current, &owner).await? {
                    tracing::info!(priorities = ?current.priorities, "kept");
                    return Ok(Updated::keep().with_data(current.data()));
                }
            }
        }
        let exclude: BTreeSet<u32> = current
            .filter(|c| c.listener_arn == v.listener_arn)
            .map(|c| c.priorities.iter().collect())
            .unwrap_or_default();
        let allocation = self
            .allocate(&v, &owner, &exclude, &request.info.progress)
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
        let owner = Owner::of(&request.info);
        let claims = ListenerClaims::under(self.claim_root()?, &allocation.listener_arn);
        request
            .info
            .progress
            .set(format!("releasing claims under {}", claims.path()));
        let mut any = false;
        for priority in allocation.priorities.iter() {
            let released = claims.release(&self.ssm, priority, &owner).await?;
            tracing::info!(priority, released, "release");
            any |= released;
        }
        claims
            .unreserve(&self.ssm, &owner, &allocation.priorities)
            .await?;
        // Lower the hint when it points at what was just freed, so the top is handed out again.
        if any {
            let (lowest, top) = (allocation.priorities.lowest(), allocation.priorities.highest());
            match claims.state(&self.ssm, &owner).await {
                Ok(state) if state.hint == Some(top) => {
                    claims.set_hint(&self.ssm, lowest - 1).await;
                    tracing::info!(hint = lowest - 1, "lowered the hint");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(
                    "cannot read the hint: {}",
                    cfn_custom_resource::error_chain(&error)
                ),
            }
        }
        Ok(())
    }
}
