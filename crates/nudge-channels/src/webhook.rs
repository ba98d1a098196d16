//! HTTP POST of each message to a configured URL, with retries.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use ureq::http::{HeaderName, HeaderValue, StatusCode, Uri};

use crate::{DeliveryError, Outgoing, Plugin, Receipt};

/// How many times a webhook delivery is tried, and how long to wait between tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in total, the first included; at least 1.
    pub max_attempts: u32,
    /// The wait after the first failed try; each later wait doubles it.
    pub initial_delay: Duration,
    /// No wait is longer than this, whatever the doubling or `Retry-After` says.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The backoff after failed try number `attempt` (1-based): doubling, capped.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial_delay
            .saturating_mul(factor)
            .min(self.max_delay)
    }

    /// The wait actually used: the backoff, raised to the server's `Retry-After`, capped.
    pub(crate) fn wait_after(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.delay_after(attempt);
        retry_after.map_or(backoff, |r| r.max(backoff).min(self.max_delay))
    }
}

/// Where and how a [`Webhook`] posts messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// The endpoint, `http://` or `https://`.
    pub url: String,
    /// Extra request headers, e.g. `("Authorization", "Bearer ...")`.
    pub headers: Vec<(String, String)>,
    /// The limit for one try, from connecting to reading the response.
    pub timeout: Duration,
    /// How failed tries are repeated.
    pub retry: RetryPolicy,
}

impl WebhookConfig {
    /// A config for `url` with no extra headers, a 10 s timeout and the default retry policy.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookConfig {
            url: url.into(),
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
        }
    }

    /// Adds one extra request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the per-try timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// Why a webhook configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfigError {
    /// What is wrong, readable by a person.
    pub reason: String,
}

impl WebhookConfigError {
    fn new(reason: impl Into<String>) -> Self {
        WebhookConfigError {
            reason: reason.into(),
        }
    }
}

impl fmt::Display for WebhookConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "webhook: {}", self.reason)
    }
}

impl std::error::Error for WebhookConfigError {}

