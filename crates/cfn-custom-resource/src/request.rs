use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::HandlerError;
use crate::response::{Identity, MAX_PHYSICAL_ID_BYTES, PhysicalId};
use crate::secret::ResponseUrl;

/// Where a marker physical id starts: a failed Create answers with one, and a Delete for one is
/// answered SUCCESS without calling the handler, since nothing was created.
const MARKER_PREFIX: &str = "create-failed:";

/// Where the id of a failed Create that had already made something starts: the Delete
/// CloudFormation sends for it reaches the handler with the id unwrapped and
/// [`Delete::after_failed_create`] set.
const PARTIAL_PREFIX: &str = "partial-create:";

/// The identity of a request, handed to every handler.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// `StackId`: the ARN of the stack the resource belongs to (with `LogicalResourceId`, who
    /// owns what the handler makes).
    pub stack_id: String,
    /// `RequestId`: unique per request; the same in a retried delivery of it.
    pub request_id: String,
    /// `LogicalResourceId`: the resource's name in the template.
    pub logical_resource_id: String,
    /// `ResourceType`: `Custom::...` as the template declares it.
    pub resource_type: String,
    /// Report what the handler is doing; the deadline watchdog names it.
    pub progress: Progress,
    /// Publish the physical id of what a Create has made so far; a failed Create answers with it.
    pub partial_id: PartialId,
    /// When the deadline watchdog stops the handler: work the handler bounds itself (statement
    /// timeouts, say) should end before it.
    pub watchdog_at: tokio::time::Instant,
}

impl RequestInfo {
    /// The time left before the watchdog stops the handler.
    pub fn time_left(&self) -> std::time::Duration {
        self.watchdog_at
            .saturating_duration_since(tokio::time::Instant::now())
    }
}

/// A Create request with typed properties.
#[derive(Debug)]
pub struct Create<P> {
    /// Who asks, and the handles the guard shares with the handler.
    pub info: RequestInfo,
    /// `ResourceProperties`, typed (`ServiceToken` and `ServiceTimeout` removed).
    pub properties: P,
}

/// An Update request: the resource's current id, the new and the old properties.
///
/// `old_properties` are advisory. On a rollback they are the values that failed last time (wrong
/// types, unknown properties, anything), so the guard parses them leniently: `None` when they are
/// absent or do not parse (logged at INFO), never a FAILED. Decide from real state instead.
#[derive(Debug)]
pub struct Update<P> {
    /// Who asks, and the handles the guard shares with the handler.
    pub info: RequestInfo,
    /// The resource's current `PhysicalResourceId`.
    pub physical_id: PhysicalId,
    /// `ResourceProperties`: the values to converge to.
    pub properties: P,
    /// `OldResourceProperties`, leniently parsed: advisory only (see above).
    pub old_properties: Option<P>,
}

/// A Delete request: the id to delete, which the handler cannot change.
#[derive(Debug)]
pub struct Delete<P> {
    /// Who asks, and the handles the guard shares with the handler.
    pub info: RequestInfo,
    /// The id to delete (a partial-create id already unwrapped).
    pub physical_id: PhysicalId,
    /// `ResourceProperties` as last applied.
    pub properties: P,
    /// True when this Delete is CloudFormation's rollback of a Create that failed after
    /// publishing `physical_id` ([`PartialId::publish`] or [`HandlerError::with_physical_id`]):
    /// remove what that Create made, whatever a deletion policy property says, since no data can
    /// be in it yet.
    pub after_failed_create: bool,
}

/// What the handler is doing right now, shared with the deadline watchdog, which reports it as
/// `timed out while <progress>`.
#[derive(Debug, Clone)]
pub struct Progress(Arc<Mutex<Cow<'static, str>>>);

impl Progress {
    pub(crate) fn new(initial: impl Into<Cow<'static, str>>) -> Self {
        Self(Arc::new(Mutex::new(initial.into())))
    }

    /// Records the step the handler is starting, e.g. "connecting to db.example.com:5432".
    pub fn set(&self, doing: impl Into<Cow<'static, str>>) {
        let doing = doing.into();
        tracing::debug!(step = %doing, "progress");
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = doing;
    }

    /// The step last recorded, as the watchdog would report it.
    pub fn get(&self) -> String {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).to_string()
    }
}

