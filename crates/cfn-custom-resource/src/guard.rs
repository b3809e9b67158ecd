use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::tower::Layer;
use lambda_runtime::{LambdaEvent, LambdaInvocation, Service, service_fn};
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::error::HandlerError;
use crate::request::{
    Create, Delete, Envelope, PartialId, Progress, RequestType, Update, is_marker, parse_old_properties,
    parse_properties, partial_physical_id, unwrap_partial,
};
use crate::response::{Answer, Data, PhysicalId, encode, oversized_data, sanitize_reason};
use crate::secret::ResponseUrl;
use crate::send::{SendPolicy, Sender};
use crate::settings::Timing;
use crate::{CustomResource, raw};

/// How close to the Lambda deadline the guard gives up on the handler and answers FAILED: the
/// values the guard computes with. [`Timing`] reads them from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Time kept back before the deadline for the FAILED response: enough for a TLS handshake and
    /// a PUT with a retry or two. `CFN_RESPONSE_MARGIN_MS`, default 3000.
    pub deadline_margin: Duration,
    /// Delivery stops retrying this long before the deadline, so the runtime still hears the
    /// outcome. `CFN_DELIVERY_SLACK_MS`, default 250.
    pub delivery_slack: Duration,
    /// The time an invocation is given when its deadline is implausible (already passed, zero, or
    /// further away than Lambda's 15-minute maximum, as emulators send: `cargo lambda watch` sends
    /// a duration, `600000`, where an epoch time belongs). `CFN_DEFAULT_BUDGET_MS`, default 300000.
    pub default_budget: Duration,
}

/// Lambda's longest timeout, plus a minute of clock skew: a deadline further away is not real.
const MAX_PLAUSIBLE_REMAINING: Duration = Duration::from_secs(16 * 60);

impl Default for Config {
    fn default() -> Self {
        Self {
            deadline_margin: Duration::from_millis(3000),
            delivery_slack: Duration::from_millis(250),
            default_budget: Duration::from_secs(300),
        }
    }
}

/// Serves the Lambda Runtime API with `handler`, answering CloudFormation on every path. The
/// guard's timing comes from the environment, read and logged once here ([`Timing::from_env`]);
/// an invalid value makes every request `FAILED` naming it (see [`crate::settings`]).
pub async fn run<H: CustomResource>(handler: H) -> Result<(), lambda_runtime::Error> {
    let timing = Timing::from_env();
    serve(Guard::with_timing(
        handler,
        &timing,
        Sender::new(SendPolicy::default()),
    ))
    .await
}

/// [`run`] with an explicit configuration.
///
/// The guard takes each invocation's raw bytes from the runtime (a layer in front of its own
/// deserialization), not a value the
/// runtime deserialized: an event serde_json refuses (a lone surrogate escape, nesting 128 levels
/// deep) would otherwise fail inside the runtime, before anything has read its `ResponseURL`.
pub async fn run_with_config<H: CustomResource>(
    handler: H,
    config: Config,
) -> Result<(), lambda_runtime::Error> {
    serve(Guard::new(handler, config)).await
}

async fn serve<H: CustomResource>(guard: Guard<H>) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::Runtime::new(service_fn(report))
        .layer(RawEventsLayer(Arc::new(guard)))
        .layer(lambda_runtime::layers::TracingLayer::new())
        .run()
        .await
}

/// Where the guard's response bodies go. The guard's own is the HTTPS PUT to the `ResponseURL`;
/// a fuzzer or a test can capture the bodies instead ([`Guard::with_transport`]).
pub trait Transport: Send + Sync + 'static {
    /// Delivers `body` to `url`, trying until `give_up_at`; `Ok` holds the attempts made.
    fn put(
        &self,
        url: &ResponseUrl,
        body: Vec<u8>,
        give_up_at: Instant,
    ) -> impl Future<Output = Result<u32, lambda_runtime::Error>> + Send;
}

/// A [`Transport`] for unit tests that keeps every body it is given, parsed.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>);

#[cfg(test)]
impl Transport for Capture {
    async fn put(&self, _: &ResponseUrl, body: Vec<u8>, _: Instant) -> Result<u32, lambda_runtime::Error> {
        self.0.lock().unwrap().push(serde_json::from_slice(&body)?);
        Ok(1)
    }
}

impl Transport for Sender {
    async fn put(
        &self,
        url: &ResponseUrl,
        body: Vec<u8>,
        give_up_at: Instant,
    ) -> Result<u32, lambda_runtime::Error> {
        Ok(Sender::put(self, url, body, give_up_at).await?)
    }
}

