//! Generated streams: deterministic, ordered, well-formed, and accepted by
//! the runtime against the standard event schemas.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use nudge_gen::{ConfigError, GenConfig, GenStats, generate};
use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::record::What;
use nudge_runtime::replay::{self, DeadLetter, Options};
use serde_json::Value;

fn config(events: u64, seed: u64) -> GenConfig {
    GenConfig {
        seed,
        ..GenConfig::new(events)
    }
}

fn gen_bytes(config: &GenConfig) -> (Vec<u8>, GenStats) {
    let mut out = Vec::new();
    let stats = generate(config, &mut out).expect("generates");
    (out, stats)
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let (a, _) = gen_bytes(&config(5_000, 7));
    let (b, _) = gen_bytes(&config(5_000, 7));
    let (c, _) = gen_bytes(&config(5_000, 8));
    assert!(a == b, "two runs with seed 7 differ");
    assert!(a != c, "seeds 7 and 8 gave the same stream");
}

#[test]
fn the_requested_count_is_written_exactly() {
    for n in [0, 1, 37, 10_000] {
        let (bytes, stats) = gen_bytes(&config(n, 3));
        let count = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(count, n);
        assert_eq!(stats.lines, n);
        assert_eq!(stats.by_kind.values().sum::<u64>(), n);
    }
}

#[test]
fn every_line_is_a_segment_call_in_time_order_with_a_unique_message_id() {
    let (bytes, stats) = gen_bytes(&config(20_000, 11));
    let mut ids = HashSet::new();
    let mut last = String::new();
    for call in lines(&bytes) {
        let kind = call["type"].as_str().expect("a type");
        let ts = call["timestamp"].as_str().expect("a timestamp");
        assert!(ts.ends_with('Z'), "{ts}");
        chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339");
        // Same shape and zone, so text order is time order.
        assert!(ts >= last.as_str(), "{ts} after {last}");
        last = ts.to_string();
        let id = call["messageId"].as_str().expect("a messageId");
        assert!(ids.insert(id.to_string()), "repeated messageId {id}");
        assert!(call["userId"].is_string() || call["anonymousId"].is_string());
        match kind {
            "track" => {
                assert!(call["event"].is_string());
                assert!(call["properties"].is_object());
            }
            "page" => assert!(call["properties"]["path"].is_string()),
            "identify" => {
                assert!(call["userId"].is_string() && call["anonymousId"].is_string());
                assert!(call["traits"]["email"].is_string());
            }
            "alias" => assert!(call["previousId"].is_string() && call["userId"].is_string()),
            other => panic!("unexpected call type {other}"),
        }
    }
    assert_eq!(ids.len() as u64, stats.lines);
    let (first, last_seen) = (stats.first.unwrap(), stats.last.unwrap());
    assert!(first >= GenConfig::new(1).start && first <= last_seen);
}

#[test]
fn the_stream_covers_the_funnel_identities_and_feedback() {
    let (bytes, stats) = gen_bytes(&config(100_000, 5));
    for kind in [
        "page",
        "identify",
        "alias",
        "Product List Viewed",
        "Product Viewed",
        "Product Added",
        "Product Removed",
        "Cart Viewed",
        "Checkout Started",
        "Order Completed",
        "Order Shipped",
        "Order Delivered",
        "Order Refunded",
        "Order Cancelled",
        "Return Requested",
        "Subscribed",
        "Unsubscribed",
        "Message Clicked",
        "Message Bounced",
        "Marked As Spam",
        "SMS Received",
    ] {
        assert!(
            stats.by_kind.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}"
        );
    }
    let checkouts = stats.by_kind["Checkout Started"] as f64;
    let orders = stats.by_kind["Order Completed"] as f64;
    let rate = orders / checkouts;
    assert!((0.25..=0.45).contains(&rate), "checkout conversion {rate}");
    assert_eq!(stats.orders, stats.by_kind["Order Completed"]);

    let mut zones = BTreeSet::new();
    let mut consent = BTreeMap::new();
    let mut bounces = BTreeSet::new();
    let mut sms = BTreeSet::new();
    for call in lines(&bytes) {
        if call["type"] == "identify" {
            if let Some(z) = call["traits"]["timezone"].as_str() {
                zones.insert(z.to_string());
            }
            let c = &call["traits"]["consent"];
            if !call["traits"]["created_at"].is_null() {
                *consent.entry(c["email"].to_string()).or_insert(0) += 1;
            }
        }
        match call["event"].as_str() {
            Some("Message Bounced") => {
                bounces.insert(call["properties"]["kind"].as_str().unwrap().to_string());
            }
            Some("SMS Received") => {
                sms.insert(call["properties"]["text"].as_str().unwrap().to_string());
            }
            Some("Order Completed") => {
                let p = &call["properties"];
                assert!(p["order_id"].is_string());
                assert!(p["total"].is_f64(), "money as a JSON number: {p}");
                assert!(!p["products"].as_array().unwrap().is_empty());
            }
            _ => {}
        }
    }
    assert!(zones.len() >= 7, "{zones:?}");
    // Consent to email given, refused and unknown.
    assert_eq!(
        consent.keys().cloned().collect::<Vec<_>>(),
        ["false", "null", "true"],
        "{consent:?}"
    );
    assert_eq!(bounces.into_iter().collect::<Vec<_>>(), ["hard", "soft"]);
    assert!(sms.contains("STOP"), "{sms:?}");
}

