use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::Notify;

/// What the Lambda reported for an invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeOutcome {
    /// `POST .../response` with this body.
    Response(String),
    /// `POST .../error` (or `.../init/error`) with this body.
    Error(String),
}

impl RuntimeOutcome {
    pub fn is_error(&self) -> bool {
        matches!(self, Self::Error(_))
    }
}

/// What `Lambda-Runtime-Deadline-Ms` says for an invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Epoch milliseconds this long after the Lambda picks the event up, as Lambda sends.
    In(Duration),
    /// Exactly this header value, as emulators send (`cargo lambda watch`: `600000`).
    Raw(u64),
}

struct Queued {
    id: String,
    event: String,
    deadline: Deadline,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    handed_out: HashMap<String, Instant>,
    outcomes: HashMap<String, (RuntimeOutcome, Instant)>,
    next_polls: Vec<Instant>,
    counter: u64,
}

/// A Lambda Runtime API for one function: events are queued by [`RuntimeApi::invoke`] and
/// handed out on `GET /2018-06-01/runtime/invocation/next`.
#[derive(Clone)]
pub struct RuntimeApi {
    address: String,
    state: Arc<Mutex<State>>,
    queued: Arc<Notify>,
    reported: Arc<Notify>,
    task: Arc<tokio::task::AbortHandle>,
}

/// A queued invocation.
pub struct Invocation {
    pub request_id: String,
    api: RuntimeApi,
}

impl Invocation {
    /// Waits up to `wait` for the Lambda's response or error.
    pub async fn outcome(&self, wait: Duration) -> Option<RuntimeOutcome> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.api.reported.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((outcome, _)) = self.api.state.lock().unwrap().outcomes.get(&self.request_id) {
                return Some(outcome.clone());
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return None;
            }
        }
    }

    /// When the Lambda picked the invocation up from `/next`.
    pub fn handed_out_at(&self) -> Option<Instant> {
        self.api
            .state
            .lock()
            .unwrap()
            .handed_out
            .get(&self.request_id)
            .copied()
    }

    /// Handed out → outcome posted, once both happened.
    pub fn elapsed(&self) -> Option<Duration> {
        let state = self.api.state.lock().unwrap();
        let start = state.handed_out.get(&self.request_id)?;
        let (_, end) = state.outcomes.get(&self.request_id)?;
        Some(end.duration_since(*start))
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl RuntimeApi {
    /// Binds a free loopback port and serves.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind runtime API");
        let address = listener.local_addr().expect("local addr").to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let queued = Arc::new(Notify::new());
        let reported = Arc::new(Notify::new());
        let (s, q, r) = (state.clone(), queued.clone(), reported.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, q, r) = (s.clone(), q.clone(), r.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| serve(req, s.clone(), q.clone(), r.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            address,
            state,
            queued,
            reported,
            task: Arc::new(task.abort_handle()),
        }
    }

    /// `host:port`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// Queues an event; the Lambda gets `timeout` from the moment it picks it up.
    pub async fn invoke(&self, event: serde_json::Value, timeout: Duration) -> Invocation {
        self.invoke_with_deadline(event, Deadline::In(timeout)).await
    }

    /// Queues an event with the given deadline header.
    pub async fn invoke_with_deadline(&self, event: serde_json::Value, deadline: Deadline) -> Invocation {
        self.invoke_text(event.to_string(), deadline).await
    }

    /// Queues an event given as its exact text (JSON a serializer would never write, say).
    pub async fn invoke_text(&self, event: String, deadline: Deadline) -> Invocation {
        let request_id = {
            let mut state = self.state.lock().unwrap();
            state.counter += 1;
            let id = format!("invocation-{:06}-{}", state.counter, std::process::id());
            state.queue.push_back(Queued {
                id: id.clone(),
                event,
                deadline,
            });
            id
        };
        self.queued.notify_one();
        Invocation {
            request_id,
            api: self.clone(),
        }
    }

    /// When the Lambda polled `/next`, in order: the first is the end of its init.
    pub fn next_polls(&self) -> Vec<Instant> {
        self.state.lock().unwrap().next_polls.clone()
    }

    /// Waits until the Lambda has polled `/next` at least `count` times.
    pub async fn wait_for_polls(&self, count: usize, wait: Duration) -> bool {
        let until = tokio::time::Instant::now() + wait;
        while self.state.lock().unwrap().next_polls.len() < count {
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

async fn serve(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    queued: Arc<Notify>,
    reported: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body = String::from_utf8_lossy(&body).into_owned();

    if method == Method::GET && path == "/2018-06-01/runtime/invocation/next" {
        state.lock().unwrap().next_polls.push(Instant::now());
        loop {
            let notified = queued.notified();
            let next = state.lock().unwrap().queue.pop_front();
            if let Some(Queued { id, event, deadline }) = next {
                let deadline_ms = match deadline {
                    Deadline::In(timeout) => (SystemTime::now() + timeout)
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_millis(),
                    Deadline::Raw(value) => u128::from(value),
                };
                state
                    .lock()
                    .unwrap()
                    .handed_out
                    .insert(id.clone(), Instant::now());
                let mut response = text(StatusCode::OK, event);
                let headers = response.headers_mut();
                headers.insert("lambda-runtime-aws-request-id", id.parse().unwrap());
                headers.insert(
                    "lambda-runtime-deadline-ms",
                    deadline_ms.to_string().parse().unwrap(),
                );
                headers.insert(
                    "lambda-runtime-invoked-function-arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:local"
                        .parse()
                        .unwrap(),
                );
                headers.insert(
                    "lambda-runtime-trace-id",
                    "Root=1-00000000-000000000000000000000000".parse().unwrap(),
                );
                headers.insert("content-type", "application/json".parse().unwrap());
                return Ok(response);
            }
            notified.await;
        }
    }

    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let outcome = match (method.clone(), parts.as_slice()) {
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "response"]) => {
            Some((id.to_string(), RuntimeOutcome::Response(body)))
        }
        (Method::POST, ["2018-06-01", "runtime", "invocation", id, "error"]) => {
            Some((id.to_string(), RuntimeOutcome::Error(body)))
        }
        (Method::POST, ["2018-06-01", "runtime", "init", "error"]) => {
            Some(("init".to_string(), RuntimeOutcome::Error(body)))
        }
        _ => None,
    };
    match outcome {
        Some((id, outcome)) => {
            state
                .lock()
                .unwrap()
                .outcomes
                .insert(id, (outcome, Instant::now()));
            reported.notify_waiters();
            Ok(text(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
        }
        None => Ok(text(
            StatusCode::NOT_FOUND,
            format!("no route for {method} {path}"),
        )),
    }
}
