//! Identity merges: instance identities (and so idempotency keys) stay
//! unique and stable, and the merged person's entry rules hold. State tied
//! to an address holds for every customer who shares it.

mod common;

use common::{bundle, replay, sends};
use nudge_runtime::record::{Outcome, SendReason, What};

const SOURCE: &str = r#"
message reminder() {
  channel email
  subject "Your cart is waiting"
  body "Come back"
}

flow cart {
  trigger checkout_started
  exit on order_completed
  wait 1h
  send reminder()
}
"#;

fn identify(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"UTC","consent":{{"email":true}}}}}}"#
    )
}

fn checkout(who: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Checkout Started",{who},"timestamp":"{at}","properties":{{}}}}"#
    )
}

fn alias(anonymous: &str, user: &str, at: &str) -> String {
    format!(r#"{{"type":"alias","previousId":"{anonymous}","userId":"{user}","timestamp":"{at}"}}"#)
}

fn keys(sink: &nudge_runtime::engine::MemorySink) -> Vec<String> {
    sink.outbox
        .iter()
        .map(|m| m.idempotency_key.clone())
        .collect()
}

#[test]
fn two_live_instances_of_one_person_become_one_after_the_merge() {
    let b = bundle(SOURCE);
    let (sink, _) = replay(
        &b,
        &[
            identify("u1", "2026-01-05T09:00:00Z"),
            // The laptop, anonymous, then the phone, signed in.
            checkout(r#""anonymousId":"a1""#, "2026-01-05T10:00:00Z"),
            checkout(r#""userId":"u1""#, "2026-01-05T10:10:00Z"),
            alias("a1", "u1", "2026-01-05T10:20:00Z"),
        ]
        .join("\n"),
    );
    // One reminder, from the earlier instance.
    assert_eq!(sends(&sink), ["2026-01-05T11:00:00Z u1 reminder"]);
    let merged: Vec<_> = sink
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Exited {
                reason,
                instance,
                code,
                ..
            } if reason == "merged" => {
                assert_eq!(*code, Some(nudge_runtime::record::ExitReason::Merged));
                Some((r.at.as_str(), *instance))
            }
            _ => None,
        })
        .collect();
    assert_eq!(merged, [("2026-01-05T10:20:00Z", 1)]);
}

#[test]
fn a_merge_keeps_idempotency_keys_unique_and_unchanged() {
    let b = bundle(SOURCE);
    let (sink, _) = replay(
        &b,
        &[
            identify("u1", "2026-01-05T09:00:00Z"),
            // A week's first cart: u1's instance 1, reminded.
            checkout(r#""userId":"u1""#, "2026-01-05T10:00:00Z"),
            // A week later on another device: a1's instance 1, joined to
            // u1 while it waits.
            checkout(r#""anonymousId":"a1""#, "2026-01-12T10:00:00Z"),
            alias("a1", "u1", "2026-01-12T10:10:00Z"),
            // After the merge: a number neither side gave before.
            checkout(r#""userId":"u1""#, "2026-01-19T10:00:00Z"),
        ]
        .join("\n"),
    );
    assert_eq!(
        sends(&sink),
        [
            "2026-01-05T11:00:00Z u1 reminder",
            "2026-01-12T11:00:00Z u1 reminder",
            "2026-01-19T11:00:00Z u1 reminder",
        ]
    );
    let v = &b.flows[0].version;
    assert_eq!(
        keys(&sink),
        [
            format!("cart/{v}/u1/1/send@1"),
            // Started as a1: its key names a1, as it would have unmerged.
            format!("cart/{v}/a1/1/send@1"),
            format!("cart/{v}/u1/3/send@1"),
        ]
    );
}

const SHARED: &str = r#"
message promo() {
  channel email
  subject "New in"
  body "Have a look"
}

message promo_sms() {
  channel sms
  text "New in"
}

flow promo {
  trigger product_viewed
  entry always
  send promo()
  send promo_sms()
}
"#;

fn sharer(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"Family@Example.com","phone":"+15555550100","timezone":"UTC","consent":{{"email":true,"sms":true}}}}}}"#
    )
}

fn track(id: &str, event: &str, at: &str, props: &str) -> String {
    format!(
        r#"{{"type":"track","event":"{event}","userId":"{id}","timestamp":"{at}","properties":{props}}}"#
    )
}