/// The physical id of what a Create has made so far, shared with the guard: if the Create fails
/// (an error, a panic, or the deadline watchdog), the FAILED response carries it, so that
/// CloudFormation's rollback Delete reaches the handler and can clean up.
#[derive(Debug, Clone, Default)]
pub struct PartialId(Arc<Mutex<Option<PhysicalId>>>);

impl PartialId {
    /// Records the id of what exists now; call it as soon as something was made.
    pub fn publish(&self, id: PhysicalId) {
        tracing::debug!(physical_id = %id, "partial physical id published");
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
    }

    /// The last published id.
    pub fn get(&self) -> Option<PhysicalId> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The physical id a failed Create answers with for what it had made: `partial-create:<id>`, or
/// `None` when that would exceed CloudFormation's 1 KB limit.
pub(crate) fn partial_physical_id(id: &PhysicalId) -> Option<String> {
    let wrapped = format!("{PARTIAL_PREFIX}{}", id.as_str());
    (wrapped.len() <= 1024).then_some(wrapped)
}

/// The id a failed Create had published, when `physical_id` is a partial-create id.
pub(crate) fn unwrap_partial(physical_id: &str) -> Option<&str> {
    physical_id
        .strip_prefix(PARTIAL_PREFIX)
        .filter(|id| !id.is_empty())
}

/// The physical id a failed Create answers with when the handler reported none: deterministic, so
/// a retried Create that fails again gives the same id.
pub fn marker_physical_id(logical_resource_id: &str, request_id: &str) -> String {
    let mut id = format!("{MARKER_PREFIX}{logical_resource_id}:{request_id}");
    id.truncate(id.floor_char_boundary(1024));
    id
}

pub(crate) fn is_marker(physical_id: &str) -> bool {
    physical_id.starts_with(MARKER_PREFIX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestType {
    Create,
    Update,
    Delete,
}

impl RequestType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "Create",
            Self::Update => "Update",
            Self::Delete => "Delete",
        }
    }
}

/// The fields taken out of the raw event before anything can fail.
#[derive(Debug, Clone)]
pub(crate) struct Envelope {
    pub response_url: ResponseUrl,
    pub identity: Identity,
    pub resource_type: String,
    /// The raw `RequestType`, for logging even when it is not one we know.
    pub raw_request_type: String,
    /// `Err` holds the Reason for an unknown or missing `RequestType`.
    pub request_type: Result<RequestType, String>,
    pub physical_id: Option<String>,
}

