//! `trigger entering` on segments that change with time alone: the engine
//! looks at the segment again when its membership can next change, so a
//! customer who lapses by staying away enters on the day they lapse.

mod common;

use common::{arena, bundle, engine, feed, replay_with, sends};
use nudge_runtime::replay::Options;

const MESSAGES: &str = r#"
profile {
  renews_at: time?
}
message note() {
  channel email
  subject "Hello"
  body "x"
}
"#;

fn flow(segment: &str) -> nudge_bytecode::Bundle {
    bundle(&format!(
        "{MESSAGES}\n{segment}\nflow moved {{\n  trigger entering s\n  send note()\n}}\n"
    ))
}

/// An identify call for `id` at `at` with extra traits (a JSON fragment).
fn identify(id: &str, at: &str, traits: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"UTC","consent":{{"email":true}}{traits}}}}}"#
    )
}

fn until(at: &str) -> Options {
    Options {
        until: Some(nudge_runtime::millis::ms(
            nudge_runtime::decode::parse_time(at).unwrap(),
        )),
        drain: false,
    }
}

fn run(segment: &str, lines: &[String], end: &str) -> Vec<String> {
    let b = flow(segment);
    let (sink, dead) = replay_with(&b, &lines.join("\n"), until(end));
    assert!(dead.is_empty(), "{dead:?}");
    sends(&sink)
}

const LAPSED: &str = "segment s = days_between(profile.last_order_at ?? now(), now()) >= 60";

#[test]
fn a_customer_enters_on_the_day_they_lapse() {
    let lines = [identify(
        "u1",
        "2026-01-05T09:00:00Z",
        r#","last_order_at":"2026-01-01T10:00:00Z""#,
    )];
    // Sixty whole days after the last order, with no call in between.
    assert_eq!(
        run(LAPSED, &lines, "2026-06-01T00:00:00Z"),
        ["2026-03-02T10:00:00Z u1 note"]
    );
    // Not before.
    assert_eq!(
        run(LAPSED, &lines, "2026-03-02T09:59:59Z"),
        Vec::<String>::new()
    );
}

#[test]
fn a_new_order_moves_the_day_and_a_customer_without_one_never_lapses() {
    let lines = [
        identify(
            "u1",
            "2026-01-05T09:00:00Z",
            r#","last_order_at":"2026-01-01T10:00:00Z""#,
        ),
        identify("u2", "2026-01-05T09:00:00Z", ""),
        identify(
            "u1",
            "2026-02-20T09:00:00Z",
            r#","last_order_at":"2026-02-20T08:00:00Z""#,
        ),
    ];
    assert_eq!(
        run(LAPSED, &lines, "2027-01-01T00:00:00Z"),
        ["2026-04-21T08:00:00Z u1 note"]
    );
}

#[test]
fn already_lapsed_when_seen_enters_at_once_and_once_only() {
    let lines = [identify(
        "u1",
        "2026-05-05T09:00:00Z",
        r#","last_order_at":"2026-01-01T10:00:00Z""#,
    )];
    assert_eq!(
        run(LAPSED, &lines, "2027-01-01T00:00:00Z"),
        ["2026-05-05T09:00:00Z u1 note"]
    );
}

#[test]
fn each_shape_enters_at_its_instant() {
    let renews = identify(
        "u1",
        "2026-01-05T09:00:00Z",
        r#","last_order_at":"2026-01-01T10:00:00Z","renews_at":"2026-02-01T12:00:00Z""#,
    );
    let cases: &[(&str, &str)] = &[
        // Times against the clock, through a `let` and with offsets.
        (
            "let cutoff = now() - 30d\nsegment s = (profile.last_order_at ?? cutoff) < cutoff",
            "2026-01-31T10:00:01Z",
        ),
        (
            "segment s = (profile.last_order_at ?? now()) <= now() - 30d",
            "2026-01-31T10:00:00Z",
        ),
        (
            "segment s = now() + 2d >= (profile.renews_at ?? 2100-01-01T00:00:00Z)",
            "2026-01-30T12:00:00Z",
        ),
        (
            "segment s = now() > 2026-03-01T00:00:00Z",
            "2026-03-01T00:00:01Z",
        ),
        // Durations.
        (
            "segment s = now() - (profile.last_order_at ?? now()) > 45d",
            "2026-02-15T10:00:01Z",
        ),
        (
            "segment s = (profile.renews_at ?? now()) - now() < 1d",
            "2026-01-31T12:00:01Z",
        ),
        // Days counted down to a date: at most 3 whole days left means
        // under 4 days to go.
        (
            "segment s = days_between(now(), profile.renews_at ?? now()) <= 3 and profile.renews_at != none",
            "2026-01-28T12:00:01Z",
        ),
        // Counted up, through a `let` threshold that is not a constant.
        (
            "let days = 10 + 5\nsegment s = days_between(profile.last_order_at ?? now(), now()) > days",
            "2026-01-17T10:00:00Z",
        ),
        // `not`, `or`, and another segment.
        (
            "segment fresh = days_between(profile.last_order_at ?? now(), now()) < 20\nsegment s = not fresh or profile.email == \"x\"",
            "2026-01-21T10:00:00Z",
        ),
    ];
    for (segment, at) in cases {
        assert_eq!(
            run(
                segment,
                std::slice::from_ref(&renews),
                "2026-12-31T00:00:00Z"
            ),
            [format!("{at} u1 note")],
            "{segment}"
        );
    }
}

