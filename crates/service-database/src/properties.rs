//! The resource's properties, exactly as templates write them.

use std::time::Duration;

use serde::Deserialize;

use crate::error::Error;
use crate::ident::Identifier;

/// `ResourceProperties` of a `Custom::ServiceDatabase` (see the crate documentation for each).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Properties {
    pub cluster_endpoint: String,
    #[serde(
        default = "default_port",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub port: u16,
    /// With `AdminPasswordParameterName`: the SSM form of the admin credential.
    #[serde(default)]
    pub admin_username: Option<String>,
    #[serde(default)]
    pub admin_password_parameter_name: Option<String>,
    /// The Secrets Manager form: a secret holding JSON `username` and `password` (RDS's managed
    /// master secret has this shape).
    #[serde(default)]
    pub admin_secret_arn: Option<String>,
    pub database_name: String,
    #[serde(default)]
    pub role_name: Option<String>,
    pub password_parameter_name: String,
    pub key_id: String,
    #[serde(
        default = "default_password_length",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub password_length: usize,
    #[serde(default)]
    pub tls_mode: TlsMode,
    #[serde(default)]
    pub ca_certificate: Option<String>,
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub connect_timeout_seconds: u64,
    #[serde(default)]
    pub rotation_token: Option<String>,
    #[serde(default)]
    pub on_delete: OnDelete,
    #[serde(default, deserialize_with = "cfn_custom_resource::de::boolean")]
    pub adopt: bool,
}

/// How the connection to the cluster is secured. There is never a fallback to plaintext.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// TLS; the certificate must chain to the RDS bundle (or `CaCertificate`) and name the host.
    #[default]
    VerifyFull,
    /// TLS without certificate verification (handshake signatures are still checked).
    Require,
    /// No TLS at all; only when asked for explicitly.
    Disable,
}

impl TlsMode {
    /// The pgjdbc `sslmode` with the same meaning.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyFull => "verify-full",
            Self::Require => "require",
            Self::Disable => "disable",
        }
    }
}

/// What Delete does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum OnDelete {
    /// Leave the database, the role and the password parameter.
    #[default]
    Retain,
    /// Drop the database and role and delete the password parameter, if they are ours.
    Drop,
}

fn default_port() -> u16 {
    5432
}

fn default_password_length() -> usize {
    32
}

fn default_connect_timeout() -> u64 {
    10
}

/// Passwords shorter than this are refused; longer than the maximum are pointless.
pub const PASSWORD_LENGTH: std::ops::RangeInclusive<usize> = 16..=128;
/// `ConnectTimeoutSeconds` limits.
pub const CONNECT_TIMEOUT_SECONDS: std::ops::RangeInclusive<u64> = 1..=120;

/// Where the admin credential comes from: exactly one of the two forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminSource {
    /// `AdminUsername` + `AdminPasswordParameterName` (an SSM SecureString, e.g.
    /// `Custom::AdminSecret`'s).
    Ssm { username: String, parameter: String },
    /// `AdminSecretArn`: a Secrets Manager secret with JSON `username` and `password`.
    SecretsManager { secret_id: String },
}

/// The Reason for properties that give neither or both admin credential forms.
const ADMIN_FORMS: &str = "give the admin credential in exactly one form: AdminUsername with \
     AdminPasswordParameterName (an SSM SecureString), or AdminSecretArn alone (a Secrets Manager \
     secret with JSON username and password, such as RDS's managed master secret)";

/// Properties after validation: names checked, defaults applied.
#[derive(Debug, Clone)]
pub struct Validated {
    pub admin: AdminSource,
    pub host: String,
    pub port: u16,
    pub database: Identifier,
    pub role: Identifier,
    pub connect_timeout: Duration,
}

