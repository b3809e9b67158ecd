//! The dead-letter responder: answers `FAILED` for an event no execution environment could.
//!
//! A process that is killed (out of memory, an abort, a runtime crash) cannot answer for itself,
//! and CloudFormation would wait `ServiceTimeout` (an hour by default). Lambda retries an
//! asynchronous invocation (`MaximumRetryAttempts`, two by default), then sends a destination
//! record to the function's on-failure destination. This module is that destination: it reads the
//! record (AWS Lambda's "Capturing records of Lambda asynchronous invocations"):
//!
//! ```json
//! {"version": "1.0", "timestamp": "...",
//!  "requestContext": {"requestId": "...", "functionArn": "arn:aws:lambda:...:function:NAME:$LATEST",
//!                     "condition": "RetriesExhausted", "approximateInvokeCount": 3},
//!  "requestPayload": { the original event: the CloudFormation request },
//!  "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
//!  "responsePayload": {"errorType": "Runtime.ExitError", "errorMessage": "..."}}
//! ```
//!
//! and answers the original event's `ResponseURL` through the guard's own send path (the same
//! PUT rules, the 4096-byte body, the `Reason` sanitizing, no query string in a log line):
//!
//! - `Status` `FAILED`; the `Reason` says the handler's execution environment crashed on every
//!   attempt (`RetriesExhausted`) or that the event aged out (`EventAgeExceeded`), how many
//!   attempts Lambda made, which function, the record's `errorType` when it is a plain name, and
//!   what to do. Nothing else from `responsePayload` is repeated, and no property value is.
//! - `PhysicalResourceId`: on Create the deterministic [`marker_physical_id`](crate::marker_physical_id),
//!   so the rollback Delete CloudFormation sends for it is answered `SUCCESS` by the real handler's
//!   guard without calling the handler; on Update and Delete the event's id. A partial id a
//!   handler published ([`PartialId`](crate::PartialId)) lives only in its process, which is
//!   gone: none is durable, so what a crashed Create had made is not removed by that Delete (the
//!   next Create of the same resource finds and reuses what it owns).
//! - A record whose `requestPayload` has no usable `ResponseURL` (not a CloudFormation request) is
//!   logged and ignored: the invocation succeeds, nothing is sent.
//!
//! Unlike the guard, the responder takes the record as the Lambda runtime deserialized it
//! (serde_json): a record serde_json refuses (an original event carrying a lone surrogate escape,
//! say) is an invocation error of the responder, not an answer.
//!
//! Why this never turns an answered event into `FAILED`: Lambda sends an on-failure record only
//! when no attempt returned success, and the guard returns `Ok` to the runtime as soon as one
//! response was delivered; it returns an error only when delivery itself failed (or the event had
//! no `ResponseURL`). So a record means no attempt delivered a response, with one window left: a
//! process that delivered its response and died before its `POST .../response` reached the
//! runtime, after which every retry crashed too. Then CloudFormation has the first answer and
//! gets this `FAILED` as a second PUT to the same URL; the responder cannot tell (a pre-signed
//! URL can be written, not read).

use std::time::SystemTime;

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::guard::{Config, Transport, time_left};
use crate::request::{Envelope, RequestType};
use crate::response::{Answer, encode};
use crate::send::{SendPolicy, Sender};
use crate::settings::Timing;

/// What a destination record says about the attempts; the fields the responder uses.
#[derive(Debug, Clone, PartialEq)]
pub struct DestinationRecord {
    /// `requestContext.requestId`: the asynchronous invocation's id (the function's logs carry it).
    pub invocation_id: String,
    /// `requestContext.functionArn`.
    pub function_arn: String,
    /// `requestContext.condition`: `RetriesExhausted` or `EventAgeExceeded`.
    pub condition: String,
    /// `requestContext.approximateInvokeCount`.
    pub attempts: u64,
    /// `responseContext.functionError` (`Unhandled`), when present.
    pub function_error: Option<String>,
    /// `responsePayload.errorType` (`Runtime.ExitError`, ...), when it is a plain name.
    pub error_type: Option<String>,
    /// `requestPayload`: the original event.
    pub request_payload: Value,
}