/// The response guarantee for one handler: turns an invocation's raw bytes into exactly one
/// response, whatever the bytes hold and whatever the handler does. [`run`] serves the Lambda
/// Runtime API with one; [`Guard::invoke`] is the same path without the runtime.
pub struct Guard<H, T = Sender> {
    handler: Arc<H>,
    sender: T,
    config: Config,
    /// An invalid timing setting: every request is answered FAILED with this Reason.
    misconfigured: Option<String>,
}

impl<H: CustomResource> Guard<H> {
    /// A guard that PUTs its responses to the events' `ResponseURL`s.
    pub fn new(handler: H, config: Config) -> Self {
        Self::with_transport(handler, config, Sender::new(SendPolicy::default()))
    }
}

impl<H: CustomResource, T: Transport> Guard<H, T> {
    /// A guard whose responses go to `transport`.
    pub fn with_transport(handler: H, config: Config, transport: T) -> Self {
        Self {
            handler: Arc::new(handler),
            sender: transport,
            config,
            misconfigured: None,
        }
    }

    /// A guard configured by the function's timing settings: it computes deadlines with their
    /// values (the defaults where a value is invalid) and, when one is invalid, answers every
    /// request `FAILED` naming it, without running the handler.
    pub fn with_timing(handler: H, timing: &Timing, transport: T) -> Self {
        Self {
            misconfigured: timing.problem(),
            ..Self::with_transport(handler, timing.config(), transport)
        }
    }

    /// Answers one invocation: `body` is what the Lambda Runtime API handed out, `invocation` its
    /// request id, `deadline` its deadline. `Ok` once the response was delivered; `Err` when it
    /// could not be, or when the bytes hold no usable `ResponseURL` (a log line says why).
    pub async fn invoke(
        &self,
        body: &[u8],
        invocation: &str,
        deadline: SystemTime,
    ) -> Result<(), lambda_runtime::Error> {
        let deadline = Instant::now() + time_left(deadline, self.config.default_budget);
        let event = raw::read(body);
        let envelope = match Envelope::from_event(&event.value) {
            Ok(envelope) => envelope,
            Err(why) => {
                let why = match &event.problem {
                    Some(problem) => format!("{why} (the event is not strict JSON: {problem})"),
                    None => why,
                };
                tracing::error!(invocation, "cannot answer CloudFormation: {why}");
                return Err(why.into());
            }
        };
        let span = tracing::info_span!(
            "custom_resource",
            request_type = %envelope.raw_request_type,
            logical_resource_id = %envelope.identity.logical_resource_id,
            request_id = %envelope.identity.request_id,
            stack_id = %envelope.identity.stack_id,
        );
        async {
            // One answer, then one delivery: the handler, its panic and the watchdog all end in
            // `answer`, so a second response cannot be built.
            let started = Instant::now();
            let (calls, waited) = crate::aws_calls();
            let answer = match event.problem {
                None => self.answer(&envelope, event.value, deadline).await,
                Some(problem) => not_strict_json(&envelope, &problem),
            };
            let (calls_now, waited_now) = crate::aws_calls();
            let cost = Cost {
                aws_calls: calls_now.saturating_sub(calls),
                aws_us: waited_now.saturating_sub(waited),
                handler_us: started.elapsed().as_micros() as u64,
            };
            self.deliver(&envelope, answer, deadline, cost).await
        }
        .instrument(span)
        .await
    }

    /// Runs the handler under the watchdog and turns whatever happens into an answer. The steps:
    /// answers that need no handler ([`Guard::answer_without_handler`]), the handler's run under
    /// the watchdog ([`Guard::watch`]), and its outcome as a response ([`Guard::settle`]).
    async fn answer(&self, envelope: &Envelope, payload: Value, deadline: Instant) -> Answer {
        let request_type = match envelope.request_type.clone() {
            Ok(request_type) => request_type,
            Err(reason) => {
                let physical_id = envelope
                    .physical_id
                    .clone()
                    .unwrap_or_else(|| envelope.marker_id());
                return Answer::failed(reason, physical_id);
            }
        };
        let fire_at = match self.answer_without_handler(envelope, request_type, deadline) {
            Ok(fire_at) => fire_at,
            Err(answer) => return answer,
        };
        let partial_id = PartialId::default();
        let started = Started {
            request_type,
            progress: Progress::new(format!("running the {} handler", request_type.as_str())),
            partial_id: partial_id.clone(),
            fire_at,
        };
        let outcome = self.watch(envelope, payload, started, deadline).await;
        self.settle(envelope, request_type, outcome, partial_id.get())
    }

