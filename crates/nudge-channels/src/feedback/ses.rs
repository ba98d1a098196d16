//! Amazon SES notifications, delivered by Amazon SNS: an HTTPS
//! subscription posts one JSON envelope per message, signed with the
//! topic's certificate (RSA with SHA-1 for `SignatureVersion` 1, SHA-256
//! for 2). The envelope is a subscription confirmation, or a notification
//! whose `Message` is SES's JSON: a bounce, a complaint or a delivery.

use base64::Engine as _;
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey,
};
use serde::Deserialize;
use serde_json::Value;

use super::{Refusal, Report, Signal, Subject};
use crate::ProviderConfigError;

/// The header SNS names the envelope's type in.
pub const TYPE_HEADER: &str = "x-amz-sns-message-type";

/// One SNS envelope, as posted to an HTTP(S) subscription.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Envelope {
    /// `SubscriptionConfirmation`, `Notification` or `UnsubscribeConfirmation`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// SNS's id of this message; a retried delivery keeps it.
    pub message_id: String,
    /// The topic it came from.
    pub topic_arn: String,
    /// A notification's subject, when it has one.
    pub subject: Option<String>,
    /// The payload: SES's notification JSON, or a confirmation's text.
    pub message: String,
    /// When SNS published it (ISO 8601, UTC).
    pub timestamp: String,
    /// `1` (SHA1withRSA) or `2` (SHA256withRSA).
    pub signature_version: String,
    /// The base64 signature.
    pub signature: String,
    /// Where SNS publishes its certificate.
    #[serde(rename = "SigningCertURL")]
    pub signing_cert_url: Option<String>,
    /// A confirmation's link, which confirms the subscription when visited.
    #[serde(rename = "SubscribeURL")]
    pub subscribe_url: Option<String>,
    /// A confirmation's token.
    pub token: Option<String>,
}

impl Envelope {
    /// Reads an envelope from a request body.
    pub fn parse(body: &[u8]) -> Result<Envelope, Refusal> {
        serde_json::from_slice(body)
            .map_err(|e| Refusal::Malformed(format!("not an SNS message: {e}")))
    }

    /// The text SNS signs: chosen fields as `name\nvalue\n`, by name.
    pub fn string_to_sign(&self) -> Result<String, Refusal> {
        let mut fields: Vec<(&str, Option<&str>)> = vec![("Message", Some(&self.message))];
        fields.push(("MessageId", Some(&self.message_id)));
        match self.kind.as_str() {
            "Notification" => {
                fields.push(("Subject", self.subject.as_deref()));
                fields.push(("Timestamp", Some(&self.timestamp)));
            }
            "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
                let need = |v: &Option<String>, name: &str| {
                    v.clone().ok_or_else(|| {
                        Refusal::Malformed(format!("a {} without `{name}`", self.kind))
                    })
                };
                need(&self.subscribe_url, "SubscribeURL")?;
                need(&self.token, "Token")?;
                fields.push(("SubscribeURL", self.subscribe_url.as_deref()));
                fields.push(("Timestamp", Some(&self.timestamp)));
                fields.push(("Token", self.token.as_deref()));
            }
            other => {
                return Err(Refusal::Malformed(format!(
                    "unknown SNS message type {other:?}"
                )));
            }
        }
        fields.push(("TopicArn", Some(&self.topic_arn)));
        fields.push(("Type", Some(&self.kind)));
        Ok(fields
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| format!("{name}\n{v}\n")))
            .collect())
    }
}

/// Checks that SNS envelopes come from the one topic, signed with its
/// certificate.
#[derive(Clone)]
pub struct SnsVerifier {
    topic_arn: String,
    /// The certificate's RSA public key (PKCS #1 DER).
    key: Vec<u8>,
}

impl std::fmt::Debug for SnsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnsVerifier")
            .field("topic_arn", &self.topic_arn)
            .finish_non_exhaustive()
    }
}

impl SnsVerifier {
    /// A verifier for `topic_arn` with SNS's signing certificate (PEM).
    pub fn new(topic_arn: &str, certificate_pem: &str) -> Result<Self, ProviderConfigError> {
        let err = |reason: &str| ProviderConfigError::new("ses", reason.to_string());
        if !topic_arn.starts_with("arn:") {
            return Err(err("`ses_topic_arn` must be a topic ARN (arn:aws:sns:...)"));
        }
        let der = crate::fcm::pem_body(certificate_pem, "CERTIFICATE")
            .ok_or_else(|| err("`ses_signing_certificate` is not a PEM certificate"))?;
        let key = rsa_key_of_certificate(&der).ok_or_else(|| {
            err("`ses_signing_certificate` is not an X.509 certificate with an RSA key")
        })?;
        Ok(SnsVerifier {
            topic_arn: topic_arn.to_string(),
            key,
        })
    }

