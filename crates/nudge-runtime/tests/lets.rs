//! Top-level `let`s: constants are computed once, and a `let` that reads
//! the profile, the clock or the trigger is computed for each use, for the
//! customer and the moment at hand.

mod common;

use common::{bundle, replay};

#[test]
fn a_let_reading_the_profile_or_the_clock_is_computed_at_each_use() {
    let b = bundle(
        r#"
let greeting = "Hello"
let who = profile.first_name ?? "friend"
let at = now()
let day_after = at + 1d
message note(line: string) {
  channel email
  subject "{line}"
  body "x"
}
flow thanks {
  trigger order_completed
  send note("{greeting} {who} {day_after}")
}
"#,
    );
    let lines = [
        r#"{"type":"identify","userId":"u1","timestamp":"2026-01-05T09:00:00Z","traits":{"email":"a@example.com","first_name":"Ann","consent":{"email":true}}}"#,
        r#"{"type":"identify","userId":"u2","timestamp":"2026-01-05T09:00:00Z","traits":{"email":"b@example.com","first_name":"Bob","consent":{"email":true}}}"#,
        r#"{"type":"track","event":"Order Completed","userId":"u1","timestamp":"2026-01-06T09:00:00Z","properties":{"order_id":"1","total":10}}"#,
        r#"{"type":"track","event":"Order Completed","userId":"u2","timestamp":"2026-02-06T09:00:00Z","properties":{"order_id":"2","total":10}}"#,
    ];
    let (sink, _) = replay(&b, &lines.join("\n"));
    let subjects: Vec<String> = sink
        .outbox
        .iter()
        .map(|m| {
            m.content["subject"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        subjects,
        [
            "Hello Ann 2026-01-07T09:00:00Z",
            "Hello Bob 2026-02-07T09:00:00Z"
        ]
    );
}
