//! The FCM plugin against mocks of Google's token endpoint and FCM's HTTP
//! v1 API, answering as they document: an access token for a signed JWT,
//! 200 with the message's name, 429 with `Retry-After`, 5xx, 404
//! `UNREGISTERED` and 400 `INVALID_ARGUMENT` on the token.
//!
//! The service-account key in `fixtures/` was made for these tests with
//! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048`; its
//! public half (`fcm-test-public.der`, PKCS #1) checks the JWT's signature.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::providers::{answer, deliver, form, settings};
use nudge_channels::{Delivery, Fcm, FcmConfig, InvalidTokens, Outgoing, ServiceAccountKey};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = include_str!("fixtures/fcm-service-account.json");
const PUBLIC_KEY: &[u8] = include_bytes!("fixtures/fcm-test-public.der");
const SEND: &str = "/v1/projects/nudge-test/messages:send";

/// The key file with its `token_uri` at the mock token endpoint.
fn key_for(tokens: &MockServer) -> ServiceAccountKey {
    let mut key: Value = serde_json::from_str(KEY).unwrap();
    key["token_uri"] = json!(format!("{}/token", tokens.uri()));
    ServiceAccountKey::Json(key.to_string())
}

fn plugin(server: &MockServer, max_attempts: u32) -> (Fcm, InvalidTokens) {
    let invalid = InvalidTokens::default();
    let fcm = Fcm::new(FcmConfig {
        api_url: server.uri(),
        settings: settings(max_attempts),
        invalid_tokens: invalid.clone(),
        ..FcmConfig::new(key_for(server))
    })
    .unwrap();
    (fcm, invalid)
}

/// Google's documented answer to a token request.
async fn grant_tokens(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.test-access-token",
            "expires_in": 3599,
            "token_type": "Bearer"
        })))
        .mount(server)
        .await;
}

/// FCM's documented answer to an accepted message.
fn sent() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"name": "projects/nudge-test/messages/0:1500415314455276%31bd1c9631bd1c96"}),
    )
}

fn fcm_error(status: u16, word: &str, message: &str, details: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "error": {"code": status, "message": message, "status": word, "details": details}
    }))
}

fn push(n: u32) -> Outgoing {
    let mut msg = common::message(n);
    msg.channel = "push".into();
    msg.message = "back_in_stock".into();
    msg.to = format!("fcm-device-token-{n}");
    msg.content = json!({
        "title": "Back in stock",
        "text": "Your sneakers are back. Tap to order.",
        "url": "https://shop.example/p/1",
    })
    .as_object()
    .cloned()
    .unwrap();
    msg
}

async fn sends(server: &MockServer) -> Vec<wiremock::Request> {
    server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == SEND)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_gets_an_access_token_from_a_signed_jwt_then_is_sent() {
    let server = MockServer::start().await;
    grant_tokens(&server).await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .and(header("authorization", "Bearer ya29.test-access-token"))
        .and(body_partial_json(json!({"message": {
            "token": "fcm-device-token-1",
            "notification": {"title": "Back in stock", "body": "Your sneakers are back. Tap to order."},
            "data": {"url": "https://shop.example/p/1", "nudge_key": "onboarding:cus_1:step-2", "nudge_message": "back_in_stock"},
            "webpush": {"fcm_options": {"link": "https://shop.example/p/1"}},
        }})))
        .respond_with(sent())
        .mount(&server)
        .await;
    let (fcm, invalid) = plugin(&server, 3);
    // Two pushes with one plugin: the access token is asked for once.
    let (fcm, first, second) = tokio::task::spawn_blocking(move || {
        let mut fcm = fcm;
        let first = fcm_deliver(&mut fcm, push(1));
        let second = fcm_deliver(&mut fcm, push(1));
        (fcm, first, second)
    })
    .await
    .unwrap();
    drop(fcm);
    assert_eq!(
        first.unwrap().detail.as_deref(),
        Some("HTTP 200 name projects/nudge-test/messages/0:1500415314455276%31bd1c9631bd1c96")
    );
    assert!(second.is_ok());
    assert!(invalid.take().is_empty());
    let requests = server.received_requests().await.unwrap();
    let token_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.url.path() == "/token")
        .collect();
    assert_eq!(token_requests.len(), 1, "the token is cached");
    assert_eq!(sends(&server).await.len(), 2);

    // The exchange is RFC 7523's: the JWT bearer grant with the assertion.
    let fields = form(&token_requests[0].body);
    assert_eq!(
        fields[0],
        (
            "grant_type".into(),
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into()
        )
    );
    assert_eq!(fields[1].0, "assertion");
    let jwt = &fields[1].1;
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let decode =
        |p: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap() };
    assert_eq!(decode(parts[0]), json!({"alg": "RS256", "typ": "JWT"}));
    let claims = decode(parts[1]);
    assert_eq!(
        claims["iss"],
        "nudge-push@nudge-test.iam.gserviceaccount.com"
    );
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/firebase.messaging"
    );
    assert_eq!(claims["aud"], format!("{}/token", server.uri()));
    let (iat, exp) = (
        claims["iat"].as_u64().unwrap(),
        claims["exp"].as_u64().unwrap(),
    );
    assert_eq!(exp - iat, 3600);
    // Signed with the key's private half: its public half verifies it.
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        PUBLIC_KEY,
    );
    let signed = format!("{}.{}", parts[0], parts[1]);
    public.verify(signed.as_bytes(), &signature).unwrap();
    let mut forged = signed.into_bytes();
    forged[5] ^= 1;
    assert!(public.verify(&forged, &signature).is_err());
}