    /// Checks the envelope's topic and signature.
    pub fn verify(&self, envelope: &Envelope) -> Result<(), Refusal> {
        if envelope.signature.trim().is_empty() {
            return Err(Refusal::Unauthenticated(
                "the SNS message is not signed".into(),
            ));
        }
        if envelope.topic_arn != self.topic_arn {
            return Err(Refusal::Forged(format!(
                "the SNS message is from topic {}, not {}",
                envelope.topic_arn, self.topic_arn
            )));
        }
        let algorithm = match envelope.signature_version.as_str() {
            "1" => &RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            "2" => &RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(Refusal::Forged(format!(
                    "unknown SNS SignatureVersion {other:?}"
                )));
            }
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(envelope.signature.trim())
            .map_err(|_| Refusal::Forged("the SNS signature is not base64".into()))?;
        let signed = envelope.string_to_sign()?;
        UnparsedPublicKey::new(algorithm, &self.key)
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| Refusal::Forged("the SNS signature does not match".into()))
    }
}

/// One DER element: its tag, its content and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The RSA public key (PKCS #1 `RSAPublicKey`) of a DER X.509 certificate.
fn rsa_key_of_certificate(cert: &[u8]) -> Option<Vec<u8>> {
    const SEQUENCE: u8 = 0x30;
    // 1.2.840.113549.1.1.1, rsaEncryption.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (SEQUENCE, certificate, _) = der(cert)? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = der(certificate)? else {
        return None;
    };
    // The version is explicit ([0]) in every v3 certificate.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        tbs = der(tbs)?.2;
    }
    let (SEQUENCE, spki, _) = der(tbs)? else {
        return None;
    };
    let (SEQUENCE, algorithm, rest) = der(spki)? else {
        return None;
    };
    let (0x06, oid, _) = der(algorithm)? else {
        return None;
    };
    if oid != RSA {
        return None;
    }
    let (0x03, bits, _) = der(rest)? else {
        return None;
    };
    let (&0, key) = bits.split_first()? else {
        return None;
    };
    Some(key.to_vec())
}

