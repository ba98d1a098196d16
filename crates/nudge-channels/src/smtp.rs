//! Email over SMTP with `lettre`: real MIME, STARTTLS or implicit TLS, AUTH.

use std::fmt;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
#[cfg(feature = "tls")]
use lettre::transport::smtp::client::Tls;
use lettre::{Message, SmtpTransport, Transport};

use crate::email::{parse_from, parse_to};
use crate::ratelimit::TokenBucket;
use crate::{
    DeliveryError, EmailContent, Outgoing, Plugin, ProviderConfigError, ProviderSettings, Receipt,
    Unsubscribe, message_id,
};

const PLUGIN: &str = "smtp";

/// How the connection to the SMTP server is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No encryption at all: only for a relay on the same machine or a test server.
    None,
}

impl SmtpTls {
    /// The port usually served with this kind of security.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::StartTls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        }
    }
}

/// Where and how an [`Smtp`] plugin sends.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The server's host name (also the name its TLS certificate must carry).
    pub host: String,
    /// The port; `None` for the usual one of `tls`.
    pub port: Option<u16>,
    /// How the connection is secured.
    pub tls: SmtpTls,
    /// `(user, password)` for SMTP AUTH, if the server wants it.
    pub credentials: Option<(String, String)>,
    /// The sender, e.g. `Shop <news@shop.example>`; its domain ends each Message-ID.
    pub from: String,
    /// Where replies go, if not to `from`.
    pub reply_to: Option<String>,
    /// Signed one-click unsubscribe links, put on every marketing message.
    pub unsubscribe: Unsubscribe,
    /// Timeout, retries and rate limit.
    pub settings: ProviderSettings,
    /// PEM certificates trusted besides the public roots, for a relay
    /// whose certificate comes from a private authority.
    pub extra_roots: Vec<Vec<u8>>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password is left out.
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("from", &self.from)
            .field("reply_to", &self.reply_to)
            .field("unsubscribe", &self.unsubscribe)
            .field("settings", &self.settings)
            .finish()
    }
}

impl SmtpConfig {
    /// A config for `host` with STARTTLS on the usual port, no AUTH and default settings.
    pub fn new(host: impl Into<String>, from: impl Into<String>, unsubscribe: Unsubscribe) -> Self {
        SmtpConfig {
            host: host.into(),
            port: None,
            tls: SmtpTls::StartTls,
            credentials: None,
            from: from.into(),
            reply_to: None,
            unsubscribe,
            settings: ProviderSettings::default(),
            extra_roots: Vec::new(),
        }
    }
}

/// A plugin that sends each email message over SMTP.
///
/// Each message is `multipart/alternative` with a plain-text part (the
/// message's `text`, or one derived from its HTML) and the HTML `body`; its
/// `Message-ID` comes from the idempotency key, and marketing messages carry
/// `List-Unsubscribe` and `List-Unsubscribe-Post` (RFC 8058). A 4xx reply or
/// a refused connection is retried; a 5xx reply fails at once; a timeout is
/// reported as an unknown outcome and not retried, since the server may have
/// queued the message before its answer was lost.
pub struct Smtp {
    transport: SmtpTransport,
    from: Mailbox,
    reply_to: Option<Mailbox>,
    domain: String,
    unsubscribe: Unsubscribe,
    settings: ProviderSettings,
    bucket: Option<TokenBucket>,
    server: String,
}

impl fmt::Debug for Smtp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smtp")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Smtp {
    /// Checks `config` and makes the plugin; no connection is made yet.
    pub fn new(config: SmtpConfig) -> Result<Self, ProviderConfigError> {
        crate::http::required(PLUGIN, "host", &config.host)?;
        config.settings.check(PLUGIN)?;
        let from = parse_from(PLUGIN, &config.from)?;
        let reply_to = config
            .reply_to
            .as_deref()
            .map(|r| {
                r.parse::<Mailbox>().map_err(|e| {
                    ProviderConfigError::new(
                        PLUGIN,
                        format!("`reply_to` = {r:?} is not an address: {e}"),
                    )
                })
            })
            .transpose()?;
        let domain = from.email.domain().to_string();
        let port = config.port.unwrap_or(config.tls.default_port());
        let mut builder = SmtpTransport::builder_dangerous(config.host.as_str())
            .port(port)
            .timeout(Some(config.settings.timeout));
        #[cfg(feature = "tls")]
        {
            builder = builder.tls(tls(&config.host, config.tls, &config.extra_roots)?);
        }
        #[cfg(not(feature = "tls"))]
        plain_only(&config.host, config.tls)?;
        if let Some((user, password)) = &config.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Smtp {
            transport: builder.build(),
            from,
            reply_to,
            domain,
            unsubscribe: config.unsubscribe,
            bucket: config.settings.bucket(),
            settings: config.settings,
            server: format!("{}:{port}", config.host),
        })
    }

    /// The MIME message for `msg`.
    pub fn message(&self, msg: &Outgoing) -> Result<Message, DeliveryError> {
        let content = EmailContent::from_message(&self.unsubscribe.fill_links(msg))?;
        let to = parse_to(&msg.to)?;
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(content.subject)
            .message_id(Some(message_id(&msg.idempotency_key, &self.domain)));
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        for (name, value) in self.unsubscribe.headers(msg) {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(name),
                value,
            ));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                content.text,
                content.html,
            ))
            .map_err(|e| DeliveryError::permanent(0, format!("cannot build the email: {e}")))
    }
}

