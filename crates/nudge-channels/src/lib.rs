//! Channel plugins: where a rendered message goes once the send pipeline
//! has decided to send it.
//!
//! The engine calls [`Plugin::deliver`] once per send, in order, and records
//! failures itself; [`Plugin::flush`] makes everything delivered so far
//! durable. Built-ins: [`OutboxFile`] (JSON lines in a file), [`Lines`]
//! (the same lines to stdout or any writer), [`Webhook`] (HTTP POST with
//! retries), and the providers: [`Smtp`] (email over SMTP), [`SendGrid`],
//! [`Postmark`] and [`Ses`] (email over their HTTP APIs), [`Twilio`] (SMS) and [`Fcm`]
//! (push).
//! [`PluginSpec`] names each and builds it. [`feedback`] reads what the
//! providers report back through their webhooks. Audience membership goes
//! to the ad platforms through an [`AudienceSync`] ([`MetaAudience`],
//! [`GoogleCustomerMatch`]), named by an [`AudienceSpec`].

use std::fmt;

use serde::{Deserialize, Serialize};

mod audience;
mod email;
mod fcm;
pub mod feedback;
mod google_match;
mod http;
mod lines;
mod meta_audience;
mod outbox;
mod postmark;
mod ratelimit;
mod sendgrid;
mod ses;
mod sigv4;
mod smtp;
mod spec;
mod twilio;
mod webhook;

pub use audience::{
    AudienceChange, AudienceCounts, AudienceSync, IdentifierError, MatchKeys, PhoneRules, Platform,
    SyncReport, UploadLists, normalize_email, normalize_phone, sha256_hex, write_upload_csv,
};
pub use email::{EmailContent, Unsubscribe, message_id};
pub use fcm::{Fcm, FcmConfig, InvalidToken, InvalidTokens, ServiceAccountKey};
pub use google_match::{GOOGLE_MAX_BATCH, GoogleCustomerMatch, GoogleCustomerMatchConfig};
pub use http::{ProviderConfigError, ProviderSettings};
pub use lines::Lines;
pub use meta_audience::{META_MAX_BATCH, MetaAudience, MetaAudienceConfig};
pub use outbox::{OutboxError, OutboxFile, OutboxMode, read_outbox};
pub use postmark::{Postmark, PostmarkConfig};
pub use ratelimit::RateLimit;
pub use sendgrid::{SendGrid, SendGridConfig};
pub use ses::{KEY_TAG as SES_KEY_TAG, Ses, SesConfig, key_of_tag as ses_key_of_tag};
pub use smtp::{Smtp, SmtpConfig, SmtpTls};
pub use spec::{AudienceSpec, PluginSpec, SetupError, SpecError};
pub use twilio::{Twilio, TwilioConfig};
pub use webhook::{RetryPolicy, Webhook, WebhookConfig, WebhookConfigError};

// Compiles and runs the guide's Rust examples, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/plugins.md")]
struct PluginsGuide;

/// One message ready to go out; also one line of the outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    /// When it was sent, RFC 3339 in UTC.
    pub at: String,
    /// The flow that sent it.
    pub flow: String,
    /// That flow's version hash.
    pub flow_version: String,
    /// The message's name.
    pub message: String,
    /// The channel's name (`email`, `sms`, `push`, `webhook`, `audience`).
    pub channel: String,
    /// The customer's display id.
    pub customer: String,
    /// The address: an email, a phone number, a device token, ...
    pub to: String,
    /// One key per instance step (and retry), so no step sends twice.
    pub idempotency_key: String,
    /// The rendered content fields, in the message's order.
    pub content: serde_json::Map<String, serde_json::Value>,
    /// Marketing or transactional. Written to the outbox only when
    /// transactional, so marketing lines (and older outboxes) keep their shape;
    /// a line without it reads back as marketing.
    #[serde(default, skip_serializing_if = "Purpose::is_marketing")]
    pub purpose: Purpose,
}

/// Why a message is sent, which decides what the law and mailbox providers
/// ask of it (an unsubscribe link on every marketing email, for one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Promotional; the default, as in the flow language.
    #[default]
    Marketing,
    /// Expected by the customer as part of a purchase (a receipt, a shipping notice).
    Transactional,
}

impl Purpose {
    /// `Marketing` when `marketing` is true, else `Transactional`.
    pub fn from_marketing(marketing: bool) -> Self {
        if marketing {
            Purpose::Marketing
        } else {
            Purpose::Transactional
        }
    }

    /// Whether this is marketing (the default, left out of the outbox).
    pub fn is_marketing(&self) -> bool {
        *self == Purpose::Marketing
    }
}

