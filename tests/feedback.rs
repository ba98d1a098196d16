//! End-to-end: the providers' webhooks on `nudge serve`. Each provider's
//! report reaches the customer the send went to as the standard event, and
//! the next send to that address or number is held; a request that is not
//! the provider's is refused.

mod common;
use common::{
    Server, afternoon_zone, basic_auth, explain_json, http_agent, outbox_json as outbox,
    start_server_with, wait_for_outbox,
};

use std::time::Duration;

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

const POSTMARK_USER: &str = "postmark";
const POSTMARK_PASSWORD: &str = "a-long-postmark-webhook-password";
const TWILIO_TOKEN: &str = "twilio-test-auth-token";

/// A key pair standing in for SendGrid's: the test signs as SendGrid does.
fn sendgrid_key() -> SigningKey {
    SigningKey::from_slice(&[0x5a; 32]).unwrap()
}

/// A project that emails and texts a note for every order.
fn project() -> (tempfile::TempDir, std::path::PathBuf) {
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

message text_note(what: string) {
  channel sms
  text "{what} Reply STOP to opt out."
}

flow on_order {
  trigger order_completed
  entry always
  send note("order {trigger.order_id}")
  send text_note("order {trigger.order_id}")
}
"#,
    )
    .unwrap();
    // SubjectPublicKeyInfo of a P-256 key: the fixed DER header of
    // id-ecPublicKey with prime256v1, then the uncompressed point.
    let mut public = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    public.extend_from_slice(
        sendgrid_key()
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes(),
    );
    std::fs::write(
        project.join("nudge.toml"),
        format!(
            "[feedback]\nsendgrid_verification_key = \"{}\"\npostmark_username = \"{POSTMARK_USER}\"\npostmark_password = \"${{POSTMARK_PASSWORD}}\"\ntwilio_auth_token = \"{TWILIO_TOKEN}\"\n",
            base64::engine::general_purpose::STANDARD.encode(public)
        ),
    )
    .unwrap();
    (tmp, project)
}

fn post(server: &Server, path: &str, headers: &[(&str, String)], body: &str) -> (u16, String) {
    let mut req = http_agent().post(format!("{}{path}", server.base));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let mut resp = req.send(body).expect("the request completes");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap())
}

fn ingest(server: &Server, calls: &[Value]) {
    let body = json!({ "batch": calls }).to_string();
    let (status, text) = post(
        server,
        "/v1/batch",
        &[
            ("Authorization", basic_auth()),
            ("Content-Type", "application/json".into()),
        ],
        &body,
    );
    assert_eq!(status, 200, "{text}");
}

fn key_of(lines: &[Value], customer: &str, channel: &str) -> String {
    lines
        .iter()
        .find(|l| l["customer"] == customer && l["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} send to {customer} in {lines:?}"))["idempotency_key"]
        .as_str()
        .unwrap()
        .to_string()
}

fn sendgrid_post(server: &Server, body: &str, signature: Option<String>) -> (u16, String) {
    let timestamp = "1700000000".to_string();
    let mut headers = vec![
        ("Content-Type", "application/json".to_string()),
        ("X-Twilio-Email-Event-Webhook-Timestamp", timestamp.clone()),
    ];
    if let Some(sig) = signature {
        headers.push(("X-Twilio-Email-Event-Webhook-Signature", sig));
    }
    post(server, "/webhooks/sendgrid", &headers, body)
}