#[test]
fn leaving_and_entering_again_starts_again() {
    // In the segment during one window: from 10 to 20 days after the order.
    let segment = "segment s = days_between(profile.last_order_at ?? now(), now()) >= 10 and days_between(profile.last_order_at ?? now(), now()) < 20";
    let lines = [
        identify(
            "u1",
            "2026-01-05T09:00:00Z",
            r#","last_order_at":"2026-01-01T10:00:00Z""#,
        ),
        // A new order after the window: the customer enters again ten days on.
        identify(
            "u1",
            "2026-02-01T09:00:00Z",
            r#","last_order_at":"2026-02-01T08:00:00Z""#,
        ),
    ];
    let b = bundle(&format!(
        "{MESSAGES}\n{segment}\nflow moved {{\n  trigger entering s\n  entry always\n  send note()\n}}\n"
    ));
    let (sink, _) = replay_with(&b, &lines.join("\n"), until("2026-12-31T00:00:00Z"));
    assert_eq!(
        sends(&sink),
        [
            "2026-01-11T10:00:00Z u1 note",
            "2026-02-11T08:00:00Z u1 note"
        ]
    );
}

#[test]
fn a_merge_keeps_the_segment_timer() {
    let device = r#"{"type":"identify","anonymousId":"d1","timestamp":"2026-01-05T09:00:00Z","traits":{"timezone":"UTC","last_order_at":"2026-01-01T10:00:00Z"}}"#;
    let user = identify(
        "u1",
        "2026-01-06T09:00:00Z",
        r#","last_order_at":"2026-01-01T10:00:00Z""#,
    );
    let join = r#"{"type":"track","event":"Signed In","userId":"u1","anonymousId":"d1","timestamp":"2026-01-07T09:00:00Z","properties":{}}"#;
    let lines = [device.to_string(), user, join.to_string()];
    assert_eq!(
        run(LAPSED, &lines, "2026-12-31T00:00:00Z"),
        ["2026-03-02T10:00:00Z u1 note"]
    );
}

#[test]
fn a_deploy_that_changes_the_segment_moves_the_timer() {
    let old = flow(LAPSED);
    let new = flow("segment s = days_between(profile.last_order_at ?? now(), now()) >= 30");
    let mut e = engine(&old);
    feed(
        &mut e,
        &[identify(
            "u1",
            "2026-01-05T09:00:00Z",
            r#","last_order_at":"2026-01-01T10:00:00Z""#,
        )],
    );
    e.deploy(&new, arena()).unwrap();
    e.advance_through(nudge_runtime::millis::ms(
        nudge_runtime::decode::parse_time("2026-12-31T00:00:00Z").unwrap(),
    ));
    let sent: Vec<String> = e
        .sink()
        .outbox
        .iter()
        .map(|m| format!("{} {}", m.at, m.customer))
        .collect();
    assert_eq!(sent, ["2026-01-31T10:00:00Z u1"]);
}

#[test]
fn draining_does_not_wait_for_segments() {
    // As for schedules: the next look at a segment is not work left to do.
    let b = flow(LAPSED);
    let (sink, _) = common::replay(
        &b,
        &identify(
            "u1",
            "2026-01-05T09:00:00Z",
            r#","last_order_at":"2026-01-01T10:00:00Z""#,
        ),
    );
    assert_eq!(sends(&sink), Vec::<String>::new());
}

#[test]
fn a_day_turns_at_midnight_in_the_recipients_zone() {
    let segment = "segment s = date_of(now()) >= 2026-02-01";
    let berlin = r#"{"type":"identify","userId":"berlin","timestamp":"2026-01-05T09:00:00Z","traits":{"email":"b@example.com","timezone":"Europe/Berlin","consent":{"email":true}}}"#;
    let la = r#"{"type":"identify","userId":"la","timestamp":"2026-01-05T09:00:00Z","traits":{"email":"l@example.com","timezone":"America/Los_Angeles","consent":{"email":true}}}"#;
    assert_eq!(
        run(
            segment,
            &[berlin.to_string(), la.to_string()],
            "2026-03-01T00:00:00Z"
        ),
        [
            "2026-01-31T23:00:00Z berlin note",
            "2026-02-01T08:00:00Z la note"
        ]
    );
}