/// The reports in an SES notification (the `Message` of an SNS
/// notification): one per bounced or complaining recipient, or one
/// delivery. SES's event publishing (`eventType`) reads the same.
pub fn reports(message: &str) -> Result<Vec<Report>, Refusal> {
    let note: Value = serde_json::from_str(message)
        .map_err(|e| Refusal::Malformed(format!("the SES notification is not JSON: {e}")))?;
    let kind = note
        .get("notificationType")
        .or_else(|| note.get("eventType"))
        .and_then(Value::as_str)
        .ok_or_else(|| Refusal::Malformed("an SES notification without a type".into()))?;
    let mail = note.get("mail").unwrap_or(&Value::Null);
    let key = mail
        .get("tags")
        .and_then(|t| t.get(crate::SES_KEY_TAG))
        .and_then(Value::as_array)
        .and_then(|v| v.first())
        .and_then(Value::as_str)
        .and_then(crate::ses_key_of_tag);
    let subject = |address: &str| match &key {
        Some(k) => Subject::Send(k.clone()),
        None => Subject::Address {
            channel: "email",
            address: address.trim().to_lowercase(),
        },
    };
    let text = |v: &Value, name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
    let millis = |v: &Value| {
        v.get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
    };
    let mut out = Vec::new();
    match kind {
        "Bounce" => {
            let bounce = note.get("bounce").unwrap_or(&Value::Null);
            let hard = bounce.get("bounceType").and_then(Value::as_str) == Some("Permanent");
            let feedback = text(bounce, "feedbackId").unwrap_or_default();
            let recipients = bounce.get("bouncedRecipients").and_then(Value::as_array);
            for (i, r) in recipients.into_iter().flatten().enumerate() {
                let Some(address) = r.get("emailAddress").and_then(Value::as_str) else {
                    continue;
                };
                let reason = text(r, "diagnosticCode").or_else(|| {
                    let sub = text(bounce, "bounceSubType")?;
                    Some(format!("{} ({sub})", text(bounce, "bounceType")?))
                });
                out.push(Report {
                    provider: "ses",
                    id: format!("ses:{feedback}:{i}"),
                    subject: subject(address),
                    signal: Signal::Bounced { hard, reason },
                    at_millis: millis(bounce),
                });
            }
        }
        "Complaint" => {
            let complaint = note.get("complaint").unwrap_or(&Value::Null);
            let feedback = text(complaint, "feedbackId").unwrap_or_default();
            let recipients = complaint
                .get("complainedRecipients")
                .and_then(Value::as_array);
            for (i, r) in recipients.into_iter().flatten().enumerate() {
                let Some(address) = r.get("emailAddress").and_then(Value::as_str) else {
                    continue;
                };
                // A "not-spam" report takes a complaint back; it is no complaint.
                if complaint
                    .get("complaintFeedbackType")
                    .and_then(Value::as_str)
                    == Some("not-spam")
                {
                    continue;
                }
                out.push(Report {
                    provider: "ses",
                    id: format!("ses:{feedback}:{i}"),
                    subject: subject(address),
                    signal: Signal::Spam,
                    at_millis: millis(complaint),
                });
            }
        }
        "Delivery" => {
            let delivery = note.get("delivery").unwrap_or(&Value::Null);
            let id = text(mail, "messageId").unwrap_or_default();
            let recipients = delivery.get("recipients").and_then(Value::as_array);
            for (i, r) in recipients.into_iter().flatten().enumerate() {
                let Some(address) = r.as_str() else { continue };
                out.push(Report {
                    provider: "ses",
                    id: format!("ses:{id}:delivery:{i}"),
                    subject: subject(address),
                    signal: Signal::Delivered,
                    at_millis: millis(delivery),
                });
            }
        }
        // Sends, opens, rejects and the rest are not reports Nudge acts on.
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = include_str!("../../tests/fixtures/sns-test-cert.pem");

    #[test]
    fn the_certificate_key_is_found() {
        let der = crate::fcm::pem_body(CERT, "CERTIFICATE").unwrap();
        let key = rsa_key_of_certificate(&der).unwrap();
        // An RSAPublicKey is a SEQUENCE of the modulus and the exponent.
        assert_eq!(key[0], 0x30);
        assert!(key.len() > 256, "{}", key.len());
        assert!(rsa_key_of_certificate(&der[..100]).is_none());
        assert!(rsa_key_of_certificate(b"").is_none());
        let err = SnsVerifier::new("arn:aws:sns:us-east-1:123456789012:ses", "no").unwrap_err();
        assert!(err.reason.contains("not a PEM certificate"), "{err}");
        let err = SnsVerifier::new("ses-topic", CERT).unwrap_err();
        assert!(err.reason.contains("topic ARN"), "{err}");
    }

    const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-feedback";

    /// Signs `envelope` as SNS does with SignatureVersion 2, with the test key.
    pub(crate) fn sign_v2(envelope: &mut Envelope) {
        let pem = include_str!("../../tests/fixtures/sns-test-key.pem");
        let der = crate::fcm::pem_body(pem, "PRIVATE KEY").unwrap();
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
        envelope.signature_version = "2".into();
        let signed = envelope.string_to_sign().unwrap();
        let mut sig = vec![0; pair.public().modulus_len()];
        pair.sign(
            &ring::signature::RSA_PKCS1_SHA256,
            &ring::rand::SystemRandom::new(),
            signed.as_bytes(),
            &mut sig,
        )
        .unwrap();
        envelope.signature = base64::engine::general_purpose::STANDARD.encode(sig);
    }

    #[test]
    fn signatures_are_checked_with_the_certificate() {
        let verifier = SnsVerifier::new(TOPIC, CERT).unwrap();
        // Signed with SHA1withRSA by `openssl dgst -sha1 -sign`.
        let v1 =
            Envelope::parse(include_bytes!("../../tests/fixtures/sns-bounce-v1.json")).unwrap();
        verifier.verify(&v1).unwrap();
        let mut v2 = v1.clone();
        sign_v2(&mut v2);
        verifier.verify(&v2).unwrap();
        let mut forged = v1.clone();
        forged.message = forged.message.replace("Permanent", "Transient");
        assert!(matches!(verifier.verify(&forged), Err(Refusal::Forged(_))));
        let mut other_topic = v2.clone();
        other_topic.topic_arn = "arn:aws:sns:us-east-1:123456789012:other".into();
        sign_v2(&mut other_topic);
        assert!(matches!(
            verifier.verify(&other_topic),
            Err(Refusal::Forged(_))
        ));
        let mut unsigned = v1.clone();
        unsigned.signature.clear();
        assert!(matches!(
            verifier.verify(&unsigned),
            Err(Refusal::Unauthenticated(_))
        ));
        let mut version = v1;
        version.signature_version = "3".into();
        assert!(matches!(verifier.verify(&version), Err(Refusal::Forged(_))));
    }

    #[test]
    fn the_string_to_sign_has_the_documented_fields_in_order() {
        let envelope = Envelope::parse(br#"{"Type":"Notification","MessageId":"m1","TopicArn":"arn:t","Message":"hello","Timestamp":"2012-04-25T21:49:25.719Z","SignatureVersion":"1","Signature":"x","SigningCertURL":"https://sns.us-east-1.amazonaws.com/c.pem"}"#).unwrap();
        assert_eq!(
            envelope.string_to_sign().unwrap(),
            "Message\nhello\nMessageId\nm1\nTimestamp\n2012-04-25T21:49:25.719Z\nTopicArn\narn:t\nType\nNotification\n"
        );
        let confirm = Envelope::parse(br#"{"Type":"SubscriptionConfirmation","MessageId":"m2","Token":"tok","TopicArn":"arn:t","Message":"You have chosen","SubscribeURL":"https://sns/confirm","Timestamp":"2012-04-26T20:45:04.751Z","SignatureVersion":"1","Signature":"x"}"#).unwrap();
        assert_eq!(
            confirm.string_to_sign().unwrap(),
            "Message\nYou have chosen\nMessageId\nm2\nSubscribeURL\nhttps://sns/confirm\nTimestamp\n2012-04-26T20:45:04.751Z\nToken\ntok\nTopicArn\narn:t\nType\nSubscriptionConfirmation\n"
        );
        assert!(matches!(Envelope::parse(b"[]"), Err(Refusal::Malformed(_))));
    }

    #[test]
    fn ses_notifications_become_reports() {
        // The bounce example of SES's notification documentation, with the key's tag.
        let bounce = r#"{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","reportingMTA":"dns; email.example.com","bouncedRecipients":[{"emailAddress":"jane@example.com","status":"5.1.1","action":"failed","diagnosticCode":"smtp; 550 5.1.1 <jane@example.com>... User"}],"bounceSubType":"General","timestamp":"2016-01-27T14:59:38.237Z","feedbackId":"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000","remoteMtaIp":"127.0.2.0"},"mail":{"timestamp":"2016-01-27T14:59:38.237Z","source":"john@example.com","messageId":"00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000","destination":["jane@example.com"],"tags":{"nudge_key":["b2Y6Y3VzXzE6MQ"]}}}"#;
        let reports = reports(bounce).unwrap();
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].subject, Subject::Send("of:cus_1:1".into()));
        assert_eq!(
            reports[0].signal,
            Signal::Bounced {
                hard: true,
                reason: Some("smtp; 550 5.1.1 <jane@example.com>... User".into())
            }
        );
        assert_eq!(reports[0].at_millis, Some(1_453_906_778_237));
        let complaint = r#"{"notificationType":"Complaint","complaint":{"userAgent":"AnyCompany Feedback Loop (V0.01)","complainedRecipients":[{"emailAddress":"Richard@example.com"}],"complaintFeedbackType":"abuse","arrivalDate":"2016-01-27T14:59:38.237Z","timestamp":"2016-01-27T14:59:38.237Z","feedbackId":"000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"},"mail":{"messageId":"m"}}"#;
        let reports = super::reports(complaint).unwrap();
        assert_eq!(
            reports[0].subject,
            Subject::Address {
                channel: "email",
                address: "richard@example.com".into()
            }
        );
        assert_eq!(reports[0].signal, Signal::Spam);
        let transient = bounce.replace("Permanent", "Transient");
        assert!(matches!(
            super::reports(&transient).unwrap()[0].signal,
            Signal::Bounced { hard: false, .. }
        ));
        let delivery = r#"{"eventType":"Delivery","mail":{"messageId":"m9"},"delivery":{"timestamp":"2016-01-27T14:59:38.237Z","recipients":["jane@example.com"],"processingTimeMillis":546,"smtpResponse":"250 ok"}}"#;
        assert_eq!(
            super::reports(delivery).unwrap()[0].signal,
            Signal::Delivered
        );
        let open = r#"{"eventType":"Open","mail":{"messageId":"m9"},"open":{}}"#;
        assert!(super::reports(open).unwrap().is_empty());
        assert!(matches!(super::reports("{}"), Err(Refusal::Malformed(_))));
    }
}
