//! The local-invoke harness: runs the real compiled Lambda binaries the way AWS Lambda and
//! CloudFormation would, and records everything they say.
//!
//! - [`RuntimeApi`] serves the Lambda Runtime API (`GET /2018-06-01/runtime/invocation/next` with
//!   `Lambda-Runtime-Aws-Request-Id` and `Lambda-Runtime-Deadline-Ms`, `POST .../response`,
//!   `POST .../error`, `POST .../init/error`) to one Lambda process.
//! - [`Receiver`] plays the pre-signed S3 `ResponseURL`: it records every `PUT` (headers, body,
//!   arrival time) and can be told to answer 500 or 403, to answer slowly, or to drop the
//!   connection ([`Behaviour`]).
//! - [`Lambda`] runs a binary from the target directory as a child process with the Lambda
//!   environment, captures its stdout and stderr, and is killed when dropped.
//! - [`Harness`] puts the three together, with builders for CloudFormation events whose
//!   `ResponseURL` points at the receiver; [`Harness::call`] sends one event and returns what the
//!   receiver and the runtime API heard.
//! - [`services`] starts the shared moto server (and the throwaway PostgreSQL) once per process.
//! - [`fuzz`] is the in-process mutation fuzzer over the guard's whole event path (`make fuzz`).
//!
//! The binaries are found beside the test executable (`target/<profile>/`); build them first
//! (`make test` does).

pub mod events;
pub mod faults;
pub mod fixtures;
pub mod fuzz;
mod lambda;
pub mod postgres;
mod receiver;
mod runtime_api;
pub mod services;
pub mod templates;
pub mod tls;

use std::sync::OnceLock;
use std::time::Duration;

pub use events::EventBuilder;
pub use lambda::{Lambda, Profile, binary_path};
pub use receiver::{Behaviour, Receiver, RecordedPut, SIGNATURE};
pub use runtime_api::{Deadline, Invocation, RuntimeApi, RuntimeOutcome};

/// The `aws_calls=N` the guard logged with the last response a Lambda delivered (text logs):
/// how many AWS requests that invocation sent, retries included.
pub fn last_aws_calls(logs: &str) -> u64 {
    delivered_field(logs, "aws_calls")
        .pop()
        .unwrap_or_else(|| panic!("no aws_calls= in the logs:\n{logs}"))
}

/// The numeric field `key` (`aws_calls`, `aws_us`, `handler_us`, `put_us`) of every "response
/// delivered" line in a Lambda's text logs, oldest first.
pub fn delivered_field(logs: &str, key: &str) -> Vec<u64> {
    let needle = format!(" {key}=");
    logs.lines()
        .filter(|line| line.contains("response delivered"))
        .filter_map(|line| {
            let (_, rest) = line.split_once(&needle)?;
            rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
        })
        .collect()
}

/// The process-wide tokio runtime the harness's servers run on. Tests are plain functions that
/// call [`block_on`].
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs a future to completion on the harness runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    runtime().block_on(future)
}

/// How many of a Lambda's last log lines a failed [`Harness::assert_success`] prints.
const LOG_TAIL: usize = 60;

/// The last `lines` lines of `logs`, headed with how many of how many they are.
fn log_tail(logs: &str, lines: usize) -> String {
    let all: Vec<&str> = logs.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!(
        "logs (the last {} of {} lines):\n{}",
        all.len() - from,
        all.len(),
        all[from..].join("\n")
    )
}

/// How long [`Harness::call`] waits after the Lambda's outcome for a PUT still in flight: the
/// quiet before the next invocation of a loop of calls (the bench measures its floors after it).
pub const SETTLE: Duration = Duration::from_millis(20);

/// One Lambda process with its own Runtime API and ResponseURL receiver.
pub struct Harness {
    pub runtime_api: RuntimeApi,
    pub receiver: Receiver,
    pub lambda: Lambda,
    /// The executable [`Harness::lambda`] runs, for [`Harness::restart`].
    pub executable: std::path::PathBuf,
    pub events: EventBuilder,
    /// How long the runtime API gives each invocation (`Lambda-Runtime-Deadline-Ms`).
    pub timeout: Duration,
    /// How long each call waits after the outcome for a late PUT ([`SETTLE`]); the bench sets it
    /// to zero to drive a Lambda back to back.
    pub settle: Duration,
}

/// What one invocation produced.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Every PUT the receiver got for this request's ResponseURL during this call, in order.
    pub puts: Vec<RecordedPut>,
    /// What the Lambda told the runtime API.
    pub outcome: RuntimeOutcome,
    /// Invocation handed out → outcome posted.
    pub elapsed: Duration,
    /// Invocation handed out → the last PUT received: what CloudFormation would wait.
    pub latency: Option<Duration>,
}

