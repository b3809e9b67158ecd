//! A test-only Lambda whose properties tell it how to misbehave, so the local-invoke tests can
//! prove the response guarantee against a real compiled binary.
//!
//! Properties (all but `Label` optional; numbers and booleans may be strings):
//! - `Label` (required string): echoed in `Data.Label`.
//! - `Count` (whole number), `Enabled` (boolean): echoed in `Data` when given.
//! - `OnCreate`, `OnUpdate`, `OnDelete`: what that phase does: `succeed` (default), `error`,
//!   `error-with-partial-id`, `panic`, `hang`, `oversized-data`, `huge-error`.
//! - `PhysicalId`: the id a Create returns (default `fault-<LogicalResourceId>`); on Update, a
//!   value different from the current id is returned as a replacement.
//! - `Data`: an object of strings added to `Data`.
//! - `Secret`: a secret value; the handler logs the property struct, which must redact it.
//! - `PublishPartialId` (boolean): Create publishes its id as a partial id before acting.
//!
//! Delete logs `physical_id` and `after_failed_create`, so tests can see what the guard handed it.
//!
//! `FAULT_INJECTION_CRASH` in the environment makes every execution environment of the function
//! die on every invocation, whatever the event (any resource type and properties): the guard reads
//! the event and starts the handler, which then kills the process. `abort` calls
//! `std::process::abort` (a runtime crash, SIGABRT); `out-of-memory` takes the path Rust takes
//! when an allocation fails (`handle_alloc_error`: "memory allocation of N bytes failed", then an
//! abort) without really exhausting the machine's memory. No response and no runtime error is
//! ever sent: what the dead-letter responder exists for. Any other value is answered FAILED on
//! every request, naming the variable and its value.

use std::collections::HashMap;
use std::time::Duration;

use cfn_custom_resource::settings::Setting;
use cfn_custom_resource::{
    Create, Created, CustomResource, Data, Delete, HandlerError, PhysicalId, Secret, Update, Updated,
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Properties {
    label: String,
    #[serde(default, deserialize_with = "cfn_custom_resource::de::optional_number")]
    count: Option<u32>,
    #[serde(default, deserialize_with = "optional_boolean")]
    enabled: Option<bool>,
    #[serde(default)]
    on_create: Action,
    #[serde(default)]
    on_update: Action,
    #[serde(default)]
    on_delete: Action,
    physical_id: Option<String>,
    #[serde(default)]
    data: HashMap<String, String>,
    #[expect(dead_code, reason = "only ever formatted through Debug, which must redact it")]
    secret: Option<Secret<String>>,
    #[serde(default, deserialize_with = "cfn_custom_resource::de::boolean")]
    publish_partial_id: bool,
}

fn optional_boolean<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    cfn_custom_resource::de::boolean(d).map(Some)
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Action {
    #[default]
    Succeed,
    Error,
    ErrorWithPartialId,
    Panic,
    Hang,
    OversizedData,
    HugeError,
}

struct FaultInjection;

impl FaultInjection {
    async fn act(phase: &str, action: Action, properties: &Properties) -> Result<Data, HandlerError> {
        tracing::info!(?properties, phase, "fault-injection handler");
        let mut data: Data = properties.data.clone();
        data.insert("Label".into(), properties.label.clone());
        if let Some(count) = properties.count {
            data.insert("Count".into(), count.to_string());
        }
        if let Some(enabled) = properties.enabled {
            data.insert("Enabled".into(), enabled.to_string());
        }
        match action {
            Action::Succeed => Ok(data),
            Action::Error => Err(HandlerError::new(format!("injected {phase} error"))),
            Action::ErrorWithPartialId => Err(HandlerError::new(format!(
                "injected {phase} error after partial work"
            ))
            .with_physical_id(PhysicalId::new("partial-fault-id").expect("valid id"))),
            Action::Panic => panic!("injected {phase} panic"),
            Action::Hang => {
                tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
                Ok(data)
            }
            Action::OversizedData => Ok((0..64).map(|i| (format!("Key{i:02}"), "x".repeat(100))).collect()),
            Action::HugeError => Err(HandlerError::new(format!(
                "injected {phase} error: {}",
                "Ünïcödé ✓ ".repeat(1000)
            ))),
        }
    }
}

impl CustomResource for FaultInjection {
    type Properties = Properties;

    async fn create(&self, request: Create<Properties>) -> Result<Created, HandlerError> {
        let p = &request.properties;
        let id = p
            .physical_id
            .clone()
            .unwrap_or_else(|| format!("fault-{}", request.info.logical_resource_id));
        let id = PhysicalId::new(id).map_err(|e| HandlerError::new(format!("property `PhysicalId`: {e}")))?;
        if p.publish_partial_id {
            request.info.partial_id.publish(id.clone());
        }
        let data = Self::act("Create", p.on_create, p).await?;
        Ok(Created::new(id).with_data(data))
    }

    async fn update(&self, request: Update<Properties>) -> Result<Updated, HandlerError> {
        let p = &request.properties;
        request.info.progress.set("acting on Update");
        let data = Self::act("Update", p.on_update, p).await?;
        let updated = match &p.physical_id {
            Some(id) if id != request.physical_id.as_str() => Updated::replace(
                PhysicalId::new(id.clone())
                    .map_err(|e| HandlerError::new(format!("property `PhysicalId`: {e}")))?,
            ),
            _ => Updated::keep(),
        };
        Ok(updated.with_data(data))
    }

    async fn delete(&self, request: Delete<Properties>) -> Result<(), HandlerError> {
        let p = &request.properties;
        tracing::info!(
            physical_id = %request.physical_id,
            after_failed_create = request.after_failed_create,
            "fault-injection delete"
        );
        Self::act("Delete", p.on_delete, p).await.map(drop)
    }
}

/// How a crashing execution environment dies (`FAULT_INJECTION_CRASH`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    Abort,
    OutOfMemory,
}