fn sendgrid_sign(body: &str) -> String {
    let signed = format!("1700000000{body}");
    let sig: Signature = sendgrid_key().sign(signed.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

fn twilio_post(
    server: &Server,
    path_and_query: &str,
    form: &[(&str, &str)],
    sign_with: &str,
) -> (u16, String) {
    let params: Vec<(String, String)> = form
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let host = server.base.trim_start_matches("http://");
    let url = format!("http://{host}{path_and_query}");
    let signature = nudge_channels::feedback::twilio::signature(sign_with, &url, &params);
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| {
            let enc = |t: &str| {
                percent_encoding::utf8_percent_encode(t, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect();
    post(
        server,
        path_and_query,
        &[
            ("Content-Type", "application/x-www-form-urlencoded".into()),
            ("X-Twilio-Signature", signature),
        ],
        &body.join("&"),
    )
}

fn order(who: (&str, &str), id: &str) -> Value {
    let mut call = json!({"type": "track", "event": "Order Completed", "properties": {"order_id": id, "total": 10.0}});
    call[who.0] = json!(who.1);
    call
}

#[test]
fn provider_reports_become_events_for_the_customer_and_hold_the_next_send() {
    let (_tmp, project) = project();
    let server = start_server_with(
        &project,
        &["--write-key", common::WRITE_KEY],
        &[("POSTMARK_PASSWORD", POSTMARK_PASSWORD)],
    );
    let zone = afternoon_zone();
    let ann = ("userId", "u1");
    let bob = ("anonymousId", "anon-7");
    // Carl hears nothing from the providers: his second order is sent, so
    // the held sends of the others are held by the reports alone.
    let carl = ("userId", "u3");
    ingest(
        &server,
        &[
            json!({"type": "identify", "userId": "u1", "traits": {"email": "Ann@Example.com", "phone": "+15551230001", "timezone": zone, "consent": {"email": true, "sms": true}}}),
            json!({"type": "identify", "anonymousId": "anon-7", "traits": {"email": "bob@example.com", "timezone": zone, "consent": {"email": true}}}),
            json!({"type": "identify", "userId": "u3", "traits": {"email": "carl@example.com", "phone": "+15551230003", "timezone": zone, "consent": {"email": true, "sms": true}}}),
            order(ann, "o1"),
            order(bob, "o2"),
            order(carl, "o5"),
        ],
    );
    let first = wait_for_outbox(&project, 5);
    assert_eq!(first.len(), 5, "{first:#?}");
    let ann_email = key_of(&first, "u1", "email");
    let ann_sms = key_of(&first, "u1", "sms");
    key_of(&first, "anon-7", "email");

    // SendGrid: a hard bounce carrying the key the plugin sent in
    // custom_args, and an event about an address Nudge never wrote to.
    let events = json!([
        {"email": "ann@example.com", "timestamp": 1700000000, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "event": "bounce", "category": "cat facts", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce", "nudge_key": ann_email},
        {"email": "stranger@example.com", "timestamp": 1700000000, "event": "spamreport", "sg_event_id": "x2", "sg_message_id": "m2"}
    ])
    .to_string();
    let (status, text) = sendgrid_post(&server, &events, None);
    assert_eq!(status, 401, "unsigned: {text}");
    let (status, text) = sendgrid_post(&server, &events, Some(sendgrid_sign("[]")));
    assert_eq!(status, 403, "signed for another body: {text}");
    let (status, text) = sendgrid_post(&server, &events, Some(sendgrid_sign(&events)));
    assert_eq!(status, 200, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer, json!({"applied": 1, "outcomes": 0, "unmatched": 1}));

    // Postmark: the documented spam-complaint record, matched by address
    // to the anonymous customer.
    let complaint = r#"{"RecordType":"SpamComplaint","MessageStream":"outbound","ID":42,"Type":"SpamComplaint","TypeCode":512,"Name":"Spam complaint","Tag":"Test","MessageID":"00000000-0000-0000-0000-000000000000","Metadata":{"a_key":"a_value"},"ServerID":1234,"Description":"","Details":"Test spam complaint details","Email":"bob@example.com","From":"sender@example.com","BouncedAt":"2019-11-05T16:33:54.9070259Z","DumpAvailable":true,"Inactive":true,"CanActivate":false,"Subject":"Test subject","Content":"<Abuse report dump>"}"#;
    let basic = |user_pass: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    };
    let (status, _) = post(&server, "/webhooks/postmark", &[], complaint);
    assert_eq!(status, 401);
    let wrong = [("Authorization", basic("postmark:not-the-password-at-all"))];
    assert_eq!(
        post(&server, "/webhooks/postmark", &wrong, complaint).0,
        403
    );
    let right = [(
        "Authorization",
        basic(&format!("{POSTMARK_USER}:{POSTMARK_PASSWORD}")),
    )];
    let (status, text) = post(&server, "/webhooks/postmark", &right, complaint);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"applied\":1"), "{text}");

    // Twilio: a delivery report for the SMS (an outcome, not an event), then
    // STOP texted back from Ann's number.
    let status_path = format!(
        "/webhooks/twilio/status?nudge_key={}",
        percent_encoding::utf8_percent_encode(&ann_sms, percent_encoding::NON_ALPHANUMERIC)
    );
    let delivered = [
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15017250604"),
        ("MessageSid", "SM11111111111111111111111111111111"),
        ("MessageStatus", "delivered"),
        ("SmsSid", "SM11111111111111111111111111111111"),
        ("SmsStatus", "delivered"),
        ("To", "+15551230001"),
    ];
    let (status, text) = twilio_post(&server, &status_path, &delivered, "another-token");
    assert_eq!(status, 403, "{text}");
    let (status, text) = twilio_post(&server, &status_path, &delivered, TWILIO_TOKEN);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"outcomes\":1"), "{text}");
    let stop = [
        ("ToCountry", "US"),
        ("SmsMessageSid", "SM22222222222222222222222222222222"),
        ("NumMedia", "0"),
        ("SmsSid", "SM22222222222222222222222222222222"),
        ("SmsStatus", "received"),
        ("Body", "STOP"),
        ("To", "+15017250604"),
        ("NumSegments", "1"),
        ("MessageSid", "SM22222222222222222222222222222222"),
        ("AccountSid", "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("From", "+15551230001"),
        ("ApiVersion", "2010-04-01"),
    ];
    let (status, text) = twilio_post(&server, "/webhooks/twilio/sms", &stop, TWILIO_TOKEN);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("<Response></Response>"), "{text}");

    // The next orders send nothing: Ann's address bounced and her number
    // said STOP; Bob complained.
    ingest(
        &server,
        &[order(ann, "o3"), order(bob, "o4"), order(carl, "o6")],
    );
    let after = wait_for_outbox(&project, 7);
    // A moment more for any send that should not be there.
    std::thread::sleep(Duration::from_millis(500));
    let after_all = outbox(&project);
    assert_eq!(after_all.len(), 7, "{after_all:#?}");
    assert!(
        after[5..].iter().all(|l| l["customer"] == "u3"),
        "only Carl's sends went out: {after:#?}"
    );
    let metrics = server.metrics();
    for line in [
        "nudge_feedback_reports_total{provider=\"sendgrid\",outcome=\"applied\"} 1",
        "nudge_feedback_reports_total{provider=\"sendgrid\",outcome=\"unmatched\"} 1",
        "nudge_feedback_reports_total{provider=\"postmark\",outcome=\"applied\"} 1",
        "nudge_feedback_reports_total{provider=\"twilio\",outcome=\"applied\"} 1",
        "nudge_feedback_reports_total{provider=\"twilio\",outcome=\"outcome\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    server.terminate();

    let explain = |who: &str| explain_json(&project, who);
    let ann_story = explain("u1");
    assert!(ann_story.contains("bounced"), "{ann_story}");
    let bob_story = explain("anon-7");
    assert!(bob_story.contains("spam"), "{bob_story}");
}

#[test]
fn webhooks_without_credentials_in_nudge_toml_are_off() {
    let (_tmp, project) = project();
    std::fs::remove_file(project.join("nudge.toml")).unwrap();
    let server = start_server_with(&project, &["--write-key", common::WRITE_KEY], &[]);
    for path in [
        "/webhooks/sendgrid",
        "/webhooks/postmark",
        "/webhooks/twilio/status",
        "/webhooks/twilio/sms",
    ] {
        let (status, text) = post(&server, path, &[], "[]");
        assert_eq!(status, 404, "{path}: {text}");
        assert!(text.contains("under [feedback]"), "{path}: {text}");
    }
    server.terminate();
}
