//! A seeded mutation fuzzer over the whole event path, in-process: from an invocation's raw bytes
//! through the guard ([`cfn_custom_resource::Guard::invoke`]) to the response body, with a
//! [`Transport`] that captures the bodies instead of PUTting them, and a `tracing` subscriber that
//! captures every log line.
//!
//! Inputs are mutations of the sample events in `tests/events/` (1 to 3 mutations stacked): the
//! escapes JSON parsers disagree on (lone surrogate escapes, nesting 128 to 2000 levels deep,
//! duplicate keys, invalid UTF-8, unescaped control bytes, truncation), huge strings, wrong types,
//! numbers for strings, missing and unknown fields, odd request types and physical ids, byte
//! flips, insertions and deletions, splices of two events, and property values that make the
//! stub handler panic, hang past the deadline, or fail with a Reason full of escape sequences.
//!
//! Each input is checked for: a panic escaping the guard; more than one response, or none when
//! the input has a readable `ResponseURL`; a body over 4096 bytes; a body CloudFormation would
//! reject (not JSON, `Status` not SUCCESS/FAILED, a missing `StackId`, `RequestId`,
//! `LogicalResourceId`, an empty or over-1-KB `PhysicalResourceId`, FAILED without a `Reason`);
//! a control character in a `Reason`; identity fields not echoed; the `ResponseURL`'s signature
//! or a password in a log line or a `Reason`; and a disagreement with serde_json on what strict
//! JSON is (an event serde_json reads must reach the handler unless it has a duplicate key; one it
//! refuses must be answered FAILED naming the problem).
//!
//! The handlers are the real crates' property types (the guard parses `ResourceProperties` into
//! them exactly as in production) and their own `validate()`, with stubs in place of the AWS
//! and PostgreSQL calls: the guard is what is fuzzed, and a stub is fast (hundreds of thousands of
//! inputs a minute) and deterministic. The AWS side has its own tests against moto.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallClock, SystemTime};

use cfn_custom_resource::{
    Config, Create, Created, CustomResource, Data, Delete, Guard, HandlerError, PhysicalId, ResponseUrl,
    Transport, Update, Updated,
};
use serde_json::{Map, Value};

/// The signature every fuzzed ResponseURL carries; it must never reach a log line or a Reason.
pub const SIGNATURE: &str = "FUZZSIGc0ffee5ecret7a9b";

/// The Lambda handler types fuzzed, by the sample events' file-name prefix.
pub const HANDLERS: [&str; 3] = ["admin-secret", "service-database", "listener-rule-priority"];

/// What one fuzzing run found.
#[derive(Debug, Default)]
pub struct Report {
    pub handler: String,
    pub inputs: u64,
    pub responses: u64,
    pub failed: u64,
    pub not_strict: u64,
    pub unanswerable: u64,
    pub elapsed: Duration,
    /// The first findings (at most 20), each with the input that produced it.
    pub findings: Vec<Finding>,
    pub finding_count: u64,
}

#[derive(Debug, Clone)]
pub struct Finding {
    pub what: String,
    pub input: Vec<u8>,
}

impl Report {
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What the stub handlers' panics say: the panic hook keeps them quiet (the guard answers them);
/// every other panic is reported as before.
const STUB_PANIC: &str = "the stub handler panics as asked";

fn quiet_stub_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or_default();
            if !message.starts_with(STUB_PANIC) {
                previous(info);
            }
        }));
    });
}

/// Fuzzes one handler type with `inputs` inputs from `seed`.
pub fn run(handler: &str, inputs: u64, seed: u64) -> Report {
    quiet_stub_panics();
    let seeds = sample_events(handler);
    assert!(
        !seeds.is_empty(),
        "no sample events for {handler} in tests/events"
    );
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let mut report = Report {
        handler: handler.to_string(),
        ..Report::default()
    };
    let started = WallClock::now();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            match handler {
                "admin-secret" => drive(AdminSecretStub, &seeds, inputs, seed, &logs, &mut report).await,
                "service-database" => {
                    drive(ServiceDatabaseStub, &seeds, inputs, seed, &logs, &mut report).await
                }
                "listener-rule-priority" => {
                    drive(ListenerStub, &seeds, inputs, seed, &logs, &mut report).await
                }
                other => panic!("unknown handler {other}"),
            }
        })
    });
    report.elapsed = started.elapsed();
    report
}

