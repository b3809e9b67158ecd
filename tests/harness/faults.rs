//! A fault-injecting proxy between a Lambda and moto: what a real AWS region does to a client
//! now and then, on a seeded schedule so a failing run can be replayed.
//!
//! The Lambda's `AWS_ENDPOINT_URL` points at [`FaultProxy::endpoint`]; every request is forwarded
//! to moto unless the schedule picks a fault for it:
//!
//! - [`Fault::Throttle`]: HTTP 400 in the protocol's own shape: for the JSON protocols (SSM, KMS,
//!   Secrets Manager: an `X-Amz-Target` header) `x-amzn-ErrorType: ThrottlingException` and a
//!   JSON body; for the query protocol (ELBv2: an `Action=` form body) an XML `ErrorResponse`
//!   with `<Code>Throttling</Code>`.
//! - [`Fault::Status`]: 500 or 503 with an empty JSON or XML error.
//! - [`Fault::Drop`]: the connection is closed without an answer, before moto sees the request.
//! - [`Fault::Lost`]: moto acts on the request, then the connection is closed without its answer.
//! - [`Fault::Delay`]: the request reaches moto after a pause.
//!
//! [`FaultProxy::kill_at`] turns it into a crash-point injector: the `n`th request is forwarded,
//! moto acts on it, and the Lambda process is killed (`SIGKILL`) before the answer is relayed, the
//! worst moment for a process to die: the call took effect and the process never learned it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};

/// What the proxy did to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Throttle,
    /// This HTTP status (500 or 503).
    Status(u16),
    Drop,
    /// Forwarded (moto acts on it), then the connection is closed before the answer: the
    /// client cannot tell whether the call happened, and its retry must cope.
    Lost,
    Delay(Duration),
}

/// One request as the proxy saw it: the operation (`AmazonSSM.PutParameter`,
/// `DescribeRules`, ...) and the fault it got, if any.
#[derive(Debug, Clone)]
pub struct Seen {
    pub operation: String,
    pub fault: Option<Fault>,
}

struct State {
    /// splitmix64 state: the schedule is a function of the seed and the request's rank.
    rng: u64,
    /// Share of requests that get a fault (0.0..=1.0).
    rate: f64,
    /// Faults to give the next requests, before the random schedule (tests of exhausted retries).
    script: VecDeque<Fault>,
    /// Kill this pid before relaying the answer to the request with this (1-based) rank.
    kill_at: Option<(usize, u32)>,
    seen: Vec<Seen>,
}

/// The proxy; dropping the last clone stops it.
#[derive(Clone)]
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    _task: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FaultProxy {
    /// A proxy to `upstream` (`http://127.0.0.1:PORT`) that faults `rate` of the requests on the
    /// schedule `seed` gives.
    pub async fn start(upstream: &str, seed: u64, rate: f64) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("the fault proxy forwards to plain HTTP")
            .trim_end_matches('/')
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(Mutex::new(State {
            rng: seed,
            rate,
            script: VecDeque::new(),
            kill_at: None,
            seen: Vec::new(),
        }));
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (s, upstream) = (s.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| handle(req, s.clone(), upstream.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint,
            state,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        }
    }

    /// The environment a Lambda needs to reach moto through this proxy.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        vec![("AWS_ENDPOINT_URL", self.endpoint.as_str())]
    }

    pub fn set_rate(&self, rate: f64) {
        self.state.lock().unwrap().rate = rate;
    }

    /// The next requests get these faults, in order, whatever the rate.
    pub fn script(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state.lock().unwrap().script.extend(faults);
    }

    /// Kills `pid` with SIGKILL once moto has answered the `n`th request from now (1-based),
    /// before that answer is relayed.
    pub fn kill_at(&self, n: usize, pid: u32) {
        let mut state = self.state.lock().unwrap();
        let rank = state.seen.len() + n;
        state.kill_at = Some((rank, pid));
    }

    /// Every request seen so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// How many requests were seen so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().seen.len()
    }
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The operation a request asks for: its `X-Amz-Target`, else the query protocol's `Action`.
fn operation(target: Option<&str>, body: &[u8]) -> (String, bool) {
    if let Some(target) = target {
        return (target.to_string(), true);
    }
    let body = String::from_utf8_lossy(body);
    let action = body
        .split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .unwrap_or("?")
        .to_string();
    (action, false)
}

async fn handle(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
    upstream: String,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let (operation, json) = operation(target, &body);
    let (fault, kill) = {
        let mut s = state.lock().unwrap();
        let fault = match s.script.pop_front() {
            Some(fault) => Some(fault),
            None => {
                let draw = splitmix64(&mut s.rng);
                let pick = splitmix64(&mut s.rng);
                let faulted = ((draw >> 11) as f64 / (1u64 << 53) as f64) < s.rate;
                faulted.then(|| match pick % 6 {
                    0 | 1 => Fault::Throttle,
                    2 => Fault::Status(if (pick >> 8).is_multiple_of(2) { 500 } else { 503 }),
                    3 => Fault::Drop,
                    4 => Fault::Lost,
                    _ => Fault::Delay(Duration::from_millis(50 + (pick >> 8) % 200)),
                })
            }
        };
        s.seen.push(Seen {
            operation: operation.clone(),
            fault,
        });
        let rank = s.seen.len();
        let kill = s.kill_at.filter(|(at, _)| *at == rank).map(|(_, pid)| pid);
        (fault, kill)
    };
    match fault {
        Some(Fault::Throttle) => return Ok(throttled(json)),
        Some(Fault::Status(status)) => return Ok(unavailable(json, status)),
        Some(Fault::Drop) => return Err(std::io::Error::other("fault: connection dropped")),
        Some(Fault::Delay(pause)) => tokio::time::sleep(pause).await,
        Some(Fault::Lost) | None => {}
    }
    let answer = forward(parts, body, &upstream).await?;
    if fault == Some(Fault::Lost) {
        return Err(std::io::Error::other("fault: the answer was lost"));
    }
    if let Some(pid) = kill {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
        return Err(std::io::Error::other("fault: the Lambda was killed"));
    }
    Ok(answer)
}