impl DestinationRecord {
    /// Reads a destination record; `Err` says why `record` is not one.
    pub fn parse(record: &Value) -> Result<Self, String> {
        let context = record
            .get("requestContext")
            .and_then(Value::as_object)
            .ok_or("the invocation is not a Lambda destination record: no requestContext object")?;
        let request_payload = record
            .get("requestPayload")
            .cloned()
            .ok_or("the destination record has no requestPayload")?;
        let text = |object: Option<&Value>, key: &str| {
            object
                .and_then(|o| o.get(key))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let plain = |name: String| {
            (name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_'))
            .then_some(name)
        };
        let context_value = record.get("requestContext");
        Ok(Self {
            invocation_id: text(context_value, "requestId").unwrap_or_default(),
            function_arn: text(context_value, "functionArn").unwrap_or_default(),
            condition: text(context_value, "condition").unwrap_or_default(),
            attempts: context
                .get("approximateInvokeCount")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            function_error: text(record.get("responseContext"), "functionError").and_then(plain),
            error_type: text(record.get("responsePayload"), "errorType").and_then(plain),
            request_payload,
        })
    }

    /// The function's name (with its qualifier), from its ARN.
    pub fn function(&self) -> String {
        match self.function_arn.split_once(":function:") {
            Some((_, name)) if !name.is_empty() => name.to_string(),
            _ if !self.function_arn.is_empty() => self.function_arn.clone(),
            _ => "the custom-resource function".to_string(),
        }
    }

    /// The `Reason` of the `FAILED` answer.
    pub fn reason(&self, request_type: &str) -> String {
        let attempts = match self.attempts {
            0 => "an unknown number of attempts".to_string(),
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        };
        let error = match (&self.error_type, &self.function_error) {
            (Some(kind), _) => format!(" (last error: {kind})"),
            (None, Some(kind)) => format!(" (function error: {kind})"),
            (None, None) => String::new(),
        };
        let function = self.function();
        let what = if self.condition == "EventAgeExceeded" {
            format!(
                "the {request_type} event aged out in Lambda's asynchronous queue (EventAgeExceeded) after {attempts} of {function}{error}: no attempt delivered a response"
            )
        } else {
            format!(
                "the {function} handler's execution environment crashed (out of memory, an abort or a runtime crash) or could not deliver its response on each of {attempts} at this {request_type}{error}: no response was sent, and Lambda gave up ({condition})",
                condition = if self.condition.is_empty() {
                    "no condition given"
                } else {
                    &self.condition
                }
            )
        };
        format!(
            "{what}. This FAILED comes from the dead-letter responder. See {function}'s logs for invocation {id}; raise its MemorySize or Timeout or fix the crash, then retry the stack operation",
            id = if self.invocation_id.is_empty() {
                "(unknown)"
            } else {
                &self.invocation_id
            }
        )
    }
}

/// What the responder did with a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// FAILED was delivered to the original event's ResponseURL.
    Answered,
    /// Nothing to answer; the text says why.
    Ignored(String),
}

/// Answers destination records: `FAILED` to the original event's `ResponseURL`.
pub struct Responder<T = Sender> {
    sender: T,
    config: Config,
    /// An invalid timing setting, added to every Reason (the answer is FAILED anyway).
    misconfigured: Option<String>,
}

impl Responder {
    /// A responder that PUTs to the events' `ResponseURL`s.
    pub fn new(config: Config) -> Self {
        Self::with_transport(config, Sender::new(SendPolicy::default()))
    }
}

impl<T: Transport> Responder<T> {
    /// A responder whose responses go to `transport`.
    pub fn with_transport(config: Config, transport: T) -> Self {
        Self {
            sender: transport,
            config,
            misconfigured: None,
        }
    }