fn fcm_deliver(
    fcm: &mut Fcm,
    msg: Outgoing,
) -> Result<nudge_channels::Receipt, nudge_channels::DeliveryError> {
    use nudge_channels::Plugin;
    fcm.deliver(&msg)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_429_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    grant_tokens(&server).await;
    let quota = fcm_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded for quota metric 'Send requests'",
        json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "QUOTA_EXCEEDED"}]),
    )
    .insert_header("Retry-After", "1");
    answer(&server, vec![(quota, 1)], sent()).await;
    let (fcm, _) = plugin(&server, 3);
    let (result, took) = deliver(fcm, push(1)).await;
    assert_eq!(result.unwrap().attempts, 2);
    assert!(took >= std::time::Duration::from_secs(1), "{took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_error_is_retried_and_the_last_one_is_given_up_as_retryable() {
    let server = MockServer::start().await;
    grant_tokens(&server).await;
    let unavailable = fcm_error(
        503,
        "UNAVAILABLE",
        "The service is currently unavailable.",
        json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNAVAILABLE"}]),
    );
    answer(&server, vec![(unavailable, 1)], sent()).await;
    let (fcm, _) = plugin(&server, 3);
    let (result, _) = deliver(fcm, push(1)).await;
    assert_eq!(result.unwrap().attempts, 2);

    let server = MockServer::start().await;
    grant_tokens(&server).await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .respond_with(fcm_error(
            500,
            "INTERNAL",
            "Internal error encountered.",
            json!([]),
        ))
        .mount(&server)
        .await;
    let (fcm, invalid) = plugin(&server, 3);
    let (result, _) = deliver(fcm, push(1)).await;
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (3, true));
    assert!(err.reason.contains("HTTP 500"), "{err}");
    assert!(
        invalid.take().is_empty(),
        "an outage says nothing of the token"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unregistered_token_fails_for_good_and_is_reported_for_removal() {
    let server = MockServer::start().await;
    grant_tokens(&server).await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .respond_with(fcm_error(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]),
        ))
        .mount(&server)
        .await;
    let (fcm, invalid) = plugin(&server, 3);
    let (result, _) = deliver(fcm, push(2)).await;
    assert_eq!(Delivery::of(&result), Delivery::Failed);
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (1, false));
    assert!(
        err.reason.contains("no longer valid (UNREGISTERED)"),
        "{err}"
    );
    let gone = invalid.take();
    assert_eq!(gone.len(), 1);
    assert_eq!(
        (
            gone[0].customer.as_str(),
            gone[0].token.as_str(),
            gone[0].code.as_str()
        ),
        ("cus_2", "fcm-device-token-2", "UNREGISTERED")
    );
    assert_eq!(gone[0].idempotency_key, "onboarding:cus_2:step-2");
    assert!(invalid.take().is_empty(), "taken once");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_token_is_reported_but_an_invalid_payload_is_not() {
    let server = MockServer::start().await;
    grant_tokens(&server).await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .and(body_partial_json(json!({"message": {"token": "fcm-device-token-1"}})))
        .respond_with(fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .and(body_partial_json(json!({"message": {"token": "fcm-device-token-2"}})))
        .respond_with(fcm_error(
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [{"field": "message.notification.image", "description": "Invalid image URL"}]}]),
        ))
        .mount(&server)
        .await;
    let (fcm, invalid) = plugin(&server, 3);
    let (result, _) = deliver(fcm, push(1)).await;
    assert!(result.unwrap_err().reason.contains("INVALID_ARGUMENT"));
    assert_eq!(invalid.take().len(), 1);
    let (fcm, invalid) = plugin(&server, 3);
    let (result, _) = deliver(fcm, push(2)).await;
    let err = result.unwrap_err();
    assert!(!err.retryable && err.reason.contains("HTTP 400"), "{err}");
    assert!(invalid.take().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_assertion_fails_the_push_before_it_is_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(
            json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
        ))
        .mount(&server)
        .await;
    let (fcm, _) = plugin(&server, 2);
    let (result, _) = deliver(fcm, push(1)).await;
    let err = result.unwrap_err();
    assert!(err.reason.contains("OAuth token exchange"), "{err}");
    assert!(err.reason.contains("invalid_grant"), "{err}");
    assert!(err.retryable);
    assert!(sends(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_drops_the_access_token_so_the_next_push_asks_again() {
    let server = MockServer::start().await;
    grant_tokens(&server).await;
    let expired = fcm_error(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials.",
        json!([]),
    );
    Mock::given(method("POST"))
        .and(path(SEND))
        .respond_with(expired)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SEND))
        .respond_with(sent())
        .mount(&server)
        .await;
    let (fcm, _) = plugin(&server, 1);
    let (first, second) = tokio::task::spawn_blocking(move || {
        let mut fcm = fcm;
        (
            fcm_deliver(&mut fcm, push(1)),
            fcm_deliver(&mut fcm, push(1)),
        )
    })
    .await
    .unwrap();
    assert!(first.unwrap_err().retryable);
    assert!(second.is_ok());
    let tokens = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/token")
        .count();
    assert_eq!(tokens, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_push_without_text_or_token_is_not_sent() {
    let server = MockServer::start().await;
    grant_tokens(&server).await;
    let mut msg = push(1);
    msg.content.remove("text");
    let (fcm, _) = plugin(&server, 3);
    let (result, _) = deliver(fcm, msg).await;
    assert!(result.unwrap_err().reason.contains("`text`"));
    let mut msg = push(1);
    msg.to = "two words".into();
    let (fcm, _) = plugin(&server, 3);
    let (result, _) = deliver(fcm, msg).await;
    assert!(result.unwrap_err().reason.contains("not a device token"));
    assert!(server.received_requests().await.unwrap().is_empty());
}