/// Runs one input (a finding's, say) through the guard of `handler` and returns what happened:
/// the outcome, every response body and every log line.
pub fn replay(handler: &str, input: &[u8]) -> String {
    quiet_stub_panics();
    let logs = LogBuffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    let capture = Capture::default();
    let outcome = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let deadline = SystemTime::now() + Duration::from_secs(60);
            macro_rules! invoke {
                ($stub:expr) => {{
                    let guard = Guard::with_transport($stub, Config::default(), capture.clone());
                    format!("{:?}", guard.invoke(input, "replay", deadline).await)
                }};
            }
            match handler {
                "admin-secret" => invoke!(AdminSecretStub),
                "service-database" => invoke!(ServiceDatabaseStub),
                "listener-rule-priority" => invoke!(ListenerStub),
                other => panic!("unknown handler {other}"),
            }
        })
    });
    let bodies: Vec<String> = capture
        .bodies
        .lock()
        .unwrap()
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    format!(
        "outcome: {outcome}\nbodies:\n{}\nlogs:\n{}",
        bodies.join("\n"),
        logs.take()
    )
}

/// The sample events of one handler type, with the fuzzer's signature in their ResponseURL.
fn sample_events(handler: &str) -> Vec<Value> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/events");
    let mut events = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/events")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(handler) && n.ends_with(".json"))
        })
        .collect();
    paths.sort();
    for path in paths {
        let mut event: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("a sample event")).expect("JSON");
        let url = format!(
            "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{}?X-Amz-Signature={SIGNATURE}&X-Amz-Expires=7200",
            event["RequestId"].as_str().unwrap_or("r")
        );
        event["ResponseURL"] = Value::String(url);
        events.push(event);
    }
    events
}

