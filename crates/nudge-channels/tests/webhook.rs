//! The webhook plugin against a scripted local HTTP server.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{Reply, Server, message, status};
use nudge_channels::{Outgoing, Plugin, RetryPolicy, Webhook, WebhookConfig};

/// Retries with waits of a millisecond, so the suite stays fast.
fn quick(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    }
}

fn webhook(server: &Server, max_attempts: u32) -> Webhook {
    Webhook::new(WebhookConfig::new(server.url("/hooks/nudge")).retry(quick(max_attempts))).unwrap()
}

fn body_as_message(body: &[u8]) -> Outgoing {
    serde_json::from_slice(body).unwrap()
}

#[test]
fn success_on_first_try() {
    let server = Server::start(vec![status(200)]);
    let mut hook = Webhook::new(
        WebhookConfig::new(server.url("/hooks/nudge"))
            .header("Authorization", "Bearer t0ken")
            .header("X-Tenant", "acme")
            .retry(quick(5)),
    )
    .unwrap();
    assert_eq!(hook.name(), "webhook");
    let msg = message(1);
    let receipt = hook.deliver(&msg).unwrap();
    assert_eq!(receipt.attempts, 1);
    assert_eq!(receipt.detail.as_deref(), Some("HTTP 200"));
    hook.flush().unwrap();

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/nudge");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(
        request.header("idempotency-key"),
        Some("onboarding:cus_1:step-2")
    );
    assert_eq!(request.header("authorization"), Some("Bearer t0ken"));
    assert_eq!(request.header("x-tenant"), Some("acme"));
    assert_eq!(body_as_message(&request.body), msg);
    // The body is exactly the outbox line, without the newline.
    assert_eq!(request.body, serde_json::to_vec(&msg).unwrap());
}

#[test]
fn any_2xx_is_success() {
    let server = Server::start(vec![status(202)]);
    let receipt = webhook(&server, 3).deliver(&message(1)).unwrap();
    assert_eq!(receipt.attempts, 1);
    assert_eq!(receipt.detail.as_deref(), Some("HTTP 202"));
}

#[test]
fn retries_503_then_succeeds_with_the_same_key() {
    let server = Server::start(vec![status(503), status(503), status(200)]);
    let msg = message(2);
    let receipt = webhook(&server, 5).deliver(&msg).unwrap();
    assert_eq!(receipt.attempts, 3);

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    for request in &requests {
        assert_eq!(
            request.header("idempotency-key"),
            Some("onboarding:cus_2:step-2")
        );
        assert_eq!(body_as_message(&request.body), msg);
    }
}

#[test]
fn retries_429_and_honours_a_zero_retry_after() {
    let server = Server::start(vec![
        Reply::Status(429, "slow down", vec![("Retry-After", "0")]),
        status(200),
    ]);
    let receipt = webhook(&server, 3).deliver(&message(1)).unwrap();
    assert_eq!(receipt.attempts, 2);
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn client_error_fails_at_once() {
    let server = Server::start(vec![Reply::Status(
        400,
        "{\"error\": \"missing field: to\"}",
        Vec::new(),
    )]);
    let err = webhook(&server, 5).deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(!err.retryable);
    assert!(err.reason.contains("HTTP 400 Bad Request"), "{err}");
    // The receiver's explanation is kept.
    assert!(err.reason.contains("missing field: to"), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn redirects_are_not_followed() {
    let server = Server::start(vec![Reply::Status(
        308,
        "",
        vec![("Location", "http://127.0.0.1:9/elsewhere")],
    )]);
    let err = webhook(&server, 5).deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 1);
    assert!(!err.retryable);
    assert!(err.reason.contains("HTTP 308"), "{err}");
    assert!(
        err.reason
            .contains("redirect to http://127.0.0.1:9/elsewhere"),
        "{err}"
    );
}

#[test]
fn persistent_server_errors_fail_after_max_attempts() {
    let server = Server::start(vec![
        Reply::Status(500, "db down", Vec::new()),
        Reply::Status(500, "db down", Vec::new()),
        Reply::Status(500, "db still down", Vec::new()),
    ]);
    let err = webhook(&server, 3).deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 3);
    assert!(err.retryable);
    // The last failure is the one reported.
    assert!(
        err.reason
            .contains("HTTP 500 Internal Server Error: db still down"),
        "{err}"
    );
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn connection_refused_is_reported() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/hook");
    let mut hook = Webhook::new(WebhookConfig::new(&url).retry(quick(2))).unwrap();
    let err = hook.deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 2);
    assert!(err.retryable);
    assert!(err.reason.contains(&url), "{err}");
    assert!(
        err.reason.to_lowercase().contains("connection refused"),
        "{err}"
    );
}

#[test]
fn a_silent_server_times_out() {
    let server = Server::start(vec![Reply::Hang, Reply::Hang]);
    let mut hook = Webhook::new(
        WebhookConfig::new(server.url("/slow"))
            .timeout(Duration::from_millis(50))
            .retry(quick(2)),
    )
    .unwrap();
    let err = hook.deliver(&message(1)).unwrap_err();
    assert_eq!(err.attempts, 2);
    assert!(err.retryable);
    assert!(err.reason.contains("timed out"), "{err}");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_key_that_cannot_be_a_header_is_refused_before_sending() {
    let server = Server::start(vec![status(200)]);
    let mut msg = message(1);
    msg.idempotency_key = "bad\nkey".into();
    let err = webhook(&server, 3).deliver(&msg).unwrap_err();
    assert_eq!(err.attempts, 0);
    assert!(!err.retryable);
    assert!(err.reason.contains("idempotency key"), "{err}");
    assert!(server.requests().is_empty());
}

#[test]
fn consecutive_messages_each_get_their_own_key() {
    let server = Server::start(vec![status(200), status(200)]);
    let mut hook = webhook(&server, 3);
    hook.deliver(&message(1)).unwrap();
    hook.deliver(&message(2)).unwrap();
    let keys: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or_default().to_string())
        .collect();
    assert_eq!(keys, ["onboarding:cus_1:step-2", "onboarding:cus_2:step-2"]);
}