/// Checks that `url` is an absolute http(s) URL this build can reach.
pub(crate) fn check_url(url: &str) -> Result<(), WebhookConfigError> {
    // A bare `host/path` parses as something odd; say what is missing instead.
    if !url.is_empty() && !url.contains("://") {
        return Err(WebhookConfigError::new(format!(
            "`{url}` is not an absolute URL; expected http:// or https://"
        )));
    }
    let uri: Uri = url
        .parse()
        .map_err(|e| WebhookConfigError::new(format!("`{url}` is not a valid URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            if !cfg!(feature = "tls") {
                return Err(WebhookConfigError::new(format!(
                    "`{url}` needs HTTPS, but this build has no TLS support \
                     (enable the `tls` feature of nudge-channels)"
                )));
            }
        }
        Some(other) => {
            return Err(WebhookConfigError::new(format!(
                "`{url}` has scheme `{other}`; expected http:// or https://"
            )));
        }
        None => {
            return Err(WebhookConfigError::new(format!(
                "`{url}` is not an absolute URL; expected http:// or https://"
            )));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(WebhookConfigError::new(format!("`{url}` has no host")));
    }
    Ok(())
}

/// Headers the webhook sets itself, or that the HTTP layer owns.
const RESERVED_HEADERS: [&str; 5] = [
    "content-type",
    "idempotency-key",
    "content-length",
    "transfer-encoding",
    "host",
];

/// A plugin that POSTs each message, as its outbox JSON object, to a URL.
///
/// Each request carries `Content-Type: application/json` and
/// `Idempotency-Key: <the message's idempotency_key>`, the same on every
/// retry, so a receiver can drop duplicates. Connection errors, timeouts,
/// 408, 429 and 5xx are retried with exponential backoff; any other status
/// outside 2xx fails at once. Redirects are not followed.
pub struct Webhook {
    url: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    retry: RetryPolicy,
    agent: ureq::Agent,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values are left out: they often hold credentials.
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What one try came to.
enum Attempt {
    Accepted(u16),
    Failed {
        reason: String,
        retryable: bool,
        retry_after: Option<Duration>,
    },
}

impl Webhook {
    /// Checks `config` and makes a webhook plugin from it.
    pub fn new(config: WebhookConfig) -> Result<Self, WebhookConfigError> {
        check_url(&config.url)?;
        if config.retry.max_attempts == 0 {
            return Err(WebhookConfigError::new("max attempts must be at least 1"));
        }
        if config.timeout.is_zero() {
            return Err(WebhookConfigError::new("the timeout must be above zero"));
        }
        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                WebhookConfigError::new(format!("`{name}` is not a valid header name"))
            })?;
            if RESERVED_HEADERS.contains(&header_name.as_str()) {
                return Err(WebhookConfigError::new(format!(
                    "header `{name}` is set by the webhook itself and cannot be overridden"
                )));
            }
            let header_value = HeaderValue::from_str(value).map_err(|_| {
                WebhookConfigError::new(format!("the value of header `{name}` is not valid"))
            })?;
            headers.push((header_name, header_value));
        }
        let agent = ureq::Agent::config_builder()
            // Statuses are classified here (retry or not), so they must
            // arrive as responses rather than as errors.
            .http_status_as_error(false)
            // Following a redirect could turn the POST into a GET or send
            // the message somewhere unconfigured.
            .max_redirects(0)
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Webhook {
            url: config.url,
            headers,
            timeout: config.timeout,
            retry: config.retry,
            agent,
        })
    }

    /// The URL messages are posted to.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn attempt(&self, body: &[u8], key: &HeaderValue) -> Attempt {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", key.clone());
        for (name, value) in &self.headers {
            request = request.header(name.clone(), value.clone());
        }
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status();
                if status.is_success() {
                    return Attempt::Accepted(status.as_u16());
                }
                let retry_after = response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let snippet = body_snippet(response.body_mut().as_reader());
                let mut reason = format!("{} answered {}", self.url, describe_status(status));
                if let Some(location) = status
                    .is_redirection()
                    .then(|| response.headers().get("location"))
                    .flatten()
                    .and_then(|v| v.to_str().ok())
                {
                    reason.push_str(&format!(" (redirect to {location}, not followed)"));
                }
                if !snippet.is_empty() {
                    reason.push_str(&format!(": {snippet}"));
                }
                Attempt::Failed {
                    reason,
                    retryable: is_retryable_status(status),
                    retry_after,
                }
            }
            Err(e) => {
                let (what, retryable) = describe_error(&e, self.timeout);
                Attempt::Failed {
                    reason: format!("POST {}: {what}", self.url),
                    retryable,
                    retry_after: None,
                }
            }
        }
    }
}

/// Whether a non-2xx status may go away by itself.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

