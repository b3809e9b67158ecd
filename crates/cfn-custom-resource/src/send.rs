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
    /// The first attempt's timeout when the deadline has (nearly) passed: it is made anyway.
    pub first_attempt_floor: Duration,
}

impl Default for SendPolicy {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
            first_attempt_floor: Duration::from_secs(2),
        }
    }
}

/// A 4xx other than 408 (timeout) and 429 (throttled) means the pre-signed URL itself is refused:
/// retrying the same URL cannot succeed. Except S3's own transient 400s: `RequestTimeout` (the
/// upload was too slow) and `IncompleteBody` (the connection dropped mid-body).
fn is_permanent(status: reqwest::StatusCode, s3_code: Option<&str>) -> bool {
    let transient_400 = status == reqwest::StatusCode::BAD_REQUEST
        && matches!(s3_code, Some("RequestTimeout" | "IncompleteBody"));
    status.is_client_error()
        && status != reqwest::StatusCode::REQUEST_TIMEOUT
        && status != reqwest::StatusCode::TOO_MANY_REQUESTS
        && !transient_400
}

/// The `<Code>` of an S3 error body, read from at most its first 8 KB.
async fn s3_error_code(mut response: reqwest::Response) -> Option<String> {
    let mut body = Vec::new();
    while body.len() < 8192 {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&body);
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    let code = text[start..end].trim();
    (!code.is_empty() && code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| code.to_string())
}

/// Delivers response bodies to pre-signed ResponseURLs. One client for the life of the process,
/// so the connection to the response endpoint stays warm across invocations.
///
/// The client is built on the first response, never on the way to the first
/// `GET /invocation/next`; it trusts the compiled-in roots, or the `SSL_CERT_FILE` bundle when
/// that is set ([`crate::trust`]).
#[derive(Debug, Clone)]
pub struct Sender {
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
    pub(crate) fn new(policy: SendPolicy) -> Self {
        Self {
            client: Arc::new(OnceCell::new()),
            policy,
        }
    }

    async fn client(&self) -> &reqwest::Client {
        let connect_timeout = self.policy.connect_timeout;
        self.client
            .get_or_init(|| async move {
                crate::install_crypto_provider();
                reqwest::Client::builder()
                    .tls_backend_preconfigured(crate::trust::client_config())
                    .connect_timeout(connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(50))
                    .build()
                    .expect("the HTTP client's TLS configuration is static and valid")
            })
            .await
    }

    /// PUTs `body` until a 2xx answer, retrying with full-jitter exponential backoff; gives up
    /// when the next attempt could not finish before `give_up_at`. Returns the attempts made.
    pub(crate) async fn put(
        &self,
        url: &ResponseUrl,
        body: Vec<u8>,
        give_up_at: Instant,
    ) -> Result<u32, DeliveryError> {
        let mut attempts = 0;
        let mut backoff = self.policy.first_backoff;
        loop {
            attempts += 1;
            // The first attempt goes out whatever the clock says: a response that might arrive is
            // better than none. Later ones only while time remains.
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            let timeout = if attempts == 1 {
                remaining.max(self.policy.first_attempt_floor)
            } else {
                remaining
            }
            .min(self.policy.request_timeout);
            // No Content-Type (a pre-signed S3 URL is signed without one); reqwest sets the exact
            // Content-Length for a byte body.
            let attempt = self
                .client()
                .await
                .put(url.url().clone())
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            let last = match attempt {
                Ok(response) if response.status().is_success() => return Ok(attempts),
                Ok(response) => {
                    let status = response.status();
                    let code = s3_error_code(response).await;
                    let shown = code
                        .as_deref()
                        .map(|code| format!("HTTP {status} ({code})"))
                        .unwrap_or_else(|| format!("HTTP {status}"));
                    if is_permanent(status, code.as_deref()) {
                        return Err(DeliveryError {
                            url: url.to_string(),
                            attempts,
                            last: format!(
                                "the endpoint answered {shown}, which a retry cannot change (an expired or altered pre-signed URL)"
                            ),
                        });
                    }
                    format!("the endpoint answered {shown}")
                }
                Err(error) => crate::error::error_chain(&error.without_url()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_transient_400s_are_retried_and_other_4xx_are_final() {
        use reqwest::StatusCode;
        assert!(!is_permanent(StatusCode::BAD_REQUEST, Some("RequestTimeout")));
        assert!(!is_permanent(StatusCode::BAD_REQUEST, Some("IncompleteBody")));
        assert!(is_permanent(StatusCode::BAD_REQUEST, Some("MalformedXML")));
        assert!(is_permanent(StatusCode::BAD_REQUEST, None));
        assert!(is_permanent(StatusCode::FORBIDDEN, Some("AccessDenied")));
        assert!(!is_permanent(StatusCode::REQUEST_TIMEOUT, None));
        assert!(!is_permanent(StatusCode::TOO_MANY_REQUESTS, None));
        assert!(!is_permanent(StatusCode::INTERNAL_SERVER_ERROR, None));
    }
}