fn decisions(sink: &nudge_runtime::engine::MemorySink, who: &str) -> Vec<String> {
    sink.records
        .iter()
        .filter(|r| r.customer == who)
        .filter_map(|r| match &r.what {
            What::Send {
                message,
                outcome,
                reason,
                ..
            } => Some(format!(
                "{message} {}{}",
                outcome.name(),
                reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_bounce_and_an_sms_stop_hold_for_everyone_who_shares_the_address() {
    let b = bundle(SHARED);
    let view = |who: &str, at: &str| track(who, "Product Viewed", at, r#"{"product_id":"p1"}"#);
    let (sink, _) = replay(
        &b,
        &[
            sharer("mum", "2026-01-05T09:00:00Z"),
            sharer("son", "2026-01-05T09:00:00Z"),
            track(
                "mum",
                "Message Bounced",
                "2026-01-05T10:00:00Z",
                r#"{"channel":"email","kind":"hard"}"#,
            ),
            track(
                "mum",
                "SMS Received",
                "2026-01-05T10:00:00Z",
                r#"{"text":"STOP"}"#,
            ),
            view("son", "2026-01-05T11:00:00Z"),
            // The phone texts START: its opt-out is lifted for both.
            track(
                "mum",
                "SMS Received",
                "2026-01-05T12:00:00Z",
                r#"{"text":"start"}"#,
            ),
            view("son", "2026-01-05T13:00:00Z"),
        ]
        .join("\n"),
    );
    assert_eq!(
        decisions(&sink, "son"),
        [
            "promo blocked: undeliverable",
            "promo_sms blocked: opted_out",
            "promo blocked: undeliverable",
            "promo_sms sent",
        ]
    );
}

#[test]
fn a_cap_counts_the_sends_of_everyone_who_shares_the_address() {
    // One inbox, two accounts: a cap of one email a day holds for the inbox.
    let b = bundle(&format!("{SHARED}\npolicy {{\n  cap email 1 per 1d\n}}\n"));
    let view = |who: &str, at: &str| track(who, "Product Viewed", at, r#"{"product_id":"p1"}"#);
    let (sink, _) = replay(
        &b,
        &[
            sharer("mum", "2026-01-05T09:00:00Z"),
            sharer("son", "2026-01-05T09:00:00Z"),
            sharer("lodger", "2026-01-05T09:00:00Z")
                .replace("Family@Example.com", "lodger@example.com"),
            view("mum", "2026-01-05T10:00:00Z"),
            view("son", "2026-01-05T11:00:00Z"),
            view("lodger", "2026-01-05T11:00:00Z"),
            // A day after mum's email, the inbox may have another.
            view("son", "2026-01-06T10:00:01Z"),
        ]
        .join("\n"),
    );
    let emails = |who: &str| -> Vec<String> {
        decisions(&sink, who)
            .into_iter()
            .filter(|d| d.starts_with("promo "))
            .collect()
    };
    assert_eq!(emails("mum"), ["promo sent"]);
    assert_eq!(
        emails("son"),
        ["promo capped: cap email 1 per 1d", "promo sent"]
    );
    // Another address has its own cap.
    assert_eq!(emails("lodger"), ["promo sent"]);
    // The trace names the reason by its stable code too.
    let codes: Vec<_> = sink
        .records
        .iter()
        .filter_map(|r| match &r.what {
            What::Send {
                outcome: Outcome::Capped,
                code,
                ..
            } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [Some(SendReason::PolicyCap)]);
    let json = serde_json::to_string(&sink.records).unwrap();
    assert!(json.contains(r#""code":"policy_cap""#), "{json}");
}

#[test]
fn a_merge_finds_a_purchase_made_long_before_under_the_other_identity() {
    // The visitor's cart waits five days; the account buys on day two and
    // keeps calling, so its own history would be forgotten after a day if
    // only its own instances counted. The merge on day four must still find
    // the purchase and stop the reminder.
    let b = bundle(&SOURCE.replace("wait 1h", "wait 5d"));
    let lines = [
        r#"{"type":"identify","anonymousId":"a1","timestamp":"2026-01-01T09:00:00Z","traits":{"timezone":"UTC","consent":{"email":true}}}"#.to_string(),
        r#"{"type":"track","event":"Checkout Started","anonymousId":"a1","timestamp":"2026-01-01T10:00:00Z","properties":{}}"#.to_string(),
        r#"{"type":"identify","userId":"u1","timestamp":"2026-01-02T09:00:00Z","traits":{"email":"u1@example.com","timezone":"UTC","consent":{"email":true}}}"#.to_string(),
        r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-02T10:00:00Z","properties":{"order_id":"o1"}}"#.to_string(),
        r#"{"type":"track","event":"Product Viewed","userId":"u1","timestamp":"2026-01-04T10:00:00Z","properties":{"product_id":"p"}}"#.to_string(),
        r#"{"type":"identify","userId":"u1","timestamp":"2026-01-04T11:00:00Z","traits":{}}"#.to_string(),
        r#"{"type":"alias","previousId":"a1","userId":"u1","timestamp":"2026-01-04T12:00:00Z"}"#.to_string(),
    ];
    let config = nudge_runtime::engine::Config {
        release_spread: 0,
        forget_every: 1,
        ..nudge_runtime::engine::Config::default()
    };
    let mut e = nudge_runtime::engine::Engine::new(
        &b,
        nudge_runtime::engine::MemorySink::default(),
        config,
        i64::MIN,
    );
    nudge_runtime::replay::replay(
        &mut e,
        lines.join("\n").as_bytes(),
        nudge_runtime::replay::Options::default(),
        &mut |d| panic!("{d:?}"),
    )
    .unwrap();
    e.drain();
    assert!(e.sink().outbox.is_empty(), "{:?}", e.sink().outbox);
    let exited = e.sink().records.iter().any(
        |r| matches!(&r.what, What::Exited { reason, .. } if reason.contains("order_completed")),
    );
    assert!(exited, "{:?}", e.sink().records);
}