    /// A responder configured by the function's timing settings: it computes deadlines with
    /// their values (the defaults where a value is invalid), and names an invalid one in every
    /// Reason it sends.
    pub fn with_timing(timing: &Timing, transport: T) -> Self {
        Self {
            misconfigured: timing.problem(),
            ..Self::with_transport(timing.config(), transport)
        }
    }

    /// Handles one destination record. `Err` only when a FAILED answer could not be delivered
    /// (Lambda then retries the responder's own invocation).
    pub async fn respond(
        &self,
        record: &Value,
        deadline: SystemTime,
    ) -> Result<Disposition, lambda_runtime::Error> {
        let deadline = Instant::now() + time_left(deadline, self.config.default_budget);
        let record = match DestinationRecord::parse(record) {
            Ok(record) => record,
            Err(why) => {
                tracing::warn!("ignored: {why}");
                return Ok(Disposition::Ignored(why));
            }
        };
        let envelope = match Envelope::from_event(&record.request_payload) {
            Ok(envelope) => envelope,
            Err(why) => {
                tracing::warn!(
                    function = %record.function(),
                    invocation = %record.invocation_id,
                    condition = %record.condition,
                    "ignored: the record's requestPayload cannot be answered: {why}"
                );
                return Ok(Disposition::Ignored(why));
            }
        };
        let span = tracing::info_span!(
            "dead_letter",
            request_type = %envelope.raw_request_type,
            logical_resource_id = %envelope.identity.logical_resource_id,
            request_id = %envelope.identity.request_id,
            stack_id = %envelope.identity.stack_id,
        );
        self.answer(record, envelope, deadline).instrument(span).await
    }

