//! End-to-end: Amazon SES notifications through SNS on `nudge serve`. The
//! subscription is confirmed by visiting its SubscribeURL; a bounce (found
//! by the `nudge_key` tag) and a complaint (found by address) become the
//! standard events and hold the next send; envelopes that are unsigned,
//! forged or from another topic are refused.

mod common;
use common::{
    basic_auth, explain_json, http_agent, outbox_json as outbox, serve_http, start_server_with,
    wait_for_outbox,
};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const TOPIC: &str = "arn:aws:sns:us-east-1:123456789012:ses-feedback";
const CERT: &str = include_str!("../crates/nudge-channels/tests/fixtures/sns-test-cert.pem");
const KEY: &str = include_str!("../crates/nudge-channels/tests/fixtures/sns-test-key.pem");

/// Signs an SNS envelope as SNS does (SignatureVersion 2, SHA256withRSA)
/// with the test key whose certificate the server is given.
fn sign(envelope: &mut Value) {
    let fields: &[&str] = if envelope["Type"] == "Notification" {
        &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ]
    } else {
        &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ]
    };
    let signed: String = fields
        .iter()
        .filter_map(|f| envelope[*f].as_str().map(|v| format!("{f}\n{v}\n")))
        .collect();
    let b64: String = KEY.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signed.as_bytes(),
        &mut sig,
    )
    .unwrap();
    envelope["SignatureVersion"] = json!("2");
    envelope["Signature"] = json!(base64::engine::general_purpose::STANDARD.encode(sig));
}

fn notification(id: &str, message: &Value) -> Value {
    let mut envelope = json!({
        "Type": "Notification",
        "MessageId": id,
        "TopicArn": TOPIC,
        "Message": message.to_string(),
        "Timestamp": "2026-01-27T14:59:38.600Z",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
    });
    sign(&mut envelope);
    envelope
}

