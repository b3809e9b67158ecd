//! The resource's properties, exactly as templates write them.

use std::time::Duration;

use serde::Deserialize;

use ssm_secret::PasswordPolicy;

use crate::error::Error;
use crate::ident::Identifier;
use crate::logins::Logins;

/// `ResourceProperties` of a `Custom::ServiceDatabase` (see the crate documentation for each).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Properties {
    /// `ClusterEndpoint`: host name of the cluster's writer.
    pub cluster_endpoint: String,
    /// `Port` (default 5432).
    #[serde(
        default = "default_port",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub port: u16,
    /// With `AdminPasswordParameterName`: the SSM form of the admin credential.
    #[serde(default)]
    pub admin_username: Option<String>,
    /// The SSM parameter holding the admin's password (read with decryption).
    #[serde(default)]
    pub admin_password_parameter_name: Option<String>,
    /// The Secrets Manager form: a secret holding JSON `username` and `password` (RDS's managed
    /// master secret has this shape).
    #[serde(default)]
    pub admin_secret_arn: Option<String>,
    /// `DatabaseName`: the service's database.
    pub database_name: String,
    /// `RoleName`: the owner role (default `DatabaseName`); its login roles add `_a`/`_b`.
    #[serde(default)]
    pub role_name: Option<String>,
    /// `PasswordParameterName`: the SSM SecureString holding the service's password.
    pub password_parameter_name: String,
    /// `KeyId`: the customer-managed KMS key (id, ARN or alias) of that parameter.
    pub key_id: String,
    /// `PasswordLength` (default 32; [`PASSWORD_LENGTH`]).
    #[serde(
        default = "default_password_length",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub password_length: usize,
    /// `TlsMode` (default `verify-full`).
    #[serde(default)]
    pub tls_mode: TlsMode,
    /// `CaCertificate`: extra PEM CA trusted besides the built-in RDS bundle.
    #[serde(default)]
    pub ca_certificate: Option<String>,
    /// `ConnectTimeoutSeconds` (default 10; [`CONNECT_TIMEOUT_SECONDS`]).
    #[serde(
        default = "default_connect_timeout",
        deserialize_with = "cfn_custom_resource::de::number"
    )]
    pub connect_timeout_seconds: u64,
    /// `RotationToken`: any change sets a new password.
    #[serde(default)]
    pub rotation_token: Option<String>,
    /// `OnDelete` (default `Retain`).
    #[serde(default)]
    pub on_delete: OnDelete,
    /// `Adopt`: take over a role, database or parameter not made by this resource.
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
    Ssm {
        /// `AdminUsername`.
        username: String,
        /// `AdminPasswordParameterName`.
        parameter: String,
    },
    /// `AdminSecretArn`: a Secrets Manager secret with JSON `username` and `password`.
    SecretsManager {
        /// `AdminSecretArn`: the secret's ARN or name.
        secret_id: String,
    },
}

/// The Reason for properties that give neither or both admin credential forms.
const ADMIN_FORMS: &str = "give the admin credential in exactly one form: AdminUsername with \
     AdminPasswordParameterName (an SSM SecureString), or AdminSecretArn alone (a Secrets Manager \
     secret with JSON username and password, such as RDS's managed master secret)";

/// Properties after validation: every value a request works from, checked, with defaults
/// applied. Made once per request ([`Properties::validate`]); the handler reads nothing else.
#[derive(Debug, Clone)]
pub struct Validated {
    /// Where the admin credential comes from.
    pub admin: AdminSource,
    /// `ClusterEndpoint`, trimmed.
    pub host: String,
    /// `Port`.
    pub port: u16,
    /// `DatabaseName`.
    pub database: Identifier,
    /// `RoleName` (default `DatabaseName`): the owner role.
    pub role: Identifier,
    /// The owner role and its two login roles; `None` when `RoleName` leaves no room for their
    /// suffix. Only a resource made before the login roles can have such a name: its Delete
    /// still drops its owner role, and Create and Update refuse it ([`Validated::login_roles`]).
    pub logins: Option<Logins>,
    /// `PasswordParameterName`.
    pub password_parameter: String,
    /// `KeyId` of the password parameter (not an AWS-managed alias; [`ssm_secret::KeyGuard`]
    /// checks the key itself).
    pub key_id: String,
    /// The service password's policy: `PasswordLength` characters, the default alphabet.
    pub password_policy: PasswordPolicy,
    /// `RotationToken`, as given.
    pub rotation_token: Option<String>,
    /// Its rotation label ([`ssm_secret::rotation_label`]).
    pub rotation_label: String,
    /// `TlsMode`.
    pub tls_mode: TlsMode,
    /// `CaCertificate`; under `verify-full`, checked to hold a usable trust anchor.
    pub ca_certificate: Option<String>,
    /// `ConnectTimeoutSeconds`.
    pub connect_timeout: Duration,
    /// `Adopt` (what the function's setting lets it do is the handler's business).
    pub adopt: bool,
}

