//! End-to-end: `nudge run` honours SMS opt-out and opt-in keywords and
//! re-consent, holds marketing SMS while it is night in the number's zones,
//! and never suppresses transactional messages.

mod common;
use common::s;

use std::path::Path;
use std::process::Command;

use serde_json::json;

const FLOW: &str = r#"message promo_sms() {
  channel sms
  text "A deal. Reply STOP to opt out."
}

message shipped() {
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
  suppress list "suppressions.txt"
}

flow checkout {
  trigger checkout_started
  entry always
  send shipped()
  send promo()
  send receipt()
  // Last, so a deferral holds no other send.
  send promo_sms()
}
"#;

fn identify(id: &str, at: &str, traits: serde_json::Value) -> String {
    json!({"type": "identify", "userId": id, "timestamp": at, "traits": traits}).to_string()
}

fn track(id: &str, event: &str, at: &str, properties: serde_json::Value) -> String {
    json!({"type": "track", "event": event, "userId": id, "timestamp": at, "properties": properties})
        .to_string()
}

/// A customer without a zone, consenting to SMS and email.
fn customer(id: &str, phone: &str) -> String {
    identify(
        id,
        "2026-01-06T00:00:00Z",
        json!({
            "email": format!("{id}@example.com"),
            "phone": phone,
            "consent": {"sms": true, "email": true},
        }),
    )
}

fn sms(id: &str, at: &str, text: &str) -> String {
    track(id, "SMS Received", at, json!({"text": text}))
}

fn checkout(id: &str, at: &str) -> String {
    track(id, "Checkout Started", at, json!({"value": 20}))
}

/// The outbox as `time customer message` lines.
fn outbox(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join(".nudge/outbox.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {} {}", v["at"], v["customer"], v["message"]).replace('"', "")
        })
        .collect()
}

#[test]
fn nudge_run_applies_sms_keywords_zones_of_the_number_and_marketing_only_suppression() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shop");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("nudge.toml"), "").unwrap();
    std::fs::write(dir.join("shop.flow"), FLOW).unwrap();
    std::fs::write(dir.join("suppressions.txt"), "listed@example.com\n").unwrap();
    let lines = [
        // Los Angeles (area code 310), no zone: 13:06 UTC is 05:06 there.
        customer("la", "+1 310 555 0100"),
        // Opted out with STOPALL, back with START.
        customer("back", "+14155550101"),
        sms("back", "2026-01-06T01:00:00Z", "stopall"),
        sms("back", "2026-01-06T02:00:00Z", "START"),
        // Opted out with REVOKE: nothing goes, not even the shipping notice.
        customer("gone", "+14155550102"),
        sms("gone", "2026-01-06T01:00:00Z", "REVOKE"),
        // Opted out with OPTOUT, re-consents through an identify.
        customer("again", "+14155550103"),
        sms("again", "2026-01-06T01:00:00Z", "OptOut"),
        identify(
            "again",
            "2026-01-06T02:00:00Z",
            json!({"consent": {"sms": true}}),
        ),
        // On the suppression list: the receipt and the notice still go.
        customer("listed", "+14155550104"),
        checkout("la", "2026-01-06T13:06:00Z"),
        checkout("back", "2026-01-06T17:00:00Z"),
        checkout("gone", "2026-01-06T17:00:00Z"),
        checkout("again", "2026-01-06T17:00:00Z"),
        checkout("listed", "2026-01-06T17:00:00Z"),
    ];
    let events = dir.join("events.jsonl");
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args([
            "run",
            s(&dir),
            "--events",
            s(&events),
            "--drain",
            "--release-spread",
            "0",
        ])
        .env("NO_COLOR", "1")
        .output()
        .expect("nudge runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sent = outbox(&dir);
    sent.sort();
    assert_eq!(
        sent,
        [
            // Transactional messages are never held by quiet hours.
            "2026-01-06T13:06:00Z la promo",
            "2026-01-06T13:06:00Z la receipt",
            "2026-01-06T13:06:00Z la shipped",
            // The marketing SMS waits for 08:00 in Los Angeles.
            "2026-01-06T16:00:00Z la promo_sms",
            "2026-01-06T17:00:00Z again promo",
            "2026-01-06T17:00:00Z again promo_sms",
            "2026-01-06T17:00:00Z again receipt",
            "2026-01-06T17:00:00Z again shipped",
            "2026-01-06T17:00:00Z back promo",
            "2026-01-06T17:00:00Z back promo_sms",
            "2026-01-06T17:00:00Z back receipt",
            "2026-01-06T17:00:00Z back shipped",
            "2026-01-06T17:00:00Z gone promo",
            "2026-01-06T17:00:00Z gone receipt",
            "2026-01-06T17:00:00Z listed receipt",
            "2026-01-06T17:00:00Z listed shipped",
        ]
    );
    let trace = std::fs::read_to_string(dir.join(".nudge/trace.jsonl")).unwrap();
    let reasons: Vec<String> = trace
        .lines()
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            let reason = v["reason"].as_str()?;
            Some(format!("{} {} {reason}", v["customer"], v["message"]).replace('"', ""))
        })
        .collect();
    for expected in [
        "la promo_sms quiet_hours",
        "gone promo_sms opted_out",
        "gone shipped opted_out",
        "listed promo_sms suppression_list",
        "listed promo suppression_list",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected}: {reasons:#?}"
        );
    }
}