    /// The answers given without starting the handler: `SUCCESS` for the Delete of a marker id
    /// (nothing was created), `FAILED` for an invalid timing setting and for too little time left.
    /// Otherwise the instant the watchdog fires.
    fn answer_without_handler(
        &self,
        envelope: &Envelope,
        request_type: RequestType,
        deadline: Instant,
    ) -> Result<Instant, Answer> {
        if request_type == RequestType::Delete && envelope.physical_id.as_deref().is_some_and(is_marker) {
            tracing::info!(
                "Delete of a resource whose Create failed: nothing was created, nothing to delete"
            );
            return Err(Answer::success(
                envelope.physical_id.clone().unwrap_or_default(),
                Data::new(),
                false,
            ));
        }
        if let Some(problem) = &self.misconfigured {
            let error = HandlerError::new(format!(
                "{problem}; the {} handler was not started: fix the function's environment",
                request_type.as_str()
            ));
            return Err(self.failure(envelope, request_type, error, None));
        }
        let fire_at = deadline
            .checked_sub(self.config.deadline_margin)
            .filter(|at| *at > Instant::now());
        fire_at.ok_or_else(|| {
            let left = deadline.saturating_duration_since(Instant::now());
            self.failure(
                envelope,
                request_type,
                HandlerError::new(format!(
                    "only {} ms were left before the Lambda deadline, less than the {} ms kept back to answer \
                     CloudFormation (CFN_RESPONSE_MARGIN_MS); the {} handler was not started: raise the \
                     function's timeout",
                    left.as_millis(),
                    self.config.deadline_margin.as_millis(),
                    request_type.as_str()
                )),
                None,
            )
        })
    }

    /// Runs the handler in its own task until it ends, panics, or the watchdog fires at
    /// `started.fire_at` (then the task is aborted).
    async fn watch(
        &self,
        envelope: &Envelope,
        payload: Value,
        started: Started,
        deadline: Instant,
    ) -> Result<Success, HandlerError> {
        let Started {
            request_type,
            progress,
            partial_id,
            fire_at,
        } = started;
        let task = tokio::spawn(dispatch(
            Arc::clone(&self.handler),
            envelope.clone(),
            request_type,
            payload,
            progress.clone(),
            partial_id,
            fire_at,
        ));
        let abort = task.abort_handle();

        tokio::select! {
            joined = task => match joined {
                Ok(outcome) => outcome,
                Err(error) if error.is_panic() => Err(HandlerError::new(format!(
                    "the {} handler panicked: {}",
                    request_type.as_str(),
                    panic_message(error.into_panic())
                ))),
                Err(_) => Err(HandlerError::new("the handler task was cancelled")),
            },
            () = tokio::time::sleep_until(fire_at) => {
                abort.abort();
                let left = deadline.saturating_duration_since(Instant::now());
                Err(HandlerError::new(format!(
                    "timed out while {} ({} ms before the Lambda deadline; the handler was stopped)",
                    progress.get(),
                    left.as_millis()
                )))
            }
        }
    }

    /// The handler's outcome as the response: its success, unless its `Data` cannot fit a
    /// response (then `FAILED` with the id of what it made), or its error as `FAILED` with the id
    /// it had `published` so far.
    fn settle(
        &self,
        envelope: &Envelope,
        request_type: RequestType,
        outcome: Result<Success, HandlerError>,
        published: Option<PhysicalId>,
    ) -> Answer {
        match outcome {
            Ok(Success {
                physical_id,
                data,
                no_echo,
            }) => {
                let answer = Answer::success(
                    physical_id
                        .clone()
                        .unwrap_or_else(|| envelope.physical_id.clone().unwrap_or_default()),
                    data,
                    no_echo,
                );
                let Some(reason) = oversized_data(&envelope.identity, &answer) else {
                    return answer;
                };
                let error = HandlerError::new(reason);
                // A Create made its resource: answer with it so the rollback Delete removes it.
                let made = physical_id.and_then(|id| PhysicalId::new(id).ok());
                self.failure(envelope, request_type, error, made)
            }
            Err(error) => self.failure(envelope, request_type, error, published),
        }
    }

