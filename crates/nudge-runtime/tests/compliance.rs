//! SMS opt-out and opt-in keywords, re-consent after an opt-out, quiet hours
//! for numbers whose country spans several zones, and suppression that never
//! blocks transactional messages.

mod common;

use common::{bundle, sends};
use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::record::{Outcome, What};
use nudge_runtime::replay::{self, Options};
use serde_json::{Value, json};

const MESSAGES: &str = r#"
message promo_sms() {
  channel sms
  text "A deal. Reply STOP to opt out."
}
message notice() {
  channel sms
  purpose transactional
  text "Your order shipped"
}
message promo() {
  channel email
  subject "A deal"
  body "Just for you"
}
message receipt() {
  channel email
  purpose transactional
  subject "Your receipt"
  body "Paid"
}

policy {
  timezone "UTC"
  quiet hours sms 21:00 to 08:00
}
"#;

fn identify(id: &str, at: &str, traits: Value) -> String {
    json!({"type": "identify", "userId": id, "timestamp": at, "traits": traits}).to_string()
}

fn track(id: &str, event: &str, at: &str, properties: Value) -> String {
    json!({"type": "track", "event": event, "userId": id, "timestamp": at, "properties": properties})
        .to_string()
}

fn sms_in(id: &str, at: &str, text: &str) -> String {
    track(id, "SMS Received", at, json!({"text": text}))
}

fn checkout(id: &str, at: &str) -> String {
    track(id, "Checkout Started", at, json!({"value": 20}))
}

/// A customer in UTC with a phone and SMS and email consent.
fn customer(id: &str, at: &str) -> String {
    identify(
        id,
        at,
        json!({
            "email": format!("{id}@example.com"),
            "phone": "+15550100001",
            "timezone": "UTC",
            "consent": {"sms": true, "email": true},
        }),
    )
}