    async fn answer(
        &self,
        record: DestinationRecord,
        envelope: Envelope,
        deadline: Instant,
    ) -> Result<Disposition, lambda_runtime::Error> {
        let physical_id = match (&envelope.request_type, &envelope.physical_id) {
            (Ok(RequestType::Create), _) | (_, None) => envelope.marker_id(),
            (_, Some(id)) => id.clone(),
        };
        let mut reason = record.reason(&envelope.raw_request_type);
        if let Some(problem) = &self.misconfigured {
            reason.push_str(&format!(
                ". The dead-letter responder itself is misconfigured (it used the default): {problem}"
            ));
        }
        let answer = Answer::failed(reason, physical_id.clone());
        let body = encode(&envelope.identity, answer);
        let give_up_at = deadline
            .checked_sub(self.config.delivery_slack)
            .unwrap_or_else(Instant::now);
        match self.sender.put(&envelope.response_url, body, give_up_at).await {
            Ok(attempts) => {
                tracing::warn!(
                    status = "FAILED",
                    physical_id,
                    function = %record.function(),
                    condition = %record.condition,
                    invoke_count = record.attempts,
                    attempts,
                    "response delivered for an event no execution environment answered"
                );
                Ok(Disposition::Answered)
            }
            Err(error) => {
                tracing::error!(status = "FAILED", physical_id, "{error}");
                Err(error)
            }
        }
    }
}

/// Serves the Lambda Runtime API as the on-failure destination of the custom-resource
/// functions. Its timing comes from the environment, read and logged once here
/// ([`Timing::from_env`]).
pub async fn run_dead_letter_responder() -> Result<(), lambda_runtime::Error> {
    let timing = Timing::from_env();
    let responder = std::sync::Arc::new(Responder::with_timing(
        &timing,
        Sender::new(SendPolicy::default()),
    ));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Value>| {
        let responder = std::sync::Arc::clone(&responder);
        async move {
            let deadline = event.context.deadline();
            let disposition = responder.respond(&event.payload, deadline).await?;
            Ok::<_, lambda_runtime::Error>(match disposition {
                Disposition::Answered => serde_json::json!({"answered": true}),
                Disposition::Ignored(why) => serde_json::json!({"answered": false, "why": why}),
            })
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::guard::Capture;
    use crate::marker_physical_id;

    fn record() -> Value {
        serde_json::from_str(include_str!(
            "../../../tests/events/dead-letter-responder-record.json"
        ))
        .unwrap()
    }

    async fn respond(record: &Value) -> (Disposition, Vec<Value>) {
        let capture = Capture::default();
        let responder = Responder::with_transport(Config::default(), capture.clone());
        let deadline = SystemTime::now() + Duration::from_secs(60);
        let disposition = responder.respond(record, deadline).await.unwrap();
        let bodies = capture.0.lock().unwrap().clone();
        (disposition, bodies)
    }

    #[test]
    fn the_sample_record_parses() {
        let parsed = DestinationRecord::parse(&record()).unwrap();
        assert_eq!(parsed.condition, "RetriesExhausted");
        assert_eq!(parsed.attempts, 3);
        assert_eq!(parsed.function(), "admin-secret:$LATEST");
        assert_eq!(parsed.error_type.as_deref(), Some("Runtime.ExitError"));
        assert_eq!(parsed.function_error.as_deref(), Some("Unhandled"));
        assert_eq!(parsed.request_payload["RequestType"], "Create");
        assert_eq!(parsed.invocation_id, "8e5f3a3c-1b2d-4c6e-9f0a-0d1e2f3a4b5c");
    }

    #[tokio::test]
    async fn a_create_is_answered_failed_with_the_marker_id() {
        let (disposition, bodies) = respond(&record()).await;
        assert_eq!(disposition, Disposition::Answered);
        assert_eq!(bodies.len(), 1);
        let body = &bodies[0];
        assert_eq!(body["Status"], "FAILED");
        let event = &record()["requestPayload"];
        assert_eq!(
            body["PhysicalResourceId"],
            marker_physical_id(
                event["LogicalResourceId"].as_str().unwrap(),
                event["RequestId"].as_str().unwrap()
            )
        );
        assert_eq!(body["RequestId"], event["RequestId"]);
        assert_eq!(body["StackId"], event["StackId"]);
        let reason = body["Reason"].as_str().unwrap();
        assert!(
            reason.contains("execution environment crashed") && reason.contains("3 attempts"),
            "{reason}"
        );
        assert!(reason.contains("admin-secret"), "{reason}");
        assert!(
            !reason.contains("X-Amz-Signature") && !reason.contains("errorMessage"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn update_and_delete_keep_the_event_id_and_age_out_is_named() {
        for request_type in ["Update", "Delete"] {
            let mut record = record();
            record["requestPayload"]["RequestType"] = request_type.into();
            record["requestPayload"]["PhysicalResourceId"] = "/platform/admin".into();
            record["requestContext"]["condition"] = "EventAgeExceeded".into();
            record["requestContext"]["approximateInvokeCount"] = 1.into();
            let (_, bodies) = respond(&record).await;
            assert_eq!(bodies[0]["PhysicalResourceId"], "/platform/admin");
            let reason = bodies[0]["Reason"].as_str().unwrap();
            assert!(
                reason.contains("EventAgeExceeded") && reason.contains("1 attempt"),
                "{reason}"
            );
        }
    }

    #[tokio::test]
    async fn a_record_without_a_response_url_is_ignored() {
        let mut without = record();
        without["requestPayload"]
            .as_object_mut()
            .unwrap()
            .remove("ResponseURL");
        let not_a_record = serde_json::json!({"RequestType": "Create"});
        let mut other_event = record();
        other_event["requestPayload"] = serde_json::json!({"detail-type": "Scheduled Event"});
        for case in [without, not_a_record, other_event] {
            let (disposition, bodies) = respond(&case).await;
            assert!(matches!(disposition, Disposition::Ignored(_)), "{case}");
            assert!(bodies.is_empty(), "{case}");
        }
    }
}
