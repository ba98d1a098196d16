//! What the HTTP providers share: one agent, bounded retries with backoff
//! that honour `Retry-After`, a rate limit, and the honest outcome of a try.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use ureq::http::Response;
use ureq::{Body, Timeout};

use crate::ratelimit::TokenBucket;
use crate::webhook::{body_snippet, describe_status, is_retryable_status};
use crate::{DeliveryError, RateLimit, Receipt, RetryPolicy};

/// Settings every provider plugin takes: timeout, retries, rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderSettings {
    /// The limit for one try, from connecting to reading the response.
    pub timeout: Duration,
    /// How failed tries are repeated, and when the send is given up.
    pub retry: RetryPolicy,
    /// The provider's allowance; `None` sends as fast as answers come.
    pub rate_limit: Option<RateLimit>,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            rate_limit: None,
        }
    }
}

impl ProviderSettings {
    /// Checks the numbers: a timeout above zero, at least one try, a usable rate.
    pub(crate) fn check(&self, plugin: &'static str) -> Result<(), ProviderConfigError> {
        if self.timeout.is_zero() {
            return Err(ProviderConfigError::new(
                plugin,
                "the timeout must be above zero",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(ProviderConfigError::new(
                plugin,
                "max attempts must be at least 1",
            ));
        }
        if let Some(limit) = self.rate_limit
            && TokenBucket::new(limit).is_none()
        {
            return Err(ProviderConfigError::new(
                plugin,
                "the rate limit and its burst must be at least 1",
            ));
        }
        Ok(())
    }

    pub(crate) fn bucket(&self) -> Option<TokenBucket> {
        self.rate_limit.and_then(TokenBucket::new)
    }
}

/// Why a provider plugin's configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderConfigError {
    /// The plugin: `smtp`, `sendgrid`, `postmark`, `twilio`.
    pub plugin: &'static str,
    /// What is wrong, readable by a person.
    pub reason: String,
}

impl ProviderConfigError {
    pub(crate) fn new(plugin: &'static str, reason: impl Into<String>) -> Self {
        ProviderConfigError {
            plugin,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ProviderConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.plugin, self.reason)
    }
}

impl std::error::Error for ProviderConfigError {}

/// A provider's answer that accepted the message.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) status: u16,
    /// The response body (its start; providers answer with small JSON).
    pub(crate) body: String,
    /// The `X-Message-Id` header, where the provider names its message there.
    pub(crate) message_id: Option<String>,
    pub(crate) attempts: u32,
}

impl Accepted {
    /// The receipt of an accepted request: its status, and the provider's
    /// name for the message when its JSON answer has one under `id_field`.
    pub(crate) fn receipt(&self, id_field: &str) -> Receipt {
        let mut detail = format!("HTTP {}", self.status);
        let answer: Option<serde_json::Value> = serde_json::from_str(&self.body).ok();
        if let Some(id) = answer
            .as_ref()
            .and_then(|a| a.get(id_field))
            .and_then(serde_json::Value::as_str)
        {
            detail.push_str(&format!(" {id_field} {id}"));
        }
        Receipt {
            attempts: self.attempts,
            detail: Some(detail),
        }
    }
}

/// What one try came to.
enum Attempt {
    Accepted {
        status: u16,
        body: String,
        message_id: Option<String>,
    },
    /// Not accepted; `retryable` says whether the same request may succeed later.
    Failed {
        reason: String,
        retryable: bool,
        retry_after: Option<Duration>,
        /// The provider's answer, when it gave one.
        answer: Option<(u16, String)>,
    },
    /// The request may have reached the provider, but no answer came.
    Unknown { reason: String },
}

/// An HTTP client for one provider, with its retry policy and rate limit.
pub(crate) struct Client {
    agent: ureq::Agent,
    timeout: Duration,
    retry: RetryPolicy,
    bucket: Option<TokenBucket>,
    /// Whether a try with an unknown outcome is repeated. Only safe, or at
    /// worst a duplicate, where the provider tolerates it; never for SMS.
    retry_unknown: bool,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("retry_unknown", &self.retry_unknown)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn new(settings: &ProviderSettings, retry_unknown: bool) -> Self {
        let agent = ureq::Agent::config_builder()
            // Statuses are classified here (retry or not), so they must
            // arrive as responses rather than as errors.
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(settings.timeout))
            // Shorter than the whole, so a connect timeout is reported as
            // such: nothing was sent, and a retry cannot duplicate.
            .timeout_connect(Some(settings.timeout / 2))
            .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            agent,
            timeout: settings.timeout,
            retry: settings.retry,
            bucket: settings.bucket(),
            retry_unknown,
        }
    }

    /// Runs `request` until it is accepted, fails for good, or the tries run out.
    /// `what` names the call in reasons, e.g. `POST https://api.sendgrid.com/v3/mail/send`.
    pub(crate) fn send(
        &mut self,
        what: &str,
        request: impl FnMut(&ureq::Agent) -> Result<Response<Body>, ureq::Error>,
    ) -> Result<Accepted, DeliveryError> {
        self.send_answered(what, request).map_err(|r| r.error)
    }

    /// As [`Client::send`], with the provider's last answer on failure, for
    /// providers whose error bodies say more than a status (FCM's error codes).
    pub(crate) fn send_answered(
        &mut self,
        what: &str,
        mut request: impl FnMut(&ureq::Agent) -> Result<Response<Body>, ureq::Error>,
    ) -> Result<Accepted, Refused> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(bucket) = &mut self.bucket {
                bucket.take();
            }
            let outcome = match request(&self.agent) {
                Ok(response) => classify_response(what, response),
                Err(e) => classify_error(what, &e, self.timeout),
            };
            let last = attempt >= self.retry.max_attempts;
            match outcome {
                Attempt::Accepted {
                    status,
                    body,
                    message_id,
                } => {
                    return Ok(Accepted {
                        status,
                        body,
                        message_id,
                        attempts: attempt,
                    });
                }
                Attempt::Failed {
                    reason,
                    retryable: false,
                    answer,
                    ..
                } => {
                    return Err(Refused {
                        error: DeliveryError::permanent(attempt, reason),
                        answer,
                    });
                }
                Attempt::Failed {
                    reason,
                    retryable: true,
                    answer,
                    ..
                } if last => {
                    return Err(Refused {
                        error: DeliveryError::transient(attempt, reason),
                        answer,
                    });
                }
                Attempt::Failed { retry_after, .. } => {
                    std::thread::sleep(self.retry.wait_after(attempt, retry_after));
                }
                Attempt::Unknown { reason } if last || !self.retry_unknown => {
                    return Err(Refused {
                        error: DeliveryError::unknown(attempt, reason),
                        answer: None,
                    });
                }
                Attempt::Unknown { .. } => {
                    std::thread::sleep(self.retry.wait_after(attempt, None));
                }
            }
        }
    }
}