/// Each decision as `message outcome reason`.
fn decisions(sink: &MemorySink) -> Vec<String> {
    sink.records
        .iter()
        .filter_map(|r| match &r.what {
            What::Send {
                message,
                outcome,
                reason,
                ..
            } => Some(format!(
                "{message} {outcome:?} {}",
                reason.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

/// The decisions of a flow sending `messages` on each checkout, after `before`.
fn run_with(config: Config, extra: &str, messages: &str, input: &[String]) -> MemorySink {
    let b = bundle(&format!(
        "{MESSAGES}flow f {{\n trigger checkout_started\n entry always\n{extra}\n{messages}\n}}"
    ));
    let mut engine = Engine::new(&b, MemorySink::default(), config, i64::MIN);
    let mut dead = Vec::new();
    replay::replay(
        &mut engine,
        input.join("\n").as_bytes(),
        Options {
            until: None,
            drain: true,
        },
        &mut |d| dead.push(d),
    )
    .expect("replays");
    assert!(dead.is_empty(), "dead letters: {dead:?}");
    engine.into_sink()
}

fn run(messages: &str, input: &[String]) -> MemorySink {
    let config = Config {
        release_spread: 0,
        ..Config::default()
    };
    run_with(config, "", messages, input)
}

#[test]
fn every_industry_opt_out_keyword_blocks_marketing_and_transactional_sms() {
    for word in [
        "STOP",
        "stopall",
        " Unsubscribe ",
        "CANCEL",
        "end",
        "QUIT",
        "Revoke",
        "OPTOUT",
        "Stop.",
    ] {
        let sink = run(
            " send promo_sms()\n send notice()",
            &[
                customer("u1", "2026-01-05T09:00:00Z"),
                sms_in("u1", "2026-01-05T09:30:00Z", word),
                checkout("u1", "2026-01-05T10:00:00Z"),
            ],
        );
        assert_eq!(
            decisions(&sink),
            ["promo_sms Blocked opted_out", "notice Blocked opted_out"],
            "{word:?}"
        );
    }
}

#[test]
fn a_message_that_only_mentions_stop_is_not_an_opt_out() {
    let sink = run(
        " send promo_sms()",
        &[
            customer("u1", "2026-01-05T09:00:00Z"),
            sms_in("u1", "2026-01-05T09:30:00Z", "please don't stop"),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    assert_eq!(decisions(&sink), ["promo_sms Sent -"]);
}

#[test]
fn an_opt_in_keyword_after_stop_restores_the_channel() {
    for word in ["START", "unstop", "Yes"] {
        let sink = run(
            " send promo_sms()\n send notice()",
            &[
                customer("u1", "2026-01-05T09:00:00Z"),
                sms_in("u1", "2026-01-05T09:10:00Z", "STOP"),
                checkout("u1", "2026-01-05T09:20:00Z"),
                sms_in("u1", "2026-01-05T09:30:00Z", word),
                checkout("u1", "2026-01-05T10:00:00Z"),
            ],
        );
        assert_eq!(
            decisions(&sink),
            [
                "promo_sms Blocked opted_out",
                "notice Blocked opted_out",
                "promo_sms Sent -",
                "notice Sent -",
            ],
            "{word:?}"
        );
    }
}

#[test]
fn a_subscribed_event_or_an_identify_granting_sms_lifts_a_stop() {
    let again = [
        track(
            "u1",
            "Subscribed",
            "2026-01-05T09:30:00Z",
            json!({"channel": "sms"}),
        ),
        identify(
            "u1",
            "2026-01-05T09:30:00Z",
            json!({"consent": {"sms": true}}),
        ),
    ];
    for consent in again {
        let sink = run(
            " send promo_sms()",
            &[
                customer("u1", "2026-01-05T09:00:00Z"),
                sms_in("u1", "2026-01-05T09:10:00Z", "STOP"),
                consent.clone(),
                checkout("u1", "2026-01-05T10:00:00Z"),
            ],
        );
        assert_eq!(decisions(&sink), ["promo_sms Sent -"], "{consent}");
    }
}

#[test]
fn consent_for_another_channel_does_not_lift_an_sms_stop() {
    let sink = run(
        " send promo_sms()",
        &[
            customer("u1", "2026-01-05T09:00:00Z"),
            sms_in("u1", "2026-01-05T09:10:00Z", "STOP"),
            track(
                "u1",
                "Subscribed",
                "2026-01-05T09:20:00Z",
                json!({"channel": "email"}),
            ),
            identify(
                "u1",
                "2026-01-05T09:30:00Z",
                json!({"consent": {"email": true, "sms": false}}),
            ),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    assert_eq!(decisions(&sink), ["promo_sms Blocked opted_out"]);
}

/// The SMS decisions for a customer with `phone` and no zone, checking out at `at`.
fn sms_without_zone(phone: &str, at: &str) -> (Vec<String>, Vec<String>) {
    let sink = run(
        " send promo_sms()",
        &[
            identify(
                "u1",
                "2026-01-05T09:00:00Z",
                json!({"phone": phone, "consent": {"sms": true}}),
            ),
            checkout("u1", at),
        ],
    );
    let deferrals = sink
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Send {
                outcome: Outcome::Deferred,
                until,
                zone,
                ..
            } => Some(format!(
                "{} {}",
                until.as_deref().unwrap_or("-"),
                zone.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect();
    (deferrals, sends(&sink))
}

#[test]
fn a_los_angeles_number_without_a_zone_gets_no_marketing_sms_at_dawn() {
    // 13:06 UTC is 08:06 in New York but 05:06 in Los Angeles (PST, UTC-8).
    let (deferrals, sent) = sms_without_zone("+1 310 555 0100", "2026-01-06T13:06:00Z");
    assert_eq!(deferrals, ["2026-01-06T16:00:00Z America/Los_Angeles"]);
    assert_eq!(sent, ["2026-01-06T16:00:00Z u1 promo_sms"]);
}

#[test]
fn a_north_american_number_of_unknown_area_waits_for_morning_everywhere() {
    // 555 is no area's code: quiet until 08:00 in Honolulu (UTC-10).
    let (deferrals, sent) = sms_without_zone("+15555550100", "2026-01-06T13:06:00Z");
    assert_eq!(deferrals, ["2026-01-06T18:00:00Z Pacific/Honolulu"]);
    assert_eq!(sent, ["2026-01-06T18:00:00Z u1 promo_sms"]);
}

#[test]
fn a_russian_number_waits_while_it_is_night_in_any_russian_zone() {
    // 09:00 UTC is noon in Moscow but 21:00 in Kamchatka (UTC+12): held until
    // 08:00 in Kaliningrad (UTC+2), the last of Russia's zones to wake.
    let (deferrals, sent) = sms_without_zone("+79161234567", "2026-01-06T09:00:00Z");
    assert_eq!(deferrals, ["2026-01-07T06:00:00Z Europe/Kaliningrad"]);
    assert_eq!(sent, ["2026-01-07T06:00:00Z u1 promo_sms"]);
}

#[test]
fn a_profile_zone_wins_over_the_numbers_zones() {
    let sink = run(
        " send promo_sms()",
        &[
            identify(
                "u1",
                "2026-01-05T09:00:00Z",
                json!({"phone": "+15555550100", "timezone": "America/New_York", "consent": {"sms": true}}),
            ),
            checkout("u1", "2026-01-06T13:06:00Z"),
        ],
    );
    assert_eq!(sends(&sink), ["2026-01-06T13:06:00Z u1 promo_sms"]);
}

fn suppressing(list: &[&str]) -> Config {
    Config {
        release_spread: 0,
        suppression: list.iter().map(|s| s.to_string()).collect(),
        ..Config::default()
    }
}

#[test]
fn a_suppression_list_blocks_marketing_but_not_an_order_confirmation() {
    let sink = run_with(
        suppressing(&["u1@example.com"]),
        "",
        " send promo()\n send receipt()\n send notice()",
        &[
            customer("u1", "2026-01-05T09:00:00Z"),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    assert_eq!(
        decisions(&sink),
        [
            "promo Suppressed suppression_list",
            "receipt Sent -",
            "notice Sent -"
        ]
    );
}

#[test]
fn suppress_if_blocks_marketing_but_not_transactional_messages() {
    let sink = run_with(
        suppressing(&[]),
        " suppress if true",
        " send promo()\n send receipt()",
        &[
            customer("u1", "2026-01-05T09:00:00Z"),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    assert_eq!(
        decisions(&sink),
        ["promo Suppressed suppress_if", "receipt Sent -"]
    );
}

#[test]
fn a_hard_bounce_and_a_stop_still_block_transactional_messages_of_suppressed_customers() {
    let sink = run_with(
        suppressing(&["u1@example.com"]),
        "",
        " send receipt()\n send notice()",
        &[
            customer("u1", "2026-01-05T09:00:00Z"),
            track(
                "u1",
                "Message Bounced",
                "2026-01-05T09:10:00Z",
                json!({"channel": "email", "kind": "hard"}),
            ),
            sms_in("u1", "2026-01-05T09:20:00Z", "STOP"),
            checkout("u1", "2026-01-05T10:00:00Z"),
        ],
    );
    assert_eq!(
        decisions(&sink),
        ["receipt Blocked undeliverable", "notice Blocked opted_out"]
    );
}