impl Envelope {
    /// Reads the protocol fields from the raw event. `Err` means there is no usable
    /// `ResponseURL`, so no response can be sent at all; the message says why without repeating
    /// the URL.
    pub(crate) fn from_event(event: &Value) -> Result<Self, String> {
        let Some(object) = event.as_object() else {
            return Err(format!(
                "the event is JSON {} rather than an object; it is not a CloudFormation custom-resource request",
                json_kind(event)
            ));
        };
        let response_url = match object.get("ResponseURL") {
            Some(Value::String(raw)) => ResponseUrl::parse(raw)?,
            Some(other) => return Err(format!("ResponseURL is {}, expected a string", json_kind(other))),
            None => {
                return Err(
                    "the event has no ResponseURL; it is not a CloudFormation custom-resource request".into(),
                );
            }
        };
        let text = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let raw_request_type = text("RequestType");
        let physical_id = object
            .get("PhysicalResourceId")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let oversized_id = physical_id
            .map(str::len)
            .filter(|len| *len > MAX_PHYSICAL_ID_BYTES);
        let request_type = match object.get("RequestType") {
            // Answering with such an id would be refused, and CloudFormation never sends one.
            _ if oversized_id.is_some() => Err(format!(
                "the event's PhysicalResourceId is {} bytes; CloudFormation's limit is {MAX_PHYSICAL_ID_BYTES}",
                oversized_id.unwrap_or_default()
            )),
            Some(Value::String(t)) if t == "Create" => Ok(RequestType::Create),
            Some(Value::String(t)) if t == "Update" => Ok(RequestType::Update),
            Some(Value::String(t)) if t == "Delete" => Ok(RequestType::Delete),
            Some(Value::String(t)) => Err(format!(
                "unknown RequestType {t:?}; expected Create, Update or Delete"
            )),
            Some(other) => Err(format!(
                "RequestType is {}, expected Create, Update or Delete",
                json_kind(other)
            )),
            None => Err("the event has no RequestType; expected Create, Update or Delete".into()),
        };
        Ok(Self {
            response_url,
            identity: Identity {
                stack_id: text("StackId"),
                request_id: text("RequestId"),
                logical_resource_id: text("LogicalResourceId"),
            },
            resource_type: text("ResourceType"),
            raw_request_type,
            request_type,
            physical_id: physical_id.filter(|_| oversized_id.is_none()).map(str::to_string),
        })
    }

    pub(crate) fn marker_id(&self) -> String {
        marker_physical_id(&self.identity.logical_resource_id, &self.identity.request_id)
    }

    pub(crate) fn info(
        &self,
        progress: Progress,
        partial_id: PartialId,
        watchdog_at: tokio::time::Instant,
    ) -> RequestInfo {
        RequestInfo {
            stack_id: self.identity.stack_id.clone(),
            request_id: self.identity.request_id.clone(),
            logical_resource_id: self.identity.logical_resource_id.clone(),
            resource_type: self.resource_type.clone(),
            progress,
            partial_id,
            watchdog_at,
        }
    }

    /// The event's physical id, required on Update and Delete.
    pub(crate) fn existing_physical_id(&self) -> Result<PhysicalId, HandlerError> {
        self.physical_id
            .clone()
            .map(PhysicalId::from_event)
            .ok_or_else(|| {
                HandlerError::new(
                    "the event has no PhysicalResourceId; Update and Delete requests must carry one",
                )
            })
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses `ResourceProperties` (or `OldResourceProperties`) into the handler's type, after
/// removing CloudFormation's own `ServiceToken` and `ServiceTimeout`. The error names the property
/// and what was expected.
pub(crate) fn parse_properties<P: DeserializeOwned>(event: &Value, key: &str) -> Result<P, HandlerError> {
    let mut properties = match event.get(key) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(HandlerError::new(format!(
                "{key} is {}, expected an object",
                json_kind(other)
            )));
        }
    };
    properties.remove("ServiceToken");
    properties.remove("ServiceTimeout");
    parse_property_map(Value::Object(properties))
        .map_err(|reason| HandlerError::new(format!("{key}: {reason}")))
}

/// Parses `OldResourceProperties` leniently: they are what failed last time, so anything that
/// does not parse (or their absence) is `None`, logged at INFO, and never a FAILED.
pub(crate) fn parse_old_properties<P: DeserializeOwned>(event: &Value) -> Option<P> {
    match event.get("OldResourceProperties") {
        None | Some(Value::Null) => {
            tracing::info!("the Update carries no OldResourceProperties");
            None
        }
        Some(_) => match parse_properties(event, "OldResourceProperties") {
            Ok(old) => Some(old),
            Err(why) => {
                tracing::info!(reason = %why, "OldResourceProperties ignored: they do not parse (the values that failed last time?)");
                None
            }
        },
    }
}