impl Exchange {
    /// The one response CloudFormation would act on: the last PUT, which must be the only one
    /// that was answered 2xx. Panics with the whole exchange when there is none.
    pub fn response(&self) -> &serde_json::Value {
        let delivered: Vec<_> = self
            .puts
            .iter()
            .filter(|p| (200..300).contains(&p.answered))
            .collect();
        assert_eq!(
            delivered.len(),
            1,
            "expected exactly one delivered PUT, got {self:#?}"
        );
        &delivered[0].json
    }

    /// `Status` of [`Exchange::response`]; `None` when the body has none. Like [`Exchange::reason`]
    /// and [`Exchange::physical_id`], a missing field then fails `assert_eq!(x.status(), Some(..))`,
    /// and a negative check written `x.reason().is_some_and(|r| !r.contains(..))` too.
    pub fn status(&self) -> Option<&str> {
        self.response()["Status"].as_str()
    }

    /// `Reason` of [`Exchange::response`]; `None` when the body has none.
    pub fn reason(&self) -> Option<&str> {
        self.response()["Reason"].as_str()
    }

    /// `PhysicalResourceId` of [`Exchange::response`]; `None` when the body has none.
    pub fn physical_id(&self) -> Option<&str> {
        self.response()["PhysicalResourceId"].as_str()
    }

    pub fn data(&self, key: &str) -> Option<&str> {
        self.response()["Data"][key].as_str()
    }
}

impl Harness {
    /// Starts a runtime API, a receiver and the named binary (debug build) with extra environment.
    pub async fn start(binary: &str, env: &[(&str, &str)]) -> Self {
        Self::start_profile(binary, Profile::Debug, env).await
    }

    /// Like [`Harness::start`], choosing the build profile.
    pub async fn start_profile(binary: &str, profile: Profile, env: &[(&str, &str)]) -> Self {
        Self::around(&binary_path(binary, profile), Receiver::start().await, env).await
    }

    /// Like [`Harness::start_profile`] with the receiver speaking HTTPS ([`Receiver::start_tls`]);
    /// whether the Lambda trusts it is up to `env` (`SSL_CERT_FILE`, see [`tls::TestCa`]).
    pub async fn start_tls(binary: &str, profile: Profile, env: &[(&str, &str)]) -> Self {
        Self::around(&binary_path(binary, profile), Receiver::start_tls().await, env).await
    }

    /// A runtime API and `receiver` around any executable (ours, or the bench's Python handler).
    pub async fn around(executable: &std::path::Path, receiver: Receiver, env: &[(&str, &str)]) -> Self {
        let runtime_api = RuntimeApi::start().await;
        let lambda = Lambda::spawn(executable, &runtime_api.address(), env);
        let events = EventBuilder::new(receiver.base_url());
        Self {
            runtime_api,
            receiver,
            lambda,
            executable: executable.to_path_buf(),
            events,
            timeout: Duration::from_secs(30),
            settle: SETTLE,
        }
    }

    /// Sends one event, waits for the Lambda to report to the runtime API, and collects the PUTs
    /// made to the event's ResponseURL.
    pub async fn call(&self, event: serde_json::Value) -> Exchange {
        self.call_with_timeout(event, self.timeout).await
    }

    /// [`Harness::call`] with a given invocation timeout (the deadline the Lambda sees).
    pub async fn call_with_timeout(&self, event: serde_json::Value, timeout: Duration) -> Exchange {
        self.call_with_deadline(event, Deadline::In(timeout)).await
    }

    /// [`Harness::call`] with a given `Lambda-Runtime-Deadline-Ms`; a raw value is waited on for
    /// the harness's timeout.
    pub async fn call_with_deadline(&self, event: serde_json::Value, deadline: Deadline) -> Exchange {
        let url = event
            .get("ResponseURL")
            .and_then(|u| u.as_str())
            .map(str::to_string);
        self.call_text(event.to_string(), url.as_deref(), deadline).await
    }

