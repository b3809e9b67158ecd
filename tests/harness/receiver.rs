use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

/// How the receiver answers one PUT.
#[derive(Debug, Clone, PartialEq)]
pub enum Behaviour {
    /// Answer with this status code at once.
    Status(u16),
    /// Wait this long, then answer 200.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer with this status and an S3 error document carrying this `<Code>`.
    S3Error(u16, &'static str),
}

/// One PUT as the receiver saw it.
#[derive(Debug, Clone)]
pub struct RecordedPut {
    pub method: String,
    /// The path and query, exactly as sent.
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub json: serde_json::Value,
    pub received_at: Instant,
    /// The status answered; 0 when the connection was dropped.
    pub answered: u16,
}

impl RecordedPut {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Behaviour>,
    puts: HashMap<String, Vec<RecordedPut>>,
}

/// Plays the pre-signed S3 ResponseURL: records every PUT, answers as scripted.
#[derive(Clone)]
pub struct Receiver {
    base_url: String,
    state: Arc<Mutex<State>>,
    task: Arc<tokio::task::AbortHandle>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

/// The fake signature every ResponseURL carries: it must never show up in a log.
pub const SIGNATURE: &str = "X-Amz-Signature=f00dfacecafe5ec7e7deadbeef0123456789";

impl Receiver {
    pub async fn start() -> Self {
        Self::serve(None).await
    }

    /// Like [`Receiver::start`], speaking HTTPS at `https://localhost:<port>` with the test CA's
    /// server certificate ([`crate::tls::test_ca`]).
    pub async fn start_tls() -> Self {
        let config = crate::tls::server_config(crate::tls::test_ca());
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn serve(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let port = listener.local_addr().expect("local addr").port();
        let base_url = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let state = Arc::new(Mutex::new(State::default()));
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| record(req, s.clone()));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            // A client that refuses the certificate ends the handshake here.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            base_url,
            state,
            task: Arc::new(task.abort_handle()),
        }
    }

    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The ResponseURL for a named request, shaped like a pre-signed S3 URL.
    pub fn response_url(&self, name: &str) -> String {
        response_url(&self.base_url, name)
    }

    /// The request name in a ResponseURL made by [`Receiver::response_url`].
    pub fn name_of(&self, url: &str) -> Option<String> {
        let rest = url.strip_prefix(&self.base_url)?.strip_prefix("/responses/")?;
        Some(rest.split('?').next().unwrap_or(rest).to_string())
    }

    /// The next PUTs (to any URL) get these behaviours in order; after them, 200.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.state.lock().unwrap().script.extend(behaviours);
    }

    /// Every PUT made to the named request's URL so far.
    pub fn puts(&self, name: &str) -> Vec<RecordedPut> {
        self.state
            .lock()
            .unwrap()
            .puts
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Every PUT the receiver has seen, whatever the URL.
    pub fn all_puts(&self) -> Vec<RecordedPut> {
        let state = self.state.lock().unwrap();
        let mut all: Vec<RecordedPut> = state.puts.values().flatten().cloned().collect();
        all.sort_by_key(|p| p.received_at);
        all
    }

    /// Waits until the named URL has at least `count` PUTs.
    pub async fn wait_for(&self, name: &str, count: usize, wait: Duration) -> Vec<RecordedPut> {
        let until = tokio::time::Instant::now() + wait;
        loop {
            let puts = self.puts(name);
            if puts.len() >= count || tokio::time::Instant::now() >= until {
                return puts;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

pub(crate) fn response_url(base_url: &str, name: &str) -> String {
    format!(
        "{base_url}/responses/{name}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIALOCALTEST%2F20261126%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=7200&X-Amz-SignedHeaders=host&{SIGNATURE}"
    )
}

async fn record(
    request: Request<Incoming>,
    state: Arc<Mutex<State>>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let received_at = Instant::now();
    let method = request.method().to_string();
    let target = request
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let name = request
        .uri()
        .path()
        .strip_prefix("/responses/")
        .unwrap_or(request.uri().path())
        .to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let behaviour = state
        .lock()
        .unwrap()
        .script
        .pop_front()
        .unwrap_or(Behaviour::Status(200));
    let answered = match behaviour {
        Behaviour::Status(code) | Behaviour::S3Error(code, _) => code,
        Behaviour::Delay(_) => 200,
        Behaviour::Drop => 0,
    };
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let put = RecordedPut {
        method,
        target,
        headers,
        body,
        json,
        received_at,
        answered,
    };
    state.lock().unwrap().puts.entry(name).or_default().push(put);
    match behaviour {
        Behaviour::Drop => Err(std::io::Error::other("dropping the connection as scripted")),
        Behaviour::Delay(pause) => {
            tokio::time::sleep(pause).await;
            Ok(answer(200))
        }
        Behaviour::Status(code) => Ok(answer(code)),
        Behaviour::S3Error(code, error_code) => {
            let mut response = answer(code);
            *response.body_mut() = Full::new(Bytes::from(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{error_code}</Code><Message>scripted</Message><RequestId>0</RequestId></Error>"
            )));
            Ok(response)
        }
    }
}

fn answer(code: u16) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}