    /// A FAILED answer with the id CloudFormation must see: on Update and Delete the event's id (a
    /// failed Update must not look like a replacement); on Create, what the Create had made
    /// (wrapped as a partial-create id, so that the rollback Delete cleans it up), else a marker.
    fn failure(
        &self,
        envelope: &Envelope,
        request_type: RequestType,
        error: HandlerError,
        published: Option<PhysicalId>,
    ) -> Answer {
        let physical_id = match request_type {
            RequestType::Create => error
                .physical_id()
                .cloned()
                .or(published)
                .and_then(|id| partial_physical_id(&id))
                .unwrap_or_else(|| envelope.marker_id()),
            RequestType::Update | RequestType::Delete => envelope
                .physical_id
                .clone()
                .unwrap_or_else(|| envelope.marker_id()),
        };
        Answer::failed(error.message().to_string(), physical_id)
    }

    /// Sends the one response of this invocation and tells the runtime how that went.
    async fn deliver(
        &self,
        envelope: &Envelope,
        answer: Answer,
        deadline: Instant,
        cost: Cost,
    ) -> Result<(), lambda_runtime::Error> {
        let status = answer.status();
        let physical_id = answer.physical_id().to_string();
        let body = encode(&envelope.identity, answer.clone());
        let give_up_at = deadline
            .checked_sub(self.config.delivery_slack)
            .unwrap_or_else(Instant::now);
        let sending = Instant::now();
        let sent = self.sender.put(&envelope.response_url, body, give_up_at).await;
        let put_us = sending.elapsed().as_micros() as u64;
        let Cost {
            aws_calls,
            aws_us,
            handler_us,
        } = cost;
        match sent {
            Ok(attempts) => {
                match &answer {
                    Answer::Success { data, .. } => {
                        let mut data_keys: Vec<&str> = data.keys().map(String::as_str).collect();
                        data_keys.sort_unstable();
                        let data_keys = data_keys.join(",");
                        tracing::info!(
                            status,
                            physical_id,
                            data_keys,
                            attempts,
                            aws_calls,
                            aws_us,
                            handler_us,
                            put_us,
                            "response delivered"
                        );
                    }
                    Answer::Failed { reason, .. } => {
                        let reason = sanitize_reason(reason);
                        tracing::warn!(
                            status,
                            physical_id,
                            reason,
                            attempts,
                            aws_calls,
                            aws_us,
                            handler_us,
                            put_us,
                            "response delivered"
                        );
                    }
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(status, physical_id, "{error}");
                Err(error)
            }
        }
    }
}

/// The time left before an invocation's deadline, or `default_budget` when the deadline cannot
/// be real.
pub(crate) fn time_left(deadline: SystemTime, default_budget: Duration) -> Duration {
    match deadline.duration_since(SystemTime::now()) {
        Ok(left) if !left.is_zero() && left <= MAX_PLAUSIBLE_REMAINING => left,
        _ => {
            let epoch_ms = deadline
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            tracing::warn!(
                deadline_ms = epoch_ms as u64,
                budget_ms = default_budget.as_millis() as u64,
                "the invocation's deadline is implausible (passed, zero, or beyond Lambda's 15 minutes: an emulator's?); using the default budget"
            );
            default_budget
        }
    }
}

/// What answering cost, logged with the delivery: AWS requests made, the microseconds during
/// which one was in flight, and the whole answer (event parsed → answer ready). `handler_us −
/// aws_us` is the time spent in our own code and the SDK around the calls.
struct Cost {
    aws_calls: u64,
    aws_us: u64,
    handler_us: u64,
}

/// A handler run about to start: what it is, what it reports, and when the watchdog fires.
struct Started {
    request_type: RequestType,
    progress: Progress,
    partial_id: PartialId,
    fire_at: Instant,
}

/// What a successful handler returned, phase-independent.
struct Success {
    /// `None`: keep the event's id.
    physical_id: Option<String>,
    data: Data,
    no_echo: bool,
}

async fn dispatch<H: CustomResource>(
    handler: Arc<H>,
    envelope: Envelope,
    request_type: RequestType,
    payload: Value,
    progress: Progress,
    partial_id: PartialId,
    watchdog_at: Instant,
) -> Result<Success, HandlerError> {
    let info = envelope.info(progress, partial_id, watchdog_at);
    match request_type {
        RequestType::Create => {
            let properties = parse_properties(&payload, "ResourceProperties")?;
            let created = handler.create(Create { info, properties }).await?;
            Ok(Success {
                physical_id: Some(created.physical_id.as_str().to_string()),
                data: created.data,
                no_echo: created.no_echo,
            })
        }
        RequestType::Update => {
            let physical_id = envelope.existing_physical_id()?;
            let properties = parse_properties(&payload, "ResourceProperties")?;
            let old_properties = parse_old_properties(&payload);
            let updated = handler
                .update(Update {
                    info,
                    physical_id,
                    properties,
                    old_properties,
                })
                .await?;
            Ok(Success {
                physical_id: updated.replacement.map(|id| id.as_str().to_string()),
                data: updated.data,
                no_echo: updated.no_echo,
            })
        }
        RequestType::Delete => {
            let event_id = envelope.existing_physical_id()?;
            let (physical_id, after_failed_create) = match unwrap_partial(event_id.as_str()) {
                Some(made) => {
                    tracing::info!(
                        physical_id = made,
                        "Delete after a failed Create: removing what it made"
                    );
                    (PhysicalId::from_event(made.to_string()), true)
                }
                None => (event_id, false),
            };
            let properties = parse_properties(&payload, "ResourceProperties")?;
            handler
                .delete(Delete {
                    info,
                    physical_id,
                    properties,
                    after_failed_create,
                })
                .await?;
            Ok(Success {
                physical_id: None,
                data: Data::new(),
                no_echo: false,
            })
        }
    }
}

/// The answer to an event whose bytes are not strict JSON: FAILED, saying what is wrong, with the
/// event's physical id (Update, Delete) or the marker id (Create). No handler runs on a value
/// parsers disagree about.
fn not_strict_json(envelope: &Envelope, problem: &str) -> Answer {
    let reason = format!("the event is not strict JSON, so no handler ran: {problem}");
    let physical_id = match (&envelope.request_type, &envelope.physical_id) {
        (Ok(RequestType::Create), _) | (_, None) => envelope.marker_id(),
        (_, Some(id)) => id.clone(),
    };
    tracing::warn!(problem, "the event is not strict JSON");
    Answer::failed(reason, physical_id)
}

/// What the guard made of an invocation, handed to [`report`] for the Runtime API.
#[derive(serde::Serialize, serde::Deserialize)]
struct Outcome(Result<(), String>);

/// The runtime's own handler behind [`RawEvents`]: tells the Runtime API how the guard's
/// invocation ended (`Err` only when no response could be delivered).
async fn report(outcome: LambdaEvent<Outcome>) -> Result<(), lambda_runtime::Error> {
    outcome.payload.0.map_err(Into::into)
}

/// A runtime layer that hands each invocation's raw bytes to the guard, before the runtime tries
/// to deserialize them.
struct RawEventsLayer<H>(Arc<Guard<H>>);

impl<H, S> Layer<S> for RawEventsLayer<H> {
    type Service = RawEvents<H, S>;