/// The request as it came, to moto; moto's answer as it is.
async fn forward(
    parts: hyper::http::request::Parts,
    body: Bytes,
    upstream: &str,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let stream = tokio::net::TcpStream::connect(upstream).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let mut request = Request::from_parts(parts, Full::new(body));
    request.headers_mut().insert(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_str(upstream).map_err(std::io::Error::other)?,
    );
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn answer(status: u16, headers: &[(&str, &str)], body: String) -> Response<Full<Bytes>> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Throttling as the service's protocol says it.
fn throttled(json: bool) -> Response<Full<Bytes>> {
    if json {
        answer(
            400,
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amzn-errortype", "ThrottlingException"),
                ("x-amzn-requestid", "fault-proxy"),
            ],
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string(),
        )
    } else {
        answer(
            400,
            &[("content-type", "text/xml"), ("x-amzn-requestid", "fault-proxy")],
            "<ErrorResponse xmlns=\"http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/\"><Error>\
             <Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error>\
             <RequestId>fault-proxy</RequestId></ErrorResponse>"
                .to_string(),
        )
    }
}

/// A 500 or 503, as a service's front end answers when it is unwell.
fn unavailable(json: bool, status: u16) -> Response<Full<Bytes>> {
    let (code, message) = match status {
        503 => ("ServiceUnavailable", "Service Unavailable"),
        _ => (
            "InternalFailure",
            "We encountered an internal error. Please try again.",
        ),
    };
    if json {
        answer(
            status,
            &[
                ("content-type", "application/x-amz-json-1.1"),
                ("x-amzn-errortype", code),
                ("x-amzn-requestid", "fault-proxy"),
            ],
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        )
    } else {
        answer(
            status,
            &[("content-type", "text/xml"), ("x-amzn-requestid", "fault-proxy")],
            format!(
                "<ErrorResponse><Error><Type>Receiver</Type><Code>{code}</Code><Message>{message}</Message>\
                 </Error><RequestId>fault-proxy</RequestId></ErrorResponse>"
            ),
        )
    }
}

/// What [`PgProxy`] does when the client's `n`th chunk arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgFault {
    /// Kill the Lambda (SIGKILL) once the chunk has reached the server.
    Kill(u32),
    /// Close both sides of that connection once the chunk has reached the server, as a
    /// failover (or `pg_terminate_backend`) ends a session mid-statement.
    Sever,
}

struct PgState {
    /// Client chunks seen (every connection, in arrival order).
    chunks: usize,
    at: Option<(usize, PgFault)>,
    connections: usize,
}

/// A TCP proxy in front of PostgreSQL that counts what the client sends (TLS passes through
/// untouched, so a chunk is roughly one round trip: a handshake flight or a statement) and can
/// kill the client or sever the session at the `n`th chunk.
#[derive(Clone)]
pub struct PgProxy {
    pub port: u16,
    state: Arc<Mutex<PgState>>,
    _task: Arc<AbortOnDrop>,
}

impl PgProxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the PostgreSQL proxy");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(Mutex::new(PgState {
            chunks: 0,
            at: None,
            connections: 0,
        }));
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                s.lock().unwrap().connections += 1;
                let s = s.clone();
                tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = pipe(client, server, s).await;
                    }
                });
            }
        });
        Self {
            port,
            state,
            _task: Arc::new(AbortOnDrop(task.abort_handle())),
        }
    }

    /// Applies `fault` at the client's `n`th chunk from now (1-based).
    pub fn at(&self, n: usize, fault: PgFault) {
        let mut state = self.state.lock().unwrap();
        let rank = state.chunks + n;
        state.at = Some((rank, fault));
    }

    /// Client chunks seen so far.
    pub fn chunks(&self) -> usize {
        self.state.lock().unwrap().chunks
    }
}

async fn pipe(
    client: tokio::net::TcpStream,
    server: tokio::net::TcpStream,
    state: Arc<Mutex<PgState>>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = client_read.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        server_write.write_all(&buffer[..n]).await?;
        let fault = {
            let mut s = state.lock().unwrap();
            s.chunks += 1;
            let rank = s.chunks;
            s.at.filter(|(at, _)| *at == rank).map(|(_, fault)| fault)
        };
        match fault {
            Some(PgFault::Kill(pid)) => {
                // Give the server a moment to act on the chunk, as it would before a crash.
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                break;
            }
            Some(PgFault::Sever) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                down.abort();
                return Ok(());
            }
            None => {}
        }
    }
    let _ = server_write.shutdown().await;
    let _ = down.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_seeds() {
        let draws = |seed| {
            let mut state = seed;
            (0..8).map(|_| splitmix64(&mut state)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn operations_of_both_protocols() {
        assert_eq!(
            operation(Some("AmazonSSM.PutParameter"), b"{}"),
            ("AmazonSSM.PutParameter".to_string(), true)
        );
        assert_eq!(
            operation(None, b"Action=DescribeRules&Version=2015-12-01"),
            ("DescribeRules".to_string(), false)
        );
    }
}
