//! End-to-end: `nudge gen` writes a stream that `nudge run` replays with no
//! dead letters, and bad options are refused with a reason.

use nudge_test_support::{path_str, text};
use std::process::{Command, Output};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("nudge runs")
}

#[test]
fn generated_events_replay_through_cart_recovery_without_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let made = nudge(&[
        "gen",
        "--events",
        "10000",
        "--seed",
        "42",
        "-o",
        path_str(&events),
    ]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let summary = text(&made.stderr);
    assert!(
        summary.contains("10000 lines (0 malformed on purpose)"),
        "{summary}"
    );
    assert!(summary.contains("Checkout Started"), "{summary}");
    let written = std::fs::read_to_string(&events).unwrap();
    assert_eq!(written.lines().count(), 10_000);

    let (outbox, dead, trace) = (
        dir.path().join("out.jsonl"),
        dir.path().join("dead.jsonl"),
        dir.path().join("trace.jsonl"),
    );
    let ran = nudge(&[
        "run",
        "examples/cart_recovery",
        "--events",
        path_str(&events),
        "--outbox",
        path_str(&outbox),
        "--dead-letters",
        path_str(&dead),
        "--trace",
        path_str(&trace),
        // A throwaway run: no store inside the repository's example.
        "--in-memory",
    ]);
    assert_eq!(ran.status.code(), Some(0), "{}", text(&ran.stderr));
    let dead_letters = std::fs::read_to_string(&dead).unwrap_or_default();
    assert_eq!(dead_letters.lines().count(), 0, "{dead_letters}");
    let sent = std::fs::read_to_string(&outbox).unwrap();
    assert!(sent.lines().count() > 0, "nothing was sent");
}

#[test]
fn the_same_options_print_the_same_stream() {
    let a = nudge(&["gen", "--events", "500", "--seed", "9", "--days", "3"]);
    let b = nudge(&["gen", "--events", "500", "--seed", "9", "--days", "3"]);
    assert_eq!(a.status.code(), Some(0), "{}", text(&a.stderr));
    assert_eq!(text(&a.stdout).lines().count(), 500);
    assert!(a.stdout == b.stdout);
}

#[test]
fn bad_options_are_refused_with_a_reason() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["gen", "--events", "10", "--bad-rate", "2"],
            "between 0 and 1",
        ),
        (
            &["gen", "--events", "10", "--customers", "0"],
            "at least one customer",
        ),
        (
            &["gen", "--events", "10", "--days", "0"],
            "at least one day",
        ),
        (
            &["gen", "--events", "10", "--start", "soon"],
            "is not a start time",
        ),
    ];
    for (args, want) in cases {
        let out = nudge(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_purchase_history_replays_through_the_win_back_benchmark_and_sends() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("orders.jsonl");
    let made = nudge(&[
        "gen",
        "--shape",
        "purchases",
        "--events",
        "3000",
        "-o",
        path_str(&events),
    ]);
    assert_eq!(made.status.code(), Some(0), "{}", text(&made.stderr));
    let summary = text(&made.stderr);
    assert!(summary.contains("3000 lines"), "{summary}");
    assert!(summary.contains("Order Completed"), "{summary}");
    let written = std::fs::read_to_string(&events).unwrap();
    assert_eq!(written.lines().count(), 3_000);

    // A copy of the benchmark's project, so no store lands in the tree.
    let project = dir.path().join("winback");
    nudge_test_support::copy_project(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/winback"),
        &project,
    );
    let outbox = dir.path().join("out.jsonl");
    let run = nudge(&[
        "run",
        path_str(&project),
        "--events",
        path_str(&events),
        "--in-memory",
        "--outbox",
        path_str(&outbox),
        "--format",
        "json",
    ]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run.stderr));
    let summary: serde_json::Value = serde_json::from_str(text(&run.stdout).trim()).unwrap();
    assert_eq!(summary["stats"]["dead_letters"], 0);
    let sent = std::fs::read_to_string(&outbox).unwrap().lines().count();
    // Customers whose last order is 90 days old hear from the store: many
    // of them over eighteen months.
    assert!(sent > 300, "{sent} sends");

    let refused = nudge(&[
        "gen",
        "--shape",
        "purchases",
        "--events",
        "10",
        "--bad-rate",
        "0.1",
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused.stderr).contains("--bad-rate applies to --shape sessions only"));
}
