//! The CloudFormation custom-resource protocol, and the guarantee that every invocation of a
//! custom-resource Lambda ends in exactly one well-formed response.
//!
//! CloudFormation waits for one HTTP `PUT` to the pre-signed `ResponseURL`; if it never comes the
//! stack hangs for `ServiceTimeout` (an hour by default). [`run`] drives a [`CustomResource`]
//! under the Lambda runtime and answers on every path:
//!
//! - The guard sees every invocation's raw bytes (a layer in front of the runtime's own
//!   deserialization), and reads them in one pass that never fails and never recurses: the
//!   `ResponseURL`, `StackId`, `RequestId`, `LogicalResourceId`, `RequestType` and
//!   `PhysicalResourceId` are taken out before anything can fail, even from bytes that are not
//!   strict JSON: a lone surrogate escape (`"\ud800"`, read as U+FFFD), nesting 128 levels deep or
//!   more (cut off), duplicate keys (the last wins, as in serde_json), invalid UTF-8, a truncated
//!   body. Such an event is answered `FAILED` with a `Reason` saying what is wrong with it and
//!   where (a byte offset), and no handler runs; an event without a readable `ResponseURL` cannot
//!   be answered (an invocation error and a log line say why). An event whose
//!   `PhysicalResourceId` is over 1 KB is answered `FAILED` with the marker id.
//! - Typed properties are parsed afterwards, inside the guard, so a bad property becomes a
//!   `FAILED` response whose `Reason` names the property. Numbers and booleans are accepted as
//!   strings too (see [`de`]), since CloudFormation stringifies every value. `ServiceToken` and
//!   `ServiceTimeout` are CloudFormation's own and are removed before the handler sees them.
//! - The handler runs in its own task: an error becomes `FAILED` with the error's message, a panic
//!   becomes `FAILED` with the panic message (the release profile must unwind), and the process
//!   goes on serving the next invocation.
//! - A watchdog fires at the invocation deadline minus a margin (`CFN_RESPONSE_MARGIN_MS`, default
//!   3000 ms) and answers `FAILED` "timed out while ..." naming the handler's last reported
//!   [`Progress`]. A once-flag makes sure only one response per invocation is ever sent.
//! - The `PUT` carries no `Content-Type`, an exact `Content-Length`, has connect and read timeouts,
//!   counts only a 2xx as delivered and retries with jittered exponential backoff while time
//!   remains; a 4xx other than 408/429 (an expired or altered pre-signed URL) is not retried.
//! - The body never exceeds 4096 bytes: `Reason` is cut on a UTF-8 boundary keeping its head; `Data`
//!   that cannot fit turns the response into `FAILED` saying so; identity fields too long to echo
//!   (no CloudFormation event has them) are cut to 512 bytes each.
//! - A `Reason` never carries a control character: an escape sequence in one breaks
//!   `DescribeStackEvents` for everyone reading the stack (cloudformation-coverage-roadmap
//!   #1601). Line breaks and tabs become a space, any other C0 or C1 control (ESC, NUL, DEL,
//!   CSI, ...) a visible `\u{1b}`-style escape, before the 4096-byte cut; a `FAILED` answer with
//!   an empty `Reason` gets one.
//! - Lifecycle rules live in the types: [`Created`] needs a [`PhysicalId`] (non-empty, at most
//!   1 KB); [`Updated`] keeps the id or replaces it; a Delete handler returns `()` and cannot change
//!   it. A failed Create answers with the handler's partial id ([`HandlerError::with_physical_id`])
//!   or a deterministic marker id, and the Delete CloudFormation then sends for a marker id is
//!   answered `SUCCESS` without calling the handler.
//! - Once a response was delivered the Lambda runtime gets `Ok`, so Lambda's asynchronous retries
//!   never re-run side effects; it gets an error only when delivery itself failed, or when the
//!   event carries no usable `ResponseURL` (nothing can be answered; a log line says why).
//! - Logging goes through `tracing` (JSON when `AWS_LAMBDA_LOG_FORMAT=JSON`), one span per request
//!   with `RequestType`, `LogicalResourceId`, `RequestId` and `StackId`. The `ResponseURL`'s query
//!   string (a bearer credential) is never logged ([`ResponseUrl`]), nor are values wrapped in
//!   [`Secret`].
//!
//! - An execution environment that dies on every attempt (out of memory, an abort) cannot answer
//!   for itself: [`dead_letter`] answers `FAILED` for it from Lambda's on-failure destination
//!   record, after the retries, through the same send path (binary `dead-letter-responder`).
//!
//! Configuration: every Lambda reads its environment once, at init, and logs the effective
//! settings; an unset variable takes its default, an invalid one is never defaulted or ignored but
//! fails the requests that need it, naming it. The policy, the guard's own [`settings::Timing`]
//! and the [`settings::Setting`] reader every handler crate uses are in [`settings`]; Lambda's and
//! the AWS SDK's own variables (`AWS_LAMBDA_LOG_*`, `RUST_LOG`, `AWS_MAX_ATTEMPTS`,
//! `SSL_CERT_FILE`) follow their owners' contract.
//!
//! [`Guard`] is the same path without the Lambda runtime: [`Guard::invoke`] takes an invocation's
//! raw bytes, and [`Guard::with_transport`] sends the response body to a [`Transport`] of the
//! caller's instead of the HTTPS PUT. The project's fuzzer (`make fuzz`, `tests/harness/fuzz.rs`)
//! drives it with millions of mutated events.

