//! Priority claims: one SSM String parameter per claimed priority, created with
//! `Overwrite=false`, so exactly one writer can create a given name.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::ParameterType;

use crate::error::Error;

/// Where every listener's claims live.
pub const CLAIM_ROOT: &str = "/custom-resource/listener-rule-priority";

/// Who holds a claim: the parameter's value, `<stack id>|<logical resource id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(String);

impl Owner {
    pub fn new(stack_id: &str, logical_resource_id: &str) -> Self {
        Self(format!("{stack_id}|{logical_resource_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The claims of one listener, under `<CLAIM_ROOT>/<listener id part>/`.
#[derive(Debug, Clone)]
pub struct ListenerClaims {
    path: String,
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
        Self {
            path: format!("{}/{safe}", root.trim_end_matches('/')),
            listener_arn: listener_arn.to_string(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The parameter that claims `priority`.
    pub fn name(&self, priority: u32) -> String {
        format!("{}/{priority}", self.path)
    }

    /// Every claim on the listener, priority → owner, over all pages.
    pub async fn read(&self, ssm: &Client) -> Result<BTreeMap<u32, Owner>, Error> {
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
                    message: cfn_custom_resource::error_chain(&e),
                })?;
            for parameter in page.parameters() {
                let priority = parameter
                    .name()
                    .and_then(|n| n.rsplit('/').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if let (Some(priority), Some(value)) = (priority, parameter.value()) {
                    claims.insert(priority, Owner(value.to_string()));
                }
            }
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_string()),
                _ => break,
            }
        }
        Ok(claims)
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
            .value(owner.as_str())
            .r#type(ParameterType::String)
            .overwrite(false)
            .description(description)
            .send()
            .await;
        match put {
            Ok(_) => Ok(Claimed::Won),
            Err(e) => {
                let message = cfn_custom_resource::error_chain(&e);
                let service = e.into_service_error();
                if service.is_parameter_already_exists() {
                    Ok(Claimed::Lost)
                } else if service.is_too_many_updates() {
                    // Someone is writing the same name right now: whoever's value is there won.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    match self.owner(ssm, priority).await? {
                        Some(holder) if holder == *owner => Ok(Claimed::Won),
                        _ => Ok(Claimed::Lost),
                    }
                } else {
                    Err(Error::Claim {
                        priority,
                        name,
                        message,
                    })
                }
            }
        }
    }

    /// The owner of the claim on `priority`, if there is one.
    pub async fn owner(&self, ssm: &Client, priority: u32) -> Result<Option<Owner>, Error> {
        let name = self.name(priority);
        match ssm.get_parameter().name(&name).send().await {
            Ok(out) => Ok(out
                .parameter()
                .and_then(|p| p.value())
                .map(|v| Owner(v.to_string()))),
            Err(e) => {
                let message = cfn_custom_resource::error_chain(&e);
                if e.into_service_error().is_parameter_not_found() {
                    Ok(None)
                } else {
                    Err(Error::Claim {
                        priority,
                        name,
                        message,
                    })
                }
            }
        }
    }

    /// Releases the claim on `priority` if `owner` holds it; a claim that is gone, or that someone
    /// else holds, is left alone. Returns whether a claim was deleted.
    pub async fn release(&self, ssm: &Client, priority: u32, owner: &Owner) -> Result<bool, Error> {
        let name = self.name(priority);
        let release_error = |message: String| Error::Release {
            priority,
            name: name.clone(),
            message,
        };
        match self.owner(ssm, priority).await {
            Ok(None) => return Ok(false),
            Ok(Some(holder)) if holder != *owner => {
                tracing::warn!(priority, claim = %name, holder = holder.as_str(), "the claim belongs to another resource; left alone");
                return Ok(false);
            }
            Ok(Some(_)) => {}
            Err(Error::Claim { message, .. }) => return Err(release_error(message)),
            Err(other) => return Err(other),
        }
        match ssm.delete_parameter().name(&name).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let message = cfn_custom_resource::error_chain(&e);
                if e.into_service_error().is_parameter_not_found() {
                    Ok(false)
                } else {
                    Err(release_error(message))
                }
            }
        }
    }
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
    fn owners_name_stack_and_logical_id() {
        assert_eq!(
            Owner::new("arn:stack/s/1", "Priority").as_str(),
            "arn:stack/s/1|Priority"
        );
        assert_ne!(Owner::new("s", "A"), Owner::new("s", "B"));
    }
}
