//! The SendGrid plugin against a mock of the v3 Mail Send API, answering
//! as SendGrid documents: 202 with `X-Message-Id`, 429 with `Retry-After`,
//! 5xx, a slow answer, and 400 with its error list.

mod common;

use std::time::Duration;

use common::message;
use common::providers::{answer, deliver, settings, unsubscribe};
use nudge_channels::{Delivery, Plugin, Purpose, RateLimit, SendGrid, SendGridConfig};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn plugin(server: &MockServer, max_attempts: u32) -> SendGrid {
    SendGrid::new(SendGridConfig {
        api_url: server.uri(),
        settings: settings(max_attempts),
        ..SendGridConfig::new("SG.test-key", "Shop <news@shop.example>", unsubscribe())
    })
    .unwrap()
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(202).insert_header("X-Message-Id", "14c5d75ce93.dfd.64b469.filter0001")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_send_is_the_documented_request_and_202_is_delivered() {
    let server = MockServer::start().await;
    let link = unsubscribe().url("cus_1", "email");
    let expected = json!({
        "personalizations": [{ "to": [{ "email": "user1@example.com" }] }],
        "from": { "email": "news@shop.example", "name": "Shop" },
        "subject": "Welcome, customer 1",
        "content": [
            { "type": "text/plain", "value": "Hi & welcome\n\nLine two: \"quoted\" ünïcödé\n" },
            { "type": "text/html", "value": "<p>Hi &amp; welcome</p>\nLine two: \"quoted\" ünïcödé" },
        ],
        "custom_args": {
            "nudge_key": "onboarding:cus_1:step-2",
            "nudge_flow": "onboarding",
            "nudge_message": "welcome",
            "nudge_customer": "cus_1",
        },
        "headers": {
            "List-Unsubscribe": format!("<{link}>"),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    });
    Mock::given(method("POST"))
        .and(path("/v3/mail/send"))
        .and(header("authorization", "Bearer SG.test-key"))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected))
        .respond_with(accepted())
        .expect(1)
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), message(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Delivered);
    let receipt = result.unwrap();
    assert_eq!(receipt.attempts, 1);
    assert_eq!(
        receipt.detail.as_deref(),
        Some("HTTP 202 X-Message-Id 14c5d75ce93.dfd.64b469.filter0001")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transactional_mail_has_no_unsubscribe_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let mut msg = message(2);
    msg.purpose = Purpose::Transactional;
    let (result, _) = deliver(plugin(&server, 1), msg).await;
    result.unwrap();
    let requests = server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert!(body.get("headers").is_none(), "{body}");
    assert_eq!(body["custom_args"]["nudge_key"], "onboarding:cus_2:step-2");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    let too_many = ResponseTemplate::new(429)
        .insert_header("Retry-After", "1")
        .set_body_json(json!({"errors": [{"message": "too many requests"}]}));
    answer(&server, vec![(too_many, 1)], accepted()).await;
    let (result, took) = deliver(plugin(&server, 3), message(1)).await;
    assert_eq!(result.unwrap().attempts, 2);
    // The backoff alone would be 20 ms.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried_with_backoff_then_succeed() {
    let server = MockServer::start().await;
    let errors = vec![
        (ResponseTemplate::new(500), 1),
        (ResponseTemplate::new(503), 1),
    ];
    answer(&server, errors, accepted()).await;
    let (result, took) = deliver(plugin(&server, 5), message(1)).await;
    assert_eq!(result.unwrap().attempts, 3);
    // 20 ms, then 40 ms.
    assert!(took >= Duration::from_millis(60), "{took:?}");
    let bodies: Vec<_> = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every try sends the same request"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tries_stop_at_the_limit_with_the_last_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_string("maintenance"))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), message(1)).await;
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 3);
    assert!(err.retryable && !err.unknown);
    assert!(
        err.reason
            .ends_with("answered HTTP 503 Service Unavailable: maintenance"),
        "{err}"
    );
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_request_fails_at_once_with_sendgrids_explanation() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "errors": [{
                "message": "The from address does not match a verified Sender Identity.",
                "field": "from",
                "help": null
            }]
        })))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 3), message(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Failed);
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (1, false));
    assert!(err.reason.contains("verified Sender Identity"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_retried_while_tries_remain_and_is_unknown_at_the_end() {
    let server = MockServer::start().await;
    let slow = accepted().set_delay(Duration::from_secs(3));
    answer(&server, vec![(slow, 1)], accepted()).await;
    let (result, _) = deliver(plugin(&server, 3), message(1)).await;
    assert_eq!(result.unwrap().attempts, 2);

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted().set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let (result, _) = deliver(plugin(&server, 2), message(1)).await;
    assert_eq!(Delivery::of(&result), Delivery::Unknown);
    let err = result.unwrap_err();
    assert_eq!(err.attempts, 2);
    assert!(!err.retryable);
    assert!(err.reason.contains("no answer within 700ms"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_spaces_sends() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(accepted())
        .mount(&server)
        .await;
    let mut config = SendGridConfig {
        api_url: server.uri(),
        settings: settings(1),
        ..SendGridConfig::new("SG.k", "news@shop.example", unsubscribe())
    };
    config.settings.rate_limit = Some(RateLimit {
        per_second: 10,
        burst: 1,
    });
    let mut plugin = SendGrid::new(config).unwrap();
    let took = tokio::task::spawn_blocking(move || {
        let start = std::time::Instant::now();
        for n in 1..=4 {
            plugin.deliver(&message(n)).unwrap();
        }
        start.elapsed()
    })
    .await
    .unwrap();
    // One at once, then one every 100 ms.
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 4);
}

#[test]
fn settings_are_checked() {
    let base = || SendGridConfig::new("SG.k", "news@shop.example", unsubscribe());
    assert!(SendGrid::new(base()).is_ok());
    let err = SendGrid::new(SendGridConfig {
        api_key: String::new(),
        ..base()
    })
    .unwrap_err();
    assert_eq!(err.to_string(), "sendgrid: `api_key` must not be empty");
    let err = SendGrid::new(SendGridConfig {
        api_url: "api.sendgrid.com".into(),
        ..base()
    })
    .unwrap_err();
    assert!(err.reason.contains("not an absolute URL"), "{err}");
    assert!(!format!("{:?}", base()).contains("SG.k"));
}