#![warn(missing_docs)]

mod cost;
pub mod de;
pub mod dead_letter;
mod error;
mod guard;
mod hash;
mod owner;
mod raw;
mod request;
mod response;
mod secret;
mod send;
pub mod settings;
mod trust;

use std::future::Future;

pub use cost::aws_calls;
pub use error::{HandlerError, error_chain};
pub use guard::{Config, Guard, Transport, run, run_with_config};
pub use hash::fnv1a_64;
/// The error type a Lambda `main` returns.
pub use lambda_runtime::Error as RuntimeError;
pub use owner::Owner;
pub use request::{
    Create, Delete, PartialId, Progress, RequestInfo, Update, marker_physical_id, parse_property_map,
};
pub use response::{Created, Data, MAX_BODY_BYTES, PhysicalId, PhysicalIdError, Updated};
pub use secret::{ResponseUrl, Secret};

/// A custom resource type: one handler per lifecycle phase.
///
/// Implementations are idempotent: CloudFormation and Lambda both deliver at least once, so the
/// same request twice must converge to the same state and the same answer.
pub trait CustomResource: Send + Sync + 'static {
    /// The typed `ResourceProperties` (and `OldResourceProperties` on Update).
    type Properties: serde::de::DeserializeOwned + Send + 'static;

    /// Creates the resource and names it.
    fn create(
        &self,
        request: Create<Self::Properties>,
    ) -> impl Future<Output = Result<Created, HandlerError>> + Send;

    /// Updates the resource in place ([`Updated::keep`]) or replaces it ([`Updated::replace`]);
    /// on replacement CloudFormation later sends a Delete for the old physical id.
    fn update(
        &self,
        request: Update<Self::Properties>,
    ) -> impl Future<Output = Result<Updated, HandlerError>> + Send;

    /// Deletes the resource. Something already gone is success.
    fn delete(
        &self,
        request: Delete<Self::Properties>,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Makes ring the process's rustls crypto provider (idempotent). Every TLS client in these
/// Lambdas (the response PUT, the AWS SDK, PostgreSQL) uses it: one provider, and a smaller binary
/// than aws-lc.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How many times an AWS call is tried (standard retry mode: throttling, 5xx, dropped
/// connections) unless `AWS_MAX_ATTEMPTS` says otherwise. The SDK's default, 3, leaves a call
/// failed by three faults in a row; a custom resource has minutes until its deadline and one
/// FAILED costs a whole rollback, so 6 (with [`RETRY_INITIAL_BACKOFF`]: at most about 6 s of
/// backoff for one call). At 25% injected faults a call then fails 1 time in 4,096.
#[cfg(feature = "aws")]
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;
/// The first retry's backoff ceiling (jittered, doubling per attempt): throttling bursts pass in
/// well under a second, and the SDK's 1 s start would spend 31 s on six attempts.
#[cfg(feature = "aws")]
pub const RETRY_INITIAL_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);
/// No single backoff is longer than this.
#[cfg(feature = "aws")]
pub const RETRY_MAX_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