async fn drive<H: CustomResource>(
    handler: H,
    seeds: &[Value],
    inputs: u64,
    seed: u64,
    logs: &LogBuffer,
    report: &mut Report,
) {
    let capture = Capture::default();
    // The watchdog fires 2 ms into each invocation: a hanging handler costs 2 ms of real time,
    // and a slow moment of the machine exercises the "too little time left" path.
    let config = Config {
        deadline_margin: Duration::from_millis(10),
        delivery_slack: Duration::from_millis(1),
        default_budget: Duration::from_secs(300),
    };
    let guard = Arc::new(Guard::with_transport(handler, config, capture.clone()));
    let mut rng = Rng::new(seed);
    for _ in 0..inputs {
        let input = mutate(&mut rng, seeds);
        capture.bodies.lock().unwrap().clear();
        logs.clear();
        SECRETS.with(|s| s.borrow_mut().clear());
        let bytes = Arc::new(input.bytes);
        let task_guard = Arc::clone(&guard);
        let task_bytes = Arc::clone(&bytes);
        let deadline = SystemTime::now() + Duration::from_millis(12);
        let joined =
            tokio::spawn(async move { task_guard.invoke(&task_bytes, "fuzz-invocation", deadline).await })
                .await;
        let bodies = std::mem::take(&mut *capture.bodies.lock().unwrap());
        let log = logs.take();
        let secrets = SECRETS.with(|s| s.borrow().clone());
        let mut findings = Vec::new();
        check(
            &bytes,
            input.url_readable,
            joined,
            &bodies,
            &log,
            &secrets,
            &mut findings,
            report,
        );
        report.inputs += 1;
        for what in findings {
            report.finding_count += 1;
            if report.findings.len() < 20 {
                report.findings.push(Finding {
                    what,
                    input: bytes.to_vec(),
                });
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check(
    input: &[u8],
    url_readable: bool,
    joined: Result<Result<(), cfn_custom_resource::RuntimeError>, tokio::task::JoinError>,
    bodies: &[Vec<u8>],
    log: &str,
    secrets: &[String],
    findings: &mut Vec<String>,
    report: &mut Report,
) {
    let outcome = match joined {
        Ok(outcome) => Some(outcome),
        Err(error) => {
            findings.push(format!("a panic escaped the guard: {error}"));
            None
        }
    };
    // serde_json's verdict, the independent oracle for "strict JSON".
    let strict: Option<Value> = serde_json::from_slice(input).ok();
    let strict_url = strict
        .as_ref()
        .and_then(|v| v.get("ResponseURL"))
        .and_then(Value::as_str)
        .is_some_and(|u| ResponseUrl::parse(u).is_ok());
    let must_answer = url_readable || strict_url;
    match bodies.len() {
        0 if must_answer => findings.push("no response, though the ResponseURL is readable".into()),
        0 => report.unanswerable += 1,
        1 => report.responses += 1,
        n => findings.push(format!("{n} responses to one invocation")),
    }
    if let Some(outcome) = outcome
        && outcome.is_ok() != (bodies.len() == 1)
    {
        findings.push(format!(
            "the runtime was told {} with {} response(s) sent",
            if outcome.is_ok() { "Ok" } else { "Err" },
            bodies.len()
        ));
    }
    for body in bodies {
        check_body(body, strict.as_ref(), secrets, findings, report);
    }
    // (A mutation that copied the signature's text into another field, a LogicalResourceId say,
    // made it that field's value, which the guard logs as it logs any LogicalResourceId.)
    if log.contains(SIGNATURE) && !outside_response_urls(input).contains(SIGNATURE) {
        findings.push("the ResponseURL's signature is in a log line".into());
    }
    for secret in secrets {
        if log.contains(secret.as_str()) {
            findings.push("a password is in a log line".into());
        }
    }
}

/// The input without its `"ResponseURL":"..."` members, as text.
fn outside_response_urls(input: &[u8]) -> String {
    let text = String::from_utf8_lossy(input);
    let mut rest = String::with_capacity(text.len());
    let mut remaining: &str = &text;
    while let Some(start) = remaining.find("\"ResponseURL\":\"") {
        rest.push_str(&remaining[..start]);
        let value = &remaining[start + "\"ResponseURL\":\"".len()..];
        remaining = value.find('"').map_or("", |end| &value[end..]);
    }
    rest.push_str(remaining);
    rest
}

fn check_body(
    body: &[u8],
    strict: Option<&Value>,
    secrets: &[String],
    findings: &mut Vec<String>,
    report: &mut Report,
) {
    if body.len() > cfn_custom_resource::MAX_BODY_BYTES {
        findings.push(format!("a body of {} bytes", body.len()));
    }
    let Ok(Value::Object(response)) = serde_json::from_slice::<Value>(body) else {
        findings.push("a body that is not a JSON object".into());
        return;
    };
    let text = |key: &str| response.get(key).and_then(Value::as_str);
    let status = text("Status");
    if !matches!(status, Some("SUCCESS" | "FAILED")) {
        findings.push(format!("Status is {:?}", response.get("Status")));
    }
    for key in ["StackId", "RequestId", "LogicalResourceId"] {
        if text(key).is_none() {
            findings.push(format!("no {key} in the body"));
        }
    }
    match text("PhysicalResourceId") {
        None => findings.push("no PhysicalResourceId in the body".into()),
        Some("") => findings.push("an empty PhysicalResourceId".into()),
        Some(id) if id.len() > 1024 => findings.push(format!("a PhysicalResourceId of {} bytes", id.len())),
        Some(_) => {}
    }
    let reason = text("Reason").unwrap_or_default();
    if status == Some("FAILED") {
        report.failed += 1;
        if reason.trim().is_empty() {
            findings.push("FAILED without a Reason".into());
        }
    }
    if reason.chars().any(|c| c.is_control()) {
        findings.push(format!("a control character in the Reason: {reason:?}"));
    }
    if reason.contains(SIGNATURE) {
        findings.push("the ResponseURL's signature is in the Reason".into());
    }
    for secret in secrets {
        if reason.contains(secret.as_str()) {
            findings.push("a password is in the Reason".into());
        }
        let in_data = response
            .get("Data")
            .and_then(Value::as_object)
            .is_some_and(|data| data.values().any(|v| v.as_str() == Some(secret)));
        if in_data && response.get("NoEcho") != Some(&Value::Bool(true)) {
            findings.push("a password in Data without NoEcho".into());
        }
    }
    // The identity is echoed exactly, when it fits at all: with the marker id (logical and request
    // id again) and the event's physical id, escaped, under 3500 bytes.
    if let Some(Value::Object(event)) = strict {
        let escaped = |key: &str| {
            event
                .get(key)
                .and_then(Value::as_str)
                .map_or(0, |s| Value::from(s).to_string().len())
        };
        let room = escaped("StackId")
            + 2 * escaped("RequestId")
            + 2 * escaped("LogicalResourceId")
            + escaped("PhysicalResourceId");
        let keys: &[&str] = if room < 3500 {
            &["StackId", "RequestId", "LogicalResourceId"]
        } else {
            &[]
        };
        for key in keys.iter().copied() {
            if let Some(sent) = event.get(key).and_then(Value::as_str)
                && text(key) != Some(sent)
            {
                findings.push(format!("{key} not echoed"));
            }
        }
    }
    let not_strict = reason.starts_with("the event is not strict JSON");
    if not_strict {
        report.not_strict += 1;
    }
    // A Reason cut to almost nothing (the event's own fields took the room) says too little.
    if reason.ends_with(" [...truncated]") && reason.len() < 120 {
        return;
    }
    // Differential: strict JSON to serde_json is strict to the guard, except for duplicate keys.
    match strict {
        Some(_) if not_strict && !reason.contains("duplicate key") => {
            findings.push(format!(
                "serde_json reads the event, the guard calls it not strict JSON: {reason}"
            ));
        }
        None if !not_strict => {
            findings.push("serde_json refuses the event, but the guard ran the handler".into())
        }
        _ => {}
    }
}

/// Records the bodies the guard would PUT.
#[derive(Clone, Default)]
struct Capture {
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Transport for Capture {
    async fn put(
        &self,
        _url: &ResponseUrl,
        body: Vec<u8>,
        _give_up_at: tokio::time::Instant,
    ) -> Result<u32, cfn_custom_resource::RuntimeError> {
        self.bodies.lock().unwrap().push(body);
        Ok(1)
    }
}

/// Every log line, for the secret checks.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

thread_local! {
    /// The passwords the stub handlers made for the current input.
    static SECRETS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

// --- the stub handlers ---------------------------------------------------------------------

/// What the properties ask the stub to do: a value containing `PANIC` panics, `HANG` never
/// returns (the watchdog answers), `ERROR` fails with that value in the Reason.
async fn misbehave(values: Vec<String>) -> Result<(), HandlerError> {
    for value in values {
        if value.contains("PANIC") {
            panic!("{STUB_PANIC}: {value}");
        }
        if value.contains("HANG") {
            std::future::pending::<()>().await;
        }
        if value.contains("ERROR") {
            return Err(HandlerError::new(format!(
                "the stub handler fails as asked: {value}"
            )));
        }
    }
    Ok(())
}

fn id(text: impl Into<String>) -> Result<PhysicalId, HandlerError> {
    PhysicalId::new(text).map_err(HandlerError::from)
}

struct AdminSecretStub;

impl AdminSecretStub {
    async fn made(&self, p: &admin_secret::Properties) -> Result<(PhysicalId, Data, bool), HandlerError> {
        let policy = p.validate()?;
        let mut values = vec![p.parameter_name.clone(), p.key_id.clone()];
        values.extend(p.description.clone());
        misbehave(values).await?;
        let mut data = Data::new();
        data.insert("ParameterName".into(), p.parameter_name.clone());
        data.insert("Version".into(), "1".into());
        if p.return_password {
            let password = ssm_secret::generate_os(&policy.policy).map_err(HandlerError::from)?;
            SECRETS.with(|s| s.borrow_mut().push(password.expose().clone()));
            data.insert("Password".into(), password.into_inner());
        }
        Ok((id(p.parameter_name.clone())?, data, p.return_password))
    }
}

impl CustomResource for AdminSecretStub {
    type Properties = admin_secret::Properties;

    async fn create(&self, request: Create<Self::Properties>) -> Result<Created, HandlerError> {
        let (id, data, no_echo) = self.made(&request.properties).await?;
        request.info.partial_id.publish(id.clone());
        Ok(Created::new(id).with_data(data).no_echo(no_echo))
    }

    async fn update(&self, request: Update<Self::Properties>) -> Result<Updated, HandlerError> {
        let (id, data, no_echo) = self.made(&request.properties).await?;
        let updated = if id == request.physical_id {
            Updated::keep()
        } else {
            Updated::replace(id)
        };
        Ok(updated.with_data(data).no_echo(no_echo))
    }

    async fn delete(&self, request: Delete<Self::Properties>) -> Result<(), HandlerError> {
        misbehave(vec![request.physical_id.to_string()]).await
    }
}

struct ServiceDatabaseStub;

impl ServiceDatabaseStub {
    async fn made(&self, p: &service_database::Properties) -> Result<(PhysicalId, Data), HandlerError> {
        let valid = p.validate().map_err(|e| HandlerError::new(e.to_string()))?;
        misbehave(vec![
            p.database_name.clone(),
            p.cluster_endpoint.clone(),
            p.admin_username.clone().unwrap_or_default(),
            p.admin_secret_arn.clone().unwrap_or_default(),
        ])
        .await?;
        let mut data = Data::new();
        data.insert("DatabaseName".into(), valid.database.to_string());
        data.insert("Username".into(), valid.role.to_string());
        data.insert("Host".into(), valid.host.clone());
        data.insert("Port".into(), valid.port.to_string());
        data.insert("PasswordParameterName".into(), p.password_parameter_name.clone());
        data.insert(
            "JdbcUrl".into(),
            format!(
                "jdbc:postgresql://{}:{}/{}",
                valid.host, valid.port, valid.database
            ),
        );
        Ok((id(valid.physical_id())?, data))
    }
}

impl CustomResource for ServiceDatabaseStub {
    type Properties = service_database::Properties;

    async fn create(&self, request: Create<Self::Properties>) -> Result<Created, HandlerError> {
        let (id, data) = self.made(&request.properties).await?;
        Ok(Created::new(id).with_data(data))
    }

    async fn update(&self, request: Update<Self::Properties>) -> Result<Updated, HandlerError> {
        let (id, data) = self.made(&request.properties).await?;
        let updated = if id == request.physical_id {
            Updated::keep()
        } else {
            Updated::replace(id)
        };
        Ok(updated.with_data(data))
    }

    async fn delete(&self, request: Delete<Self::Properties>) -> Result<(), HandlerError> {
        misbehave(vec![request.physical_id.to_string()]).await
    }
}

struct ListenerStub;

impl ListenerStub {
    async fn made(&self, p: &listener_rule_priority::Properties) -> Result<(PhysicalId, Data), HandlerError> {
        p.validate().map_err(|e| HandlerError::new(e.to_string()))?;
        misbehave(vec![p.listener_arn.clone()]).await?;
        let priorities: Vec<String> = (p.min_priority..p.min_priority.saturating_add(p.count))
            .map(|n| n.to_string())
            .collect();
        let mut data = Data::new();
        data.insert("Priority".into(), p.min_priority.to_string());
        if p.count > 1 {
            data.insert("Priorities".into(), priorities.join(","));
        }
        Ok((
            id(format!("{}/priority/{}", p.listener_arn, priorities.join(",")))?,
            data,
        ))
    }
}

impl CustomResource for ListenerStub {
    type Properties = listener_rule_priority::Properties;

    async fn create(&self, request: Create<Self::Properties>) -> Result<Created, HandlerError> {
        let (id, data) = self.made(&request.properties).await?;
        Ok(Created::new(id).with_data(data))
    }

    async fn update(&self, request: Update<Self::Properties>) -> Result<Updated, HandlerError> {
        let (id, data) = self.made(&request.properties).await?;
        let updated = if id == request.physical_id {
            Updated::keep()
        } else {
            Updated::replace(id)
        };
        Ok(updated.with_data(data))
    }

    async fn delete(&self, request: Delete<Self::Properties>) -> Result<(), HandlerError> {
        misbehave(vec![request.physical_id.to_string()]).await
    }
}

// --- the mutator ---------------------------------------------------------------------------

/// A small seeded generator (SplitMix64): the same seed gives the same inputs on every machine.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// One fuzz input and whether its `ResponseURL` is still readable by construction (the mutations
/// left it, and everything a left-to-right reader needs to reach it, intact).
struct Input {
    bytes: Vec<u8>,
    url_readable: bool,
}

// Placeholders put into string values and replaced in the serialized text by bytes a JSON
// serializer cannot produce.
const LONE_HIGH: &str = "\u{e000}LONEHIGH\u{e000}";
const LONE_LOW: &str = "\u{e000}LONELOW\u{e000}";
const NON_UTF8: &str = "\u{e000}NONUTF8\u{e000}";
const RAW_CONTROL: &str = "\u{e000}RAWCTRL\u{e000}";
const DEEP: &str = "\u{e000}DEEP\u{e000}";

/// Values that test a property parser and the stub's behaviours.
const NASTY: &[&str] = &[
    "",
    " ",
    "0",
    "-1",
    "4294967296",
    "1e3",
    "5.5",
    "true",
    "false",
    "yes",
    "null",
    "Retain",
    "Delete",
    "Drop",
    "verify-full",
    "disable",
    "alias/aws/ssm",
    "arn:aws:kms:us-east-1:123456789012:alias/aws/ssm",
    "PANIC",
    "HANG",
    "ERROR \u{1b}[31mred\u{1b}[0m \u{7}\u{9b}2J \r\n",
    "x\u{0}y",
    "\u{2028}",
    "é😀",
    "a\"quote\\back",
    "%00",
    "../../etc",
    "Robert'); DROP TABLE students;--",
    "create-failed:X:Y",
    "partial-create:/platform/x",
];

fn mutate(rng: &mut Rng, seeds: &[Value]) -> Input {
    let mut event = rng.pick(seeds).clone();
    let mut url_readable = true;
    let mut deep_levels = 0usize;
    for _ in 0..1 + rng.below(3) {
        match rng.below(12) {
            0 => url_readable &= wrong_type(rng, &mut event),
            1 => url_readable &= numbers_for_strings(rng, &mut event),
            2 => url_readable &= huge_string(rng, &mut event),
            3 => url_readable &= remove_key(rng, &mut event),
            4 => add_unknown_key(rng, &mut event),
            5 | 6 => nasty_property(rng, &mut event),
            7 => envelope_field(rng, &mut event),
            8 => url_readable &= placeholder(rng, &mut event, &mut deep_levels),
            9 => duplicate_key(rng, &mut event),
            _ => nasty_property(rng, &mut event),
        }
    }
    let mut bytes = serde_json::to_vec(&event).expect("a Value serializes");
    substitute(rng, &mut bytes, deep_levels);
    // Byte-level damage, after the structure: readable only when it lands after the URL.
    if rng.chance(3) {
        let url_end = url_member_end(&bytes);
        let (at, lands_after) = match rng.below(6) {
            0 => {
                let cut = rng.below(bytes.len() + 1);
                bytes.truncate(cut);
                (cut, true)
            }
            1 => {
                let at = rng.below(bytes.len());
                bytes[at] ^= 1 << rng.below(8);
                (at, false)
            }
            2 => {
                let at = rng.below(bytes.len() + 1);
                let junk = *rng.pick(&[
                    &b"\xff"[..],
                    b"\xc3",
                    b"\xed\xa0\x80",
                    b"\x00",
                    b"\x1b[2J",
                    b"\"",
                    b"{",
                    b"]",
                    b",",
                    b"\\",
                ]);
                bytes.splice(at..at, junk.iter().copied());
                (at, false)
            }
            3 => {
                let at = rng.below(bytes.len());
                let len = 1 + rng.below(8);
                bytes.drain(at..(at + len).min(bytes.len()));
                (at, false)
            }
            4 => {
                // A splice of two events: this one's head, another one's tail.
                let other = serde_json::to_vec(rng.pick(seeds)).expect("a Value serializes");
                let at = rng.below(bytes.len());
                let from = rng.below(other.len());
                bytes.truncate(at);
                bytes.extend_from_slice(&other[from..]);
                (at, false)
            }
            _ => {
                let prefix = *rng.pick(&[&b"\xef\xbb\xbf"[..], b" \n\t", b"\x00", b"[", b"{"]);
                bytes.splice(0..0, prefix.iter().copied());
                (0, false)
            }
        };
        let safe = match url_end {
            Some(end) if lands_after => at >= end,
            // A change after the whole member leaves it as it was.
            Some(end) => at > end,
            None => false,
        };
        url_readable &= safe;
    }
    Input { bytes, url_readable }
}

/// Where the last `"ResponseURL":"..."` member of the serialized event ends.
fn url_member_end(bytes: &[u8]) -> Option<usize> {
    let key = b"\"ResponseURL\":\"";
    let start = bytes.windows(key.len()).rposition(|w| w == key)?;
    let value = start + key.len();
    let close = bytes[value..].iter().position(|b| *b == b'"')?;
    Some(value + close + 1)
}

/// The paths of every node of `event`.
fn paths(event: &Value) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    let mut todo: Vec<(Vec<String>, &Value)> = vec![(Vec::new(), event)];
    while let Some((path, value)) = todo.pop() {
        if let Value::Object(map) = value {
            for (key, child) in map {
                let mut p = path.clone();
                p.push(key.clone());
                out.push(p.clone());
                todo.push((p, child));
            }
        }
    }
    out
}

fn node<'a>(event: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut value = event;
    for key in path {
        value = value.as_object_mut()?.get_mut(key)?;
    }
    Some(value)
}

/// A path whose node touching leaves the ResponseURL readable.
fn keeps_url(path: &[String]) -> bool {
    // A duplicate-key marker named `...ResponseURL` becomes a second `ResponseURL`.
    !path.is_empty() && !path[0].ends_with("ResponseURL")
}

fn random_value(rng: &mut Rng) -> Value {
    match rng.below(7) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(2)),
        2 => Value::from(rng.next() as i64),
        3 => Value::from(rng.below(1000) as f64 / 7.0),
        4 => Value::Array(vec![Value::from(1), Value::String("x".into())]),
        5 => Value::Object(Map::from_iter([("K".to_string(), Value::String("v".into()))])),
        _ => Value::String(rng.pick(NASTY).to_string()),
    }
}

fn wrong_type(rng: &mut Rng, event: &mut Value) -> bool {
    let all = paths(event);
    let path = rng.pick(&all).clone();
    if let Some(target) = node(event, &path) {
        *target = random_value(rng);
    }
    keeps_url(&path)
}

fn numbers_for_strings(rng: &mut Rng, event: &mut Value) -> bool {
    let all = paths(event);
    let path = rng.pick(&all).clone();
    if let Some(target) = node(event, &path) {
        *target = match &*target {
            Value::String(s) => match s.parse::<f64>() {
                Ok(n) if rng.chance(2) => serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number),
                _ => Value::from(rng.below(100_000) as u64),
            },
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            other => other.clone(),
        };
    }
    keeps_url(&path)
}

fn huge_string(rng: &mut Rng, event: &mut Value) -> bool {
    let all = paths(event);
    let path = rng.pick(&all).clone();
    let unit = *rng.pick(&[
        "a", "é", "😀", "\"", "\\", "\u{1b}", "\n", "\u{0}", "\u{9b}", "PHYS",
    ]);
    let text = unit.repeat(200 + rng.below(8000));
    if let Some(target) = node(event, &path) {
        *target = Value::String(text);
    }
    keeps_url(&path)
}

fn remove_key(rng: &mut Rng, event: &mut Value) -> bool {
    let all = paths(event);
    let path = rng.pick(&all).clone();
    let Some((last, parent)) = path.split_last() else {
        return true;
    };
    if let Some(Value::Object(map)) = node(event, parent) {
        map.remove(last);
    }
    keeps_url(&path)
}

fn add_unknown_key(rng: &mut Rng, event: &mut Value) {
    let target = if rng.chance(2) {
        "ResourceProperties"
    } else {
        "OldResourceProperties"
    };
    let value = random_value(rng);
    if let Some(Value::Object(map)) = event.get_mut(target) {
        map.insert(format!("Unknown{}", rng.below(3)), value);
    } else if let Value::Object(map) = event {
        map.insert("Unexpected".into(), value);
    }
}

fn nasty_property(rng: &mut Rng, event: &mut Value) {
    let target = if rng.chance(4) {
        "OldResourceProperties"
    } else {
        "ResourceProperties"
    };
    let value = Value::String(rng.pick(NASTY).to_string());
    if let Some(Value::Object(map)) = event.get_mut(target) {
        let keys: Vec<String> = map.keys().cloned().collect();
        if !keys.is_empty() {
            let key = rng.pick(&keys).clone();
            map.insert(key, value);
        }
    }
}

fn envelope_field(rng: &mut Rng, event: &mut Value) {
    let Value::Object(map) = event else { return };
    match rng.below(4) {
        0 => {
            let t = *rng.pick(&["Create", "Update", "Delete", "create", "Explode", ""]);
            map.insert("RequestType".into(), Value::String(t.into()));
        }
        1 => {
            let id = match rng.below(6) {
                0 => String::new(),
                1 => "create-failed:AdminSecret:r1".into(),
                2 => "partial-create:/platform/x".into(),
                3 => "p".repeat(1024 + rng.below(2)),
                4 => "é".repeat(512),
                _ => rng.pick(NASTY).to_string(),
            };
            map.insert("PhysicalResourceId".into(), Value::String(id));
        }
        2 => {
            let key = *rng.pick(&["StackId", "RequestId", "LogicalResourceId"]);
            map.insert(key.into(), Value::String(rng.pick(NASTY).to_string()));
        }
        _ => {
            let key = *rng.pick(&["StackId", "RequestId", "LogicalResourceId", "PhysicalResourceId"]);
            map.remove(key);
        }
    }
}

/// Puts a placeholder for bytes no serializer writes into a random string value.
fn placeholder(rng: &mut Rng, event: &mut Value, deep_levels: &mut usize) -> bool {
    let all = paths(event);
    let path = rng.pick(&all).clone();
    let which = *rng.pick(&[LONE_HIGH, LONE_LOW, NON_UTF8, RAW_CONTROL, DEEP]);
    if which == DEEP {
        *deep_levels = 100 + rng.below(1900);
    }
    let Some(target) = node(event, &path) else {
        return true;
    };
    match target {
        Value::String(s) if which != DEEP => {
            let at = s
                .char_indices()
                .map(|(i, _)| i)
                .nth(rng.below(s.chars().count() + 1))
                .unwrap_or(s.len());
            s.insert_str(at, which);
        }
        _ => *target = Value::String(which.into()),
    }
    keeps_url(&path)
}

/// A duplicate of a key, with another value (a duplicate `ResponseURL` is a readable URL too).
fn duplicate_key(rng: &mut Rng, event: &mut Value) {
    let Value::Object(map) = event else { return };
    let (object, key) = if rng.chance(2) {
        let keys: Vec<String> = map.keys().cloned().collect();
        (None, rng.pick(&keys).clone())
    } else {
        match map.get("ResourceProperties").and_then(Value::as_object) {
            Some(props) if !props.is_empty() => {
                let keys: Vec<String> = props.keys().cloned().collect();
                (Some("ResourceProperties"), rng.pick(&keys).clone())
            }
            _ => return,
        }
    };
    let value = if key.ends_with("ResponseURL") {
        Value::String(format!(
            "https://other.example.com/dup?X-Amz-Signature={SIGNATURE}"
        ))
    } else {
        Value::String(rng.pick(NASTY).to_string())
    };
    let marker = format!("\u{e000}DUP\u{e000}{key}");
    match object {
        None => {
            map.insert(marker, value);
        }
        Some(name) => {
            if let Some(Value::Object(props)) = map.get_mut(name) {
                props.insert(marker, value);
            }
        }
    }
}

/// Replaces the placeholders in the serialized event by what they stand for.
fn substitute(rng: &mut Rng, bytes: &mut Vec<u8>, deep_levels: usize) {
    if !bytes.contains(&0xee) {
        return; // no U+E000 placeholder anywhere
    }
    let deep = {
        let (open, close): (&[u8], &[u8]) = if rng.chance(2) {
            (b"[", b"]")
        } else {
            (b"{\"a\":", b"}")
        };
        let mut text = open.repeat(deep_levels);
        text.extend_from_slice(b"1");
        text.extend_from_slice(&close.repeat(deep_levels));
        text
    };
    let dup_prefix = "\u{e000}DUP\u{e000}".as_bytes().to_vec();
    let replacements: [(Vec<u8>, Vec<u8>); 5] = [
        (format!("\"{DEEP}\"").into_bytes(), deep),
        (LONE_HIGH.as_bytes().to_vec(), b"\\ud800".to_vec()),
        (LONE_LOW.as_bytes().to_vec(), b"\\udfff".to_vec()),
        (NON_UTF8.as_bytes().to_vec(), b"\xff\xfe\xc3".to_vec()),
        (RAW_CONTROL.as_bytes().to_vec(), b"\x1b\x00\x07".to_vec()),
    ];
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    'scan: while i < bytes.len() {
        if bytes[i] == 0xee {
            for (from, to) in &replacements {
                if bytes[i..].starts_with(from) {
                    out.extend_from_slice(to);
                    i += from.len();
                    continue 'scan;
                }
            }
            if bytes[i..].starts_with(&dup_prefix) {
                i += dup_prefix.len();
                continue 'scan;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    *bytes = out;
}

/// How many inputs of each kind of outcome, for the summary line.
pub fn summary(report: &Report) -> String {
    let mut parts = BTreeMap::new();
    parts.insert("responses", report.responses);
    parts.insert("FAILED", report.failed);
    parts.insert("not strict JSON", report.not_strict);
    parts.insert("no readable ResponseURL", report.unanswerable);
    parts
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