    fn layer(&self, inner: S) -> Self::Service {
        RawEvents {
            guard: Arc::clone(&self.0),
            inner,
        }
    }
}

/// The service of [`RawEventsLayer`]: the guard answers CloudFormation from the raw bytes, then
/// the runtime's own stack (`inner`) reports the [`Outcome`] to the Runtime API.
struct RawEvents<H, S> {
    guard: Arc<Guard<H>>,
    inner: S,
}

impl<H, S> Service<LambdaInvocation> for RawEvents<H, S>
where
    H: CustomResource,
    S: Service<LambdaInvocation, Response = (), Error = lambda_runtime::Error> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ();
    type Error = lambda_runtime::Error;
    type Future = lambda_runtime::BoxFuture<'static, Result<(), lambda_runtime::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, invocation: LambdaInvocation) -> Self::Future {
        // The service that was made ready reports this invocation; its clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let guard = Arc::clone(&self.guard);
        Box::pin(async move {
            let LambdaInvocation { parts, body, context } = invocation;
            let request_id = context.request_id.clone();
            let deadline = context.deadline();
            // In a task of its own, so that even a bug in the guard itself ends in an invocation
            // error the runtime reports, not in a dead process.
            let answered = tokio::spawn(
                async move {
                    guard
                        .invoke(&body, &request_id, deadline)
                        .await
                        .map_err(|error| error.to_string())
                }
                .instrument(tracing::Span::current()),
            )
            .await
            .unwrap_or_else(|error| Err(format!("the response guard failed: {error}")));
            let outcome = serde_json::to_vec(&Outcome(answered)).expect("a result of strings serializes");
            inner
                .call(LambdaInvocation {
                    parts,
                    body: outcome.into(),
                    context,
                })
                .await
        })
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::{Create, Created, Delete, Update, Updated, marker_physical_id};

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Props {
        name: String,
    }

    /// A handler that names the resource after its `Name` property, and misbehaves for a few
    /// names: `fail`, `partial` (fails after publishing a partial id), `panic`, `slow` (outlives
    /// the watchdog), `big` (more Data than a response holds), `replace` (Update replaces).
    struct Named;

