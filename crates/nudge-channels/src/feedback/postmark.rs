//! Postmark's webhooks: one JSON record per request (bounce, spam complaint,
//! delivery, subscription change, click). Postmark does not sign them; the
//! webhook URL carries HTTP Basic credentials that only Postmark knows.

use base64::Engine as _;
use serde_json::Value;

use super::{Refusal, Report, Signal, Subject, same_secret};
use crate::ProviderConfigError;

/// The Basic-auth credentials set on the webhook URL in Postmark
/// (`https://USER:PASSWORD@host/webhooks/postmark`).
#[derive(Clone)]
pub struct PostmarkAuth {
    expected: Vec<u8>,
}

impl std::fmt::Debug for PostmarkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostmarkAuth(..)")
    }
}

impl PostmarkAuth {
    /// A user name and a password of at least 16 characters (the only
    /// thing that keeps forged bounces out).
    pub fn new(username: &str, password: &str) -> Result<Self, ProviderConfigError> {
        if username.is_empty() || username.contains(':') {
            return Err(ProviderConfigError::new(
                "postmark",
                "the webhook user name must be non-empty and without `:`",
            ));
        }
        if password.chars().count() < 16 {
            return Err(ProviderConfigError::new(
                "postmark",
                "the webhook password must be at least 16 characters",
            ));
        }
        Ok(PostmarkAuth {
            expected: format!("{username}:{password}").into_bytes(),
        })
    }

    /// Checks the request's `Authorization` header.
    pub fn check(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        let Some(encoded) = authorization.and_then(|v| v.strip_prefix("Basic ")) else {
            return Err(Refusal::Unauthenticated(
                "no credentials: put the webhook's user name and password in the URL set in Postmark".into(),
            ));
        };
        let given = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap_or_default();
        if same_secret(&given, &self.expected) {
            Ok(())
        } else {
            Err(Refusal::Forged("wrong webhook credentials".into()))
        }
    }
}