/// The AWS SDK configuration a Lambda gets from its environment: `AWS_REGION`, the credentials in
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN` (where Lambda puts its
/// role's credentials), `AWS_ENDPOINT_URL` (local runs) and `AWS_MAX_ATTEMPTS`, with an HTTPS client
/// on rustls + ring.
///
/// Built directly rather than with `aws_config::load_defaults`, whose provider chains (profile
/// files, SSO, web identity through STS, IMDS) a Lambda never uses: leaving them out takes their
/// code out of the binary.
///
/// These variables are Lambda's and the SDK's contract, read as the SDK reads them (not
/// [`settings`]): an `AWS_MAX_ATTEMPTS` that is not a whole number is ignored and
/// [`DEFAULT_MAX_ATTEMPTS`] applies.
#[cfg(feature = "aws")]
pub async fn aws_config() -> aws_config::SdkConfig {
    use aws_config::environment::EnvironmentVariableCredentialsProvider;
    use aws_config::retry::RetryConfig;
    use aws_config::{BehaviorVersion, Region};

    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let region = env("AWS_REGION")
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .map(Region::new);
    let attempts = env("AWS_MAX_ATTEMPTS")
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(DEFAULT_MAX_ATTEMPTS);
    let mut config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(region)
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        ))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(attempts.max(1))
                .with_initial_backoff(RETRY_INITIAL_BACKOFF)
                .with_max_backoff(RETRY_MAX_BACKOFF),
        )
        .http_client(https_client());
    if let Some(endpoint) = env("AWS_ENDPOINT_URL") {
        config = config.endpoint_url(endpoint);
    }
    config.build()
}

/// The AWS SDK's HTTPS client on rustls + ring, for SDK configurations built by hand. It trusts
/// the compiled-in roots, or the `SSL_CERT_FILE` bundle when that is set, and is built on the
/// first request: nothing on the way to the first `GET /invocation/next` reads or parses roots.
#[cfg(feature = "aws")]
pub fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_runtime_api::client::http::SharedHttpClient::new(LazyHttpsClient::default())
}

#[cfg(feature = "aws")]
#[derive(Debug, Default)]
struct LazyHttpsClient(std::sync::OnceLock<aws_smithy_runtime_api::client::http::SharedHttpClient>);

#[cfg(feature = "aws")]
impl aws_smithy_runtime_api::client::http::HttpClient for LazyHttpsClient {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};

        let inner = self
            .0
            .get_or_init(|| {
                install_crypto_provider();
                let trust = TrustStore::empty()
                    .with_native_roots(false)
                    .with_pem_certificate(trust::roots_pem());
                aws_smithy_http_client::Builder::new()
                    .tls_provider(Provider::Rustls(CryptoMode::Ring))
                    .tls_context(
                        TlsContext::builder()
                            .with_trust_store(trust)
                            .build()
                            .expect("static TLS context"),
                    )
                    .build_https()
            })
            .http_connector(settings, components);
        aws_smithy_runtime_api::client::http::SharedHttpConnector::new(Counted(inner))
    }
}

/// A connector that counts the requests it sends and the time it waits on them ([`aws_calls`]).
#[cfg(feature = "aws")]
#[derive(Debug)]
struct Counted(aws_smithy_runtime_api::client::http::SharedHttpConnector);

#[cfg(feature = "aws")]
impl aws_smithy_runtime_api::client::http::HttpConnector for Counted {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let response = self.0.call(request);
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
            // Counted from the first poll: a request built but never sent is not waited on. A
            // future dropped mid-flight (a timeout) still ends its wait.
            let _in_flight = cost::InFlight::start();
            response.await
        })
    }
}

/// The most verbose level a library's target may log at, whatever `AWS_LAMBDA_LOG_LEVEL` or
/// `RUST_LOG` ask for: the AWS SDK, hyper, h2, reqwest, rustls and tower print request and
/// response bodies and header values at TRACE (an SSM body holds the password, a header the
/// credentials), PostgreSQL's client logs statements at DEBUG (`ALTER ROLE ... PASSWORD`), and
/// `lambda_runtime` logs the raw event (ResponseURL signature, every property) at TRACE.
pub fn level_cap(target: &str) -> Option<tracing::Level> {
    use tracing::Level;
    const CAPS: &[(&str, Level)] = &[
        ("lambda_runtime", Level::DEBUG),
        ("lambda_runtime::layers::api_response", Level::INFO),
        ("aws", Level::DEBUG),
        ("hyper", Level::DEBUG),
        ("h2", Level::DEBUG),
        ("reqwest", Level::DEBUG),
        ("rustls", Level::DEBUG),
        ("tower", Level::DEBUG),
        ("tokio_postgres", Level::INFO),
        ("postgres", Level::INFO),
    ];
    // The longest matching prefix wins, on `::`/`_` boundaries (`aws_smithy_runtime` is `aws`).
    CAPS.iter()
        .filter(|(prefix, _)| {
            target.strip_prefix(prefix).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with("::") || rest.starts_with('_') || rest.starts_with('-')
            })
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, level)| *level)
}

/// Initialises `tracing` the way Lambda expects: `AWS_LAMBDA_LOG_FORMAT=JSON` gives JSON lines,
/// `AWS_LAMBDA_LOG_LEVEL` (or `RUST_LOG`, with `target=level` directives) sets the level, INFO by
/// default.
///
/// Whatever the level, `lambda_runtime`'s trace of the raw event is filtered out: the event holds
/// the ResponseURL's signature and every property value.
pub fn init_tracing() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let directives = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let targets = directives
        .parse::<Targets>()
        .ok()
        .filter(|_| !directives.trim().is_empty())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let raw_event_level = targets
        .default_level()
        .unwrap_or(LevelFilter::INFO)
        .min(LevelFilter::DEBUG);
    let targets = targets.with_target("lambda_runtime::layers::api_response", raw_event_level);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let registry = tracing_subscriber::registry()
        .with(targets)
        .with(tracing_subscriber::filter::filter_fn(|meta| {
            level_cap(meta.target()).is_none_or(|cap| *meta.level() <= cap)
        }));
    if json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_target(false)
                    .without_time(),
            )
            .init();
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .without_time()
                    .with_ansi(ansi),
            )
            .init();
    }
}

#[cfg(test)]
mod log_cap_tests {
    use super::level_cap;
    use tracing::Level;

    #[test]
    fn libraries_that_print_bodies_are_capped() {
        assert_eq!(
            level_cap("aws_smithy_runtime::client::orchestrator"),
            Some(Level::DEBUG)
        );
        assert_eq!(level_cap("aws_sdk_ssm"), Some(Level::DEBUG));
        assert_eq!(level_cap("hyper_util::client"), Some(Level::DEBUG));
        assert_eq!(level_cap("tokio_postgres::prepare"), Some(Level::INFO));
        assert_eq!(
            level_cap("lambda_runtime::layers::api_response"),
            Some(Level::INFO)
        );
        assert_eq!(level_cap("admin_secret"), None);
        assert_eq!(level_cap("awsome"), None);
    }
}
