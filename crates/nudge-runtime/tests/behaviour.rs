//! Segments over behaviour: what a customer did within a window before now
//! (`count_events_within`, `any_event_within`, `sum_events_within`,
//! `last_event_within`), combined with profile conditions.

mod common;

use common::{bundle, replay, replay_with, sends};

const MESSAGES: &str = r#"
message note() {
  channel email
  subject "x"
  body "x"
}
"#;

fn run(segment: &str, lines: &[String]) -> Vec<String> {
    let b = bundle(&format!(
        "{MESSAGES}\n{segment}\nflow f {{\n  trigger entering s\n  entry always\n  send note()\n}}\n"
    ));
    // The clock runs on after the calls: memberships change with it.
    let until = nudge_runtime::decode::parse_time("2026-12-31T00:00:00Z").unwrap();
    let options = nudge_runtime::replay::Options {
        until: Some(nudge_runtime::millis::ms(until)),
        drain: false,
    };
    let (sink, dead) = replay_with(&b, &lines.join("\n"), options);
    assert!(dead.is_empty(), "{dead:?}");
    sends(&sink)
}

fn identify(at: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"u1","timestamp":"{at}","traits":{{"email":"u1@example.com","consent":{{"email":true}}}}}}"#
    )
}

fn viewed(at: &str, category: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Product Viewed","userId":"u1","timestamp":"{at}","properties":{{"product_id":"p","category":"{category}"}}}}"#
    )
}

fn ordered(at: &str, total: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Order Completed","userId":"u1","timestamp":"{at}","properties":{{"order_id":"{at}","total":{total}}}}}"#
    )
}

#[test]
fn three_views_of_a_category_within_thirty_days_make_a_fan() {
    let segment =
        r#"segment s = count_events_within(product_viewed, 30d, v => v.category == "Shoes") >= 3"#;
    // Two views in January fall out of the window before the third, in
    // March; another category never counts; three within a month do.
    let lines = [
        identify("2026-01-01T09:00:00Z"),
        viewed("2026-01-02T10:00:00Z", "Shoes"),
        viewed("2026-01-03T10:00:00Z", "Shoes"),
        viewed("2026-03-01T10:00:00Z", "Shoes"),
        viewed("2026-03-02T10:00:00Z", "Hats"),
        viewed("2026-03-10T10:00:00Z", "Shoes"),
        viewed("2026-03-20T10:00:00Z", "Shoes"),
    ];
    assert_eq!(run(segment, &lines), ["2026-03-20T10:00:00Z u1 note"]);
}

#[test]
fn spend_within_a_year_and_no_order_lately() {
    let segment = "segment s = sum_events_within(order_completed, 365d, o => o.total) >= $100 and not any_event_within(order_completed, 7d, o => true) and profile.email != none";
    let lines = [
        identify("2026-01-01T09:00:00Z"),
        ordered("2026-01-02T10:00:00Z", "60.00"),
        // $110 within the year, but an order within the week.
        ordered("2026-02-01T10:00:00Z", "50.00"),
    ];
    // In the second that order leaves the week, with no call from them.
    assert_eq!(run(segment, &lines), ["2026-02-08T10:00:01Z u1 note"]);
}

#[test]
fn a_customer_enters_when_an_order_leaves_a_window_named_by_a_let() {
    // The window through a `let`, as the example writes it; the views stay.
    let segment = "let calm = 14d\nsegment s = count_events_within(product_viewed, 30d, v => true) >= 2 and not any_event_within(order_completed, calm, o => true)";
    let lines = [
        identify("2026-01-01T09:00:00Z"),
        ordered("2026-01-02T10:00:00Z", "20.00"),
        viewed("2026-01-05T10:00:00Z", "Shoes"),
        viewed("2026-01-06T10:00:00Z", "Shoes"),
        // Out of the order's fortnight on 16 January; the views are still
        // within 30 days then. A later view changes nothing: already in.
        viewed("2026-01-20T10:00:00Z", "Shoes"),
    ];
    assert_eq!(run(segment, &lines), ["2026-01-16T10:00:01Z u1 note"]);
}

#[test]
fn leaving_a_window_by_time_alone_lets_the_customer_enter_again() {
    let segment = "segment s = count_events_within(product_viewed, 10d, v => true) >= 2";
    let lines = [
        identify("2026-01-01T09:00:00Z"),
        viewed("2026-01-02T10:00:00Z", "Shoes"),
        viewed("2026-01-03T10:00:00Z", "Shoes"),
        // The first view leaves on 12 January: out, with no call. One
        // more view on the 12th, an hour later, brings two again: in again.
        viewed("2026-01-12T11:00:00Z", "Shoes"),
    ];
    assert_eq!(
        run(segment, &lines),
        [
            "2026-01-03T10:00:00Z u1 note",
            "2026-01-12T11:00:00Z u1 note"
        ]
    );
}

#[test]
fn the_latest_event_within_the_window_or_none() {
    let segment =
        r#"segment s = (last_event_within(product_viewed, 1d)?.category ?? "") == "Shoes""#;
    let lines = [
        identify("2026-01-01T09:00:00Z"),
        viewed("2026-01-02T10:00:00Z", "Hats"),
        viewed("2026-01-02T11:00:00Z", "Shoes"),
    ];
    assert_eq!(run(segment, &lines), ["2026-01-02T11:00:00Z u1 note"]);
}

#[test]
fn in_a_flow_the_window_starts_no_earlier_than_the_instance() {
    // A view before the instance started does not count, however recent.
    let b = bundle(&format!(
        "{MESSAGES}\nflow f {{\n  trigger order_completed\n  wait 2h\n  if any_event_within(product_viewed, 30d, v => true) {{\n    send note()\n  }}\n}}\n"
    ));
    let lines = [
        identify("2026-01-01T09:00:00Z"),
        viewed("2026-01-02T09:00:00Z", "Shoes"),
        ordered("2026-01-02T10:00:00Z", "10.00"),
        ordered("2026-01-03T10:00:00Z", "10.00"),
        viewed("2026-01-03T11:00:00Z", "Shoes"),
    ];
    let (sink, _) = replay(&b, &lines.join("\n"));
    assert_eq!(sends(&sink), ["2026-01-03T12:00:00Z u1 note"]);
}

#[test]
fn a_deploy_that_narrows_a_window_looks_again_at_the_new_exit() {
    let source = |window: &str| {
        bundle(&format!(
            "{MESSAGES}\nsegment s = any_event_within(order_completed, {window}, o => true)\nflow f {{\n  trigger entering s\n  entry always\n  send note()\n}}\n"
        ))
    };
    let (wide, narrow) = (source("30d"), source("7d"));
    let mut e = common::engine(&wide);
    common::feed(
        &mut e,
        &[
            identify("2026-01-01T09:00:00Z"),
            ordered("2026-01-02T10:00:00Z", "20.00"),
        ],
    );
    e.deploy(&narrow, common::arena()).unwrap();
    // Out on 9 January under the week's window (not 1 February): so the
    // order of the 20th brings the customer in again.
    common::feed(&mut e, &[ordered("2026-01-20T10:00:00Z", "20.00")]);
    e.advance_through(nudge_runtime::millis::ms(
        nudge_runtime::decode::parse_time("2026-03-01T00:00:00Z").unwrap(),
    ));
    let sent: Vec<String> = e.sink().outbox.iter().map(|m| m.at.clone()).collect();
    assert_eq!(sent, ["2026-01-02T10:00:00Z", "2026-01-20T10:00:00Z"]);
}