/// The report in one webhook body, if it is one Nudge acts on (opens,
/// auto-responders and the like are not).
pub fn parse(body: &[u8]) -> Result<Option<Report>, Refusal> {
    let record: Value = serde_json::from_slice(body)
        .map_err(|e| Refusal::Malformed(format!("expected a Postmark webhook record: {e}")))?;
    if !record.is_object() {
        return Err(Refusal::Malformed(
            "expected a Postmark webhook record: a JSON object".into(),
        ));
    }
    let text = |name: &str| record.get(name).and_then(Value::as_str);
    let record_type = text("RecordType").unwrap_or("Bounce");
    let reason = || {
        let parts: Vec<&str> = [text("Description"), text("Details")]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(": "))
    };
    let (signal, at) = match record_type {
        "Bounce" => {
            let signal = match text("Type").unwrap_or_default() {
                "HardBounce" | "BadEmailAddress" | "ManuallyDeactivated" => Signal::Bounced {
                    hard: true,
                    reason: reason(),
                },
                "SoftBounce" | "Transient" | "DnsError" | "Blocked" | "DMARCPolicy" => {
                    Signal::Bounced {
                        hard: false,
                        reason: reason(),
                    }
                }
                "SpamComplaint" | "SpamNotification" => Signal::Spam,
                "Unsubscribe" => Signal::Unsubscribed,
                _ => return Ok(None),
            };
            (signal, text("BouncedAt"))
        }
        "SpamComplaint" => (Signal::Spam, text("BouncedAt")),
        "Delivery" => (Signal::Delivered, text("DeliveredAt")),
        "Click" => (
            Signal::Clicked {
                url: text("OriginalLink").map(str::to_string),
            },
            text("ReceivedAt"),
        ),
        // Postmark suppresses an address after a hard bounce or a complaint
        // (reported on their own) or when the recipient unsubscribes.
        "SubscriptionChange" => match (
            record.get("SuppressSending").and_then(Value::as_bool),
            text("SuppressionReason"),
        ) {
            (Some(true), Some("ManualSuppression")) => (Signal::Unsubscribed, text("ChangedAt")),
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    let key = record
        .get("Metadata")
        .and_then(|m| m.get("nudge_key"))
        .and_then(Value::as_str);
    let address = text("Email").or(text("Recipient"));
    let subject = match (key, address) {
        (Some(k), _) => Subject::Send(k.to_string()),
        (None, Some(a)) => Subject::Address {
            channel: "email",
            address: a.to_string(),
        },
        (None, None) => {
            return Err(Refusal::Malformed(
                "the record names neither a send (`Metadata.nudge_key`) nor an address".into(),
            ));
        }
    };
    let id = match record.get("ID") {
        Some(id) if !id.is_null() => format!("postmark:{record_type}:{id}"),
        _ => format!(
            "postmark:{record_type}:{}:{}",
            text("MessageID").unwrap_or_default(),
            at.unwrap_or_default()
        ),
    };
    Ok(Some(Report {
        provider: "postmark",
        id,
        subject,
        signal,
        at_millis: at
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The bounce webhook example of Postmark's documentation, with the
    // metadata the plugin adds.
    const BOUNCE: &str = r#"{
      "RecordType": "Bounce",
      "MessageStream": "outbound",
      "ID": 4323372036854775807,
      "Type": "HardBounce",
      "TypeCode": 1,
      "Name": "Hard bounce",
      "Tag": "Test",
      "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
      "Metadata": {"nudge_key": "cart_recovery:cus_1:step-2", "nudge_flow": "cart_recovery"},
      "ServerID": 23,
      "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
      "Details": "Test bounce details",
      "Email": "john@example.com",
      "From": "sender@example.com",
      "BouncedAt": "2019-11-05T16:33:54.9070259Z",
      "DumpAvailable": true,
      "Inactive": true,
      "CanActivate": true,
      "Subject": "Test subject",
      "Content": "Test content"
    }"#;

    // The spam complaint webhook example (no metadata: matched by address).
    const SPAM: &str = r#"{
      "RecordType": "SpamComplaint",
      "MessageStream": "outbound",
      "ID": 42,
      "Type": "SpamComplaint",
      "TypeCode": 512,
      "Name": "Spam complaint",
      "Tag": "Test",
      "MessageID": "00000000-0000-0000-0000-000000000000",
      "Metadata": {"a_key": "a_value", "b_key": "b_value"},
      "ServerID": 1234,
      "Description": "",
      "Details": "Test spam complaint details",
      "Email": "john@example.com",
      "From": "sender@example.com",
      "BouncedAt": "2019-11-05T16:33:54.9070259Z",
      "DumpAvailable": true,
      "Inactive": true,
      "CanActivate": false,
      "Subject": "Test subject",
      "Content": "<Abuse report dump>"
    }"#;

    // The delivery webhook example.
    const DELIVERY: &str = r#"{
      "RecordType": "Delivery",
      "ServerID": 23,
      "MessageStream": "outbound",
      "MessageID": "00000000-0000-0000-0000-000000000000",
      "Recipient": "john@example.com",
      "Tag": "welcome-email",
      "DeliveredAt": "2019-11-05T16:33:54.9070259Z",
      "Details": "Test delivery webhook details",
      "Metadata": {"nudge_key": "welcome:cus_2:step-1"}
    }"#;

    // The subscription change webhook example, as an unsubscribe.
    const SUBSCRIPTION: &str = r#"{
      "RecordType": "SubscriptionChange",
      "MessageID": "00000000-0000-0000-0000-000000000000",
      "ServerID": 23,
      "MessageStream": "broadcast",
      "ChangedAt": "2020-02-01T10:53:34.416071Z",
      "Recipient": "bounced-address@wildbit.com",
      "Origin": "Recipient",
      "SuppressSending": true,
      "SuppressionReason": "ManualSuppression",
      "Tag": "my-tag",
      "Metadata": {"example": "value"}
    }"#;

    #[test]
    fn the_documented_records_become_reports() {
        let bounce = parse(BOUNCE.as_bytes()).unwrap().unwrap();
        assert_eq!(
            bounce,
            Report {
                provider: "postmark",
                id: "postmark:Bounce:4323372036854775807".into(),
                subject: Subject::Send("cart_recovery:cus_1:step-2".into()),
                signal: Signal::Bounced {
                    hard: true,
                    reason: Some("The server was unable to deliver your message (ex: unknown user, mailbox not found).: Test bounce details".into()),
                },
                at_millis: Some(1_572_971_634_907),
            }
        );
        let spam = parse(SPAM.as_bytes()).unwrap().unwrap();
        assert_eq!(spam.signal, Signal::Spam);
        assert_eq!(
            spam.subject,
            Subject::Address {
                channel: "email",
                address: "john@example.com".into()
            }
        );
        let delivery = parse(DELIVERY.as_bytes()).unwrap().unwrap();
        assert_eq!(delivery.signal, Signal::Delivered);
        assert_eq!(
            delivery.subject,
            Subject::Send("welcome:cus_2:step-1".into())
        );
        let unsubscribe = parse(SUBSCRIPTION.as_bytes()).unwrap().unwrap();
        assert_eq!(unsubscribe.signal, Signal::Unsubscribed);
        assert_eq!(unsubscribe.at_millis, Some(1_580_554_414_416));
    }

    #[test]
    fn soft_bounces_and_records_nudge_ignores() {
        let soft = BOUNCE.replace("\"HardBounce\"", "\"SoftBounce\"");
        let report = parse(soft.as_bytes()).unwrap().unwrap();
        assert!(matches!(report.signal, Signal::Bounced { hard: false, .. }));
        let auto = BOUNCE.replace("\"HardBounce\"", "\"AutoResponder\"");
        assert_eq!(parse(auto.as_bytes()).unwrap(), None);
        assert_eq!(
            parse(br#"{"RecordType":"Open","Recipient":"a@b.c"}"#).unwrap(),
            None
        );
        assert!(matches!(parse(b"[1]"), Err(Refusal::Malformed(_))));
        assert!(matches!(
            parse(br#"{"RecordType":"Bounce","Type":"HardBounce"}"#),
            Err(Refusal::Malformed(m)) if m.contains("neither")
        ));
    }

    #[test]
    fn credentials_must_match_whole() {
        let auth = PostmarkAuth::new("postmark", "a-long-webhook-password").unwrap();
        let basic = |user_pass: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(user_pass)
            )
        };
        assert_eq!(
            auth.check(Some(&basic("postmark:a-long-webhook-password"))),
            Ok(())
        );
        assert!(matches!(
            auth.check(Some(&basic("postmark:a-long-webhook-passwor"))),
            Err(Refusal::Forged(_))
        ));
        assert!(matches!(
            auth.check(Some("Basic !!")),
            Err(Refusal::Forged(_))
        ));
        assert!(matches!(auth.check(None), Err(Refusal::Unauthenticated(_))));
        assert!(PostmarkAuth::new("postmark", "short").is_err());
        assert!(PostmarkAuth::new("a:b", "a-long-webhook-password").is_err());
    }
}
