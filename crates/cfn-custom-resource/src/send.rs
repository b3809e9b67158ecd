use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OnceCell;

use rand::RngExt as _;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use tokio::time::Instant;

use crate::secret::ResponseUrl;

/// How the response PUT behaves. Every limit is cut short by the time left before the deadline.
#[derive(Debug, Clone)]
pub(crate) struct SendPolicy {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for SendPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
        }
    }
}

/// A 4xx other than 408 (timeout) and 429 (throttled) means the pre-signed URL itself is refused:
/// retrying the same URL cannot succeed.
fn is_permanent(status: reqwest::StatusCode) -> bool {
    status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// Delivers response bodies to pre-signed ResponseURLs. One client for the life of the process,
/// so the connection to the response endpoint stays warm across invocations.
///
/// Building the client loads the system's root certificates, which takes milliseconds: it is built
/// in the background from [`Sender::new`], so the Lambda's init does not wait for it and the first
/// response usually finds it ready.
#[derive(Debug, Clone)]
pub(crate) struct Sender {
    client: Arc<OnceCell<reqwest::Client>>,
    policy: SendPolicy,
}

/// Why a response could not be delivered. Never holds the URL's query string.
#[derive(Debug, thiserror::Error)]
#[error("could not deliver the response to CloudFormation at {url} after {attempts} attempt(s): {last}")]
pub(crate) struct DeliveryError {
    url: String,
    attempts: u32,
    last: String,
}

impl Sender {
    /// Must be called inside a tokio runtime: it starts building the client there.
    pub fn new(policy: SendPolicy) -> Self {
        let sender = Self {
            client: Arc::new(OnceCell::new()),
            policy,
        };
        let early = sender.clone();
        tokio::spawn(async move {
            early.client().await;
        });
        sender
    }

    async fn client(&self) -> &reqwest::Client {
        let connect_timeout = self.policy.connect_timeout;
        self.client
            .get_or_init(|| async move {
                crate::install_crypto_provider();
                reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(50))
                    .build()
                    .expect("the HTTP client's TLS configuration is static and valid")
            })
            .await
    }

    /// PUTs `body` until a 2xx answer, retrying with full-jitter exponential backoff; gives up
    /// when the next attempt could not finish before `give_up_at`. Returns the attempts made.
    pub async fn put(
        &self,
        url: &ResponseUrl,
        body: Vec<u8>,
        give_up_at: Instant,
    ) -> Result<u32, DeliveryError> {
        let mut attempts = 0;
        let mut backoff = self.policy.first_backoff;
        loop {
            attempts += 1;
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            let last = if remaining.is_zero() {
                "no time left before the Lambda deadline".to_string()
            } else {
                // No Content-Type (a pre-signed S3 URL is signed without one); reqwest sets the
                // exact Content-Length for a byte body.
                let attempt = self
                    .client()
                    .await
                    .put(url.url().clone())
                    .timeout(remaining.min(self.policy.request_timeout))
                    .body(body.clone())
                    .send()
                    .await;
                match attempt {
                    Ok(response) if response.status().is_success() => return Ok(attempts),
                    Ok(response) if is_permanent(response.status()) => {
                        return Err(DeliveryError {
                            url: url.to_string(),
                            attempts,
                            last: format!(
                                "the endpoint answered HTTP {}, which a retry cannot change (an expired or altered pre-signed URL)",
                                response.status()
                            ),
                        });
                    }
                    Ok(response) => format!("the endpoint answered HTTP {}", response.status()),
                    Err(error) => crate::error::error_chain(&error.without_url()),
                }
            };
            let pause = Duration::from_secs_f64(UnwrapErr(SysRng).random_range(0.0..=backoff.as_secs_f64()));
            let left = give_up_at.saturating_duration_since(Instant::now());
            if left.is_zero() || pause >= left {
                return Err(DeliveryError {
                    url: url.to_string(),
                    attempts,
                    last,
                });
            }
            tracing::warn!(attempt = attempts, error = %last, retry_in_ms = pause.as_millis() as u64, "response PUT failed; retrying");
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
        }
    }
}