#[cfg(feature = "tls")]
fn tls(host: &str, tls: SmtpTls, extra_roots: &[Vec<u8>]) -> Result<Tls, ProviderConfigError> {
    use lettre::transport::smtp::client::{Certificate, TlsParameters};
    if tls == SmtpTls::None {
        return Ok(Tls::None);
    }
    let fail = |e: lettre::transport::smtp::Error| {
        ProviderConfigError::new(PLUGIN, format!("TLS for {host}: {e}"))
    };
    let mut builder = TlsParameters::builder(host.to_string());
    for pem in extra_roots {
        builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(fail)?);
    }
    let params = builder.build_rustls().map_err(fail)?;
    Ok(if tls == SmtpTls::StartTls {
        Tls::Required(params)
    } else {
        Tls::Wrapper(params)
    })
}

/// Without TLS support only plain connections can be made.
#[cfg(not(feature = "tls"))]
fn plain_only(host: &str, tls: SmtpTls) -> Result<(), ProviderConfigError> {
    if tls == SmtpTls::None {
        return Ok(());
    }
    Err(ProviderConfigError::new(
        PLUGIN,
        format!(
            "{host} needs TLS, but this build has no TLS support \
             (enable the `tls` feature of nudge-channels, or set tls = \"none\" for a local relay)"
        ),
    ))
}

impl Plugin for Smtp {
    fn name(&self) -> &str {
        PLUGIN
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        let email = self.message(msg)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(bucket) = &mut self.bucket {
                bucket.take();
            }
            let error = match self.transport.send(&email) {
                Ok(response) => {
                    let code = response.code();
                    let text = response.message().collect::<Vec<_>>().join(" ");
                    return Ok(Receipt {
                        attempts: attempt,
                        detail: Some(format!("SMTP {code} {text}").trim_end().to_string()),
                    });
                }
                Err(e) => e,
            };
            let reason = format!("SMTP {}: {error}", self.server);
            if is_timeout(&error) {
                return Err(DeliveryError::unknown(attempt, reason));
            }
            // 5xx replies, TLS and client errors will not change by retrying.
            let retryable = error.is_transient()
                || (!error.is_permanent() && !error.is_client() && !is_bad_handshake(&error));
            if !retryable {
                return Err(DeliveryError::permanent(attempt, reason));
            }
            if attempt >= self.settings.retry.max_attempts {
                return Err(DeliveryError::transient(attempt, reason));
            }
            std::thread::sleep(self.settings.retry.wait_after(attempt, None));
        }
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        // Every delivery is complete when `deliver` returns.
        Ok(())
    }
}

/// The kind of the I/O error under an SMTP error, if there is one.
fn io_kind(e: &lettre::transport::smtp::Error) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// Whether a read or write timed out. Socket timeouts surface as
/// `WouldBlock` on Linux, which lettre's own `is_timeout` does not count.
fn is_timeout(e: &lettre::transport::smtp::Error) -> bool {
    matches!(
        io_kind(e),
        Some(std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
    )
}

/// Whether the TLS handshake failed (an untrusted or mismatched
/// certificate): rustls reports it as invalid data under a network error.
fn is_bad_handshake(e: &lettre::transport::smtp::Error) -> bool {
    is_tls(e) || io_kind(e) == Some(std::io::ErrorKind::InvalidData)
}

#[cfg(feature = "tls")]
fn is_tls(e: &lettre::transport::smtp::Error) -> bool {
    e.is_tls()
}

#[cfg(not(feature = "tls"))]
fn is_tls(_: &lettre::transport::smtp::Error) -> bool {
    false
}
