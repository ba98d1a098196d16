//! The ad-audience plugins against mocks of the platforms' APIs, answering
//! as Meta documents `/{audience_id}/users` and Google documents
//! `customers.offlineUserDataJobs` (`:create`, `:addOperations`, `:run`)
//! and its OAuth token endpoint: success, 429 with `Retry-After`, 5xx and
//! a slow answer. Hashes in the expectations were computed apart from the
//! code under test (`printf %s VALUE | sha256sum`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::providers::{form, settings};
use nudge_channels::{
    AudienceChange, AudienceSync, Delivery, GoogleCustomerMatch, GoogleCustomerMatchConfig,
    MetaAudience, MetaAudienceConfig, PhoneRules,
};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ANA_EMAIL: &str = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11";
const BEN_EMAIL: &str = "f871a76fb7b15231306b634dd91b385c48e9298974308e28e161d845e3e6f060";
const CHLOE_EMAIL: &str = "85c7cc9b3194343ba95f68a3e7ef8332113209a03997cd39a3af1bbdb672dfbd";
/// `16505551234`: Meta hashes the digits with the country code, no `+`.
const BEN_PHONE_META: &str = "6069d14bf122fdfd931dc7beb58e5dfbba395b1faf05bdcd42d12358d63d8599";
/// `+16505551234`: Google hashes E.164 with its `+`.
const BEN_PHONE_GOOGLE: &str = "a2996076d3ad4af5dc818b908b3d8e354f26ededf7df0e0aa6ac354143805ee0";
/// `4915112345678`: a national German number with `phone_country_code = "49"`.
const DAN_PHONE_META: &str = "8efb96404be52f6109b9db0f687274a81e9e3cc23fabd6f0da5d38baa3d2facd";

fn change(customer: &str, add: bool, email: Option<&str>, phone: Option<&str>) -> AudienceChange {
    AudienceChange {
        audience: "cart_abandoners".into(),
        customer: customer.into(),
        add,
        email: email.map(str::to_string),
        phone: phone.map(str::to_string),
    }
}

fn audiences() -> BTreeMap<String, String> {
    BTreeMap::from([(
        "cart_abandoners".to_string(),
        "23851234567890123".to_string(),
    )])
}

fn meta(server: &MockServer, max_attempts: u32, batch_size: usize) -> MetaAudience {
    MetaAudience::new(MetaAudienceConfig {
        api_url: server.uri(),
        batch_size,
        settings: settings(max_attempts),
        phone: PhoneRules {
            default_calling_code: Some("49".into()),
        },
        ..MetaAudienceConfig::new("meta-token-1", audiences())
    })
    .unwrap()
}

/// Meta's documented answer to an upload.
fn meta_accepted(received: usize) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "audience_id": "23851234567890123",
        "session_id": "9778993",
        "num_received": received,
        "num_invalid_entries": 0,
        "invalid_entry_samples": {}
    }))
}

/// Runs `f` on the plugin off the async runtime; returns the plugin, the
/// result and the time taken.
async fn on<P: AudienceSync + 'static, T: Send + 'static>(
    mut plugin: P,
    f: impl FnOnce(&mut P) -> T + Send + 'static,
) -> (P, T, Duration) {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = f(&mut plugin);
        let took = start.elapsed();
        (plugin, out, took)
    })
    .await
    .unwrap()
}

