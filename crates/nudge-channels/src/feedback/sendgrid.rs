//! SendGrid's Event Webhook: a JSON array of events, signed with ECDSA
//! (P-256, SHA-256) over the timestamp header followed by the raw body.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde_json::Value;

use super::{Refusal, Report, Signal, Subject};
use crate::ProviderConfigError;

/// The header with the base64 DER signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// The header with the Unix time the signature covers.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// Checks the signatures of SendGrid's Signed Event Webhook.
#[derive(Clone, Debug)]
pub struct SendGridVerifier {
    key: VerifyingKey,
}

impl SendGridVerifier {
    /// The verification key as SendGrid's settings page shows it: base64 of
    /// the DER public key (a PEM block is accepted too).
    pub fn new(public_key: &str) -> Result<Self, ProviderConfigError> {
        let bad = |why: String| {
            ProviderConfigError::new(
                "sendgrid",
                format!("the event webhook verification key {why}"),
            )
        };
        let text: String = public_key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let der = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| bad(format!("is not base64: {e}")))?;
        let key = VerifyingKey::from_public_key_der(&der)
            .map_err(|e| bad(format!("is not a P-256 public key: {e}")))?;
        Ok(SendGridVerifier { key })
    }

    /// Whether `signature` (base64 DER) signs `timestamp` followed by `body`.
    pub fn verify(
        &self,
        signature: Option<&str>,
        timestamp: Option<&str>,
        body: &[u8],
    ) -> Result<(), Refusal> {
        let (Some(signature), Some(timestamp)) = (signature, timestamp) else {
            return Err(Refusal::Unauthenticated(format!(
                "unsigned: SendGrid signs with `{SIGNATURE_HEADER}` and `{TIMESTAMP_HEADER}`; turn on the Signed Event Webhook"
            )));
        };
        let forged = || Refusal::Forged("the event webhook signature does not match".into());
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| forged())?;
        let signature = Signature::from_der(&der).map_err(|_| forged())?;
        let mut signed = Vec::with_capacity(timestamp.len() + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.extend_from_slice(body);
        self.key.verify(&signed, &signature).map_err(|_| forged())
    }
}