impl Properties {
    /// Checks everything that can be checked without a network call.
    pub fn validate(&self) -> Result<Validated, Error> {
        let host = self.cluster_endpoint.trim();
        if host.is_empty()
            || host.len() > 253
            || host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/?#@".contains(c))
        {
            return Err(Error::Property {
                name: "ClusterEndpoint",
                reason: format!("{host:?} is not a host name or address"),
            });
        }
        if self.port == 0 {
            return Err(Error::Property {
                name: "Port",
                reason: "must be 1..=65535".into(),
            });
        }
        let database = Identifier::new(&self.database_name).map_err(|reason| Error::Property {
            name: "DatabaseName",
            reason,
        })?;
        let role = match &self.role_name {
            Some(role) => Identifier::new(role).map_err(|reason| Error::Property {
                name: "RoleName",
                reason,
            })?,
            None => database.clone(),
        };
        let admin = self.admin_source()?;
        if let AdminSource::Ssm { username, .. } = &admin
            && username == role.as_str()
        {
            return Err(Error::Property {
                name: "RoleName",
                reason: format!("{role} is the admin user; a service needs its own role"),
            });
        }
        for (name, value) in [
            ("PasswordParameterName", &self.password_parameter_name),
            ("KeyId", &self.key_id),
        ] {
            if value.trim().is_empty() {
                return Err(Error::Property {
                    name,
                    reason: "must not be empty".into(),
                });
            }
        }
        if let AdminSource::Ssm { parameter, .. } = &admin
            && *parameter == self.password_parameter_name
        {
            return Err(Error::Property {
                name: "PasswordParameterName",
                reason: "must differ from AdminPasswordParameterName".into(),
            });
        }
        if !PASSWORD_LENGTH.contains(&self.password_length) {
            return Err(Error::Property {
                name: "PasswordLength",
                reason: format!(
                    "{} is outside {}..={}",
                    self.password_length,
                    PASSWORD_LENGTH.start(),
                    PASSWORD_LENGTH.end()
                ),
            });
        }
        if !CONNECT_TIMEOUT_SECONDS.contains(&self.connect_timeout_seconds) {
            return Err(Error::Property {
                name: "ConnectTimeoutSeconds",
                reason: format!(
                    "{} is outside {}..={}",
                    self.connect_timeout_seconds,
                    CONNECT_TIMEOUT_SECONDS.start(),
                    CONNECT_TIMEOUT_SECONDS.end()
                ),
            });
        }
        Ok(Validated {
            admin,
            host: host.to_string(),
            port: self.port,
            database,
            role,
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds),
        })
    }
}

/// A property's value, trimmed, when it is there and not empty.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl Properties {
    /// The admin credential's form; neither or both (or an empty value) fails naming both forms.
    fn admin_source(&self) -> Result<AdminSource, Error> {
        let empty = |name: &'static str, value: &Option<String>| match value {
            Some(v) if v.trim().is_empty() => Err(Error::Property {
                name,
                reason: format!("is empty; {ADMIN_FORMS}"),
            }),
            _ => Ok(()),
        };
        empty("AdminUsername", &self.admin_username)?;
        empty("AdminPasswordParameterName", &self.admin_password_parameter_name)?;
        empty("AdminSecretArn", &self.admin_secret_arn)?;
        match (
            given(&self.admin_username),
            given(&self.admin_password_parameter_name),
            given(&self.admin_secret_arn),
        ) {
            (Some(username), Some(parameter), None) => Ok(AdminSource::Ssm {
                username: username.to_string(),
                parameter: parameter.to_string(),
            }),
            (None, None, Some(secret_id)) => Ok(AdminSource::SecretsManager {
                secret_id: secret_id.to_string(),
            }),
            (_, _, Some(_)) => Err(Error::Property {
                name: "AdminSecretArn",
                reason: format!(
                    "is given together with AdminUsername or AdminPasswordParameterName; {ADMIN_FORMS}"
                ),
            }),
            (Some(_), None, None) => Err(Error::Property {
                name: "AdminPasswordParameterName",
                reason: format!("is missing; {ADMIN_FORMS}"),
            }),
            (None, Some(_), None) => Err(Error::Property {
                name: "AdminUsername",
                reason: format!("is missing; {ADMIN_FORMS}"),
            }),
            (None, None, None) => Err(Error::Property {
                name: "AdminSecretArn",
                reason: format!(
                    "(or AdminUsername with AdminPasswordParameterName) is missing; {ADMIN_FORMS}"
                ),
            }),
        }
    }
}