/// The form fields of a recorded request, by name.
fn fields(body: &[u8]) -> BTreeMap<String, String> {
    form(body).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_adds_with_post_and_removes_with_delete_in_the_documented_shape() {
    let server = MockServer::start().await;
    for verb in ["POST", "DELETE"] {
        Mock::given(method(verb))
            .and(path("/v25.0/23851234567890123/users"))
            .and(header("content-type", "application/x-www-form-urlencoded"))
            .respond_with(meta_accepted(2))
            .mount(&server)
            .await;
    }
    let plugin = meta(&server, 3, 10_000);
    let (plugin, result, _) = on(plugin, |p| {
        p.change(&change("u1", true, Some(" Ana@Example.com "), None))?;
        p.change(&change(
            "u2",
            true,
            Some("ben@example.com"),
            Some("+1 (650) 555-1234"),
        ))?;
        p.change(&change("u3", false, Some("chloe@example.com"), None))?;
        p.change(&change("u4", true, None, Some("0151 12345678")))?;
        // A customer added then removed before the flush is only removed.
        p.change(&change("u4", false, None, Some("0151 12345678")))?;
        p.flush()
    })
    .await;
    result.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "one removal request, one addition request"
    );
    let (delete, post) = (&requests[0], &requests[1]);
    assert_eq!(delete.method.as_str(), "DELETE");
    assert_eq!(post.method.as_str(), "POST");
    let removed = fields(&delete.body);
    let payload: Value = serde_json::from_str(&removed["payload"]).unwrap();
    assert_eq!(
        payload,
        json!({
            "schema": ["EMAIL", "PHONE"],
            "data": [[CHLOE_EMAIL, ""], ["", DAN_PHONE_META]],
        })
    );
    assert_eq!(removed["access_token"], "meta-token-1");
    let added = fields(&post.body);
    let payload: Value = serde_json::from_str(&added["payload"]).unwrap();
    assert_eq!(
        payload,
        json!({
            "schema": ["EMAIL", "PHONE"],
            "data": [[ANA_EMAIL, ""], [BEN_EMAIL, BEN_PHONE_META]],
        })
    );
    let session: Value = serde_json::from_str(&added["session"]).unwrap();
    assert_eq!(session["batch_seq"], 1);
    assert_eq!(session["last_batch_flag"], true);
    assert_eq!(session["estimated_num_total"], 2);
    let counts = &plugin.report().audiences["cart_abandoners"];
    assert_eq!((counts.added, counts.removed, counts.batches), (2, 2, 2));
    assert_eq!(counts.unmatched, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_splits_additions_into_batches_of_the_configured_size() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(meta_accepted(2))
        .mount(&server)
        .await;
    let plugin = meta(&server, 1, 2);
    let (plugin, result, _) = on(plugin, |p| {
        for n in 0..5 {
            p.change(&change(
                &format!("u{n}"),
                true,
                Some(&format!("shopper{n}@example.com")),
                None,
            ))?;
        }
        p.flush()
    })
    .await;
    result.unwrap();
    let requests = server.received_requests().await.unwrap();
    // A full batch goes at once; the rest on the flush.
    let sizes: Vec<usize> = requests
        .iter()
        .map(|r| {
            let payload: Value = serde_json::from_str(&fields(&r.body)["payload"]).unwrap();
            payload["data"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(sizes, vec![2, 2, 1]);
    assert_eq!(plugin.report().audiences["cart_abandoners"].added, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_waits_as_long_as_retry_after_says() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(meta_accepted(1))
        .mount(&server)
        .await;
    let (plugin, result, took) = on(meta(&server, 3, 10_000), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.flush()
    })
    .await;
    result.unwrap();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(server.received_requests().await.unwrap().len(), 2);
    assert_eq!(plugin.report().audiences["cart_abandoners"].added, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_server_errors_are_retried_then_given_up_with_the_reason() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({
            "error": {
                "message": "Service temporarily unavailable",
                "type": "OAuthException",
                "code": 2,
                "fbtrace_id": "AbCdEf"
            }
        })))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(meta(&server, 2, 10_000), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.change(&change("u2", true, Some("ben@example.com"), None))?;
        p.flush()
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (2, true));
    assert!(err.reason.contains("HTTP 503"), "{err}");
    assert!(err.reason.contains("temporarily unavailable"), "{err}");
    let counts = &plugin.report().audiences["cart_abandoners"];
    assert_eq!((counts.added, counts.failed), (0, 0));
    // Kept for the next flush, which finds Meta back.
    assert_eq!(plugin.pending(), 2);
    server.reset().await;
    Mock::given(method("POST"))
        .respond_with(meta_accepted(2))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(plugin, |p| p.flush()).await;
    result.unwrap();
    assert_eq!(plugin.pending(), 0);
    assert_eq!(plugin.report().audiences["cart_abandoners"].added, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_refuses_a_bad_token_at_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {
                "message": "Invalid OAuth access token.",
                "type": "OAuthException",
                "code": 190,
                "fbtrace_id": "AbCdEf"
            }
        })))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(meta(&server, 3, 10_000), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.flush()
    })
    .await;
    let err = result.unwrap_err();
    assert_eq!((err.attempts, err.retryable), (1, false));
    assert!(err.reason.contains("Invalid OAuth access token"), "{err}");
    // Refused for good: given up, not kept.
    assert_eq!(plugin.pending(), 0);
    assert_eq!(plugin.report().audiences["cart_abandoners"].failed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_throttling_in_a_400_keeps_the_batch_for_later() {
    let server = MockServer::start().await;
    // Meta's custom-audience rate limit, as documented: a 400 with code 80003.
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": {
                "message": "There have been too many calls to this ad-account. Wait a bit and try again.",
                "type": "OAuthException",
                "code": 80003,
                "error_subcode": 2446079,
                "fbtrace_id": "AbCdEf"
            }
        })))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(meta(&server, 3, 10_000), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.flush()
    })
    .await;
    let err = result.unwrap_err();
    assert!(err.retryable, "{err}");
    assert!(err.reason.contains("too many calls"), "{err}");
    assert_eq!(plugin.pending(), 1);
    assert_eq!(plugin.report().audiences["cart_abandoners"].failed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn meta_a_timeout_on_the_last_try_is_an_unknown_outcome() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(meta_accepted(1).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(meta(&server, 1, 10_000), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.flush()
    })
    .await;
    let result = result.map(|_| nudge_channels::Receipt::first_try());
    assert_eq!(Delivery::of(&result), Delivery::Unknown);
    // Adding again changes nothing if Meta had it: kept for the next flush.
    assert_eq!(plugin.pending(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn customers_without_identifiers_or_audiences_without_ids_are_counted_not_sent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(meta_accepted(1))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(meta(&server, 1, 10_000), |p| {
        p.change(&change("u1", true, None, None))?;
        p.change(&change("u2", true, Some("not an email"), Some("12")))?;
        let mut other = change("u3", true, Some("ana@example.com"), None);
        other.audience = "product_viewers".into();
        p.change(&other)?;
        p.flush()
    })
    .await;
    result.unwrap();
    assert!(server.received_requests().await.unwrap().is_empty());
    let report = plugin.report();
    let cart = &report.audiences["cart_abandoners"];
    assert_eq!((cart.unmatched, cart.added), (2, 0));
    assert_eq!(
        cart.unmatched_example.as_deref(),
        Some("u1: no email or phone in the profile")
    );
    assert_eq!(report.audiences["product_viewers"].unmapped, 1);
    let lines = report.lines();
    assert!(lines[0].contains("2 unmatched"), "{lines:?}");
    assert!(lines[1].contains("no platform audience id"), "{lines:?}");
}

#[test]
fn meta_settings_are_checked() {
    let base = || MetaAudienceConfig::new("t", audiences());
    assert!(MetaAudience::new(base()).is_ok());
    for (config, expected) in [
        (
            MetaAudienceConfig {
                access_token: String::new(),
                ..base()
            },
            "`access_token` must not be empty",
        ),
        (
            MetaAudienceConfig {
                batch_size: 10_001,
                ..base()
            },
            "between 1 and 10000",
        ),
        (
            MetaAudienceConfig {
                audiences: BTreeMap::new(),
                ..base()
            },
            "`audiences` is empty",
        ),
        (
            MetaAudienceConfig {
                audiences: BTreeMap::from([("a".to_string(), "act_12".to_string())]),
                ..base()
            },
            "not an audience id",
        ),
        (
            MetaAudienceConfig {
                phone: PhoneRules {
                    default_calling_code: Some("+49".into()),
                },
                ..base()
            },
            "not a country calling code",
        ),
    ] {
        let err = MetaAudience::new(config).unwrap_err();
        assert!(err.reason.contains(expected), "{err}");
    }
}

fn google(server: &MockServer, max_attempts: u32) -> GoogleCustomerMatch {
    GoogleCustomerMatch::new(GoogleCustomerMatchConfig {
        api_url: server.uri(),
        token_url: format!("{}/token", server.uri()),
        login_customer_id: Some("987-654-3210".into()),
        settings: settings(max_attempts),
        ..GoogleCustomerMatchConfig::new(
            "123-456-7890",
            "dev-token-1",
            "client-1.apps.googleusercontent.com",
            "client-secret-1",
            "refresh-1",
            BTreeMap::from([("cart_abandoners".to_string(), "4567".to_string())]),
        )
    })
    .unwrap()
}

const JOB: &str = "customers/1234567890/offlineUserDataJobs/555";

/// Google's token endpoint, and the job calls answering as documented.
async fn google_api(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.access-1",
            "expires_in": 3599,
            "scope": "https://www.googleapis.com/auth/adwords",
            "token_type": "Bearer"
        })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v21/customers/1234567890/offlineUserDataJobs:create"))
        .and(header("authorization", "Bearer ya29.access-1"))
        .and(header("developer-token", "dev-token-1"))
        .and(header("login-customer-id", "9876543210"))
        .and(body_json(json!({
            "job": {
                "type": "CUSTOMER_MATCH_USER_LIST",
                "customerMatchUserListMetadata": {
                    "userList": "customers/1234567890/userLists/4567"
                }
            }
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "resourceName": JOB })))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v21/{JOB}:run")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "name": "customers/1234567890/operations/abc"
        })))
        .mount(server)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn google_creates_fills_and_runs_one_job_per_kind_of_change() {
    let server = MockServer::start().await;
    google_api(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("/v21/{JOB}:addOperations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(google(&server, 3), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.change(&change(
            "u2",
            false,
            Some("ben@example.com"),
            Some("+1 650 555 1234"),
        ))?;
        p.flush()
    })
    .await;
    result.unwrap();
    let requests = server.received_requests().await.unwrap();
    let paths: Vec<String> = requests.iter().map(|r| r.url.path().to_string()).collect();
    let create = "/v21/customers/1234567890/offlineUserDataJobs:create".to_string();
    let add = format!("/v21/{JOB}:addOperations");
    let run = format!("/v21/{JOB}:run");
    assert_eq!(
        paths,
        vec![
            "/token".to_string(),
            create.clone(),
            add.clone(),
            run.clone(),
            create,
            add,
            run
        ],
        "the token is fetched once and kept"
    );
    let token = fields(&requests[0].body);
    assert_eq!(token["grant_type"], "refresh_token");
    assert_eq!(token["refresh_token"], "refresh-1");
    assert_eq!(token["client_secret"], "client-secret-1");
    let removal: Value = serde_json::from_slice(&requests[2].body).unwrap();
    assert_eq!(
        removal,
        json!({
            "operations": [{ "remove": { "userIdentifiers": [
                { "hashedEmail": BEN_EMAIL },
                { "hashedPhoneNumber": BEN_PHONE_GOOGLE },
            ] } }],
            "enablePartialFailure": true,
        })
    );
    let addition: Value = serde_json::from_slice(&requests[5].body).unwrap();
    assert_eq!(
        addition["operations"],
        json!([{ "create": { "userIdentifiers": [{ "hashedEmail": ANA_EMAIL }] } }])
    );
    let counts = &plugin.report().audiences["cart_abandoners"];
    assert_eq!((counts.added, counts.removed, counts.batches), (1, 1, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn google_waits_for_retry_after_and_retries_server_errors() {
    let server = MockServer::start().await;
    google_api(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("/v21/{JOB}:addOperations")))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v21/{JOB}:addOperations")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/v21/{JOB}:addOperations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let (plugin, result, took) = on(google(&server, 3), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.flush()
    })
    .await;
    result.unwrap();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert_eq!(plugin.report().audiences["cart_abandoners"].added, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn google_counts_operations_refused_in_a_partial_failure() {
    let server = MockServer::start().await;
    google_api(&server).await;
    // Google's answer when one operation of the request is refused.
    Mock::given(method("POST"))
        .and(path(format!("/v21/{JOB}:addOperations")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "partialFailureError": {
                "code": 3,
                "message": "The SHA256 encoded value is malformed., at operations[1].create.user_identifiers[0].hashed_email",
                "details": [{
                    "@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure",
                    "errors": [{
                        "errorCode": { "offlineUserDataJobError": "INVALID_SHA256_FORMAT" },
                        "message": "The SHA256 encoded value is malformed."
                    }]
                }]
            }
        })))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(google(&server, 1), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.change(&change("u2", true, Some("ben@example.com"), None))?;
        p.flush()
    })
    .await;
    result.unwrap();
    let counts = &plugin.report().audiences["cart_abandoners"];
    assert_eq!((counts.added, counts.invalid), (1, 1));
    assert!(plugin.report().lines()[0].contains("1 invalid"));
}

