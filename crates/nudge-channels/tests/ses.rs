//! The SES plugin against a mock of the SES v2 `SendEmail` API, answering
//! as AWS documents: 200 with the `MessageId`, 429
//! `TooManyRequestsException`, 5xx, and 400 `MessageRejected`. The
//! signature itself is checked against AWS's test vectors in the crate.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::providers::{answer, deliver, settings, unsubscribe};
use nudge_channels::{Delivery, Purpose, Ses, SesConfig, ses_key_of_tag};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SEND: &str = "/v2/email/outbound-emails";

fn plugin(server: &MockServer, max_attempts: u32) -> Ses {
    Ses::new(SesConfig {
        api_url: Some(server.uri()),
        configuration_set: Some("nudge-events".into()),
        reply_to: Some("help@shop.example".into()),
        session_token: Some("FwoGZXIvYXdzEXAMPLE".into()),
        settings: settings(max_attempts),
        ..SesConfig::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "eu-west-1",
            "Shop <news@shop.example>",
            unsubscribe(),
        )
    })
    .unwrap()
}

fn sent() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "MessageId": "0102018c1e5c1a2b-7d3f1c4e-5b6a-4f2e-9c8d-000000000000-000000"
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_is_a_signed_send_email_with_both_parts_and_the_key_as_a_tag() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .and(header("content-type", "application/json"))
        .and(header("x-amz-security-token", "FwoGZXIvYXdzEXAMPLE"))
        .respond_with(sent())
        .expect(1)
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), common::message(1)).await;
    assert_eq!(
        result.unwrap().detail.as_deref(),
        Some("HTTP 200 MessageId 0102018c1e5c1a2b-7d3f1c4e-5b6a-4f2e-9c8d-000000000000-000000")
    );
    let request = &server.received_requests().await.unwrap()[0];
    let date = request.headers.get("x-amz-date").unwrap().to_str().unwrap();
    assert_eq!(date.len(), 16, "{date}");
    let day = &date[..8];
    let auth = request
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap();
    let prefix = format!(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/{day}/eu-west-1/ses/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature="
    );
    assert!(auth.starts_with(&prefix), "{auth}");
    let signature = &auth[prefix.len()..];
    assert!(
        signature.len() == 64 && signature.bytes().all(|b| b.is_ascii_hexdigit()),
        "{signature}"
    );
    let body: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(body["FromEmailAddress"], "Shop <news@shop.example>");
    assert_eq!(
        body["Destination"],
        json!({"ToAddresses": ["user1@example.com"]})
    );
    assert_eq!(body["ReplyToAddresses"], json!(["help@shop.example"]));
    assert_eq!(body["ConfigurationSetName"], "nudge-events");
    let simple = &body["Content"]["Simple"];
    assert_eq!(
        simple["Subject"],
        json!({"Data": "Welcome, customer 1", "Charset": "UTF-8"})
    );
    assert!(
        simple["Body"]["Html"]["Data"]
            .as_str()
            .unwrap()
            .contains("<p>Hi &amp; welcome</p>")
    );
    assert!(
        simple["Body"]["Text"]["Data"]
            .as_str()
            .unwrap()
            .contains("Hi & welcome")
    );
    let headers: Vec<(&str, &str)> = simple["Headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["Name"].as_str().unwrap(), h["Value"].as_str().unwrap()))
        .collect();
    assert!(
        headers.contains(&("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")),
        "{headers:?}"
    );
    assert!(
        headers.iter().any(|(n, v)| *n == "List-Unsubscribe"
            && v.starts_with("<https://shop.example/unsubscribe?")),
        "{headers:?}"
    );
    // The key rides as a tag in the characters SES allows, and reads back.
    let tags = body["EmailTags"].as_array().unwrap();
    assert_eq!(tags[0]["Name"], "nudge_key");
    let value = tags[0]["Value"].as_str().unwrap();
    assert!(
        value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(
        ses_key_of_tag(value).as_deref(),
        Some("onboarding:cus_1:step-2")
    );
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value)
            .unwrap(),
        b"onboarding:cus_1:step-2"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transactional_message_has_no_unsubscribe_headers() {
    let server = MockServer::start().await;
    answer(&server, vec![], sent()).await;
    let mut msg = common::message(2);
    msg.purpose = Purpose::Transactional;
    let (result, _) = deliver(plugin(&server, 3), msg).await;
    assert!(result.is_ok());
    let body: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    assert!(body["Content"]["Simple"].get("Headers").is_none(), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    let throttled = ResponseTemplate::new(429)
        .insert_header("x-amzn-ErrorType", "TooManyRequestsException")
        .insert_header("Retry-After", "1")
        .set_body_json(json!({"message": "Maximum sending rate exceeded."}));
    answer(&server, vec![(throttled, 1)], sent()).await;
    let (result, took) = deliver(plugin(&server, 3), common::message(1)).await;
    assert_eq!(result.unwrap().attempts, 2);
    assert!(took >= Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_then_given_up_as_retryable() {
    let server = MockServer::start().await;
    answer(&server, vec![(ResponseTemplate::new(503), 1)], sent()).await;
    let (result, _) = deliver(plugin(&server, 3), common::message(1)).await;
    assert_eq!(result.unwrap().attempts, 2);
    let server = MockServer::start().await;
    answer(&server, vec![], ResponseTemplate::new(500)).await;
    let (result, _) = deliver(plugin(&server, 2), common::message(1)).await;
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (2, true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_message_fails_at_once_with_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(400)
                .insert_header("x-amzn-ErrorType", "MessageRejected")
                .set_body_json(json!({"message": "Email address is not verified. The following identities failed the check in region EU-WEST-1: news@shop.example"})),
        )
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), common::message(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Failed);
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (1, false));
    assert!(err.reason.contains("not verified"), "{err}");
}

#[test]
fn config_is_checked() {
    let base = || {
        SesConfig::new(
            "AKIAIOSFODNN7EXAMPLE",
            "secret",
            "eu-west-1",
            "news@shop.example",
            unsubscribe(),
        )
    };
    assert!(Ses::new(base()).is_ok());
    let err = Ses::new(SesConfig {
        region: "EU West".into(),
        ..base()
    })
    .unwrap_err();
    assert!(err.reason.contains("not an AWS region"), "{err}");
    let err = Ses::new(SesConfig {
        secret_access_key: String::new(),
        ..base()
    })
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ses: `secret_access_key` must not be empty"
    );
    assert!(!format!("{:?}", base()).contains("secret\""));
}
