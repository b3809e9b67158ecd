//! The admin credential, read on every invocation (never cached across invocations) from one of
//! two places, with the fallback a rotation in flight needs.
//!
//! - **SSM** (`AdminUsername` + `AdminPasswordParameterName`, e.g. `Custom::AdminSecret`'s
//!   parameter): the latest version first. While the cluster stack's own rotation is in flight,
//!   SSM's latest version can be newer than what RDS has applied, so a login the server refuses
//!   is tried once more with the previous version (the newest older one holding another value).
//! - **Secrets Manager** (`AdminSecretArn`, e.g. RDS's managed master secret `rds!cluster-...`,
//!   JSON `username` and `password`): stage `AWSCURRENT` first. RDS rotates it (every 7 days by
//!   default); a login the server refuses reads `AWSCURRENT` again once (it may have moved since
//!   the first read) and then tries `AWSPREVIOUS`, which the cluster may still have during a
//!   rotation.
//!
//! A Reason for a refused login says which credentials were tried (version or stage, never a
//! value). The secret's text is parsed here, without serde's messages, which could quote it.

use cfn_custom_resource::Secret;
use ssm_secret::ParameterStore;

use crate::error::Error;
use crate::properties::AdminSource;

/// Secrets Manager's stage of the current version.
pub const AWSCURRENT: &str = "AWSCURRENT";
/// Secrets Manager's stage of the version before it (a rotation moves it there).
pub const AWSPREVIOUS: &str = "AWSPREVIOUS";

/// A user name and password to log in as the cluster's admin, and where they came from.
#[derive(Debug, Clone)]
pub struct AdminCredential {
    /// The user to log in as.
    pub username: String,
    /// Its password (redacted in `Debug`).
    pub password: Secret<String>,
    /// For logs and Reasons: "version 7 of SSM parameter /x", "stage AWSCURRENT of secret arn".
    pub origin: String,
}

/// Reads admin credentials from SSM or Secrets Manager.
#[derive(Debug, Clone)]
pub struct AdminCredentials {
    ssm: ParameterStore,
    secrets: aws_sdk_secretsmanager::Client,
}

impl AdminCredentials {
    /// Reads through `ssm` (the SSM form) and `secrets` (the Secrets Manager form).
    pub fn new(ssm: ParameterStore, secrets: aws_sdk_secretsmanager::Client) -> Self {
        Self { ssm, secrets }
    }

    /// The credential to try first: SSM's latest version, or the secret's `AWSCURRENT`.
    pub async fn current(&self, source: &AdminSource) -> Result<AdminCredential, Error> {
        match source {
            AdminSource::Ssm { username, parameter } => {
                let stored = self
                    .ssm
                    .value_and_version(parameter)
                    .await
                    .map_err(|source| Error::Store {
                        name: parameter.clone(),
                        source: Box::new(source),
                    })?
                    .ok_or_else(|| Error::AdminPasswordMissing(parameter.clone()))?;
                Ok(AdminCredential {
                    username: username.clone(),
                    password: stored.0,
                    origin: format!("version {} of SSM parameter {parameter}", stored.1),
                })
            }
            AdminSource::SecretsManager { secret_id } => self.stage(secret_id, AWSCURRENT).await,
        }
    }

    /// What to try, in order, once the server refused `refused`: SSM's previous version; or the
    /// secret's `AWSCURRENT` read again (when it moved) and its `AWSPREVIOUS`. Credentials equal
    /// to one already tried are skipped; a missing previous version or stage is no candidate.
    pub async fn fallbacks(
        &self,
        source: &AdminSource,
        refused: &AdminCredential,
    ) -> Result<Vec<AdminCredential>, Error> {
        let mut candidates: Vec<AdminCredential> = Vec::new();
        match source {
            AdminSource::Ssm { username, parameter } => {
                let history = self.ssm.history(parameter).await.map_err(|source| Error::Store {
                    name: parameter.clone(),
                    source: Box::new(source),
                })?;
                if let Some(previous) = history
                    .versions
                    .iter()
                    .rev()
                    .skip(1)
                    .find(|v| v.value != refused.password)
                {
                    candidates.push(AdminCredential {
                        username: username.clone(),
                        password: previous.value.clone(),
                        origin: format!(
                            "version {} (the previous) of SSM parameter {parameter}",
                            previous.version
                        ),
                    });
                }
            }
            AdminSource::SecretsManager { secret_id } => {
                for stage in [AWSCURRENT, AWSPREVIOUS] {
                    match self.stage(secret_id, stage).await {
                        Ok(candidate) => candidates.push(candidate),
                        Err(Error::AdminSecretStageMissing { .. }) if stage == AWSPREVIOUS => {}
                        Err(error) => return Err(error),
                    }
                }
            }
        }
        candidates.retain(|c| !(c.username == refused.username && c.password == refused.password));
        candidates.dedup_by(|a, b| a.username == b.username && a.password == b.password);
        Ok(candidates)
    }

