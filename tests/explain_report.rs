//! End to end: run the quiet-SMS fixture, then explain its customers and
//! report on it in every format, the way a user would.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;

fn nudge() -> Command {
    let mut cmd = Command::cargo_bin("nudge").expect("the nudge binary is built");
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A run copy of the fixture, so that `.nudge/` lands in a temp dir and not in the repository.
fn run_fixture() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quiet_sms");
    let dir = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(&src).expect("fixture dir") {
        let entry = entry.expect("fixture entry");
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).expect("copy fixture");
    }
    nudge()
        .arg("run")
        .arg(dir.path())
        .arg("--drain")
        .assert()
        .success();
    dir
}

fn path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

#[test]
fn the_fixture_checks_clean() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quiet_sms");
    nudge()
        .arg("check")
        .arg(src)
        .arg("--deny-warnings")
        .assert()
        .success();
}

#[test]
fn ana_is_blocked_for_consent() {
    let dir = run_fixture();
    nudge()
        .args(["explain", "ana_id"])
        .arg(path(&dir))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "entered quiet_sms (instance 1) on Checkout Started",
        ))
        .stdout(predicate::str::contains(
            "cart_sms by sms: blocked (no SMS consent)",
        ))
        .stdout(predicate::str::contains("deferred").not());
}

#[test]
fn bob_is_deferred_to_eight_in_new_york() {
    let dir = run_fixture();
    nudge()
        .args(["explain", "bob_id"])
        .arg(path(&dir))
        .assert()
        .success()
        // 03:30 UTC is 22:30 in New York, inside the 21:00 to 08:00 window.
        .stdout(predicate::str::contains(
            "03:30:00 UTC (22:30 America/New_York)",
        ))
        .stdout(predicate::str::contains(
            "cart_sms by sms: deferred by quiet hours until 08:00 America/New_York (released 08:",
        ))
        // The store's run records what the outbox made of it.
        .stdout(predicate::str::contains("cart_sms by sms: delivered"))
        .stdout(predicate::str::contains(
            "converted: order_completed, $45.00",
        ));
}

#[test]
fn explain_json_is_the_records() {
    let dir = run_fixture();
    let out = nudge()
        .args([
            "explain",
            "bob_id",
            "--flow",
            "quiet_sms",
            "--format",
            "json",
        ])
        .arg(path(&dir))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let records: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    let records = records.as_array().expect("an array");
    assert!(records.iter().all(|r| r["customer"] == "bob_id"));
    let deferred = records
        .iter()
        .find(|r| r["outcome"] == "deferred")
        .expect("a deferral");
    assert_eq!(deferred["reason"], "quiet_hours");
    assert_eq!(deferred["zone"], "America/New_York");
    assert_eq!(deferred["until"], "2026-11-24T13:00:00Z");
}

#[test]
fn unknown_customers_and_missing_traces_are_clear() {
    let dir = run_fixture();
    nudge()
        .args(["explain", "carol_id"])
        .arg(path(&dir))
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            r#"no customer "carol_id" in the trace; known customers: ana_id, bob_id"#,
        ));
    let empty = tempfile::tempdir().expect("temp dir");
    nudge()
        .args(["explain", "ana_id"])
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no trace at"))
        .stderr(predicate::str::contains("run `nudge run"));
    nudge()
        .arg("report")
        .arg(empty.path())
        .assert()
        .code(2)
        .stderr(predicate::str::contains("run `nudge run"));
}

#[test]
fn a_broken_trace_names_its_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("trace.jsonl");
    std::fs::write(
        &trace,
        "{\"at\":\"2026-11-23T10:00:00Z\",\"customer\":\"u1\",\"kind\":\"completed\",\"flow\":\"f\",\"instance\":1}\n{not json\n",
    )
    .expect("write trace");
    nudge()
        .args(["report", "--trace"])
        .arg(&trace)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "trace.jsonl:2: not a trace record",
        ));
}

#[test]
fn the_report_counts_both_reasons() {
    let dir = run_fixture();
    nudge()
        .arg("report")
        .arg(path(&dir))
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "customers: entered 2, messaged 1, delivered 1, clicked 0, converted 1",
        ))
        .stdout(predicate::str::contains(
            "orders credited: 1 from 1 customer(s), revenue 45.00",
        ))
        .stdout(predicate::str::contains("holdout: no holdout group"))
        .stdout(predicate::str::contains(
            "blocked: consent 1, deferred: quiet_hours 1",
        ));
}

#[test]
fn the_report_in_json_csv_and_html() {
    let dir = run_fixture();
    let out = nudge()
        .args(["report", "--format", "json"])
        .arg(path(&dir))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    let flow = &json["flows"][0];
    assert_eq!(flow["flow"], "quiet_sms");
    assert_eq!(flow["funnel"]["entered"], 2);
    assert_eq!(
        flow["attributed"]["revenue"],
        serde_json::json!([{"currency": null, "amount": "45.00"}])
    );
    assert_eq!(flow["holdout"]["difference"], serde_json::Value::Null);
    assert_eq!(flow["steps"][0]["sent"], 1);
    assert_eq!(flow["steps"][0]["held"]["blocked: consent"], 1);
    assert_eq!(flow["steps"][0]["held"]["deferred: quiet_hours"], 1);

    let out = nudge()
        .args(["report", "--format", "csv"])
        .arg(path(&dir))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let csv = String::from_utf8(out).expect("UTF-8");
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        ["flow", "step", "message", "channel", "metric", "value"]
    );
    assert!(rows.iter().all(|r| r.len() == 6));
    assert!(rows.contains(&vec![
        "quiet_sms",
        "0",
        "cart_sms",
        "sms",
        "blocked: consent",
        "1"
    ]));
    assert!(rows.contains(&vec![
        "quiet_sms",
        "0",
        "cart_sms",
        "sms",
        "deferred: quiet_hours",
        "1"
    ]));
    assert!(rows.contains(&vec!["quiet_sms", "", "", "", "revenue", "45.00"]));

    let page = dir.path().join("report.html");
    nudge()
        .arg("report")
        .arg(path(&dir))
        .arg("--html")
        .arg(&page)
        .assert()
        .success();
    let html = std::fs::read_to_string(&page).expect("the page is written");
    assert!(html.contains("<svg"));
    assert!(html.contains("quiet_sms"));
    assert!(!html.contains("<script"));
}

#[test]
fn a_date_learned_too_late_is_explained() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("nudge.toml"), "").unwrap();
    std::fs::write(
        dir.path().join("renewals.flow"),
        r#"profile {
  renews_at: time?
}

message renewal_notice() {
  channel email
  subject "Your plan renews soon"
  body "See you then."
}

flow renewal {
  trigger 3d before profile.renews_at grace 1d

  send renewal_notice()
}
"#,
    )
    .unwrap();
    let line = r#"{"type":"identify","userId":"late_id","timestamp":"2026-01-05T10:00:00Z","traits":{"email":"l@example.com","consent":{"email":true},"renews_at":"2026-01-06T10:00:00Z"}}"#;
    std::fs::write(dir.path().join("events.jsonl"), format!("{line}\n")).unwrap();
    nudge()
        .arg("run")
        .arg(dir.path())
        .arg("--drain")
        .assert()
        .success();
    // Due on 3 January, learned on the 5th: two days late, past the grace of one.
    nudge()
        .args(["explain", "late_id"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "not entered into renewal: its date had passed when it was learned (due 2026-01-03T10:00:00Z, learned 2d later)",
        ));
}
