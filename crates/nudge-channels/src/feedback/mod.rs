//! What the providers report back: bounces, spam complaints, unsubscribes,
//! deliveries and inbound SMS, read from their webhooks.
//!
//! Each provider's module checks that a request really comes from the
//! provider (a signature where the provider signs, else a shared secret the
//! server checks) and turns its body into [`Report`]s. A report names the
//! send it is about by the idempotency key the plugin gave the provider, or,
//! when the provider returns none, by the address it went to; whoever holds
//! the send ledger looks the send up and turns the report into the standard
//! event ([`Report::event`]) for the customer it was sent to.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::Outgoing;

pub mod postmark;
pub mod sendgrid;
pub mod ses;
pub mod twilio;

/// What a provider said happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// The recipient's server (or handset) accepted the message.
    Delivered,
    /// The message could not be delivered; `hard` when the address is
    /// permanently unusable (no such mailbox, not a mobile number).
    Bounced {
        /// Permanent (`hard`) or temporary (`soft`).
        hard: bool,
        /// The provider's explanation.
        reason: Option<String>,
    },
    /// The recipient reported the message as spam.
    Spam,
    /// The recipient unsubscribed through the provider (its link or list).
    Unsubscribed,
    /// The recipient clicked a link.
    Clicked {
        /// The link.
        url: Option<String>,
    },
    /// The customer texted the store's number.
    SmsReceived {
        /// What they wrote.
        text: String,
        /// Their number.
        from: String,
        /// The store's number.
        to: Option<String>,
    },
}

impl Signal {
    /// A lower-case word for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Signal::Delivered => "delivered",
            Signal::Bounced { .. } => "bounced",
            Signal::Spam => "spam",
            Signal::Unsubscribed => "unsubscribed",
            Signal::Clicked { .. } => "clicked",
            Signal::SmsReceived { .. } => "sms_received",
        }
    }
}

/// How a report names what it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// One send, by its idempotency key.
    Send(String),
    /// The last send on this channel to this address (the provider returned
    /// no key: a message sent by other means, or an inbound SMS).
    Address {
        /// `email` or `sms`.
        channel: &'static str,
        /// An email address or an E.164 number.
        address: String,
    },
}

/// One thing a provider reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// `sendgrid`, `postmark`, `ses`, `twilio`.
    pub provider: &'static str,
    /// The provider's id of this report, so a webhook the provider retries
    /// is applied once (it becomes the call's `messageId`).
    pub id: String,
    /// The send or address it is about.
    pub subject: Subject,
    /// What happened.
    pub signal: Signal,
    /// When it happened, by the provider's clock, in milliseconds since the
    /// epoch (UTC), when the provider says.
    pub at_millis: Option<i64>,
}

impl Report {
    /// The standard event this report becomes for the customer `send` went
    /// to: its name and properties. `None` for signals no event carries
    /// (a delivery, which is an outcome of the send rather than an event).
    pub fn event(&self, send: &Outgoing) -> Option<(&'static str, Map<String, Value>)> {
        let mut props = Map::new();
        let about_send = |props: &mut Map<String, Value>| {
            props.insert("channel".into(), json!(send.channel));
            props.insert("message".into(), json!(send.message));
            props.insert("flow".into(), json!(send.flow));
        };
        let name = match &self.signal {
            Signal::Delivered => return None,
            Signal::Bounced { hard, reason } => {
                about_send(&mut props);
                props.insert("kind".into(), json!(if *hard { "hard" } else { "soft" }));
                if let Some(r) = reason {
                    props.insert("reason".into(), json!(r));
                }
                "Message Bounced"
            }
            Signal::Spam => {
                about_send(&mut props);
                "Marked As Spam"
            }
            Signal::Unsubscribed => {
                props.insert("channel".into(), json!(send.channel));
                "Unsubscribed"
            }
            Signal::Clicked { url } => {
                about_send(&mut props);
                if let Some(u) = url {
                    props.insert("url".into(), json!(u));
                }
                "Message Clicked"
            }
            Signal::SmsReceived { text, from, to } => {
                props.insert("text".into(), json!(text));
                props.insert("from".into(), json!(from));
                if let Some(t) = to {
                    props.insert("to".into(), json!(t));
                }
                "SMS Received"
            }
        };
        Some((name, props))
    }
}