#[tokio::test(flavor = "multi_thread")]
async fn google_a_job_that_cannot_be_filled_keeps_its_whole_list_for_the_next_flush() {
    let server = MockServer::start().await;
    google_api(&server).await;
    Mock::given(method("POST"))
        .and(path(format!("/v21/{JOB}:addOperations")))
        .respond_with(ResponseTemplate::new(502))
        .mount(&server)
        .await;
    let (plugin, result, _) = on(google(&server, 2), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.change(&change("u2", true, Some("ben@example.com"), None))?;
        p.flush()
    })
    .await;
    let err = result.unwrap_err();
    assert!(err.reason.contains("HTTP 502"), "{err}");
    let requests = server.received_requests().await.unwrap();
    assert!(
        !requests.iter().any(|r| r.url.path().ends_with(":run")),
        "a job left unfilled is not run"
    );
    let counts = &plugin.report().audiences["cart_abandoners"];
    assert_eq!((counts.added, counts.failed), (0, 0));
    assert_eq!(plugin.pending(), 2, "kept for the next flush");
}

#[tokio::test(flavor = "multi_thread")]
async fn google_a_refused_refresh_token_says_so() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "error": "invalid_grant",
            "error_description": "Token has been expired or revoked."
        })))
        .mount(&server)
        .await;
    let (_, result, _) = on(google(&server, 3), |p| {
        p.change(&change("u1", true, Some("ana@example.com"), None))?;
        p.flush()
    })
    .await;
    let err = result.unwrap_err();
    assert!(
        err.reason.starts_with("OAuth token refresh failed"),
        "{err}"
    );
    assert!(err.reason.contains("invalid_grant"), "{err}");
}

#[test]
fn google_settings_are_checked() {
    let base = || {
        GoogleCustomerMatchConfig::new(
            "1234567890",
            "d",
            "c",
            "s",
            "r",
            BTreeMap::from([("a".to_string(), "1".to_string())]),
        )
    };
    assert!(GoogleCustomerMatch::new(base()).is_ok());
    for (config, expected) in [
        (
            GoogleCustomerMatchConfig {
                customer_id: "12345".into(),
                ..base()
            },
            "not a Google Ads account id",
        ),
        (
            GoogleCustomerMatchConfig {
                refresh_token: " ".into(),
                ..base()
            },
            "`refresh_token` must not be empty",
        ),
        (
            GoogleCustomerMatchConfig {
                batch_size: 0,
                ..base()
            },
            "between 1 and 10000",
        ),
    ] {
        let err = GoogleCustomerMatch::new(config).unwrap_err();
        assert!(err.reason.contains(expected), "{err}");
    }
}
