//! Helpers for the provider tests against `wiremock` servers.

use std::time::{Duration, Instant};

use nudge_channels::{
    DeliveryError, Outgoing, Plugin, ProviderSettings, Receipt, RetryPolicy, Unsubscribe,
};
use serde_json::json;

/// Quick retries that still let a 1 s `Retry-After` be honoured.
pub fn settings(max_attempts: u32) -> ProviderSettings {
    ProviderSettings {
        timeout: Duration::from_millis(700),
        retry: RetryPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(20),
            max_delay: Duration::from_secs(2),
        },
        rate_limit: None,
    }
}

/// The unsubscribe links every email test uses.
pub fn unsubscribe() -> Unsubscribe {
    Unsubscribe::new(
        "test",
        "https://shop.example/unsubscribe",
        "test-secret-0123456789",
    )
    .unwrap()
}

/// A sample SMS; `n` varies the customer and key.
pub fn sms(n: u32) -> Outgoing {
    let mut msg = super::message(n);
    msg.channel = "sms".into();
    msg.message = "shipping_delay".into();
    msg.to = format!("+1500555000{n}");
    msg.content = json!({ "text": format!("Order {n} ships Friday. Reply STOP to opt out.") })
        .as_object()
        .cloned()
        .unwrap_or_default();
    msg
}

/// Makes `server` answer POSTs from `script` in order, each answer as many
/// times as it says, then `then` for every later request: how a provider
/// behaves across a send's retries.
pub async fn answer(
    server: &wiremock::MockServer,
    script: Vec<(wiremock::ResponseTemplate, u64)>,
    then: wiremock::ResponseTemplate,
) {
    use wiremock::Mock;
    use wiremock::matchers::method;
    for (response, times) in script {
        Mock::given(method("POST"))
            .respond_with(response)
            .up_to_n_times(times)
            .mount(server)
            .await;
    }
    Mock::given(method("POST"))
        .respond_with(then)
        .mount(server)
        .await;
}

/// Runs the blocking `deliver` off the async runtime; returns it with the time taken.
pub async fn deliver<P: Plugin + 'static>(
    mut plugin: P,
    msg: Outgoing,
) -> (Result<Receipt, DeliveryError>, Duration) {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let result = plugin.deliver(&msg);
        (result, start.elapsed())
    })
    .await
    .unwrap()
}

/// Decodes an `application/x-www-form-urlencoded` body into pairs, in order.
pub fn form(body: &[u8]) -> Vec<(String, String)> {
    let text = std::str::from_utf8(body).unwrap();
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .unwrap()
            .into_owned()
    };
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}