    async fn misbehave(name: &str, info: &crate::RequestInfo) -> Result<(), HandlerError> {
        match name {
            "fail" => Err(HandlerError::new("the thing is broken")),
            "partial" => {
                info.partial_id.publish(PhysicalId::new("half-made")?);
                Err(HandlerError::new("gave up half-way"))
            }
            "panic" => panic!("the thing exploded"),
            "slow" => {
                info.progress.set("waiting for the thing");
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    impl CustomResource for Named {
        type Properties = Props;

        async fn create(&self, request: Create<Props>) -> Result<Created, HandlerError> {
            misbehave(&request.properties.name, &request.info).await?;
            let data = match request.properties.name.as_str() {
                "big" => (0..100).map(|i| (format!("Key{i}"), "v".repeat(100))).collect(),
                _ => Data::from([("Name".to_string(), request.properties.name.clone())]),
            };
            Ok(Created::new(PhysicalId::new(request.properties.name)?).with_data(data))
        }

        async fn update(&self, request: Update<Props>) -> Result<Updated, HandlerError> {
            misbehave(&request.properties.name, &request.info).await?;
            match request.properties.name.as_str() {
                "replace" => Ok(Updated::replace(PhysicalId::new("replacement")?)),
                _ => Ok(Updated::keep()),
            }
        }

        async fn delete(&self, request: Delete<Props>) -> Result<(), HandlerError> {
            misbehave(&request.properties.name, &request.info).await
        }
    }

    /// The bodies the guard sends for `event`.
    async fn answers(event: &[u8]) -> (Result<(), String>, Vec<Value>) {
        answers_within(event, Config::default(), Duration::from_secs(60)).await
    }

    /// The bodies the guard sends for `event` with `config`, when `left` is left before the
    /// deadline.
    async fn answers_within(
        event: &[u8],
        config: Config,
        left: Duration,
    ) -> (Result<(), String>, Vec<Value>) {
        let capture = Capture::default();
        let guard = Guard::with_transport(Named, config, capture.clone());
        let deadline = SystemTime::now() + left;
        let outcome = guard
            .invoke(event, "test", deadline)
            .await
            .map_err(|e| e.to_string());
        let bodies = capture.0.lock().unwrap().clone();
        (outcome, bodies)
    }

    const CREATE: &str = r#"{"RequestType": "Create", "ResponseURL": "http://127.0.0.1:9/r?X-Amz-Signature=s",
        "StackId": "arn:aws:cloudformation:us-east-1:1:stack/s/1", "RequestId": "r1",
        "LogicalResourceId": "Thing", "ResourceType": "Custom::Thing", "ResourceProperties": {"Name": NAME}}"#;

    fn create(name: &str) -> Vec<u8> {
        CREATE.replace("NAME", name).into_bytes()
    }

    #[tokio::test]
    async fn a_strict_event_reaches_the_handler() {
        let (outcome, bodies) = answers(&create(r#""thing-1""#)).await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(bodies.len(), 1);
        assert_eq!(bodies[0]["Status"], "SUCCESS", "{}", bodies[0]);
        assert_eq!(bodies[0]["PhysicalResourceId"], "thing-1");
        assert_eq!(bodies[0]["RequestId"], "r1");
    }

    #[tokio::test]
    async fn events_serde_json_refuses_are_answered_failed_saying_why() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (create(r#""a\ud800""#), "lone UTF-16 surrogate"),
            (create(&deep), "nest more than 127 levels"),
            (create(r#""a", "Name": "b""#), "duplicate key `Name`"),
            (
                create("\"\u{ff}\"")
                    .iter()
                    .map(|b| if *b == 0xc3 { 0xff } else { *b })
                    .collect(),
                "invalid UTF-8",
            ),
            (create(r#""thing-1""#)[..CREATE.len() - 5].to_vec(), "truncated"),
        ];
        for (event, why) in cases {
            let (outcome, bodies) = answers(&event).await;
            let shown = String::from_utf8_lossy(&event);
            assert_eq!(outcome, Ok(()), "{shown}");
            assert_eq!(bodies.len(), 1, "{shown}");
            let reason = bodies[0]["Reason"].as_str().unwrap_or_default();
            assert_eq!(bodies[0]["Status"], "FAILED", "{shown}");
            assert!(
                reason.starts_with("the event is not strict JSON") && reason.contains(why),
                "{why}: {reason}"
            );
            assert_eq!(bodies[0]["PhysicalResourceId"], marker_physical_id("Thing", "r1"));
            assert_eq!(
                bodies[0]["StackId"],
                "arn:aws:cloudformation:us-east-1:1:stack/s/1"
            );
            assert!(!reason.contains("X-Amz-Signature"), "{reason}");
        }
    }

    #[tokio::test]
    async fn an_event_without_a_readable_response_url_is_an_invocation_error() {
        let (outcome, bodies) = answers(br#"{"RequestType": "Create", "X": "\ud800"}"#).await;
        let error = outcome.unwrap_err();
        assert!(
            error.contains("no ResponseURL") && error.contains("surrogate"),
            "{error}"
        );
        assert!(bodies.is_empty());
    }

    #[tokio::test]
    async fn an_oversized_physical_id_is_never_echoed() {
        let event = json!({
            "RequestType": "Delete", "ResponseURL": "http://127.0.0.1:9/r", "StackId": "s", "RequestId": "r1",
            "LogicalResourceId": "Thing", "PhysicalResourceId": "p".repeat(1025), "ResourceProperties": {"Name": "x"},
        });
        let (_, bodies) = answers(event.to_string().as_bytes()).await;
        assert_eq!(bodies[0]["Status"], "FAILED");
        assert_eq!(bodies[0]["PhysicalResourceId"], marker_physical_id("Thing", "r1"));
        assert!(bodies[0]["Reason"].as_str().unwrap().contains("1025 bytes"));
    }

    /// An event of `request_type` for a resource named `name` (a JSON value), with
    /// `PhysicalResourceId` `physical_id` when there is one.
    fn event(request_type: &str, name: &str, physical_id: Option<&str>) -> Vec<u8> {
        let mut event: Value = serde_json::from_slice(&create(&format!("{name:?}"))).unwrap();
        event["RequestType"] = json!(request_type);
        if let Some(id) = physical_id {
            event["PhysicalResourceId"] = json!(id);
        }
        event.to_string().into_bytes()
    }

    /// The one body the guard sends for `event`; the runtime hears `Ok`, since it was delivered.
    async fn the_answer(event: &[u8]) -> Value {
        let (outcome, mut bodies) = answers(event).await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(bodies.len(), 1, "{bodies:?}");
        bodies.remove(0)
    }

    #[tokio::test]
    async fn a_success_carries_data_and_no_reason() {
        let body = the_answer(&create(r#""thing-1""#)).await;
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["Data"], json!({"Name": "thing-1"}));
        assert_eq!(body["Reason"], Value::Null, "{body}");
        assert_eq!(body["LogicalResourceId"], "Thing");
    }

    #[tokio::test]
    async fn a_handler_error_is_failed_with_its_message_and_the_marker_id() {
        let body = the_answer(&create(r#""fail""#)).await;
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["Reason"], "the thing is broken");
        assert_eq!(body["PhysicalResourceId"], marker_physical_id("Thing", "r1"));
        assert_eq!(body["Data"], json!({}));
    }

    #[tokio::test]
    async fn a_failed_create_answers_with_what_it_made() {
        let body = the_answer(&create(r#""partial""#)).await;
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["Reason"], "gave up half-way");
        let id = body["PhysicalResourceId"].as_str().unwrap();
        assert_eq!(
            unwrap_partial(id),
            Some("half-made"),
            "the rollback Delete must reach what was made: {id}"
        );
    }

    #[tokio::test]
    async fn a_panic_is_failed_with_the_panic_message() {
        let body = the_answer(&create(r#""panic""#)).await;
        assert_eq!(body["Status"], "FAILED");
        let reason = body["Reason"].as_str().unwrap();
        assert_eq!(reason, "the Create handler panicked: the thing exploded");
        assert_eq!(body["PhysicalResourceId"], marker_physical_id("Thing", "r1"));
    }

    #[tokio::test]
    async fn the_watchdog_answers_failed_naming_what_the_handler_was_doing() {
        let config = Config {
            deadline_margin: Duration::from_millis(1_500),
            ..Config::default()
        };
        let (outcome, bodies) = answers_within(&create(r#""slow""#), config, Duration::from_secs(2)).await;
        assert_eq!(outcome, Ok(()));
        assert_eq!(bodies.len(), 1, "one answer, the watchdog's");
        let reason = bodies[0]["Reason"].as_str().unwrap();
        assert_eq!(bodies[0]["Status"], "FAILED");
        assert!(
            reason.starts_with("timed out while waiting for the thing") && reason.contains("stopped"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn too_little_time_left_is_failed_without_running_the_handler() {
        let (outcome, bodies) =
            answers_within(&create(r#""panic""#), Config::default(), Duration::from_secs(1)).await;
        assert_eq!(outcome, Ok(()));
        let reason = bodies[0]["Reason"].as_str().unwrap();
        assert_eq!(bodies[0]["Status"], "FAILED");
        assert!(
            reason.contains("the Create handler was not started") && !reason.contains("panicked"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn data_too_big_to_send_is_failed_with_the_id_of_what_was_made() {
        let body = the_answer(&create(r#""big""#)).await;
        assert_eq!(body["Status"], "FAILED");
        assert!(body["Reason"].as_str().unwrap().contains("4096-byte"), "{body}");
        assert_eq!(body["Data"], json!({}));
        assert_eq!(
            unwrap_partial(body["PhysicalResourceId"].as_str().unwrap()),
            Some("big")
        );
    }

    #[tokio::test]
    async fn a_bad_property_is_failed_naming_it() {
        let body = the_answer(&create("5")).await;
        assert_eq!(body["Status"], "FAILED");
        let reason = body["Reason"].as_str().unwrap();
        assert!(reason.contains("Name"), "{reason}");
    }

    #[tokio::test]
    async fn an_update_keeps_or_replaces_the_id_and_a_failed_one_keeps_it() {
        let kept = the_answer(&event("Update", "thing-1", Some("thing-1"))).await;
        assert_eq!(
            (&kept["Status"], &kept["PhysicalResourceId"]),
            (&json!("SUCCESS"), &json!("thing-1"))
        );
        let replaced = the_answer(&event("Update", "replace", Some("thing-1"))).await;
        assert_eq!(
            (&replaced["Status"], &replaced["PhysicalResourceId"]),
            (&json!("SUCCESS"), &json!("replacement"))
        );
        let failed = the_answer(&event("Update", "fail", Some("thing-1"))).await;
        assert_eq!(
            (&failed["Status"], &failed["PhysicalResourceId"]),
            (&json!("FAILED"), &json!("thing-1")),
            "a failed Update must not look like a replacement"
        );
    }

    #[tokio::test]
    async fn the_delete_of_a_failed_create_succeeds_without_the_handler() {
        let marker = marker_physical_id("Thing", "r0");
        // `fail` would make the handler answer FAILED: the handler is never called.
        let body = the_answer(&event("Delete", "fail", Some(&marker))).await;
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["PhysicalResourceId"], marker);
        let failed = the_answer(&event("Delete", "fail", Some("thing-1"))).await;
        assert_eq!(
            (&failed["Status"], &failed["PhysicalResourceId"]),
            (&json!("FAILED"), &json!("thing-1"))
        );
    }

    #[tokio::test]
    async fn an_invalid_timing_setting_fails_every_request_naming_it() {
        let timing = Timing {
            deadline_margin: crate::settings::Setting::from_value(
                "CFN_RESPONSE_MARGIN_MS",
                None,
                Duration::from_millis(3000),
                "a whole number of milliseconds",
                Some("3s"),
                |v| v.parse().ok().map(Duration::from_millis),
            ),
            ..Timing::of(&Config::default())
        };
        let capture = Capture::default();
        let guard = Guard::with_timing(Named, &timing, capture.clone());
        let deadline = SystemTime::now() + Duration::from_secs(60);
        guard
            .invoke(&create(r#""thing-1""#), "test", deadline)
            .await
            .unwrap();
        let marker = marker_physical_id("Thing", "r1");
        guard
            .invoke(&event("Delete", "thing-1", Some(&marker)), "test", deadline)
            .await
            .unwrap();
        let bodies = capture.0.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2);
        let reason = bodies[0]["Reason"].as_str().unwrap();
        assert_eq!(bodies[0]["Status"], "FAILED");
        assert!(
            reason.contains("CFN_RESPONSE_MARGIN_MS")
                && reason.contains("\"3s\"")
                && reason.contains("whole number of milliseconds")
                && reason.contains("the Create handler was not started"),
            "{reason}"
        );
        assert_eq!(bodies[0]["PhysicalResourceId"], marker);
        // The Delete of the marker id touches nothing: still SUCCESS, so the rollback ends.
        assert_eq!(bodies[1]["Status"], "SUCCESS", "{}", bodies[1]);
    }

    #[tokio::test]
    async fn an_unknown_request_type_is_failed() {
        let body = the_answer(&event("Upsert", "thing-1", None)).await;
        assert_eq!(body["Status"], "FAILED");
        assert!(body["Reason"].as_str().unwrap().contains("Upsert"), "{body}");
        assert_eq!(body["PhysicalResourceId"], marker_physical_id("Thing", "r1"));
    }
}