impl Outgoing {
    /// The message as one outbox line: compact JSON, no trailing newline.
    pub fn to_json_line(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// A destination for messages the engine has decided to send.
///
/// Implementations are synchronous: `deliver` returns once the destination
/// has accepted the message (or has definitely not). A plugin that retries
/// does so inside `deliver`, and reports how many attempts it made.
pub trait Plugin: Send {
    /// A short name for reports ("outbox", "stdout", "webhook").
    fn name(&self) -> &str;

    /// Delivers one message; `Ok` once the destination has accepted it.
    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError>;

    /// Makes everything delivered so far durable (flushes files and writers).
    fn flush(&mut self) -> Result<(), DeliveryError>;
}

impl<P: Plugin + ?Sized> Plugin for Box<P> {
    fn name(&self) -> &str {
        (**self).name()
    }

    fn deliver(&mut self, msg: &Outgoing) -> Result<Receipt, DeliveryError> {
        (**self).deliver(msg)
    }

    fn flush(&mut self) -> Result<(), DeliveryError> {
        (**self).flush()
    }
}

/// Proof that a destination accepted a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// How many tries it took (1 when the first one succeeded).
    pub attempts: u32,
    /// What the destination said, when that is worth recording (e.g. "HTTP 202").
    pub detail: Option<String>,
}

impl Receipt {
    /// A receipt for a message accepted on the first try, with nothing to add.
    pub fn first_try() -> Self {
        Receipt {
            attempts: 1,
            detail: None,
        }
    }
}

/// Why a message was not delivered (or a flush failed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryError {
    /// How many tries were made before giving up (0 if none could be made).
    pub attempts: u32,
    /// The last failure, readable by a person: a status, an I/O error, a timeout.
    pub reason: String,
    /// Whether sending the same message again later might succeed
    /// (true for outages and rate limits, false for rejected requests).
    pub retryable: bool,
    /// Whether the destination may have accepted the message after all: the
    /// last try timed out after the request went out. Never retryable, since
    /// a resend could deliver it twice where the provider does not deduplicate.
    pub unknown: bool,
}

impl DeliveryError {
    /// A failure that retrying will not fix.
    pub fn permanent(attempts: u32, reason: impl Into<String>) -> Self {
        DeliveryError {
            attempts,
            reason: reason.into(),
            retryable: false,
            unknown: false,
        }
    }

    /// A failure that may go away if the message is sent again later.
    pub fn transient(attempts: u32, reason: impl Into<String>) -> Self {
        DeliveryError {
            attempts,
            reason: reason.into(),
            retryable: true,
            unknown: false,
        }
    }

    /// A send whose fate cannot be known: the request may have been received.
    ///
    /// The reason starts with `outcome unknown: `, so whatever records only
    /// the reason (the send ledger, a trace) still tells it from a failure.
    pub fn unknown(attempts: u32, reason: impl Into<String>) -> Self {
        DeliveryError {
            attempts,
            reason: format!("outcome unknown: {}", reason.into()),
            retryable: false,
            unknown: true,
        }
    }
}

impl fmt::Display for DeliveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "{} (after {} attempt{plural}",
            self.reason, self.attempts
        )?;
        if self.retryable {
            write!(f, "; may succeed if retried later")?;
        }
        if self.unknown {
            write!(f, "; not retried, the destination may have it")?;
        }
        write!(f, ")")
    }
}

/// What became of one send, as far as its plugin can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// The destination accepted it.
    Delivered,
    /// The destination did not take it; the error says why.
    Failed,
    /// The request may or may not have been received (a timeout mid-request).
    Unknown,
}

impl Delivery {
    /// Classifies the result of [`Plugin::deliver`].
    pub fn of(result: &Result<Receipt, DeliveryError>) -> Self {
        match result {
            Ok(_) => Delivery::Delivered,
            Err(e) if e.unknown => Delivery::Unknown,
            Err(_) => Delivery::Failed,
        }
    }

    /// A lower-case word for traces and reports: `delivered`, `failed`, `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Failed => "failed",
            Delivery::Unknown => "unknown",
        }
    }
}

impl std::error::Error for DeliveryError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_told_apart() {
        let ok: Result<Receipt, DeliveryError> = Ok(Receipt::first_try());
        assert_eq!(Delivery::of(&ok), Delivery::Delivered);
        let failed = Err(DeliveryError::transient(3, "HTTP 503"));
        assert_eq!(Delivery::of(&failed), Delivery::Failed);
        let unknown = DeliveryError::unknown(1, "no answer within 10s");
        assert!(!unknown.retryable);
        assert_eq!(unknown.reason, "outcome unknown: no answer within 10s");
        assert_eq!(
            unknown.to_string(),
            "outcome unknown: no answer within 10s (after 1 attempt; not retried, the destination may have it)"
        );
        assert_eq!(Delivery::of(&Err(unknown)).as_str(), "unknown");
    }

    #[test]
    fn purpose_is_in_the_outbox_only_when_transactional() {
        let mut msg = Outgoing {
            at: "2024-05-01T10:00:00Z".into(),
            flow: "f".into(),
            flow_version: "v".into(),
            message: "m".into(),
            channel: "email".into(),
            customer: "c".into(),
            to: "c@example.com".into(),
            idempotency_key: "k".into(),
            content: serde_json::Map::new(),
            purpose: Purpose::Marketing,
        };
        let line = msg.to_json_line().unwrap();
        assert!(line.ends_with(r#""content":{}}"#), "{line}");
        let back: Outgoing = serde_json::from_str(&line).unwrap();
        assert_eq!(back.purpose, Purpose::Marketing);
        msg.purpose = Purpose::Transactional;
        let line = msg.to_json_line().unwrap();
        assert!(
            line.ends_with(r#""content":{},"purpose":"transactional"}"#),
            "{line}"
        );
        let back: Outgoing = serde_json::from_str(&line).unwrap();
        assert_eq!(back, msg);
        assert_eq!(Purpose::from_marketing(false), Purpose::Transactional);
    }
}