impl Crash {
    /// `FAULT_INJECTION_CRASH`, read once at init and logged: unset or empty, no crash; an
    /// invalid value is kept, and every request is answered FAILED naming it (the policy of
    /// `cfn_custom_resource::settings`).
    fn from_env() -> Setting<Option<Self>> {
        let crash = Setting::read(
            "FAULT_INJECTION_CRASH",
            None,
            None,
            "abort or out-of-memory",
            |value| match value {
                "abort" => Some(Some(Self::Abort)),
                "out-of-memory" => Some(Some(Self::OutOfMemory)),
                _ => None,
            },
        );
        tracing::info!(FAULT_INJECTION_CRASH = %crash, "fault-injection settings");
        crash
    }

    fn now(self, phase: &str) -> ! {
        tracing::warn!(crash = ?self, phase, "fault-injection: the execution environment dies now");
        match self {
            Self::Abort => std::process::abort(),
            Self::OutOfMemory => std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(1 << 40, 8).expect("a valid layout"),
            ),
        }
    }
}

/// A handler that takes any properties and kills its process in every phase.
struct Crashing(Crash);

impl CustomResource for Crashing {
    type Properties = serde::de::IgnoredAny;

    async fn create(&self, _: Create<Self::Properties>) -> Result<Created, HandlerError> {
        self.0.now("Create")
    }

    async fn update(&self, _: Update<Self::Properties>) -> Result<Updated, HandlerError> {
        self.0.now("Update")
    }

    async fn delete(&self, _: Delete<Self::Properties>) -> Result<(), HandlerError> {
        self.0.now("Delete")
    }
}

/// A handler that answers every request FAILED with why the function's configuration is
/// unusable.
struct Misconfigured(String);

impl CustomResource for Misconfigured {
    type Properties = serde::de::IgnoredAny;

    async fn create(&self, _: Create<Self::Properties>) -> Result<Created, HandlerError> {
        Err(HandlerError::new(self.0.clone()))
    }

    async fn update(&self, _: Update<Self::Properties>) -> Result<Updated, HandlerError> {
        Err(HandlerError::new(self.0.clone()))
    }

    async fn delete(&self, _: Delete<Self::Properties>) -> Result<(), HandlerError> {
        Err(HandlerError::new(self.0.clone()))
    }
}

#[tokio::main]
async fn main() -> Result<(), cfn_custom_resource::RuntimeError> {
    cfn_custom_resource::init_tracing();
    let crash = Crash::from_env();
    match crash.value() {
        Ok(Some(crash)) => cfn_custom_resource::run(Crashing(*crash)).await,
        Ok(None) => cfn_custom_resource::run(FaultInjection).await,
        Err(_) => cfn_custom_resource::run(Misconfigured(crash.problem().unwrap_or_default())).await,
    }
}