impl Properties {
    /// Checks everything that can be checked without a network call; every message names the
    /// property to fix.
    pub fn validate(&self) -> Result<Validated, Error> {
        let host = self.host()?;
        if self.port == 0 {
            return Err(Error::Property {
                name: "Port",
                reason: "must be 1..=65535".into(),
            });
        }
        let (database, role) = self.names()?;
        let admin = self.admin_source()?;
        if let AdminSource::Ssm { username, .. } = &admin
            && username == role.as_str()
        {
            return Err(Error::Property {
                name: "RoleName",
                reason: format!("{role} is the admin user; a service needs its own role"),
            });
        }
        self.check_password_parameter(&admin)?;
        ssm_secret::refuse_aws_alias(&self.key_id)?;
        check_range("PasswordLength", self.password_length, &PASSWORD_LENGTH)?;
        check_range(
            "ConnectTimeoutSeconds",
            self.connect_timeout_seconds,
            &CONNECT_TIMEOUT_SECONDS,
        )?;
        if self.tls_mode == TlsMode::VerifyFull {
            crate::tls::check_extra_ca(self.ca_certificate.as_deref())?;
        }
        Ok(Validated {
            admin,
            host,
            port: self.port,
            logins: Logins::of(&role).ok(),
            database,
            role,
            password_parameter: self.password_parameter_name.clone(),
            key_id: self.key_id.clone(),
            password_policy: PasswordPolicy {
                length: self.password_length,
                ..PasswordPolicy::default()
            },
            rotation_token: self.rotation_token.clone(),
            rotation_label: ssm_secret::rotation_label(self.rotation_token.as_deref()),
            tls_mode: self.tls_mode,
            ca_certificate: self.ca_certificate.clone(),
            connect_timeout: Duration::from_secs(self.connect_timeout_seconds),
            adopt: self.adopt,
        })
    }

    /// `ClusterEndpoint`, trimmed: a host name or address, nothing of a URL.
    fn host(&self) -> Result<String, Error> {
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
        Ok(host.to_string())
    }

    /// `DatabaseName` and `RoleName` (default: the database name) as identifiers.
    fn names(&self) -> Result<(Identifier, Identifier), Error> {
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
        Ok((database, role))
    }

    /// `PasswordParameterName` and `KeyId` are given, and the parameter is not the admin's.
    fn check_password_parameter(&self, admin: &AdminSource) -> Result<(), Error> {
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
        if let AdminSource::Ssm { parameter, .. } = admin
            && *parameter == self.password_parameter_name
        {
            return Err(Error::Property {
                name: "PasswordParameterName",
                reason: "must differ from AdminPasswordParameterName".into(),
            });
        }
        Ok(())
    }
}

/// `value` of property `name` lies in `range`.
fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &'static str,
    value: T,
    range: &std::ops::RangeInclusive<T>,
) -> Result<(), Error> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(Error::Property {
        name,
        reason: format!("{value} is outside {}..={}", range.start(), range.end()),
    })
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

    /// The owner role and its login roles; a `RoleName` that leaves no room for their suffix
    /// fails naming it (Create and Update need the login roles).
    pub fn login_roles(&self) -> Result<&Logins, Error> {
        self.logins
            .as_ref()
            .ok_or_else(|| crate::logins::no_room(&self.role))
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
