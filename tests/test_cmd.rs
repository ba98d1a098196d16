//! End-to-end tests of `nudge test`: the examples' scenarios pass, a broken
//! journey fails with a readable diff, `--filter` and JUnit output.

use assert_cmd::Command;
use nudge_test_support::{copy_project, examples_root};
use predicates::prelude::*;

fn nudge() -> Command {
    let mut cmd = Command::cargo_bin("nudge").expect("the nudge binary is built");
    cmd.env("NO_COLOR", "1");
    cmd
}

/// A copy of the cart recovery example without its purchase exit.
fn broken_cart_recovery() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = examples_root().join("cart_recovery");
    copy_project(&src, dir.path());
    let flow = dir.path().join("cart_recovery.flow");
    let text = std::fs::read_to_string(&flow).expect("read flow");
    // A plausible slip: the stop-on-purchase rule only matches big orders,
    // so the small purchase in the test no longer stops the reminder.
    let broken = text.replace(
        "exit on order_completed\n",
        "exit on order_completed where event.total > $1000\n",
    );
    assert_ne!(broken, text, "the exit rule was changed");
    std::fs::write(&flow, broken).expect("write flow");
    dir
}

#[test]
fn every_example_scenario_passes() {
    let out = nudge().arg("test").arg(examples_root()).assert().success();
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(!stdout.contains("FAIL"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.ends_with(" passed, 0 failed"), "{last}");
    let passed: usize = last
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 30, "only {passed} tests ran");
}

#[test]
fn a_broken_journey_fails_with_a_readable_diff() {
    let dir = broken_cart_recovery();
    nudge()
        .arg("test")
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "FAIL cart reminder stops after a purchase on another device",
        ))
        .stdout(predicate::str::contains(
            "- expected: expect no send cart_reminder",
        ))
        .stdout(predicate::str::contains(
            "+ actual:   cart_reminder was sent to u1 at 2026-01-05T11:00:00Z",
        ))
        .stdout(predicate::str::contains(
            "- expected: expect exit cart_recovery reason \"order_completed\"",
        ))
        .stdout(predicate::str::contains("timeline of u1:"))
        .stdout(predicate::str::contains(
            "2026-01-05T10:45:00Z  > at 10:45 alias a9 to u1",
        ))
        .stdout(predicate::str::contains("cart_reminder (email): sent"))
        // Without its stop rule, the three tests about purchases fail.
        .stdout(predicate::str::contains("3 failed"));
}

#[test]
fn filter_runs_only_matching_tests() {
    nudge()
        .arg("test")
        .arg(examples_root().join("cart_recovery"))
        .args(["--filter", "FIRST-TIME"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok   only first-time buyers get the discount",
        ))
        .stdout(predicate::str::contains("another device").not())
        .stdout(predicate::str::ends_with("1 passed, 0 failed\n"));
}

#[test]
fn junit_output_counts_tests_and_failures() {
    let dir = broken_cart_recovery();
    let xml = dir.path().join("out").join("junit.xml");
    std::fs::create_dir_all(xml.parent().expect("parent")).expect("mkdir");
    nudge()
        .arg("test")
        .arg(dir.path())
        .arg("--junit")
        .arg(&xml)
        .assert()
        .code(1);
    let text = std::fs::read_to_string(&xml).expect("junit written");
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"));
    let tests = text.matches("<testcase ").count();
    let failures = text.matches("<failure ").count();
    assert!(tests >= 3, "{text}");
    // Without its stop rule, the three tests about purchases fail.
    assert_eq!(failures, 3, "{text}");
    assert!(text.contains(&format!("tests=\"{tests}\" failures=\"3\"")));
    assert!(text.contains("expect no send cart_reminder"));
    // Well formed: every element opened is closed.
    for tag in ["testsuites", "testsuite", "testcase", "failure"] {
        let opened = text.matches(&format!("<{tag} ")).count();
        let self_closed = text
            .split(&format!("<{tag} "))
            .skip(1)
            .filter(|rest| rest.split('>').next().is_some_and(|h| h.ends_with('/')))
            .count();
        let closed = text.matches(&format!("</{tag}>")).count();
        assert_eq!(opened, self_closed + closed, "<{tag}> in {text}");
    }
}

#[test]
fn a_project_that_does_not_check_is_not_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("nudge.toml"), "").expect("manifest");
    std::fs::write(
        dir.path().join("main.flow"),
        "test \"t\" {\n  at 10:00 track u1 no_such_event\n  run 1d\n}\n",
    )
    .expect("flow");
    nudge()
        .arg("test")
        .arg(dir.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains("not run"))
        .stderr(predicate::str::contains("no_such_event"));
}

#[test]
fn an_expectation_the_flow_can_no_longer_meet_is_a_check_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    copy_project(&examples_root().join("cart_recovery"), dir.path());
    let flow = dir.path().join("cart_recovery.flow");
    let text = std::fs::read_to_string(&flow).expect("read flow");
    std::fs::write(&flow, text.replace("  exit on order_completed\n", "")).expect("write flow");
    nudge()
        .arg("test")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "`cart_recovery` can never exit with reason \"order_completed\"",
        ));
}