/// A send that was not accepted, with the provider's last answer.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) error: DeliveryError,
    /// The status and the start of the body of the last answer, when one came.
    pub(crate) answer: Option<(u16, String)>,
}

fn classify_response(what: &str, mut response: Response<Body>) -> Attempt {
    let status = response.status();
    if status.is_success() {
        let message_id = response
            .headers()
            .get("x-message-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = String::new();
        // The body is only kept for the receipt; a short read is no failure.
        let _ = response
            .body_mut()
            .as_reader()
            .take(64 * 1024)
            .read_to_string(&mut body);
        return Attempt::Accepted {
            status: status.as_u16(),
            body,
            message_id,
        };
    }
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let mut body = Vec::new();
    // An unreadable body is no reason to hide the status; it is left out.
    let _ = response
        .body_mut()
        .as_reader()
        .take(16 * 1024)
        .read_to_end(&mut body);
    let snippet = body_snippet(&body[..]);
    let mut reason = format!("{what} answered {}", describe_status(status));
    if !snippet.is_empty() {
        reason.push_str(&format!(": {snippet}"));
    }
    Attempt::Failed {
        reason,
        retryable: is_retryable_status(status),
        retry_after,
        answer: Some((status.as_u16(), String::from_utf8_lossy(&body).into_owned())),
    }
}

/// Sorts a transport error into "not sent" (safe to retry) and "unknown".
fn classify_error(what: &str, e: &ureq::Error, timeout: Duration) -> Attempt {
    let failed = |text: String, retryable: bool| Attempt::Failed {
        reason: format!("{what}: {text}"),
        retryable,
        retry_after: None,
        answer: None,
    };
    match e {
        ureq::Error::Timeout(Timeout::Resolve | Timeout::Connect) => {
            failed(format!("could not connect within {:?}", timeout / 2), true)
        }
        ureq::Error::Timeout(_) => Attempt::Unknown {
            reason: format!("{what}: no answer within {timeout:?}"),
        },
        ureq::Error::HostNotFound => failed("host not found".to_string(), true),
        ureq::Error::ConnectionFailed => failed("connection failed".to_string(), true),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            failed(format!("connection failed: {io}"), true)
        }
        // The connection broke or the answer was garbled after the request
        // may have gone out.
        ureq::Error::Io(io) => Attempt::Unknown {
            reason: format!("{what}: connection lost: {io}"),
        },
        ureq::Error::Protocol(p) => Attempt::Unknown {
            reason: format!("{what}: invalid HTTP response: {p}"),
        },
        ureq::Error::TlsRequired => failed(
            "HTTPS is not supported by this build (enable the `tls` feature)".to_string(),
            false,
        ),
        other => failed(other.to_string(), false),
    }
}

/// A `Basic` authorization header value.
pub(crate) fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Checks an API base URL from the configuration.
pub(crate) fn check_base_url(
    plugin: &'static str,
    url: &str,
) -> Result<String, ProviderConfigError> {
    crate::webhook::check_url(url).map_err(|e| ProviderConfigError::new(plugin, e.reason))?;
    Ok(url.trim_end_matches('/').to_string())
}

/// Refuses an empty or missing setting with a message naming it.
pub(crate) fn required(
    plugin: &'static str,
    name: &str,
    value: &str,
) -> Result<(), ProviderConfigError> {
    if value.trim().is_empty() {
        return Err(ProviderConfigError::new(
            plugin,
            format!("`{name}` must not be empty"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let ok = ProviderSettings::default();
        assert!(ok.check("sendgrid").is_ok());
        let err = ProviderSettings {
            timeout: Duration::ZERO,
            ..ok.clone()
        }
        .check("sendgrid")
        .unwrap_err();
        assert_eq!(err.to_string(), "sendgrid: the timeout must be above zero");
        let err = ProviderSettings {
            retry: RetryPolicy {
                max_attempts: 0,
                ..RetryPolicy::default()
            },
            ..ok.clone()
        }
        .check("twilio")
        .unwrap_err();
        assert!(err.reason.contains("at least 1"), "{err}");
        let err = ProviderSettings {
            rate_limit: Some(RateLimit::per_second(0)),
            ..ok
        }
        .check("postmark")
        .unwrap_err();
        assert!(err.reason.contains("rate limit"), "{err}");
    }

    #[test]
    fn basic_auth_is_base64_of_user_colon_password() {
        // The example from RFC 7617, section 2.
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }
}