#[test]
fn sessions_start_mostly_in_local_daytime_and_evening() {
    let (bytes, _) = gen_bytes(&config(50_000, 2));
    let calls = lines(&bytes);
    // The home zone of each user, from their identify calls.
    let mut zone_of = BTreeMap::new();
    for c in &calls {
        if c["type"] == "identify" {
            let tz: chrono_tz::Tz = c["traits"]["timezone"].as_str().unwrap().parse().unwrap();
            zone_of.insert(c["userId"].as_str().unwrap().to_string(), tz);
        }
    }
    let (mut day, mut night) = (0, 0);
    for c in &calls {
        let Some(tz) = c["userId"].as_str().and_then(|u| zone_of.get(u)) else {
            continue;
        };
        if c["type"] != "page" {
            continue;
        }
        let t = chrono::DateTime::parse_from_rfc3339(c["timestamp"].as_str().unwrap()).unwrap();
        let hour = chrono::Timelike::hour(&t.with_timezone(tz));
        if (2..6).contains(&hour) {
            night += 1;
        } else {
            day += 1;
        }
    }
    assert!(day > 1_000, "{day}");
    // 4 of 24 hours would hold a sixth of the visits if they were spread
    // evenly; they hold under a tenth.
    assert!(
        night * 10 < day,
        "{night} visits between 2 and 6 at night, {day} otherwise"
    );
}

fn cart_recovery() -> nudge_compiler::bytecode::Bundle {
    nudge_test_support::example_bundle("cart_recovery")
}

fn replay(
    bundle: &nudge_compiler::bytecode::Bundle,
    bytes: &[u8],
) -> (MemorySink, Vec<DeadLetter>) {
    let mut engine = Engine::new(bundle, MemorySink::default(), Config::default(), i64::MIN);
    let mut dead = Vec::new();
    let options = Options {
        until: None,
        drain: false,
    };
    replay::replay(&mut engine, bytes, options, &mut |d| dead.push(d)).unwrap();
    (engine.into_sink(), dead)
}

#[test]
fn every_generated_call_fits_the_standard_schemas() {
    let bundle = cart_recovery();
    let (bytes, stats) = gen_bytes(&config(20_000, 1));
    let (sink, dead) = replay(&bundle, &bytes);
    assert!(
        dead.is_empty(),
        "{} dead letters, first: {:?}",
        dead.len(),
        dead.first()
    );
    assert!(stats.by_kind.len() >= 20, "{:?}", stats.by_kind);
    assert!(!sink.outbox.is_empty(), "no sends from cart_recovery");
}

#[test]
fn a_bad_rate_spoils_that_share_of_lines_and_each_is_a_dead_letter_or_a_dropped_property() {
    let bundle = cart_recovery();
    let cfg = GenConfig {
        bad_rate: 0.01,
        ..config(20_000, 1)
    };
    let (bytes, stats) = gen_bytes(&cfg);
    let (sink, dead) = replay(&bundle, &bytes);
    // Broken JSON is a dead letter; a property of the wrong type is dropped
    // from a call that is applied all the same.
    assert!(
        dead.iter().all(|d| d.reason.starts_with("malformed JSON")),
        "{dead:?}"
    );
    let dropped = sink
        .records
        .iter()
        .filter(|r| matches!(r.what, What::Dropped { .. }))
        .count();
    assert!(
        !dead.is_empty() && dropped > 0,
        "{} malformed, {dropped} dropped",
        dead.len()
    );
    assert_eq!((dead.len() + dropped) as u64, stats.bad);
    assert!(
        (120..=280).contains(&(dead.len() + dropped)),
        "{} dead letters, {dropped} dropped",
        dead.len()
    );

    // Spoiling changes only the chosen lines: the customers do the same things.
    let (clean, _) = gen_bytes(&config(20_000, 1));
    let clean = std::str::from_utf8(&clean).unwrap().lines();
    let spoiled = std::str::from_utf8(&bytes).unwrap().lines();
    let differing = clean.zip(spoiled).filter(|(a, b)| a != b).count();
    assert_eq!(differing as u64, stats.bad);
}

#[test]
fn unusable_settings_are_refused_with_a_reason() {
    let bad = |f: fn(&mut GenConfig)| {
        let mut c = GenConfig::new(10);
        f(&mut c);
        c.validate().unwrap_err()
    };
    assert_eq!(bad(|c| c.customers = 0), ConfigError::NoCustomers);
    assert_eq!(bad(|c| c.days = 0), ConfigError::NoDays);
    assert_eq!(bad(|c| c.bad_rate = 1.5), ConfigError::BadRate(1.5));
    let err = generate(
        &GenConfig {
            customers: 0,
            ..GenConfig::new(10)
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(nudge_gen::parse_start("next tuesday").is_err());
    assert_eq!(
        nudge_gen::parse_start("2026-03-01").unwrap().to_rfc3339(),
        "2026-03-01T00:00:00+00:00"
    );
}
