//! End-to-end: `nudge run` takes calls shaped the way real stores send
//! them. Ids sent as numbers, amounts sent as text, a missing or mistyped
//! property, `screen` and `group` calls, undeclared events, Segment's
//! reserved camelCase traits and the device's context: each is applied,
//! and only an unreadable envelope is a dead letter.

mod common;
use common::{copy_example, s};

use nudge_test_support::text;
use std::path::Path;
use std::process::{Command, Output};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("nudge runs")
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `events` through the project at `dir` in memory, draining the
/// clock; returns the summary printed.
fn run(dir: &Path, events: &[&str]) -> String {
    let file = dir.join("calls.jsonl");
    std::fs::write(&file, events.join("\n")).unwrap();
    let out = nudge(&[
        "run",
        s(dir),
        "--events",
        s(&file),
        "--in-memory",
        "--drain",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn outbox(dir: &Path) -> Vec<serde_json::Value> {
    json_lines(&dir.join(".nudge/outbox.jsonl"))
}

fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    json_lines(&dir.join(".nudge/dead_letters.jsonl"))
}

fn trace(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    json_lines(&dir.join(".nudge/trace.jsonl"))
        .into_iter()
        .filter(|r| r["kind"] == kind)
        .collect()
}

const ANA: &str = r#"{"type":"identify","userId":"u5","timestamp":"2026-11-23T09:00:00Z","traits":{"email":"ana@example.com","first_name":"Ana","timezone":"UTC","consent":{"email":true}}}"#;

/// A checkout whose value arrives as text, as tag managers send it.
const CHECKOUT: &str = r#"{"type":"track","event":"Checkout Started","userId":"u5","timestamp":"2026-11-23T10:00:00Z","properties":{"value":"64.00","products":[{"product_id":77,"name":"Kettle","price":"32.00","quantity":2}]}}"#;

fn reminders_to(dir: &Path, customer: &str) -> usize {
    outbox(dir)
        .iter()
        .filter(|m| m["customer"] == customer && m["flow"] == "cart_recovery")
        .count()
}

#[test]
fn an_order_with_a_numeric_order_id_and_a_string_amount_still_stops_the_cart_reminder() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let order = r#"{"type":"track","event":"Order Completed","userId":"u5","timestamp":"2026-11-23T10:20:00Z","properties":{"order_id":4500123,"total":"150.00","products":[{"product_id":77,"price":"32.00","quantity":2}]}}"#;
    let summary = run(&dir, &[ANA, CHECKOUT, order]);
    assert!(summary.contains("0 dead letters"), "{summary}");
    assert!(!summary.contains("properties dropped"), "{summary}");
    assert_eq!(reminders_to(&dir, "u5"), 0, "{:#?}", outbox(&dir));
    let exits = trace(&dir, "exited");
    assert_eq!(exits.len(), 1, "{exits:#?}");
    assert_eq!(exits[0]["reason"], "order_completed");
    // The purchase is credited with its amount, read from the text.
    let converted = trace(&dir, "converted");
    assert_eq!(converted[0]["revenue"], "$150.00", "{converted:#?}");

    // Without the purchase the same checkout (string amount and all) is reminded.
    let (_tmp, dir) = copy_example("cart_recovery");
    run(&dir, &[ANA, CHECKOUT]);
    let sent = outbox(&dir);
    assert_eq!(sent[0]["message"], "cart_reminder", "{sent:#?}");
    let body = sent[0]["content"]["body"].as_str().unwrap();
    assert!(body.contains("2 × $32.00"), "{body}");
}

#[test]
fn an_order_without_an_order_id_is_applied_and_the_drop_is_traced() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let order = r#"{"type":"track","event":"Order Completed","userId":"u5","timestamp":"2026-11-23T10:20:00Z","properties":{"total":150,"coupon":{"code":"X"}}}"#;
    let summary = run(&dir, &[ANA, CHECKOUT, order]);
    assert!(summary.contains("0 dead letters"), "{summary}");
    assert!(
        summary.contains("accepted with notes: 2 properties dropped"),
        "{summary}"
    );
    assert_eq!(reminders_to(&dir, "u5"), 0, "{:#?}", outbox(&dir));
    let dropped = trace(&dir, "dropped");
    let got: Vec<(&str, &str, Option<&str>)> = dropped
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap(),
                r["reason"].as_str().unwrap(),
                r["used"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "properties.coupon",
                "expected a string, found an object",
                Some("none")
            ),
            ("properties.order_id", "required but missing", Some("\"\"")),
        ]
    );
    assert!(dropped.iter().all(|r| r["event"] == "Order Completed"
        && r["customer"] == "u5"
        && r["at"] == "2026-11-23T10:20:00Z"));
    // `nudge explain` tells the customer's story with the drops in it.
    let out = nudge(&["explain", "u5", s(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let story = text(&out.stdout);
    assert!(
        story.contains(
            "dropped `properties.order_id` of Order Completed: required but missing (used \"\")"
        ),
        "{story}"
    );
}

#[test]
fn only_unreadable_envelopes_are_dead_letters() {
    let (_tmp, dir) = copy_example("cart_recovery");
    let summary = run(
        &dir,
        &[
            ANA,
            // Undeclared: accepted and counted.
            r#"{"type":"track","event":"Wishlist Shared","userId":"u5","timestamp":"2026-11-23T09:05:00Z","properties":{"x":1}}"#,
            r#"{"type":"screen","userId":"u5","name":"Cart","timestamp":"2026-11-23T09:06:00Z"}"#,
            r#"{"type":"group","userId":"u5","groupId":"g1","timestamp":"2026-11-23T09:07:00Z","traits":{"name":"Acme"}}"#,
            // Unreadable: broken JSON, no customer, no time, an unknown call type.
            "{not json",
            r#"{"type":"track","event":"Checkout Started","timestamp":"2026-11-23T09:08:00Z"}"#,
            r#"{"type":"track","event":"Checkout Started","userId":"u5"}"#,
            r#"{"type":"pageview","userId":"u5","timestamp":"2026-11-23T09:09:00Z"}"#,
        ],
    );
    assert!(summary.contains("4 events applied"), "{summary}");
    assert!(summary.contains("4 dead letters"), "{summary}");
    assert!(
        summary.contains("accepted with notes: 1 undeclared events, 1 group calls"),
        "{summary}"
    );
    let dead: Vec<(u64, String)> = dead_letters(&dir)
        .iter()
        .map(|d| {
            (
                d["line"].as_u64().unwrap(),
                d["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(dead.len(), 4, "{dead:#?}");
    assert_eq!(dead.iter().map(|d| d.0).collect::<Vec<_>>(), [5, 6, 7, 8]);
    assert!(dead[0].1.starts_with("malformed JSON"), "{dead:?}");
    assert!(dead[1].1.contains("names no customer"), "{dead:?}");
    assert!(dead[2].1.contains("missing `timestamp`"), "{dead:?}");
    assert!(
        dead[3].1.contains("unsupported call type `pageview`"),
        "{dead:?}"
    );
}

/// A project whose flows answer screens, groups and identifies, each with a
/// transactional email showing what the flow saw.
fn answering_project() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("answering");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("nudge.toml"), "").unwrap();
    std::fs::write(
        project.join("flows.flow"),
        r#"event group_joined "Group" {
  group_id: string?
  name: string?
}

message seen(what: string) {
  channel email
  purpose transactional
  subject "{what}"
  body "{what}"
}

flow on_screen {
  trigger screen_viewed
  entry always
  send seen("screen {trigger.name ?? "?"}")
}

flow on_group {
  trigger group_joined
  entry always
  send seen("group {trigger.group_id ?? "?"} {trigger.name ?? "?"}")
}

flow on_order {
  trigger order_completed
  entry always
  send seen("order {trigger.order_id} for {profile.first_name ?? "?"} {profile.last_name ?? "?"} in {profile.timezone ?? "?"} {profile.locale ?? "?"} {profile.country ?? "?"} {profile.city ?? "?"} {profile.title ?? "?"} {profile.birthday == 1990-05-16}")
}
"#,
    )
    .unwrap();
    (tmp, project)
}

fn subjects(dir: &Path) -> Vec<String> {
    outbox(dir)
        .iter()
        .map(|m| m["content"]["subject"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn screens_become_screen_views_and_declared_groups_start_flows() {
    let (_tmp, dir) = answering_project();
    let summary = run(
        &dir,
        &[
            r#"{"type":"identify","userId":"u1","timestamp":"2026-11-23T09:00:00Z","traits":{"email":"a@example.com"}}"#,
            r#"{"type":"screen","userId":"u1","name":"Cart","timestamp":"2026-11-23T09:01:00Z","properties":{"category":"Checkout"}}"#,
            r#"{"type":"screen","userId":"u1","timestamp":"2026-11-23T09:02:00Z","properties":{"name":"Home"}}"#,
            r#"{"type":"group","userId":"u1","groupId":98765432109876543210,"timestamp":"2026-11-23T09:03:00Z","traits":{"name":"Acme"}}"#,
        ],
    );
    assert!(summary.contains("0 dead letters"), "{summary}");
    assert_eq!(
        subjects(&dir),
        [
            "screen Cart",
            "screen Home",
            // A group id sent as a number keeps every digit.
            "group 98765432109876543210 Acme",
        ]
    );
}

#[test]
fn reserved_traits_and_the_context_fill_the_profile() {
    let (_tmp, dir) = answering_project();
    let order = |user: &str, at: &str| {
        format!(
            r#"{{"type":"track","event":"Order Completed","userId":"{user}","timestamp":"{at}","properties":{{"order_id":"o-{user}"}},"context":{{"timezone":"Europe/Berlin","locale":"de-DE"}}}}"#
        )
    };
    run(
        &dir,
        &[
            // camelCase traits, a numeric user id, an address.
            r#"{"type":"identify","userId":4500123,"timestamp":"2026-11-23T09:00:00Z","traits":{"email":"a@example.com","firstName":"Ana","lastName":"Lima","title":"CTO","birthday":"1990-05-16T00:00:00.000Z","address":{"country":"BR","city":"Recife"}}}"#,
            &order("4500123", "2026-11-23T09:01:00Z"),
            // A profile with its own zone keeps it; the context fills the locale.
            r#"{"type":"identify","userId":"u2","timestamp":"2026-11-23T09:00:00Z","traits":{"email":"b@example.com","first_name":"Bea","firstName":"Ignored","timezone":"America/Recife"}}"#,
            &order("u2", "2026-11-23T09:02:00Z"),
        ],
    );
    assert_eq!(
        subjects(&dir),
        [
            "order o-4500123 for Ana Lima in Europe/Berlin de-DE BR Recife CTO true",
            "order o-u2 for Bea ? in America/Recife de-DE ? ? ? false",
        ]
    );
    assert_eq!(outbox(&dir)[0]["customer"], "4500123");
}

/// A project adds `utm_source` to the standard Order Completed by
/// declaring the event again under its own names; the property is checked
/// like any other.
fn extending_project(extra: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let project = tmp.path().join("extending");
    std::fs::create_dir(&project).unwrap();
    std::fs::write(project.join("nudge.toml"), "").unwrap();
    std::fs::write(
        project.join("flows.flow"),
        format!(
            r#"event order_completed "Order Completed" {{
  utm_source: string?
  {extra}
}}

message seen(what: string) {{
  channel email
  purpose transactional
  subject "{{what}}"
  body "{{what}}"
}}

flow on_order {{
  trigger order_completed where event.utm_source != none
  entry always
  send seen("order {{trigger.order_id}} from {{trigger.utm_source ?? "?"}}, {{format_money(trigger.total)}}")
}}
"#
        ),
    )
    .unwrap();
    (tmp, project)
}

#[test]
fn a_project_extends_a_standard_event_with_its_own_properties() {
    let (_tmp, dir) = extending_project("");
    let order = |id: &str, utm: &str| {
        format!(
            r#"{{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-11-23T10:0{id}:00Z","properties":{{"order_id":"o{id}","total":12.5,"utm_source":{utm}}}}}"#
        )
    };
    let summary = run(
        &dir,
        &[
            r#"{"type":"identify","userId":"u1","timestamp":"2026-11-23T09:00:00Z","traits":{"email":"a@example.com"}}"#,
            &order("1", r#""newsletter""#),
            &order("2", "42"),
            // Checked like any other property: dropped, so the flow's condition fails.
            &order("3", r#"{"x":1}"#),
        ],
    );
    assert!(summary.contains("1 properties dropped"), "{summary}");
    assert_eq!(
        subjects(&dir),
        [
            "order o1 from newsletter, $12.50",
            "order o2 from 42, $12.50"
        ]
    );
    let dropped = trace(&dir, "dropped");
    assert_eq!(dropped[0]["path"], "properties.utm_source");

    // A property the standard event has already cannot be declared again.
    let (_tmp, dir) = extending_project("total: money?");
    let out = nudge(&["check", s(&dir)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stdout) + &text(&out.stderr);
    assert!(
        stderr.contains("property `total` is already a standard property of `order_completed`"),
        "{stderr}"
    );
}
