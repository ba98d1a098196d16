//! Date triggers: before and after a profile date, yearly anniversaries
//! (29 February included), and dates learned when their time has passed.

mod common;

use common::{bundle, replay, replay_with, sends};
use nudge_runtime::record::{EntryReason, What};
use nudge_runtime::replay::Options;

const MESSAGES: &str = r#"
profile {
  renews_at: time?
  anniversary: date?
}
message note() {
  channel email
  subject "Hello"
  body "x"
}
"#;

/// An identify call for `id` at `at` with extra traits (a JSON fragment).
fn identify(id: &str, at: &str, tz: &str, traits: &str) -> String {
    format!(
        r#"{{"type":"identify","userId":"{id}","timestamp":"{at}","traits":{{"email":"{id}@example.com","timezone":"{tz}","consent":{{"email":true}}{traits}}}}}"#
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

fn flow(trigger: &str) -> nudge_bytecode::Bundle {
    bundle(&format!(
        "{MESSAGES}\nflow dated {{\n  trigger {trigger}\n  send note()\n}}\n"
    ))
}

/// The date skips recorded, as `at customer reason late_by due`.
fn skips(records: &[nudge_runtime::record::Record]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| match &r.what {
            What::NotEntered {
                reason: EntryReason::DatePassed,
                late_by,
                due,
                ..
            } => Some(format!(
                "{} {} {} {}",
                r.at,
                r.customer,
                late_by.as_deref().unwrap_or("-"),
                due.as_deref().unwrap_or("-")
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn before_a_date_counts_back_from_it() {
    let b = flow("3d before profile.renews_at");
    let (sink, _) = replay(
        &b,
        &identify(
            "u1",
            "2026-01-05T09:00:00Z",
            "UTC",
            r#","renews_at":"2026-02-01T10:00:00Z""#,
        ),
    );
    assert_eq!(sends(&sink), ["2026-01-29T10:00:00Z u1 note"]);
    assert_eq!(skips(&sink.records), Vec::<String>::new());
}

#[test]
fn at_sets_the_local_time_of_day() {
    let b = flow("1d before profile.renews_at at 09:00");
    let (sink, _) = replay(
        &b,
        &identify(
            "u1",
            "2026-01-05T09:00:00Z",
            "America/New_York",
            r#","renews_at":"2026-02-01T03:00:00Z""#,
        ),
    );
    // 03:00 UTC on 1 February is the evening of 31 January in New York; a
    // day before is 30 January, at 09:00 there.
    assert_eq!(sends(&sink), ["2026-01-30T14:00:00Z u1 note"]);
}

#[test]
fn a_yearly_date_fires_on_each_anniversary_and_29_february_on_the_28th() {
    let b = flow("on profile.anniversary every year at 09:00");
    let (sink, _) = replay_with(
        &b,
        &identify(
            "u1",
            "2026-01-05T09:00:00Z",
            "Europe/Berlin",
            r#","anniversary":"2024-02-29""#,
        ),
        until("2028-12-31T00:00:00Z"),
    );
    assert_eq!(
        sends(&sink),
        [
            "2026-02-28T08:00:00Z u1 note",
            "2027-02-28T08:00:00Z u1 note",
            "2028-02-29T08:00:00Z u1 note",
        ]
    );
    // A birthday already past this year is not a skip: the next one is armed.
    assert_eq!(skips(&sink.records), Vec::<String>::new());
}

#[test]
fn a_yearly_date_repeats_as_a_schedule_does() {
    let b = flow("7d before profile.birthday every year");
    let call = identify(
        "u1",
        "2026-01-05T09:00:00Z",
        "UTC",
        r#","birthday":"1990-05-16""#,
    );
    // Draining ends, without waiting for every later year (as for schedules).
    let (sink, _) = replay(&b, &call);
    assert_eq!(sends(&sink), Vec::<String>::new());
    let (sink, _) = replay_with(&b, &call, until("2027-06-01T00:00:00Z"));
    assert_eq!(
        sends(&sink),
        [
            "2026-05-09T00:00:00Z u1 note",
            "2027-05-09T00:00:00Z u1 note"
        ]
    );
}

#[test]
fn a_date_learned_within_the_grace_fires_at_once() {
    let b = flow("90d after profile.renews_at grace 2d");
    let (sink, _) = replay(
        &b,
        &[
            // Due 2026-01-04T10:00Z: a day late, within the grace.
            identify(
                "in",
                "2026-01-05T10:00:00Z",
                "UTC",
                r#","renews_at":"2025-10-06T10:00:00Z""#,
            ),
            // Due 2026-01-01T10:00Z: four days late, past the grace.
            identify(
                "out",
                "2026-01-05T10:00:00Z",
                "UTC",
                r#","renews_at":"2025-10-03T10:00:00Z""#,
            ),
        ]
        .join("\n"),
    );
    assert_eq!(sends(&sink), ["2026-01-05T10:00:00Z in note"]);
    assert_eq!(
        skips(&sink.records),
        ["2026-01-05T10:00:00Z out 4d 2026-01-01T10:00:00Z"]
    );
}

#[test]
fn without_grace_a_past_date_is_skipped_and_recorded() {
    let b = flow("90d after profile.renews_at");
    let (sink, _) = replay(
        &b,
        &identify(
            "u1",
            "2026-01-05T10:00:00Z",
            "UTC",
            r#","renews_at":"2025-10-06T10:00:00Z""#,
        ),
    );
    assert_eq!(sends(&sink), Vec::<String>::new());
    assert_eq!(
        skips(&sink.records),
        ["2026-01-05T10:00:00Z u1 1d 2026-01-04T10:00:00Z"]
    );
    // The same date learned again changes nothing and records nothing more.
    let twice = [
        identify(
            "u1",
            "2026-01-05T10:00:00Z",
            "UTC",
            r#","renews_at":"2025-10-06T10:00:00Z""#,
        ),
        identify(
            "u1",
            "2026-01-06T10:00:00Z",
            "UTC",
            r#","renews_at":"2025-10-06T10:00:00Z""#,
        ),
    ]
    .join("\n");
    let (sink, _) = replay(&b, &twice);
    assert_eq!(skips(&sink.records).len(), 1);
}

#[test]
fn a_merge_of_two_identities_with_the_date_keeps_its_timer() {
    // Both identities armed the trigger for the same date; the merge must
    // leave one timer standing, not cancel both.
    let b = flow("3d before profile.renews_at");
    let device = r#"{"type":"identify","anonymousId":"d1","timestamp":"2026-01-05T09:00:00Z","traits":{"timezone":"UTC","renews_at":"2026-02-01T10:00:00Z"}}"#;
    let user = identify(
        "u1",
        "2026-01-06T09:00:00Z",
        "UTC",
        r#","renews_at":"2026-02-01T10:00:00Z""#,
    );
    let join = r#"{"type":"track","event":"Signed In","userId":"u1","anonymousId":"d1","timestamp":"2026-01-07T09:00:00Z","properties":{}}"#;
    let (sink, _) = replay(&b, &[device, &user, join].join("\n"));
    assert_eq!(sends(&sink), ["2026-01-29T10:00:00Z u1 note"]);
}