/// Why a webhook request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials or signature at all (HTTP 401).
    Unauthenticated(String),
    /// A signature or secret that does not match (HTTP 403).
    Forged(String),
    /// Authentic, but not a body this provider sends (HTTP 400).
    Malformed(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unauthenticated(r) | Refusal::Forged(r) | Refusal::Malformed(r) => {
                f.write_str(r)
            }
        }
    }
}

/// The idempotency key a Message-ID made by [`crate::message_id`] carries,
/// so that a bounce quoting the Message-ID leads back to the send.
///
/// `None` when it cannot be one Nudge made; a provider's own Message-ID may
/// still decode to a key the ledger does not hold.
pub fn key_of_message_id(message_id: &str) -> Option<String> {
    let inner = message_id.trim().strip_prefix('<')?.strip_suffix('>')?;
    let (local, _domain) = inner.rsplit_once('@')?;
    let bytes = local.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|k| !k.is_empty())
}

/// The pairs of an `application/x-www-form-urlencoded` body or query, in
/// order, decoded (`+` is a space).
pub fn parse_form(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Whether two secrets are equal, in time that depends on their lengths only.
pub(crate) fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Purpose, message_id};

    fn sent() -> Outgoing {
        Outgoing {
            at: "2024-05-01T10:00:00Z".into(),
            flow: "cart_recovery".into(),
            flow_version: "v".into(),
            message: "cart_reminder".into(),
            channel: "email".into(),
            customer: "cus_1".into(),
            to: "ann@example.com".into(),
            idempotency_key: "cart_recovery:cus_1:step-2".into(),
            content: Map::new(),
            purpose: Purpose::Marketing,
        }
    }

    #[test]
    fn message_ids_lead_back_to_their_keys() {
        for key in ["cart:cus_1:step-2", "a=b c", "flow:ünï:1", "x"] {
            let id = message_id(key, "shop.example");
            assert_eq!(key_of_message_id(&id).as_deref(), Some(key), "{id}");
        }
        assert_eq!(
            key_of_message_id("<14c5d75ce93.dfd.64b469@ismtpd-555>").as_deref(),
            Some("14c5d75ce93.dfd.64b469")
        );
        assert_eq!(key_of_message_id("no brackets@x"), None);
        assert_eq!(key_of_message_id("<bad=Z1@x>"), None);
        assert_eq!(key_of_message_id("<@x>"), None);
    }

    #[test]
    fn forms_decode_plus_and_percent() {
        assert_eq!(
            parse_form("Body=Stop+it%21&From=%2B15551234567&empty=&flag"),
            vec![
                ("Body".into(), "Stop it!".into()),
                ("From".into(), "+15551234567".into()),
                ("empty".into(), String::new()),
                ("flag".into(), String::new()),
            ]
        );
    }

    #[test]
    fn reports_become_the_standard_events() {
        let report = |signal| Report {
            provider: "test",
            id: "1".into(),
            subject: Subject::Send("k".into()),
            signal,
            at_millis: None,
        };
        let (name, props) = report(Signal::Bounced {
            hard: true,
            reason: Some("550 no such user".into()),
        })
        .event(&sent())
        .unwrap();
        assert_eq!(name, "Message Bounced");
        assert_eq!(
            Value::Object(props),
            json!({"channel": "email", "message": "cart_reminder", "flow": "cart_recovery", "kind": "hard", "reason": "550 no such user"})
        );
        let (name, props) = report(Signal::Unsubscribed).event(&sent()).unwrap();
        assert_eq!(
            (name, Value::Object(props)),
            ("Unsubscribed", json!({"channel": "email"}))
        );
        assert_eq!(
            report(Signal::Spam).event(&sent()).unwrap().0,
            "Marked As Spam"
        );
        assert!(report(Signal::Delivered).event(&sent()).is_none());
        let (name, props) = report(Signal::SmsReceived {
            text: "STOP".into(),
            from: "+15551234567".into(),
            to: None,
        })
        .event(&sent())
        .unwrap();
        assert_eq!(
            (name, Value::Object(props)),
            (
                "SMS Received",
                json!({"text": "STOP", "from": "+15551234567"})
            )
        );
    }
}