pub(crate) fn describe_status(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(text) => format!("HTTP {} {text}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// The start of an error response's body, on one line, so failures say
/// what the receiver objected to without flooding the logs.
pub(crate) fn body_snippet(reader: impl Read) -> String {
    const LIMIT: usize = 300;
    let mut bytes = Vec::new();
    // An unreadable body is no reason to hide the status; leave it out.
    if reader
        .take(LIMIT as u64 + 1)
        .read_to_end(&mut bytes)
        .is_err()
    {
        return String::new();
    }
    let truncated = bytes.len() > LIMIT;
    bytes.truncate(LIMIT);
    let text = String::from_utf8_lossy(&bytes);
    let mut one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if truncated {
        one_line.push_str(" ...");
    }
    one_line
}

/// A readable reason for a transport error, and whether a retry may help.
fn describe_error(e: &ureq::Error, timeout: Duration) -> (String, bool) {
    match e {
        ureq::Error::Timeout(_) => (format!("timed out after {timeout:?}"), true),
        ureq::Error::Io(io) => (format!("connection failed: {io}"), true),
        ureq::Error::HostNotFound => ("host not found".to_string(), true),
        ureq::Error::ConnectionFailed => ("connection failed".to_string(), true),
        ureq::Error::Protocol(p) => (format!("invalid HTTP response: {p}"), true),
        ureq::Error::TlsRequired => (
            "HTTPS is not supported by this build (enable the `tls` feature)".to_string(),
            false,
        ),
        other => (other.to_string(), false),
    }
}

impl Plugin for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let key = HeaderValue::from_str(&msg.idempotency_key).map_err(|_| {
            DeliveryError::permanent(
                0,
                format!(
                    "idempotency key {:?} cannot be sent as an HTTP header",
                    msg.idempotency_key
                ),
            )
        })?;
        let body = serde_json::to_vec(msg).map_err(|e| {
            DeliveryError::permanent(0, format!("cannot serialize message as JSON: {e}"))
        })?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(&body, &key) {
                Attempt::Accepted(status) => {
                    return Ok(Receipt {
                        attempts: attempt,
                        detail: Some(format!("HTTP {status}")),
                    });
                }
                Attempt::Failed {
                    reason,
                    retryable: false,
                    ..
                } => return Err(DeliveryError::permanent(attempt, reason)),
                Attempt::Failed {
                    reason,
                    retryable: true,
                    retry_after,
                } => {
                    if attempt >= self.retry.max_attempts {
                        return Err(DeliveryError::transient(attempt, reason));
                    }
                    std::thread::sleep(self.retry.wait_after(attempt, retry_after));
                }
            }
        }
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        // Every delivery is complete when `deliver` returns.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let policy = RetryPolicy::default();
        let delays: Vec<_> = (1..=7).map(|a| policy.delay_after(a)).collect();
        let ms = Duration::from_millis;
        assert_eq!(
            delays,
            [
                ms(200),
                ms(400),
                ms(800),
                ms(1600),
                ms(3200),
                ms(5000),
                ms(5000)
            ]
        );
        // Huge attempt numbers saturate instead of overflowing.
        assert_eq!(policy.delay_after(u32::MAX), ms(5000));
    }

    #[test]
    fn retry_after_raises_the_wait_but_not_past_the_cap() {
        let policy = RetryPolicy::default();
        let ms = Duration::from_millis;
        assert_eq!(policy.wait_after(1, None), ms(200));
        assert_eq!(policy.wait_after(1, Some(ms(1000))), ms(1000));
        assert_eq!(policy.wait_after(3, Some(ms(0))), ms(800));
        assert_eq!(
            policy.wait_after(1, Some(Duration::from_secs(60))),
            ms(5000)
        );
    }

    #[test]
    fn status_classification() {
        for code in [500, 502, 503, 504, 429, 408] {
            assert!(
                is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 422, 301, 302] {
            assert!(
                !is_retryable_status(StatusCode::from_u16(code).unwrap()),
                "{code}"
            );
        }
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:8080/hook").is_ok());
        assert_eq!(
            check_url("https://example.com/hook").is_ok(),
            cfg!(feature = "tls")
        );
        for (url, expected) in [
            ("ftp://example.com/x", "scheme `ftp`"),
            ("example.com/hook", "not an absolute URL"),
            ("/hook", "not an absolute URL"),
            ("http://exa mple.com", "not a valid URL"),
            ("", "not a valid URL"),
        ] {
            let err = check_url(url).unwrap_err();
            assert!(err.reason.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn config_errors_are_reported() {
        let base = || WebhookConfig::new("http://127.0.0.1:9/hook");
        let err = Webhook::new(base().header("Content-Type", "text/plain")).unwrap_err();
        assert!(err.reason.contains("cannot be overridden"), "{err}");
        let err = Webhook::new(base().header("bad name", "x")).unwrap_err();
        assert!(err.reason.contains("not a valid header name"), "{err}");
        let err = Webhook::new(base().header("X-Ok", "line\nbreak")).unwrap_err();
        assert!(err.reason.contains("value of header `X-Ok`"), "{err}");
        let err = Webhook::new(base().retry(RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        }))
        .unwrap_err();
        assert!(err.reason.contains("at least 1"), "{err}");
        let err = Webhook::new(base().timeout(Duration::ZERO)).unwrap_err();
        assert!(err.reason.contains("timeout"), "{err}");
    }

    #[test]
    fn debug_hides_header_values() {
        let hook = Webhook::new(
            WebhookConfig::new("http://127.0.0.1:9/").header("Authorization", "s3cret"),
        )
        .unwrap();
        let shown = format!("{hook:?}");
        assert!(shown.contains("authorization"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(body_snippet(&b"  bad\n  request \r\n"[..]), "bad request");
        let long = "x".repeat(1000);
        let snippet = body_snippet(long.as_bytes());
        assert_eq!(snippet.len(), 300 + " ...".len());
    }
}