fn post_sns(base: &str, envelope: &Value) -> (u16, String) {
    let mut resp = http_agent()
        .post(format!("{base}/webhooks/ses"))
        // SNS posts JSON as text/plain.
        .header("Content-Type", "text/plain; charset=UTF-8")
        .header(
            "x-amz-sns-message-type",
            envelope["Type"].as_str().unwrap_or(""),
        )
        .send(envelope.to_string())
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

fn ingest(base: &str, calls: &[Value]) {
    let mut resp = http_agent()
        .post(format!("{base}/v1/batch"))
        .header("Authorization", basic_auth())
        .header("Content-Type", "application/json")
        .send(json!({ "batch": calls }).to_string())
        .unwrap();
    let status = resp.status().as_u16();
    assert_eq!(status, 200, "{}", resp.body_mut().read_to_string().unwrap());
}

fn order(user: &str, id: &str) -> Value {
    json!({"type": "track", "userId": user, "event": "Order Completed", "properties": {"order_id": id, "total": 10.0}})
}

#[test]
fn ses_notifications_through_sns_hold_the_next_send() {
    let visits = Arc::new(Mutex::new(0));
    let counter = visits.clone();
    let confirm_url = serve_http(move |_| {
        *counter.lock().unwrap() += 1;
        b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: 28\r\nConnection: close\r\n\r\n<ConfirmSubscriptionResult/>"
    });
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("shop");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("flows.flow"),
        r#"message note(what: string) {
  channel email
  subject "{what}"
  body "<p>{what}</p>"
}

flow on_order {
  trigger order_completed
  entry always
  send note("order {trigger.order_id}")
}
"#,
    )
    .unwrap();
    std::fs::write(project.join("sns-cert.pem"), CERT).unwrap();
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[feedback]\nses_topic_arn = \"{TOPIC}\"\nses_signing_certificate = \"sns-cert.pem\"\n"
        ),
    )
    .unwrap();
    let server = start_server_with(&project, &["--write-key", common::WRITE_KEY], &[]);
    let base = server.base.clone();

    // SNS first asks to confirm the subscription.
    let mut confirm = json!({
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",
        "TopicArn": TOPIC,
        "Message": format!("You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the SubscribeURL included in this message."),
        "SubscribeURL": format!("{confirm_url}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336412f37fb"),
        "Timestamp": "2026-01-27T14:50:04.751Z",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
    });
    sign(&mut confirm);
    let (status, text) = post_sns(&base, &confirm);
    assert_eq!(status, 200, "{text}");
    assert_eq!(*visits.lock().unwrap(), 1, "the SubscribeURL was visited");

    ingest(
        &base,
        &[
            json!({"type": "identify", "userId": "u1", "traits": {"email": "jane@example.com", "consent": {"email": true}}}),
            json!({"type": "identify", "userId": "u2", "traits": {"email": "richard@example.com", "consent": {"email": true}}}),
            json!({"type": "identify", "userId": "u3", "traits": {"email": "carl@example.com", "consent": {"email": true}}}),
            order("u1", "o1"),
            order("u2", "o2"),
            order("u3", "o3"),
        ],
    );
    let first = wait_for_outbox(&project, 3);
    assert_eq!(first.len(), 3, "{first:#?}");
    let jane_key = first.iter().find(|l| l["customer"] == "u1").unwrap()["idempotency_key"]
        .as_str()
        .unwrap()
        .to_string();
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&jane_key);

    // SES's documented bounce, for the send the tag names.
    let bounce = json!({"notificationType": "Bounce", "bounce": {"bounceType": "Permanent", "reportingMTA": "dns; email.example.com", "bouncedRecipients": [{"emailAddress": "jane@example.com", "status": "5.1.1", "action": "failed", "diagnosticCode": "smtp; 550 5.1.1 <jane@example.com>... User"}], "bounceSubType": "General", "timestamp": "2026-01-27T14:59:38.237Z", "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000", "remoteMtaIp": "127.0.2.0"}, "mail": {"timestamp": "2026-01-27T14:59:38.237Z", "source": "news@shop.example", "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000", "destination": ["jane@example.com"], "tags": {"nudge_key": [tag]}}});
    let envelope = notification("22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324", &bounce);
    let mut unsigned = envelope.clone();
    unsigned["Signature"] = json!("");
    assert_eq!(post_sns(&base, &unsigned).0, 401);
    let mut forged = envelope.clone();
    forged["Message"] = json!(bounce.to_string().replace("Permanent", "Transient"));
    let (status, text) = post_sns(&base, &forged);
    assert_eq!(status, 403, "{text}");
    let mut elsewhere = envelope.clone();
    elsewhere["TopicArn"] = json!("arn:aws:sns:us-east-1:999999999999:not-ours");
    sign(&mut elsewhere);
    assert_eq!(post_sns(&base, &elsewhere).0, 403);
    let (status, text) = post_sns(&base, &envelope);
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"applied": 1, "outcomes": 0, "unmatched": 0})
    );

    // A complaint with no tag is matched by address; a delivery is an outcome.
    let complaint = json!({"notificationType": "Complaint", "complaint": {"userAgent": "AnyCompany Feedback Loop (V0.01)", "complainedRecipients": [{"emailAddress": "richard@example.com"}], "complaintFeedbackType": "abuse", "arrivalDate": "2026-01-27T14:59:38.237Z", "timestamp": "2026-01-27T14:59:38.237Z", "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"}, "mail": {"messageId": "m2", "destination": ["richard@example.com"]}});
    let (status, text) = post_sns(
        &base,
        &notification("6f1c2b1e-0000-4c2c-8f9d-000000000002", &complaint),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"applied\":1"), "{text}");
    let delivery = json!({"notificationType": "Delivery", "mail": {"messageId": "m3", "destination": ["carl@example.com"]}, "delivery": {"timestamp": "2026-01-27T14:59:38.237Z", "recipients": ["carl@example.com"], "processingTimeMillis": 546, "smtpResponse": "250 ok"}});
    let (status, text) = post_sns(
        &base,
        &notification("6f1c2b1e-0000-4c2c-8f9d-000000000003", &delivery),
    );
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"outcomes\":1"), "{text}");

    ingest(
        &base,
        &[order("u1", "o4"), order("u2", "o5"), order("u3", "o6")],
    );
    wait_for_outbox(&project, 4);
    // A moment more for any send that should not be there.
    std::thread::sleep(Duration::from_millis(500));
    let after = outbox(&project);
    assert_eq!(after.len(), 4, "{after:#?}");
    assert_eq!(
        after[3]["customer"], "u3",
        "only Carl's second email went out"
    );
    let metrics = server.metrics();
    assert!(
        metrics.contains("nudge_feedback_reports_total{provider=\"ses\",outcome=\"applied\"} 2"),
        "{metrics}"
    );
    server.terminate();

    let explain = |who: &str| explain_json(&project, who);
    let jane = explain("u1");
    assert!(
        jane.contains("bounced") && jane.contains("undeliverable"),
        "{jane}"
    );
    assert!(explain("u2").contains("spam"));
}

#[test]
fn the_ses_webhook_is_off_without_its_topic_and_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("shop");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(
        project.join("flows.flow"),
        "flow f {\n  trigger order_completed\n  entry always\n}\n",
    )
    .unwrap();
    let server = start_server_with(&project, &["--write-key", common::WRITE_KEY], &[]);
    let (status, text) = post_sns(&server.base, &json!({"Type": "Notification"}));
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("ses_topic_arn"), "{text}");
    server.terminate();
}