/// Deserializes a property object (without `ServiceToken` and `ServiceTimeout`) exactly as the
/// guard does, turning serde's error into a Reason that names the property. Contract tests use it
/// to check templates against a handler's property type.
pub fn parse_property_map<P: DeserializeOwned>(properties: Value) -> Result<P, String> {
    serde_path_to_error::deserialize(properties).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner().to_string();
        if let Some(name) = inner.strip_prefix("missing field ") {
            format!("missing required property {name}")
        } else if let Some(rest) = inner.strip_prefix("unknown field ") {
            format!("unknown property {rest}")
        } else {
            format!("property `{path}` is invalid: {inner}")
        }
    })
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Props {
        name: String,
        #[serde(default, deserialize_with = "crate::de::optional_number")]
        size: Option<u32>,
    }

    #[test]
    fn reasons_name_the_property() {
        let event = json!({"ResourceProperties": {"ServiceToken": "arn", "ServiceTimeout": "300", "Size": "big", "Name": "x"}});
        let e = parse_properties::<Props>(&event, "ResourceProperties").unwrap_err();
        assert!(
            e.message().contains("`Size`") && e.message().contains("\"big\""),
            "{e}"
        );

        let event = json!({"ResourceProperties": {"Size": "5"}});
        let e = parse_properties::<Props>(&event, "ResourceProperties").unwrap_err();
        assert_eq!(
            e.message(),
            "ResourceProperties: missing required property `Name`"
        );

        let event = json!({"ResourceProperties": {"Name": "a", "Colour": "red"}});
        let e = parse_properties::<Props>(&event, "ResourceProperties").unwrap_err();
        assert!(
            e.message()
                .starts_with("ResourceProperties: unknown property `Colour`"),
            "{e}"
        );
    }

    #[test]
    fn envelope_needs_a_response_url_and_never_echoes_it() {
        assert!(
            Envelope::from_event(&json!([1, 2]))
                .unwrap_err()
                .contains("an array")
        );
        assert!(
            Envelope::from_event(&json!({"RequestType": "Create"}))
                .unwrap_err()
                .contains("no ResponseURL")
        );
        let e = Envelope::from_event(&json!({"ResponseURL": "ftp://x/?sig=abc"})).unwrap_err();
        assert!(!e.contains("abc"), "{e}");
        let env =
            Envelope::from_event(&json!({"ResponseURL": "http://h/p?sig=abc", "RequestType": "Explode"}))
                .unwrap();
        assert!(env.request_type.unwrap_err().contains("\"Explode\""));
    }

    #[test]
    fn old_properties_are_lenient() {
        let old = |v: Value| parse_old_properties::<Props>(&json!({ "OldResourceProperties": v }));
        assert!(old(json!({"Name": "a", "Size": "5"})).is_some_and(|p| p.size == Some(5)));
        assert!(old(json!({"Name": "a", "Size": "big"})).is_none());
        assert!(old(json!({"Name": "a", "Colour": "red"})).is_none());
        assert!(old(json!({"Size": "5"})).is_none());
        assert!(old(json!("a string")).is_none());
        assert!(parse_old_properties::<Props>(&json!({})).is_none());
    }

    #[test]
    fn partial_ids_wrap_and_unwrap() {
        let id = PhysicalId::new("db.example.com:5432/orders").unwrap();
        let wrapped = partial_physical_id(&id).unwrap();
        assert_eq!(unwrap_partial(&wrapped), Some(id.as_str()));
        assert!(!is_marker(&wrapped));
        assert_eq!(unwrap_partial("db.example.com:5432/orders"), None);
        assert_eq!(unwrap_partial(PARTIAL_PREFIX), None);
        assert!(partial_physical_id(&PhysicalId::new("x".repeat(1024)).unwrap()).is_none());
    }

    #[test]
    fn marker_ids_are_deterministic_and_bounded() {
        assert_eq!(marker_physical_id("Db", "r1"), marker_physical_id("Db", "r1"));
        assert!(is_marker(&marker_physical_id("Db", "r1")));
        assert!(marker_physical_id(&"é".repeat(600), "r").len() <= 1024);
    }
}
