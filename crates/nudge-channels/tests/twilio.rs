//! The Twilio plugin against a mock of the Messages API, answering as
//! Twilio documents: 201 with the message resource, 429, 5xx, 400 with
//! its error code, and a slow answer, which must not be retried.

mod common;

use std::time::Duration;

use common::providers::{answer, deliver, form, settings, sms};
use nudge_channels::{Delivery, Twilio, TwilioConfig};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SID: &str = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX";
const MESSAGES: &str = "/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/Messages.json";

fn plugin(server: &MockServer, max_attempts: u32) -> Twilio {
    Twilio::new(TwilioConfig {
        api_url: server.uri(),
        status_callback: Some("https://shop.example/twilio/status".into()),
        settings: settings(max_attempts),
        ..TwilioConfig::new(SID, "auth-token", "+15005550006")
    })
    .unwrap()
}

/// Twilio's documented answer to a created message (abridged).
fn created() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({
        "account_sid": SID,
        "api_version": "2010-04-01",
        "body": "Order 1 ships Friday. Reply STOP to opt out.",
        "direction": "outbound-api",
        "from": "+15005550006",
        "num_segments": "1",
        "sid": "SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        "status": "queued",
        "to": "+15005550001",
        "uri": "/2010-04-01/Accounts/ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX/Messages/SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX.json"
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_is_a_form_post_with_basic_auth_and_a_status_callback() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        // base64("ACXX…:auth-token")
        .and(header(
            "authorization",
            "Basic QUNYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWFhYWDphdXRoLXRva2Vu",
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(created())
        .expect(1)
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), sms(1)).await;
    let receipt = result.unwrap();
    assert_eq!(
        receipt.detail.as_deref(),
        Some("HTTP 201 sid SMXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX")
    );
    let requests = server.received_requests().await.unwrap();
    let fields = form(&requests[0].body);
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("To", "+15005550001"),
            ("From", "+15005550006"),
            ("Body", "Order 1 ships Friday. Reply STOP to opt out."),
            (
                "StatusCallback",
                "https://shop.example/twilio/status?nudge_key=onboarding%3Acus_1%3Astep-2"
            ),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    let too_many = ResponseTemplate::new(429)
        .insert_header("Retry-After", "1")
        .set_body_json(json!({"code": 20429, "message": "Too Many Requests", "status": 429}));
    answer(&server, vec![(too_many, 1)], created()).await;
    let (result, took) = deliver(plugin(&server, 3), sms(1)).await;
    assert_eq!(result.unwrap().attempts, 2);
    assert!(took >= Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    answer(&server, vec![(ResponseTemplate::new(503), 1)], created()).await;
    let (result, _) = deliver(plugin(&server, 3), sms(1)).await;
    assert_eq!(result.unwrap().attempts, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tries_stop_at_the_limit_with_the_last_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 4), sms(1)).await;
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (4, true));
    assert!(err.reason.contains("HTTP 500"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_number_fails_at_once_with_twilios_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211,
            "message": "The 'To' number +15005550001 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400
        })))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), sms(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Failed);
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (1, false));
    assert!(err.reason.contains("21211"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_unknown_and_never_retried() {
    let server = MockServer::start().await;
    // Were the send retried, the second try would be answered at once.
    let slow = created().set_delay(Duration::from_secs(3));
    answer(&server, vec![(slow, 1)], created()).await;
    let (result, _) = deliver(plugin(&server, 5), sms(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Unknown);
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(!err.retryable && err.unknown);
    assert_eq!(server.received_requests().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_without_text_or_with_a_bad_number_is_not_sent() {
    let server = MockServer::start().await;
    let mut msg = sms(1);
    msg.to = "555-0100".into();
    let (result, _) = deliver(plugin(&server, 3), msg).await;
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (0, false));
    assert!(err.reason.contains("E.164"), "{err}");
    let mut msg = sms(1);
    msg.content.clear();
    let (result, _) = deliver(plugin(&server, 3), msg).await;
    assert!(result.unwrap_err().reason.contains("`text`"));
    assert!(server.received_requests().await.unwrap().is_empty());
}
