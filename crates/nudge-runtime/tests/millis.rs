//! Instants to the millisecond: calls within one second keep their order,
//! and a wait lasts exactly as long as it says, from its instance's start.

mod common;

use common::bundle;
use nudge_bytecode::Bundle;
use nudge_runtime::engine::{Config, Engine, MemorySink};
use nudge_runtime::ingest::apply_line;

const SOURCE: &str = r#"
message reminder() {
  channel email
  subject "Your cart is waiting"
  body "Come back"
}

flow cart {
  trigger checkout_started
  exit on order_completed
  wait 30s
  send reminder()
}
"#;

fn identify(id: &str, at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","consent":{{"email":true}}}}}}"#
    )
}

fn track(id: &str, event: &str, at: &str) -> String {
    format!(
        r#"{{"type":"track","event":"{event}","userId":"{id}","timestamp":"{at}","properties":{{"order_id":"o-{id}"}}}}"#
    )
}

fn engine(b: &Bundle) -> Engine<'_, MemorySink> {
    let config = Config {
        release_spread: 0,
        ..Config::default()
    };
    Engine::new(b, MemorySink::default(), config, i64::MIN)
}

/// Milliseconds since the epoch of an RFC 3339 time.
fn ms(at: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(at)
        .expect("a time")
        .timestamp_millis()
}

/// Applies `line` as a live server does: the clock first reaches the
/// arrival, then the call is applied at its own time.
fn arrive(e: &mut Engine<'_, MemorySink>, arrival: &str, line: &str) {
    e.advance_before(ms(arrival));
    apply_line(e, line).expect("a valid call");
}

fn sent(e: Engine<'_, MemorySink>) -> Vec<String> {
    e.into_sink()
        .outbox
        .iter()
        .map(|m| format!("{} {}", m.at, m.customer))
        .collect()
}

#[test]
fn a_purchase_later_in_the_same_second_stops_the_reminder() {
    // Another customer's call moved the clock to 10:00:01.000 before the
    // checkout (10:00:00.900) and the order (10:00:00.918) arrived.
    let b = bundle(SOURCE);
    let mut e = engine(&b);
    arrive(
        &mut e,
        "2026-01-05T09:00:00Z",
        &identify("x", "2026-01-05T09:00:00Z"),
    );
    arrive(
        &mut e,
        "2026-01-05T09:00:00Z",
        &identify("y", "2026-01-05T09:00:00Z"),
    );
    let at = "2026-01-05T10:00:01.000Z";
    arrive(&mut e, at, &track("y", "Checkout Started", at));
    arrive(
        &mut e,
        at,
        &track("x", "Checkout Started", "2026-01-05T10:00:00.900Z"),
    );
    arrive(
        &mut e,
        at,
        &track("x", "Order Completed", "2026-01-05T10:00:00.918Z"),
    );
    e.drain();
    assert_eq!(sent(e), ["2026-01-05T10:00:31Z y"]);
}

#[test]
fn a_purchase_earlier_in_the_same_second_is_an_earlier_order() {
    // The order came 800 ms before the checkout: it does not end the cart
    // that started after it.
    let b = bundle(SOURCE);
    let mut e = engine(&b);
    let lines = [
        identify("x", "2026-01-05T09:00:00Z"),
        track("x", "Order Completed", "2026-01-05T10:00:00.100Z"),
        track("x", "Checkout Started", "2026-01-05T10:00:00.900Z"),
    ];
    for l in &lines {
        apply_line(&mut e, l).expect("a valid call");
    }
    e.drain();
    assert_eq!(sent(e), ["2026-01-05T10:00:30.900Z x"]);
}

#[test]
fn a_wait_never_ends_early() {
    let b = bundle(SOURCE);
    let mut e = engine(&b);
    apply_line(&mut e, &identify("x", "2026-01-05T09:00:00Z")).unwrap();
    apply_line(
        &mut e,
        &track("x", "Checkout Started", "2026-01-05T10:00:00.900Z"),
    )
    .unwrap();
    // One millisecond short of thirty seconds: nothing yet.
    e.advance_through(ms("2026-01-05T10:00:30.899Z"));
    assert!(e.sink().outbox.is_empty(), "{:?}", e.sink().outbox);
    e.advance_through(ms("2026-01-05T10:00:30.900Z"));
    assert_eq!(sent(e), ["2026-01-05T10:00:30.900Z x"]);
}