impl Validated {
    /// `<host>:<port>/<database>`: what the resource is, on which cluster.
    pub fn physical_id(&self) -> String {
        format!("{}:{}/{}", self.host, self.port, self.database)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn minimal() -> serde_json::Value {
        json!({
            "ClusterEndpoint": "db.example.com",
            "AdminUsername": "postgres",
            "AdminPasswordParameterName": "/platform/db/admin",
            "DatabaseName": "orders",
            "PasswordParameterName": "/platform/orders/database-password",
            "KeyId": "alias/orders",
        })
    }

    #[test]
    fn defaults() {
        let p: Properties = serde_json::from_value(minimal()).unwrap();
        assert_eq!(p.port, 5432);
        assert_eq!(p.password_length, 32);
        assert_eq!(p.tls_mode, TlsMode::VerifyFull);
        assert_eq!(p.connect_timeout_seconds, 10);
        assert_eq!(p.on_delete, OnDelete::Retain);
        assert!(!p.adopt);
        let v = p.validate().unwrap();
        assert_eq!(v.role.as_str(), "orders");
        assert_eq!(v.physical_id(), "db.example.com:5432/orders");
    }

    #[test]
    fn strings_as_cloudformation_sends_them() {
        let mut p = minimal();
        p["Port"] = json!("6432");
        p["PasswordLength"] = json!("40");
        p["ConnectTimeoutSeconds"] = json!("3");
        p["Adopt"] = json!("true");
        p["TlsMode"] = json!("require");
        p["OnDelete"] = json!("Drop");
        p["RoleName"] = json!("orders_app");
        let p: Properties = serde_json::from_value(p).unwrap();
        assert_eq!(
            (p.port, p.password_length, p.connect_timeout_seconds, p.adopt),
            (6432, 40, 3, true)
        );
        assert_eq!((p.tls_mode, p.on_delete), (TlsMode::Require, OnDelete::Drop));
        assert_eq!(p.validate().unwrap().role.as_str(), "orders_app");
    }

    #[test]
    fn refuses_unknown_and_bad_values() {
        let mut p = minimal();
        p["TlsMode"] = json!("prefer");
        assert!(serde_json::from_value::<Properties>(p).is_err());
        let mut p = minimal();
        p["Colour"] = json!("red");
        assert!(serde_json::from_value::<Properties>(p).is_err());
        let mut p = minimal();
        p["PasswordLength"] = json!("8");
        let p: Properties = serde_json::from_value(p).unwrap();
        assert!(p.validate().unwrap_err().to_string().contains("PasswordLength"));
        let mut p = minimal();
        p["AdminUsername"] = json!("orders");
        let p: Properties = serde_json::from_value(p).unwrap();
        assert!(p.validate().unwrap_err().to_string().contains("admin user"));
    }

    #[test]
    fn exactly_one_admin_credential_form() {
        let secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!cluster-1-AbCdEf";
        let mut p = minimal();
        let map = p.as_object_mut().unwrap();
        map.remove("AdminUsername");
        map.remove("AdminPasswordParameterName");
        map.insert("AdminSecretArn".into(), json!(secret));
        let v = serde_json::from_value::<Properties>(p)
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            v.admin,
            AdminSource::SecretsManager {
                secret_id: secret.into()
            }
        );
        let v = serde_json::from_value::<Properties>(minimal())
            .unwrap()
            .validate()
            .unwrap();
        assert_eq!(
            v.admin,
            AdminSource::Ssm {
                username: "postgres".into(),
                parameter: "/platform/db/admin".into()
            }
        );
        let cases: [(&[&str], serde_json::Value, &str); 5] = [
            (
                &[],
                json!({"AdminSecretArn": secret}),
                "`AdminSecretArn` is given together",
            ),
            (
                &["AdminUsername", "AdminPasswordParameterName"],
                json!({}),
                "`AdminSecretArn` (or",
            ),
            (
                &["AdminPasswordParameterName"],
                json!({}),
                "`AdminPasswordParameterName` is missing",
            ),
            (&["AdminUsername"], json!({}), "`AdminUsername` is missing"),
            (&[], json!({"AdminUsername": " "}), "`AdminUsername` is empty"),
        ];
        for (remove, add, expected) in cases {
            let mut p = minimal();
            let map = p.as_object_mut().unwrap();
            for key in remove {
                map.remove(*key);
            }
            for (key, value) in add.as_object().unwrap() {
                map.insert(key.clone(), value.clone());
            }
            let reason = serde_json::from_value::<Properties>(p)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(reason.contains(expected), "{reason}");
            assert!(
                reason.contains("AdminSecretArn alone") && reason.contains("AdminUsername with"),
                "names both forms: {reason}"
            );
        }
    }

    #[test]
    fn sample_events_parse() {
        for event in [
            include_str!("../../../tests/events/service-database-create.json"),
            include_str!("../../../tests/events/service-database-update.json"),
            include_str!("../../../tests/events/service-database-delete.json"),
        ] {
            let event: serde_json::Value = serde_json::from_str(event).unwrap();
            let mut properties = event["ResourceProperties"].clone();
            let map = properties.as_object_mut().unwrap();
            map.remove("ServiceToken");
            map.remove("ServiceTimeout");
            let p: Properties = serde_json::from_value(properties).unwrap();
            let v = p.validate().unwrap();
            if let Some(id) = event["PhysicalResourceId"].as_str() {
                assert_eq!(v.physical_id(), id);
            }
        }
    }
}
