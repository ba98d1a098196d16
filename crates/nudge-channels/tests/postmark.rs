//! The Postmark plugin against a mock of `POST /email`, answering as
//! Postmark documents: 200 with `MessageID`, 429, 5xx, 422 with its
//! `ErrorCode`, and a slow answer.

mod common;

use std::time::Duration;

use common::message;
use common::providers::{answer, deliver, settings, unsubscribe};
use nudge_channels::{Delivery, Postmark, PostmarkConfig, Purpose};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn plugin(server: &MockServer, max_attempts: u32) -> Postmark {
    Postmark::new(PostmarkConfig {
        api_url: server.uri(),
        settings: settings(max_attempts),
        reply_to: Some("help@shop.example".into()),
        ..PostmarkConfig::new("server-token-1", "Shop <news@shop.example>", unsubscribe())
    })
    .unwrap()
}

/// Postmark's documented answer to a successful send.
fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "To": "user1@example.com",
        "SubmittedAt": "2024-05-01T06:00:01.4178645-04:00",
        "MessageID": "0a129aee-e1cd-480d-b08d-4f48548ff48d",
        "ErrorCode": 0,
        "Message": "OK"
    }))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_marketing_send_goes_to_the_broadcast_stream_with_one_click_headers() {
    let server = MockServer::start().await;
    let link = unsubscribe().url("cus_1", "email");
    let expected = json!({
        "From": "Shop <news@shop.example>",
        "To": "user1@example.com",
        "Subject": "Welcome, customer 1",
        "HtmlBody": "<p>Hi &amp; welcome</p>\nLine two: \"quoted\" ünïcödé",
        "TextBody": "Hi & welcome\n\nLine two: \"quoted\" ünïcödé\n",
        "Tag": "welcome",
        "Headers": [
            { "Name": "List-Unsubscribe", "Value": format!("<{link}>") },
            { "Name": "List-Unsubscribe-Post", "Value": "List-Unsubscribe=One-Click" },
        ],
        "Metadata": {
            "nudge_key": "onboarding:cus_1:step-2",
            "nudge_flow": "onboarding",
            "nudge_message": "welcome",
        },
        "MessageStream": "broadcast",
        "ReplyTo": "help@shop.example",
    });
    Mock::given(method("POST"))
        .and(path("/email"))
        .and(header("x-postmark-server-token", "server-token-1"))
        .and(header("accept", "application/json"))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), message(1)).await;
    let receipt = result.unwrap();
    assert_eq!(receipt.attempts, 1);
    assert_eq!(
        receipt.detail.as_deref(),
        Some("HTTP 200 MessageID 0a129aee-e1cd-480d-b08d-4f48548ff48d")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_mail_uses_the_transactional_stream_without_unsubscribe_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let mut msg = message(2);
    msg.purpose = Purpose::Transactional;
    msg.idempotency_key = "k".repeat(81);
    deliver(plugin(&server, 1), msg).await.0.unwrap();
    let requests = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["MessageStream"], "outbound");
    assert_eq!(body["Headers"], json!([]));
    // Postmark refuses metadata values over 80 characters; the key is left out.
    assert!(body["Metadata"].get("nudge_key").is_none(), "{body}");
    assert_eq!(body["Metadata"]["nudge_flow"], "onboarding");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    answer(
        &server,
        vec![(
            ResponseTemplate::new(429).insert_header("Retry-After", "1"),
            1,
        )],
        accepted(),
    )
    .await;
    let (result, took) = deliver(plugin(&server, 3), message(1)).await;
    assert_eq!(result.unwrap().attempts, 2);
    assert!(took >= Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_then_succeeds() {
    let server = MockServer::start().await;
    answer(&server, vec![(ResponseTemplate::new(500), 2)], accepted()).await;
    let (result, took) = deliver(plugin(&server, 3), message(1)).await;
    assert_eq!(result.unwrap().attempts, 3);
    assert!(took >= Duration::from_millis(60), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tries_stop_at_the_limit_with_the_last_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 2), message(1)).await;
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable, err.unknown), (2, true, false));
    assert!(err.reason.contains("HTTP 502 Bad Gateway"), "{err}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_request_fails_at_once_with_postmarks_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "ErrorCode": 406,
            "Message": "You tried to send to a recipient that has been marked as inactive."
        })))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), message(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Failed);
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (1, false));
    assert!(err.reason.contains("marked as inactive"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_on_the_last_try_is_an_unknown_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted().set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 1), message(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Unknown);
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(
        err.to_string().starts_with("outcome unknown: POST"),
        "{err}"
    );
}

#[test]
fn settings_are_checked() {
    let base = || PostmarkConfig::new("t", "news@shop.example", unsubscribe());
    assert!(Postmark::new(base()).is_ok());
    for (config, expected) in [
        (
            PostmarkConfig {
                server_token: " ".into(),
                ..base()
            },
            "`server_token` must not be empty",
        ),
        (
            PostmarkConfig {
                marketing_stream: String::new(),
                ..base()
            },
            "`marketing_stream` must not be empty",
        ),
        (
            PostmarkConfig {
                from: "Shop".into(),
                ..base()
            },
            "`from`",
        ),
    ] {
        let err = Postmark::new(config).unwrap_err();
        assert!(err.reason.contains(expected), "{err}");
    }
}