    /// The secret's version at `stage`, parsed.
    async fn stage(&self, secret_id: &str, stage: &str) -> Result<AdminCredential, Error> {
        let output = self
            .secrets
            .get_secret_value()
            .secret_id(secret_id)
            .version_stage(stage)
            .send()
            .await
            .map_err(|error| {
                let service = error.as_service_error();
                if service.is_some_and(|e| e.is_resource_not_found_exception()) {
                    if stage == AWSCURRENT {
                        Error::AdminSecretMissing(secret_id.to_string())
                    } else {
                        Error::AdminSecretStageMissing {
                            secret: secret_id.to_string(),
                            stage: stage.to_string(),
                        }
                    }
                } else {
                    Error::SecretsManager {
                        secret: secret_id.to_string(),
                        stage: stage.to_string(),
                        source: Box::new(error.into()),
                    }
                }
            })?;
        let text = Secret::new(output.secret_string().unwrap_or_default().to_string());
        let (username, password) = parse_secret(&text).map_err(|why| Error::AdminSecretShape {
            secret: secret_id.to_string(),
            stage: stage.to_string(),
            why,
        })?;
        Ok(AdminCredential {
            username,
            password,
            origin: format!("stage {stage} of secret {secret_id}"),
        })
    }
}

/// `username` and `password` from the secret's JSON text. The error says what is wrong with its
/// shape and never quotes it.
fn parse_secret(text: &Secret<String>) -> Result<(String, Secret<String>), &'static str> {
    let value: serde_json::Value =
        serde_json::from_str(text.expose()).map_err(|_| "its SecretString is not a JSON object")?;
    let object = value.as_object().ok_or("its SecretString is not a JSON object")?;
    let username = match object.get("username") {
        Some(serde_json::Value::String(u)) if !u.is_empty() => u.clone(),
        Some(_) => return Err("its \"username\" is not a non-empty string"),
        None => return Err("it has no \"username\""),
    };
    let password = match object.get("password") {
        Some(serde_json::Value::String(p)) if !p.is_empty() => Secret::new(p.clone()),
        Some(_) => return Err("its \"password\" is not a non-empty string"),
        None => return Err("it has no \"password\""),
    };
    Ok((username, password))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_shape_rds_writes() {
        let (user, password) = parse_secret(&Secret::new(
            r#"{"username":"postgres","password":"s3cr3t-Value","engine":"postgres"}"#.into(),
        ))
        .unwrap();
        assert_eq!(
            (user.as_str(), password.expose().as_str()),
            ("postgres", "s3cr3t-Value")
        );
    }

    #[test]
    fn a_bad_shape_is_named_without_quoting_the_secret() {
        for (text, why) in [
            ("hunter2-not-json", "not a JSON object"),
            (r#"["hunter2"]"#, "not a JSON object"),
            (r#"{"password":"hunter2"}"#, "no \"username\""),
            (r#"{"username":"postgres"}"#, "no \"password\""),
            (r#"{"username":"postgres","password":42}"#, "\"password\" is not"),
            (r#"{"username":"hunter2","password":""}"#, "\"password\" is not"),
        ] {
            let error = parse_secret(&Secret::new(text.into())).unwrap_err();
            assert!(error.contains(why), "{text}: {error}");
            assert!(!error.contains("hunter2") && !error.contains("42"), "{error}");
        }
    }
}