    /// [`Harness::call`] with the event's exact text (JSON no serializer writes: a lone surrogate
    /// escape, deep nesting), collecting the PUTs to `response_url`.
    pub async fn call_text(&self, event: String, response_url: Option<&str>, deadline: Deadline) -> Exchange {
        let timeout = match deadline {
            Deadline::In(timeout) => timeout,
            Deadline::Raw(_) => self.timeout,
        };
        let name = response_url.and_then(|u| self.receiver.name_of(u));
        // A resent event (a retry) PUTs to the same URL: keep only what this invocation sent.
        let earlier = name.as_ref().map_or(0, |n| self.receiver.puts(n).len());
        let invocation = self.runtime_api.invoke_text(event, deadline).await;
        let outcome = invocation
            .outcome(timeout + Duration::from_secs(10))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "no outcome from the Lambda within its timeout; logs:\n{}",
                    self.lambda.logs()
                )
            });
        let elapsed = invocation.elapsed().unwrap_or_default();
        // A PUT answered slowly may still be in the receiver's hands; give it a moment.
        tokio::time::sleep(self.settle).await;
        let mut puts = name.map(|n| self.receiver.puts(&n)).unwrap_or_default();
        puts.drain(..earlier.min(puts.len()));
        let latency = invocation
            .handed_out_at()
            .zip(puts.last())
            .map(|(start, put)| put.received_at.saturating_duration_since(start));
        Exchange {
            latency,
            puts,
            outcome,
            elapsed,
        }
    }

    /// Starts a new process of the same executable with `env`, as Lambda does after an
    /// execution environment died; the receiver and the event builder stay. The process gets a
    /// runtime API of its own: a killed process's `/next` poll may still be pending in the old one,
    /// which would hand the next event to a dead connection. Returns the old process's logs (it
    /// is killed if it still runs).
    pub async fn restart(&mut self, env: &[(&str, &str)]) -> String {
        self.runtime_api = RuntimeApi::start().await;
        let old = std::mem::replace(
            &mut self.lambda,
            Lambda::spawn(&self.executable, &self.runtime_api.address(), env),
        );
        old.logs()
    }

    /// Delivers `event` and waits until the Lambda reports or its process dies. `Some` with the
    /// exchange when it reported; `None` when the process died first (a crash test killed it).
    pub async fn call_unless_killed(&mut self, event: serde_json::Value) -> Option<Exchange> {
        let invocation = self.runtime_api.invoke(event.clone(), self.timeout).await;
        let until = tokio::time::Instant::now() + self.timeout + Duration::from_secs(10);
        loop {
            if invocation.outcome(Duration::from_millis(5)).await.is_some() {
                break;
            }
            if !self.lambda.is_running() {
                return None;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "no outcome and no crash; logs:\n{}",
                self.lambda.logs()
            );
        }
        tokio::time::sleep(self.settle).await;
        let name = event
            .get("ResponseURL")
            .and_then(|u| u.as_str())
            .and_then(|u| self.receiver.name_of(u));
        let puts = name.map(|n| self.receiver.puts(&n)).unwrap_or_default();
        Some(Exchange {
            latency: None,
            puts,
            outcome: invocation
                .outcome(Duration::from_millis(1))
                .await
                .expect("reported"),
            elapsed: invocation.elapsed().unwrap_or_default(),
        })
    }

    /// `exchange` succeeded: the response CloudFormation acts on says `SUCCESS` and the Lambda
    /// reported no error to the runtime API. A failure names the Status, the Reason, the runtime
    /// error (if any) and the last 60 lines of this Lambda's logs, and nothing else of
    /// the response: the Lambdas keep secrets out of Reasons, errors and logs (the suites'
    /// `assert_hidden` checks hold them to it), so the message carries none either.
    #[track_caller]
    pub fn assert_success(&self, exchange: &Exchange) {
        let status = exchange.status();
        let error = match &exchange.outcome {
            RuntimeOutcome::Error(body) => Some(body),
            RuntimeOutcome::Response(_) => None,
        };
        if status == Some("SUCCESS") && error.is_none() {
            return;
        }
        panic!(
            "expected SUCCESS and no runtime error, got Status {status:?}\nReason: {:?}\nruntime error: {error:?}\n{}",
            exchange.reason(),
            log_tail(&self.logs(), LOG_TAIL)
        );
    }

    /// `exchange` holds exactly one response and it is a SUCCESS; `what` names the request in the
    /// failure message, which carries the Reason and this Lambda's logs.
    pub fn assert_answered_once(&self, exchange: &Exchange, what: &str) {
        assert_eq!(
            exchange.puts.len(),
            1,
            "{what}: {} responses",
            exchange.puts.len()
        );
        assert_eq!(
            exchange.status(),
            Some("SUCCESS"),
            "{what}: {:?}\nlogs:\n{}",
            exchange.reason(),
            self.logs()
        );
    }

    /// Every PUT to `event`'s ResponseURL so far, across processes and deliveries.
    pub fn all_puts_for(&self, event: &serde_json::Value) -> Vec<RecordedPut> {
        event
            .get("ResponseURL")
            .and_then(|u| u.as_str())
            .and_then(|u| self.receiver.name_of(u))
            .map(|n| self.receiver.puts(&n))
            .unwrap_or_default()
    }

    /// Everything the Lambda printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.lambda.logs()
    }
}