/// The reports in an Event Webhook body. Events that say nothing about a
/// send's fate or the customer's wishes (processed, deferred, open) are
/// left out.
pub fn parse(body: &[u8]) -> Result<Vec<Report>, Refusal> {
    let events: Vec<Value> = serde_json::from_slice(body).map_err(|e| {
        Refusal::Malformed(format!(
            "expected the Event Webhook's JSON array of events: {e}"
        ))
    })?;
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let text = |name: &str| event.get(name).and_then(Value::as_str);
        let Some(kind) = text("event") else {
            return Err(Refusal::Malformed(format!(
                "event {i} has no `event` field"
            )));
        };
        let reason = text("reason").or(text("response")).map(str::to_string);
        let signal = match kind {
            "delivered" => Signal::Delivered,
            // `blocked` is a refusal for now (a reputation or content
            // problem), not an unusable address.
            "bounce" => Signal::Bounced {
                hard: text("type") != Some("blocked")
                    && !text("status").is_some_and(|s| s.starts_with('4')),
                reason,
            },
            // SendGrid drops sends to addresses on its own suppression
            // lists; the reason says which list.
            "dropped" => match text("reason") {
                Some("Bounced Address" | "Invalid") => Signal::Bounced { hard: true, reason },
                Some("Spam Reporting Address") => Signal::Spam,
                Some("Unsubscribed Address") => Signal::Unsubscribed,
                _ => continue,
            },
            "spamreport" => Signal::Spam,
            "unsubscribe" | "group_unsubscribe" => Signal::Unsubscribed,
            "click" => Signal::Clicked {
                url: text("url").map(str::to_string),
            },
            _ => continue,
        };
        let subject = match (text("nudge_key"), text("email")) {
            (Some(key), _) => Subject::Send(key.to_string()),
            (None, Some(email)) => Subject::Address {
                channel: "email",
                address: email.to_string(),
            },
            (None, None) => {
                return Err(Refusal::Malformed(format!(
                    "event {i} names neither a send (`nudge_key`) nor an `email`"
                )));
            }
        };
        let id = match text("sg_event_id") {
            Some(id) => format!("sendgrid:{id}:{kind}"),
            None => format!(
                "sendgrid:{}:{kind}:{}",
                text("sg_message_id").unwrap_or_default(),
                event.get("timestamp").unwrap_or(&Value::Null)
            ),
        };
        out.push(Report {
            provider: "sendgrid",
            id,
            subject,
            signal,
            at_millis: event
                .get("timestamp")
                .and_then(Value::as_i64)
                .map(|s| s.saturating_mul(1000)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The published test vector of SendGrid's own Node.js library
    // (packages/eventwebhook/src/eventwebhook.spec.js).
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    const SIGNATURE: &str = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH2j/0=";
    const TIMESTAMP: &str = "1588788367";
    const PAYLOAD: &str =
        r#"{"category":"example_payload","event":"test_event","message_id":"message_id"}"#;

    #[test]
    fn the_published_vector_verifies_and_any_change_is_refused() {
        let v = SendGridVerifier::new(PUBLIC_KEY).unwrap();
        assert_eq!(
            v.verify(Some(SIGNATURE), Some(TIMESTAMP), PAYLOAD.as_bytes()),
            Ok(())
        );
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{PUBLIC_KEY}\n-----END PUBLIC KEY-----\n");
        let from_pem = SendGridVerifier::new(&pem).unwrap();
        assert_eq!(
            from_pem.verify(Some(SIGNATURE), Some(TIMESTAMP), PAYLOAD.as_bytes()),
            Ok(())
        );
        let other_key = SendGridVerifier::new("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==").unwrap();
        assert!(matches!(
            other_key.verify(Some(SIGNATURE), Some(TIMESTAMP), PAYLOAD.as_bytes()),
            Err(Refusal::Forged(_))
        ));
        assert!(matches!(
            v.verify(Some(SIGNATURE), Some(TIMESTAMP), b"payload"),
            Err(Refusal::Forged(_))
        ));
        let flipped = "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=";
        assert!(matches!(
            v.verify(Some(flipped), Some(TIMESTAMP), PAYLOAD.as_bytes()),
            Err(Refusal::Forged(_))
        ));
        assert!(matches!(
            v.verify(Some(SIGNATURE), Some("timestamp"), PAYLOAD.as_bytes()),
            Err(Refusal::Forged(_))
        ));
        assert!(matches!(
            v.verify(Some("not base64!"), Some(TIMESTAMP), PAYLOAD.as_bytes()),
            Err(Refusal::Forged(_))
        ));
        assert!(matches!(
            v.verify(None, Some(TIMESTAMP), PAYLOAD.as_bytes()),
            Err(Refusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn unusable_keys_are_refused_with_the_reason() {
        let e = SendGridVerifier::new("not base64!").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("sendgrid: the event webhook verification key is not base64"),
            "{e}"
        );
        let e = SendGridVerifier::new("aGVsbG8=").unwrap_err();
        assert!(e.to_string().contains("is not a P-256 public key"), "{e}");
    }

    // The delivery events of the example in SendGrid's Event Webhook
    // reference, with the custom argument the plugin adds on one of them.
    const DOCUMENTED: &str = r#"[
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"processed","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"deferred","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id","response":"400 try again later","attempt":"5"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"delivered","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id","response":"250 OK"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"open","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id","useragent":"Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)","ip":"255.255.255.255"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"click","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id","useragent":"Mozilla/4.0 (compatible; MSIE 6.1; Windows XP; .NET CLR 1.1.4322; .NET CLR 2.0.50727)","ip":"255.255.255.255","url":"http://www.sendgrid.com/"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"bounce","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id","reason":"500 unknown recipient","status":"5.0.0","type":"bounce","nudge_key":"cart_recovery:cus_1:step-2"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"bounce","category":"cat facts","sg_event_id":"sg_event_id_2","sg_message_id":"sg_message_id","reason":"450 mailbox full","status":"4.0.0","type":"blocked"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"dropped","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id","reason":"Bounced Address","status":"5.0.0"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"spamreport","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"unsubscribe","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id"},
      {"email":"example@test.com","timestamp":1513299569,"smtp-id":"<14c5d75ce93.dfd.64b469@ismtpd-555>","event":"group_unsubscribe","category":"cat facts","sg_event_id":"sg_event_id","sg_message_id":"sg_message_id","useragent":"Mozilla/4.0","ip":"255.255.255.255","url":"http://www.sendgrid.com/","asm_group_id":10}
    ]"#;

    #[test]
    fn the_documented_events_become_reports() {
        let reports = parse(DOCUMENTED.as_bytes()).unwrap();
        let signals: Vec<&str> = reports.iter().map(|r| r.signal.as_str()).collect();
        assert_eq!(
            signals,
            [
                "delivered",
                "clicked",
                "bounced",
                "bounced",
                "bounced",
                "spam",
                "unsubscribed",
                "unsubscribed"
            ]
        );
        let by_address = Subject::Address {
            channel: "email",
            address: "example@test.com".into(),
        };
        assert_eq!(reports[0].subject, by_address);
        assert_eq!(reports[0].at_millis, Some(1_513_299_569_000));
        assert_eq!(reports[0].id, "sendgrid:sg_event_id:delivered");
        assert_eq!(
            reports[2],
            Report {
                provider: "sendgrid",
                id: "sendgrid:sg_event_id:bounce".into(),
                subject: Subject::Send("cart_recovery:cus_1:step-2".into()),
                signal: Signal::Bounced {
                    hard: true,
                    reason: Some("500 unknown recipient".into())
                },
                at_millis: Some(1_513_299_569_000),
            }
        );
        assert_eq!(
            reports[3].signal,
            Signal::Bounced {
                hard: false,
                reason: Some("450 mailbox full".into())
            }
        );
        assert!(matches!(
            reports[4].signal,
            Signal::Bounced { hard: true, .. }
        ));
        assert_eq!(
            reports[1].signal,
            Signal::Clicked {
                url: Some("http://www.sendgrid.com/".into())
            }
        );
    }

    #[test]
    fn bodies_that_are_not_events_are_refused() {
        for (body, says) in [
            ("{}", "expected the Event Webhook's JSON array"),
            ("[{\"email\":\"a@b.c\"}]", "event 0 has no `event` field"),
            ("[{\"event\":\"bounce\"}]", "event 0 names neither"),
        ] {
            let e = parse(body.as_bytes()).unwrap_err();
            assert!(
                matches!(&e, Refusal::Malformed(m) if m.contains(says)),
                "{e:?}"
            );
        }
        assert_eq!(parse(b"[]").unwrap(), vec![]);
    }
}
